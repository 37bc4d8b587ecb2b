"""Networks: one registry (:mod:`gluonfuse.models.registry`) that every family module fills.

>>> from gluonfuse.models import get_model, list_models, count_params
>>> net = get_model("cross", depth=110)          # same network as get_model("dfn_mr1")
"""
from gluonfuse.models.registry import get_entry, get_model, get_spec, list_models  # noqa: F401
from gluonfuse.models.stats import count_params  # noqa: F401

# importing a family module registers its networks
from gluonfuse.models import fusion, fractal, preact, ror  # noqa: F401,E402
