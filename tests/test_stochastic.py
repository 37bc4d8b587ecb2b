"""Drop-path and stochastic depth are live in hybridized training, absent at inference and in exports.

Every statistical check counts decisions over many training passes of a *hybridized* net (the graph
is traced once, so frozen randomness would show as rates of 0 or 1) and accepts a rate only within 5
standard deviations of the exact expected value: a false alarm has odds below 1e-6, and any
plausible implementation error (rates off by a few points, a frozen mask, a missing revival) fails.
"""
import json
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from gluonfuse.export import convert_to_onnx
from gluonfuse.models import get_model, get_spec
from gluonfuse.models.fractal import FractalNet
from gluonfuse.models.ror import RoRNet

SEED = 20170101


def assert_rate(hits, trials, expected, what):
    rate = hits / trials
    sigma = math.sqrt(expected * (1 - expected) / trials)
    assert abs(rate - expected) <= 5 * sigma, (
        f"{what}: rate {rate:.4f} over {trials} trials, expected {expected:.4f} +/- {5 * sigma:.4f}")


def tiny_fractal(return_masks=True, **kwargs):
    """3 columns, 2 blocks of width 4, no dropout: 4 joins of 2 and 3 inputs, fast on 8x8 input."""
    args = dict(columns=3, blocks=2, widths=[4, 4], dropout=0)
    args.update(kwargs)
    mx.random.seed(SEED)
    net = FractalNet(get_spec("fractalnet", **args), return_masks=return_masks)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    return net


def train_passes(net, n, batch=2, size=8):
    """``n`` training-mode passes on fresh inputs; returns the list of (x, outputs as numpy)."""
    mx.random.seed(SEED)
    runs = []
    for _ in range(n):
        x = nd.random.normal(shape=(batch, 3, size, size))
        with autograd.train_mode():
            out = net(x)
        runs.append((x, [o.asnumpy() for o in out]))
    return runs


def split_masks(net, flat):
    """The flat mask vector as a list of (columns, mask) per join."""
    joins, i = [], 0
    for _, _, cols in net.join_columns():
        joins.append((cols, flat[i:i + len(cols)]))
        i += len(cols)
    assert i == len(flat)
    return joins


# ---------------------------------------------------------------- drop-path

@pytest.fixture(scope="module")
def mixed_runs():
    net = tiny_fractal()  # the default schedule: local p = 0.15, half of the passes global
    return net, train_passes(net, 1200)


@pytest.mark.slow  # ~1,000 hybridized training passes: statistics need the samples
def test_half_of_the_passes_are_global_with_a_uniform_column(mixed_runs):
    net, runs = mixed_runs
    ctrls = np.array([out[1] for _, out in runs])
    assert set(np.unique(ctrls[:, 0])) == {0.0, 1.0}
    is_global = ctrls[:, 0] == 1
    assert_rate(is_global.sum(), len(runs), 0.5, "global passes")
    chosen = ctrls[is_global, 1:]
    assert (chosen.sum(axis=1) == 1).all(), "a global pass must choose exactly one column"
    for c in range(3):
        assert_rate(chosen[:, c].sum(), len(chosen), 1 / 3, f"column {c + 1} chosen")


def test_a_global_pass_keeps_exactly_the_chosen_column_at_every_join_on_its_path(mixed_runs):
    net, runs = mixed_runs
    seen = 0
    for _, (_, ctrl, flat) in runs:
        if ctrl[0] != 1:
            continue
        column = int(np.argmax(ctrl[1:])) + 1
        for cols, mask in split_masks(net, flat):
            if column in cols:
                seen += 1
                assert mask.tolist() == [1.0 if c == column else 0.0 for c in cols], (column, cols, mask)
    assert seen > 300


def test_no_join_ever_outputs_an_all_dropped_mean(mixed_runs):
    net, runs = mixed_runs
    for x, (logits, _, flat) in runs:
        assert np.isfinite(logits).all()
        for cols, mask in split_masks(net, flat):
            assert set(np.unique(mask)) <= {0.0, 1.0}
            assert mask.sum() >= 1, (cols, mask)


def test_local_passes_drop_each_input_at_rate_p(mixed_runs):
    net, runs = mixed_runs
    p = net.spec.drop_path
    local = [flat for _, (_, ctrl, flat) in runs if ctrl[0] == 0]
    per_input = {}  # (join index, input index) -> drops
    for flat in local:
        for j, (cols, mask) in enumerate(split_masks(net, flat)):
            for i, kept in enumerate(mask):
                per_input.setdefault((j, i, len(cols)), []).append(kept == 0)
    patterns = {tuple(flat) for flat in local}
    assert len(patterns) > 20, "masks do not change between passes (frozen at the trace?)"
    for k in (2, 3):
        # an input is dropped unless it survives or is the one revived when all k drop
        expected = p - p ** k / k
        pooled = [d for (j, i, kk), drops in per_input.items() if kk == k for d in drops]
        assert_rate(sum(pooled), len(pooled), expected, f"drops in {k}-input joins")
    for (j, i, k), drops in per_input.items():
        assert_rate(sum(drops), len(drops), p - p ** k / k, f"join {j} input {i}")


@pytest.mark.slow  # ~1,000 hybridized training passes: statistics need the samples
def test_revival_picks_the_survivor_uniformly():
    # with p = 0.9 most joins drop everything and must revive one input at random
    net = tiny_fractal(drop_path=0.9, global_prob=0.0)
    runs = train_passes(net, 500)
    kept = {}
    for _, (_, ctrl, flat) in runs:
        assert ctrl[0] == 0, "global_prob=0 must never run a global pass"
        for j, (cols, mask) in enumerate(split_masks(net, flat)):
            assert mask.sum() >= 1
            for i, m in enumerate(mask):
                kept.setdefault((j, i, len(cols)), []).append(m == 1)
    for (j, i, k), hits in kept.items():
        assert_rate(sum(hits), len(hits), 0.1 + 0.9 ** k / k, f"join {j} input {i} kept")


def test_pure_global_passes_are_all_global():
    net = tiny_fractal(global_prob=1.0)
    for _, (_, ctrl, _) in train_passes(net, 30):
        assert ctrl[0] == 1 and ctrl[1:].sum() == 1


def explicit_fractal(net, x, masks=None):
    """FractalNet's forward written out from docs/networks.md#fractal-wiring with the net's own units (an independent oracle).

    ``masks``: keep masks per join in ``join_columns`` order (None: plain means).
    """
    masks = iter(masks or [])
    for block in net.fractal_blocks:
        state, used = {}, {}
        for row in net.spec.rows():
            outs = []
            for c in row:
                outs.append(block.column(c)[used.get(c, 0)](state.get(c, x)))
                used[c] = used.get(c, 0) + 1
            if len(outs) == 1:
                y = outs[0]
            else:
                keep = next(masks) if net.spec.live_drop_path else np.ones(len(outs))
                y = sum(float(m) * o for m, o in zip(keep, outs)) / float(sum(keep))
            for c in row:
                state[c] = y
        x = nd.Pooling(y, kernel=(2, 2), stride=(2, 2), pool_type="max")
    return net.head(x)


def test_training_passes_compute_the_masked_means_they_report():
    net = tiny_fractal()
    for x, (logits, ctrl, flat) in train_passes(net, 12):
        with autograd.train_mode():  # BatchNorm on batch statistics, as in the pass
            ref = explicit_fractal(net, x, [m for _, m in split_masks(net, flat)])
        np.testing.assert_allclose(logits, ref.asnumpy(), rtol=1e-4, atol=1e-5)


def test_a_global_pass_equals_the_chosen_column_network():
    net = tiny_fractal()
    columns = {c: net.column_net(c) for c in (1, 2, 3)}
    checked = 0
    for x, (logits, ctrl, _) in train_passes(net, 16):
        if ctrl[0] == 1:
            with autograd.train_mode():
                alone = columns[int(np.argmax(ctrl[1:])) + 1](x)
            np.testing.assert_allclose(logits, alone.asnumpy(), rtol=1e-4, atol=1e-5)
            checked += 1
    assert checked >= 3


def test_inference_is_deterministic_and_uses_plain_mean_joins():
    net = tiny_fractal(return_masks=True)
    train_passes(net, 3)  # BatchNorm running statistics are not fresh any more
    x = nd.random.normal(shape=(3, 3, 8, 8))
    logits, ctrl, flat = net(x)
    again = net(x)[0]
    assert ctrl.asnumpy()[0] == 0 and (flat.asnumpy() == 1).all()
    assert (logits.asnumpy() == again.asnumpy()).all()
    plain = net.variant(drop_path=0.0, global_prob=0.0)
    assert not plain.spec.live_drop_path
    np.testing.assert_allclose(logits.asnumpy(), plain(x).asnumpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(logits.asnumpy(), explicit_fractal(plain, x).asnumpy(), rtol=1e-5, atol=1e-6)


RANDOM_OPS = ("random", "sample", "shuffle", "bernoulli")


def test_export_is_the_plain_mean_join_graph(tmp_path):
    net = tiny_fractal(return_masks=False)
    train_passes(net, 2)
    x = nd.random.normal(shape=(2, 3, 8, 8))
    expected = net.variant(drop_path=0.0, global_prob=0.0)(x).asnumpy()
    net(x)
    net.export(str(tmp_path / "fractal"))
    ops = {n["op"] for n in json.loads((tmp_path / "fractal-symbol.json").read_text())["nodes"]}
    assert not [op for op in ops if any(word in op.lower() for word in RANDOM_OPS)], ops
    # the masks are Dropout nodes over constants: the identity at inference
    assert "Dropout" in ops and "Convolution" in ops
    loaded = gluon.SymbolBlock.imports(str(tmp_path / "fractal-symbol.json"), ["data"],
                                       str(tmp_path / "fractal-0000.params"))
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- single columns

@pytest.mark.parametrize("column", [1, 2, 3])
def test_column_network_equals_the_explicit_single_path(column):
    net = tiny_fractal(return_masks=False)
    train_passes(net, 2)
    x = nd.random.normal(shape=(2, 3, 8, 8))
    alone = net.column_net(column)
    alone.hybridize()
    ref = x
    for block in net.fractal_blocks:
        for unit in block.column(column):
            ref = unit(ref)
        ref = nd.Pooling(ref, kernel=(2, 2), stride=(2, 2), pool_type="max")
    ref = net.head(ref)
    np.testing.assert_allclose(alone(x).asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-6)


def test_a_column_exports_as_its_own_graph(tmp_path):
    net = tiny_fractal(return_masks=False)
    train_passes(net, 2)
    x = nd.random.normal(shape=(2, 3, 8, 8))
    deepest = net.column_net()
    deepest.hybridize()
    expected = deepest(x).asnumpy()
    deepest.export(str(tmp_path / "col"))
    saved = nd.load(str(tmp_path / "col-0000.params"))
    names = {k.split(":", 1)[1] for k in saved}
    assert names == set(deepest.collect_params().keys())
    assert all("_c3_" in n or n.startswith("fractalnet_head_") for n in names), names
    loaded = gluon.SymbolBlock.imports(str(tmp_path / "col-symbol.json"), ["data"],
                                       str(tmp_path / "col-0000.params"))
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=1e-6, atol=1e-7)


def test_a_saved_full_net_loads_into_a_column_network(tmp_path):
    net = tiny_fractal(return_masks=False)
    train_passes(net, 2)
    net.save_parameters(str(tmp_path / "full.params"))
    x = nd.random.normal(shape=(2, 3, 8, 8))
    rebuilt = get_model("fractalnet", **dict(net.spec.kwargs(), column=2))
    rebuilt.load_parameters(str(tmp_path / "full.params"), ignore_extra=True)
    np.testing.assert_allclose(rebuilt(x).asnumpy(), net.column_net(2)(x).asnumpy(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- stochastic depth (RoR)

def tiny_ror(network="ror3", depth=20, **kwargs):
    mx.random.seed(SEED)
    net = RoRNet(get_spec(network, depth=depth, stochastic_depth=0.5, **kwargs), return_gates=True)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    return net


@pytest.mark.slow  # ~1,000 hybridized training passes: statistics need the samples
@pytest.mark.parametrize("network,depth", [("ror3", 20), ("ror3_wrn", 16)])
def test_stochastic_depth_survival_rates(network, depth):
    net = tiny_ror(network, depth)
    survivals = net.spec.survivals()
    assert survivals[0] == 1.0 and survivals[-1] == 0.5 and len(survivals) == 6
    assert np.allclose(np.diff(survivals), -0.1)  # linear from 1.0 to 0.5
    gated = net.gated_blocks()
    assert [p for _, _, p in gated] == survivals[1:]
    gates = np.array([out[1] for _, out in train_passes(net, 1000, size=4)])
    assert set(np.unique(gates)) == {0.0, 1.0}
    for column, (stage, block, p) in enumerate(gated):
        assert_rate(gates[:, column].sum(), len(gates), p, f"stage {stage} block {block} survives")
    x = nd.random.normal(shape=(2, 3, 4, 4))
    logits, test_gates = net(x)
    # exactly the survival probabilities (as float32) at inference
    assert (test_gates.asnumpy() == np.array([p for _, _, p in gated], dtype=np.float32)).all()
    assert (net(x)[0].asnumpy() == logits.asnumpy()).all()


def explicit_ror(net, x, gates):
    """RoR-3 written out from docs/networks.md#ror-levels with the net's own units; ``gates`` per gated block."""
    gates = iter(gates)
    x = net.stem(x)
    root = net.root(x)
    for s, stage in enumerate((net.g1, net.g2, net.g3)):
        mid = stage.mid(x)
        for j, survival in enumerate(stage.survivals):
            short, residual = getattr(stage, f"b{j}").parts(nd, x)
            y = short + residual * (float(next(gates)) if survival < 1 else 1.0)
            if j == len(stage.survivals) - 1:
                y = y + mid + (root if s == 2 else 0)
            x = y if net.spec.preact else nd.relu(y)
    if net.post is not None:
        x = net.post(x)
    return net.head(x)


@pytest.mark.parametrize("network,depth", [("ror3", 20), ("ror3_wrn", 16)])
def test_stochastic_depth_gates_the_residuals_and_scales_them_at_test(network, depth):
    net = tiny_ror(network, depth)
    dropped = 0
    for x, (logits, gates) in train_passes(net, 8, batch=4, size=8):
        dropped += int((gates == 0).sum())
        with autograd.train_mode():
            ref = explicit_ror(net, x, gates)
        np.testing.assert_allclose(logits, ref.asnumpy(), rtol=1e-4, atol=1e-5)
    assert dropped > 0
    x = nd.random.normal(shape=(2, 3, 4, 4))
    ref = explicit_ror(net, x, [p for _, _, p in net.gated_blocks()])
    np.testing.assert_allclose(net(x)[0].asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-6)


def test_stochastic_depth_export_has_no_random_operators(tmp_path):
    net = tiny_ror()
    x = nd.random.normal(shape=(2, 3, 4, 4))
    expected = net(x)[0].asnumpy()
    plain = RoRNet(net.spec, prefix=net.prefix, params=net.collect_params())
    plain.hybridize()
    plain(x)
    plain.export(str(tmp_path / "ror"))
    ops = {n["op"] for n in json.loads((tmp_path / "ror-symbol.json").read_text())["nodes"]}
    assert not [op for op in ops if any(word in op.lower() for word in RANDOM_OPS)], ops
    loaded = gluon.SymbolBlock.imports(str(tmp_path / "ror-symbol.json"), ["data"], str(tmp_path / "ror-0000.params"))
    np.testing.assert_allclose(loaded(x).asnumpy(), expected, rtol=1e-6, atol=1e-7)


def test_nets_without_stochastic_layers_build_no_masks():
    assert get_model("ror3", depth=20).gated_blocks() == []
    assert get_model("fractalnet", drop_path=0, global_prob=0).join_columns() == []
    assert not get_spec("fractalnet", column=2).live_drop_path


@pytest.mark.parametrize("which", ["fractal", "ror"])
def test_onnx_export_of_the_stochastic_nets_computes_the_inference_graph(tmp_path, which):
    ort = pytest.importorskip("onnxruntime")
    ort.set_default_logger_severity(3)
    if which == "fractal":
        net = tiny_fractal(return_masks=False)
        reference = net.variant(drop_path=0.0, global_prob=0.0)
    else:
        trained = tiny_ror()
        net = RoRNet(trained.spec, prefix=trained.prefix, params=trained.collect_params())
        net.hybridize()
        reference = lambda x: explicit_ror(net, x, [p for _, _, p in net.gated_blocks()])  # noqa: E731
    x = nd.random.normal(shape=(2, 3, 8, 8))
    net(x)
    net.export(str(tmp_path / "m"))
    path = convert_to_onnx(str(tmp_path / "m-symbol.json"), str(tmp_path / "m-0000.params"), x.shape,
                           str(tmp_path / "m.onnx"))
    session = ort.InferenceSession(path)
    (out,) = session.run(None, {session.get_inputs()[0].name: x.asnumpy()})
    np.testing.assert_allclose(out, reference(x).asnumpy(), rtol=1e-5, atol=1e-6)
