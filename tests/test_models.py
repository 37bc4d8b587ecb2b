"""Every registered network, through one parametrised test; plus the parameter anchors (docs/anchors.md) and bad arguments.

A network registered anywhere is tested here the moment it exists: forward shape, hybridized equals
imperative, a finite gradient for every trainable parameter, deterministic parameter names, export ->
plain-MXNet ``SymbolBlock.imports`` and ONNX reproducing the output.
"""
import dataclasses
import re

import mxnet as mx
import numpy as np
import pytest

from gluonfuse.export import export_model, export_onnx, load_exported
from gluonfuse.models import count_params, get_entry, get_model, list_models


def _param(name):
    # heavy networks (ImageNet, 1000-layer) run in the slow tier
    return pytest.param(name, marks=pytest.mark.slow) if get_entry(name).heavy else name


NETWORKS = [_param(n) for n in list_models()]
ANCHORS = [pytest.param(name, kwargs, count, id=f"{name}-{'-'.join(f'{k}{v}' for k, v in kwargs.items())}")
           for name in list_models() for kwargs, count in get_entry(name).anchors]


def _outputs(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _built(name, seed=0):
    mx.random.seed(seed)
    net = get_model(name)
    net.initialize(mx.init.Xavier(magnitude=2))
    return net


def _batch(net, n=2, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(-1, 1, (n,) + tuple(net.spec.input_shape)))


def test_registry_is_populated():
    assert {"plain", "resnet", "cross", "half", "side", "fuse3", "fuse6", "ensemble"} <= set(list_models())
    assert {"dfn_mr1", "dfn_mr2", "dfn_mr3", "dfn_mr50_imagenet", "resnet98_imagenet"} <= set(
        list_models(kind="preset"))
    assert list_models("dfn_mr?") == ["dfn_mr1", "dfn_mr2", "dfn_mr3"]


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_and_hybrid_equal_imperative(name):
    net = _built(name)
    x = _batch(net)
    with mx.autograd.predict_mode():
        imperative = _outputs(net(x))
    for out in imperative:
        assert out.shape == (2, net.spec.classes)
        assert np.isfinite(out.asnumpy()).all()
    net.hybridize()
    with mx.autograd.predict_mode():
        hybrid = _outputs(net(x))
    assert len(hybrid) == len(imperative)
    for a, b in zip(imperative, hybrid):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-5)


STOCHASTIC_OFF = {"dropout": 0.0, "drop_path": 0.0, "global_prob": 0.0, "stochastic_depth": 0.0}


def _deterministic(name):
    """``name`` with its stochastic layers (dropout, drop-path, stochastic depth) switched off."""
    fields = {f.name for f in dataclasses.fields(get_entry(name).spec_cls)}
    return get_model(name, **{k: v for k, v in STOCHASTIC_OFF.items() if k in fields})


@pytest.mark.parametrize("name", NETWORKS)
def test_every_parameter_gets_a_finite_gradient(name):
    # Training-mode backward: mxnet 1.9.1's BatchNorm backward under record(train_mode=False) is
    # wrong (the input gradient of one BN of ones is -62, not ~1), and overflows in deep nets.
    label = mx.nd.array([0, 1])
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for net, must_reach in ((_deterministic(name), True), (get_model(name), False)):
        mx.random.seed(0)
        net.initialize(mx.init.Xavier(magnitude=2))
        net.hybridize()
        x = _batch(net)
        with mx.autograd.record(train_mode=True):
            loss = sum(loss_fn(o, label).sum() for o in _outputs(net(x)))
        loss.backward()
        for pname, p in net.collect_params().items():
            if p.grad_req == "null":
                continue
            g = p.grad().asnumpy()
            assert np.isfinite(g).all(), f"{pname}: non-finite gradient"
            # with the stochastic layers live, a dropped path may rightly get no gradient this pass
            if must_reach:
                assert np.abs(g).sum() > 0, f"{pname}: no gradient reaches this parameter"


@pytest.mark.parametrize("name", NETWORKS)
def test_parameter_names_are_stable(name, tmp_path):
    first, second = get_model(name), get_model(name)
    assert list(first.collect_params().keys()) == list(second.collect_params().keys())
    first.initialize(mx.init.Xavier())
    path = str(tmp_path / "w.params")
    first.save_parameters(path)
    second.load_parameters(path)  # strict: every name must match both ways
    for p1, p2 in zip(first.collect_params().values(), second.collect_params().values()):
        np.testing.assert_array_equal(p1.data().asnumpy(), p2.data().asnumpy())


@pytest.mark.parametrize("name", NETWORKS)
def test_export_reproduces_outputs(name, tmp_path):
    net = _built(name)
    x = _batch(net)
    paths = export_model(net, str(tmp_path))
    with mx.autograd.predict_mode():
        expected = _outputs(net(x))
        loaded = _outputs(load_exported(paths["symbol"], paths["params"])(x))
    assert len(loaded) == len(expected)
    for a, b in zip(expected, loaded):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-5)
    onnx_result = export_onnx(net, str(tmp_path / "net.onnx"))
    assert onnx_result["max_abs_diff"] < 1e-3


@pytest.mark.parametrize("name,kwargs,count", ANCHORS)
def test_parameter_count_matches_spec_anchor(name, kwargs, count):
    assert count_params(get_model(name, **kwargs)) == count


def test_presets_equal_their_family_configuration():
    preset, family = get_model("dfn_mr1"), get_model("cross", depth=110)
    assert list(preset.collect_params().keys()) == list(family.collect_params().keys())
    assert preset.spec == family.spec


def test_ensemble_shares_exactly_fuse3_parameters(tmp_path):
    fuse3, ensemble = get_model("fuse3", depth=20), get_model("ensemble", depth=20)
    assert count_params(fuse3) == count_params(ensemble)
    fuse3.initialize(mx.init.Xavier())
    path = str(tmp_path / "fuse3.params")
    fuse3.save_parameters(path)
    ensemble.load_parameters(path)  # the members are fuse3's paths, by structure
    x = mx.nd.random.uniform(shape=(2, 3, 32, 32))
    with mx.autograd.predict_mode():
        members = ensemble(x)
    assert len(members) == 8
    # member 'LLL' built by hand from fuse3's blocks
    h = fuse3.stem(x)
    for stage in fuse3.stages:
        h = mx.nd.relu(stage[0].path(mx.nd, h, "left"))
    with mx.autograd.predict_mode():
        lll = fuse3.head(h)
    np.testing.assert_allclose(members[0].asnumpy(), lll.asnumpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("name,kwargs,needle", [
    ("crss", {}, "Did you mean 'cross'"),
    ("cross", {"depth": 10}, "smallest valid depth is 14"),
    ("resnet", {"depth": 5}, "smallest valid depth is 8"),
    ("cross", {"depth": 10}, "leaves a stage with no blocks (blocks per stage [0, 1, 1])"),
    ("fuse6", {"depth": 7}, "block depth (depth - 2) // 6 = 0, below 1; the smallest valid depth is 8"),
    ("cross", {"widen_factor": 0}, "widen_factor must be a positive integer"),
    ("cross", {"classes": -3}, "classes must be a positive integer"),
    ("cross", {"depth": 56.0}, "depth must be a positive integer"),
    ("dfn_mr1", {"depth": 56}, "fixes depth=110"),
    ("cross", {"colums": 3}, "accepts: depth, widen_factor, classes"),
    ("resnet98_imagenet", {"units": (1, 2)}, "fixes units"),
    ("resnet_imagenet", {"units": (1, 2)}, "units must be 4 positive integers"),
])
def test_bad_arguments_raise_clear_value_errors(name, kwargs, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        get_model(name, **kwargs)
