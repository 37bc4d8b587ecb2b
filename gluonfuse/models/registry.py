"""The one registry of networks: families with arguments and named presets.

A *family* is a spec class (a frozen dataclass that validates its arguments in ``__post_init__``)
plus the HybridBlock class that builds from it::

    register_family("cross", FusionSpec, FusionNet, "DFN-MR (merge-and-run) ...", network="cross")

A *preset* names one configuration of a family::

    register_preset("dfn_mr1", "cross", "DFN-MR1 ...", depth=110, widen_factor=1,
                    anchors={10: 1_710_426, 100: 1_716_276})

``get_model('cross', depth=110)`` and ``get_model('dfn_mr1')`` build the same network. Anchors are the
the trainable-parameter counts of docs/anchors.md; the test suite checks every one of them.

Spec protocol (what every family's spec provides):
  * ``name`` - a short canonical name, e.g. ``cross_d110_w1`` (file names of exports and drawings;
    parameters are prefixed with the family, ``cross_``, so presets and families share names);
  * ``classes`` and ``input_shape`` (C, H, W);
  * ``kwargs()`` - the arguments that rebuild it through ``get_model(family, **kwargs)``;
  * ``describe()`` - a dict for ``gluonfuse summary`` (blocks per stage, longest path, ...).

Net protocol: every family's net class derives from :class:`gluonfuse.models.views.Views` and says
through it which sub-networks it has (outputs, columns, removable branches, members, stochastic
blocks, paths); evaluation, training and analysis ask it, never the class. ``register_family``
refuses a net class that does not.
"""
import dataclasses
import fnmatch
from typing import Any, Callable, Dict, Mapping, Optional

from gluonfuse.errors import did_you_mean
from gluonfuse.models.views import Views


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One row of the registry."""

    name: str
    kind: str  # "family" or "preset"
    family: str  # the family's own name for a family, the family it configures for a preset
    description: str
    spec_cls: Callable[..., Any]
    net_cls: Callable[..., Any]
    fixed: Mapping[str, Any]  # family: arguments bound at registration; preset: its configuration
    # anchors (docs/anchors.md): list of (kwargs, trainable params) checked by the tests
    anchors: tuple = ()
    # heavy networks are exercised by the slow tests only
    heavy: bool = False

    def make_spec(self, **kwargs):
        clash = sorted(k for k in kwargs if k in self.fixed and kwargs[k] != self.fixed[k])
        if clash and self.kind == "preset":
            fixed = ", ".join(f"{k}={self.fixed[k]!r}" for k in clash)
            raise ValueError(
                f"preset {self.name!r} fixes {fixed}; build other configurations from its family, "
                f"e.g. get_model({self.family!r}, ...)"
            )
        merged = dict(self.fixed)
        merged.update(kwargs)
        try:
            return self.spec_cls(**merged)
        except TypeError as exc:
            accepted = [f.name for f in dataclasses.fields(self.spec_cls) if f.init]
            accepted = [a for a in accepted if a not in self.fixed or self.kind == "family"]
            raise ValueError(
                f"{self.name!r} does not take those arguments ({exc}); it accepts: "
                + ", ".join(a for a in accepted if a != "network")
            ) from None


_REGISTRY: Dict[str, ModelEntry] = {}


def _add(entry: ModelEntry):
    if entry.name in _REGISTRY:
        raise KeyError(f"network {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def _anchor_rows(anchors):
    rows = []
    for kwargs, count in anchors or ():
        rows.append((dict(kwargs), int(count)))
    return tuple(rows)


def register_family(name, spec_cls, net_cls, description, anchors=None, heavy=False, **fixed):
    """Register a family: ``spec_cls(**fixed, **user_kwargs)`` validates, ``net_cls(spec)`` builds.

    ``anchors``: iterable of ``(kwargs, trainable_params)`` that docs/anchors.md states for this family.
    """
    if not (isinstance(net_cls, type) and issubclass(net_cls, Views)):
        raise TypeError(f"family {name!r}: {net_cls!r} must derive from gluonfuse.models.views.Views "
                        "(the protocol through which a network declares its sub-networks)")
    return _add(ModelEntry(name, "family", name, description, spec_cls, net_cls, dict(fixed),
                           _anchor_rows(anchors), heavy))


def register_preset(name, family, description, anchors=None, heavy=False, **config):
    """Register a named configuration of ``family``.

    ``anchors`` maps a class count to the trainable-parameter count (docs/anchors.md) for that many classes.
    """
    if family not in _REGISTRY or _REGISTRY[family].kind != "family":
        raise KeyError(f"preset {name!r} names unknown family {family!r}")
    fam = _REGISTRY[family]
    fixed = dict(fam.fixed)
    fixed.update(config)
    rows = [({"classes": classes}, count) for classes, count in (anchors or {}).items()]
    return _add(ModelEntry(name, "preset", family, description, fam.spec_cls, fam.net_cls, fixed,
                           _anchor_rows(rows), heavy))


def _ensure_loaded():
    # the family modules register themselves on import; importing the package is enough
    import gluonfuse.models  # noqa: F401


def get_entry(name) -> ModelEntry:
    """The registry row for ``name``; ValueError with a 'did you mean' for unknown names."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown network {name!r}.{did_you_mean(name, _REGISTRY)} "
            "Run 'gluonfuse list' to see every network and preset."
        )
    return _REGISTRY[name]


def get_spec(name, **kwargs):
    """Validate ``kwargs`` for network ``name`` and return its spec (builds nothing)."""
    return get_entry(name).make_spec(**kwargs)


def get_model(name, **kwargs):
    """Build network ``name`` (a family or a preset) as an uninitialised HybridBlock.

    ``get_model('cross', depth=110)`` and ``get_model('dfn_mr1')`` give the same network with the
    same parameter names. Raises ``ValueError`` for unknown names and impossible arguments.
    """
    entry = get_entry(name)
    spec = entry.make_spec(**kwargs)
    net = entry.net_cls(spec)
    # what rebuilds it: get_model(net.family, **net.spec.kwargs()) (export metadata, run configs)
    net.family = entry.family
    return net


def list_models(pattern="*", kind: Optional[str] = None):
    """Registered names matching the shell-style ``pattern``, families first, in registration order."""
    _ensure_loaded()
    if kind not in (None, "family", "preset"):
        raise ValueError(f"kind must be 'family', 'preset' or None, not {kind!r}")
    rows = [e for e in _REGISTRY.values() if fnmatch.fnmatch(e.name, pattern)]
    if kind:
        rows = [e for e in rows if e.kind == kind]
    rows.sort(key=lambda e: e.kind != "family")  # stable: registration order within a kind
    return [e.name for e in rows]
