"""symbols/ holds every preset's graph; a fresh trace must be identical, so structure changes show."""
import os

import pytest

from gluonfuse.export import symbol_json
from gluonfuse.models import list_models

SYMBOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "symbols")


@pytest.mark.parametrize("name", list_models(kind="preset"))
def test_preset_graph_matches_committed_symbol(name):
    path = os.path.join(SYMBOLS, f"{name}-symbol.json")
    assert os.path.exists(path), f"missing {path}: run python tools/update_symbols.py"
    with open(path) as f:
        committed = f.read()
    assert symbol_json(name) == committed, (
        f"{name}'s graph changed; if intended, regenerate with python tools/update_symbols.py")


def test_no_stray_symbol_files():
    presets = {f"{n}-symbol.json" for n in list_models(kind="preset")}
    assert set(os.listdir(SYMBOLS)) <= presets | {"README.md"}


def test_committed_symbols_load_in_plain_mxnet():
    import mxnet as mx

    sym = mx.sym.load(os.path.join(SYMBOLS, "dfn_mr1-symbol.json"))
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 32, 32))
    assert out_shapes == [(1, 10)]
