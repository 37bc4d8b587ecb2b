"""The model views protocol (gluonfuse.models.views): every registered network answers it.

Each family with removable branches is checked on a small instance against references built
independently of the views code: removing nothing is the network itself (imperative and
hybridized), removing one branch changes the output and equals the network written out by hand
from docs/networks.md with that branch deleted, and the path counts equal a dynamic program over the exported
symbol graph (paths from ``data`` to the output, conv and Dense operators counted as layers).
"""
import collections
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

from gluonfuse.models import get_entry, get_model, list_models
from gluonfuse.models.stats import symbol_of
from gluonfuse.models.views import Branch, BranchView, Views, get_views, hybridized


def _param(name):
    return pytest.param(name, marks=pytest.mark.slow) if get_entry(name).heavy else name


# small instances of every family (the ImageNet nets on 32x32 input: the head pools globally)
SMALL = {
    "plain": {"depth": 8}, "resnet": {"depth": 14}, "cross": {"depth": 14}, "half": {"depth": 14},
    "side": {"depth": 14}, "fuse3": {"depth": 11}, "fuse6": {"depth": 20}, "ensemble": {"depth": 11},
    "resnet_imagenet": {"units": (1, 2, 1, 1), "classes": 10},
    "cross_imagenet": {"units": (1, 2, 1, 1), "classes": 10},
    "fractalnet": {"columns": 3, "blocks": 2, "widths": [4, 4]},
    "preresnet": {"depth": 14}, "wrn": {"depth": 10, "widen_factor": 2},
    "ror3": {"depth": 20}, "ror3_wrn": {"depth": 16, "widen_factor": 2, "stochastic_depth": 0.5},
}
HEAVY_FORWARD = {"resnet_imagenet", "cross_imagenet"}  # seconds to initialise: slow tier
WITH_BRANCHES = ["resnet", "cross", "half", "side", "fuse3", "fuse6", "resnet_imagenet", "cross_imagenet",
                 "preresnet", "wrn", "ror3", "ror3_wrn"]


def _family(name):
    return pytest.param(name, marks=pytest.mark.slow) if name in HEAVY_FORWARD else name


def _trained_looking(net, seed=0):
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier(magnitude=2))
    # trained-looking statistics: small means (a large one would silence every ReLU), spread variances
    for p in net.collect_params(".*running_mean").values():
        p.set_data(nd.random.uniform(-0.1, 0.1, shape=p.shape))
    for p in net.collect_params(".*running_var").values():
        p.set_data(nd.random.uniform(0.5, 1.5, shape=p.shape))
    return net


def _batch(n=2, seed=0):
    return nd.array(np.random.RandomState(seed).normal(0, 1, (n, 3, 32, 32)))


def test_small_instances_cover_every_family():
    assert set(SMALL) == set(list_models(kind="family"))


@pytest.mark.parametrize("name", [_param(n) for n in list_models()])
def test_every_network_answers_the_protocol(name):
    net = get_model(name)
    assert isinstance(net, Views) and get_views(net) is net
    assert len(net.output_names()) >= 1
    assert net.column_count() >= 0
    branches = net.branches()
    assert all(isinstance(b, Branch) for b in branches)
    assert len({b.label for b in branches}) == len(branches) == len(set(branches))
    assert [b.position for b in branches] == sorted(b.position for b in branches)
    for member, removed in net.members():
        assert isinstance(member, str) and removed
    gated = dict(net.stochastic_blocks())
    assert set(gated) <= set(branches) and all(0 < p < 1 for p in gated.values())
    paths = net.path_lengths()
    assert max(paths) == net.spec.describe()["longest_path"]
    assert all(n > 0 for n in paths.values())


def test_a_block_outside_the_registry_has_no_views():
    views = get_views(mx.gluon.nn.Dense(3))
    assert views.output_names() == ("output",) and views.column_count() == 0
    assert views.branches() == [] and views.members() == [] and views.stochastic_blocks() == []
    with pytest.raises(ValueError, match="has no columns"):
        views.column_view(1)


def test_families_without_branches_say_so():
    plain = get_model("plain", depth=8)
    assert plain.branches() == [] and plain.members() == [] and plain.column_count() == 0
    with pytest.raises(ValueError, match="no removable branch"):
        BranchView(plain, [Branch(1, 0, "residual")])
    column = get_model("fractalnet", column=2)
    assert column.column_count() == 0
    with pytest.raises(ValueError, match="single FractalNet column"):
        column.column_view(1)


def test_the_registry_refuses_a_net_class_without_the_protocol():
    from gluonfuse.models.registry import register_family

    with pytest.raises(TypeError, match="must derive from gluonfuse.models.views.Views"):
        register_family("not_a_family", dict, mx.gluon.nn.HybridSequential, "no protocol")


# ---------------------------------------------------------------- paths against the symbol graph

def graph_paths(sym):
    """Counter {length: paths} from ``data`` to the outputs of ``sym``; conv and Dense count 1.

    Values made from constants (``ones_like``: drop-path and stochastic-depth masks) and parameters
    carry no path; an operator reading the same input twice (a merge of two streams that are still
    one tensor) counts it twice.
    """
    graph = json.loads(sym.tojson())
    polys = []
    for node in graph["nodes"]:
        if node["op"] == "null":
            polys.append(collections.Counter({0: 1}) if node["name"] == "data" else None)
            continue
        inputs = [polys[i] for i, _, _ in node["inputs"]]
        inputs = [p for p in inputs if p is not None]
        if node["op"] in ("ones_like", "zeros_like") or not inputs:
            polys.append(None)
            continue
        total = collections.Counter()
        for p in inputs:
            total.update(p)
        if node["op"] in ("Convolution", "FullyConnected"):
            total = collections.Counter({k + 1: n for k, n in total.items()})
        polys.append(total)
    out = collections.Counter()
    for i, _, _ in graph["heads"]:
        out.update(polys[i])
    return out


def _dense_counted(net, poly):
    # FractalNet's lengths count convolutions only; the graph also passes its Dense layer
    return collections.Counter({k + 1: n for k, n in poly.items()}) if net.PATH_UNIT.startswith("conv") else poly


@pytest.mark.parametrize("family", sorted(SMALL))
def test_path_counts_equal_the_symbol_graphs(family):
    net = get_model(family, **SMALL[family])
    assert _dense_counted(net, net.path_lengths()) == graph_paths(symbol_of(net))
    branches = net.branches()
    if not branches:
        return
    # one lesion of every kind the net has, and a set of several
    by_kind = {}
    for b in branches:
        by_kind.setdefault(b.kind, b)
    for removed in [[b] for b in by_kind.values()] + [branches[::3]]:
        if not any(net.path_lengths(removed).values()):
            continue  # side: a block left with no path (refused, tested elsewhere)
        view = BranchView(net, removed)
        assert net.path_lengths(removed) == graph_paths(symbol_of(view)), [b.label for b in removed]


@pytest.mark.parametrize("network,kwargs,total", [
    ("preresnet", {"depth": 20}, 2 ** 9),  # 9 blocks, shortcut or residual each
    ("preresnet", {"depth": 29, "bottleneck": True}, 2 ** 9),
    ("wrn", {"depth": 16}, 2 ** 6),
    # a stage multiplies the paths by 2^n + 1 (its blocks, or the mid shortcut); root adds one path
    ("ror3", {"depth": 26}, (2 ** 3 + 1) ** 3 + 1),
    ("ror3_wrn", {"depth": 16}, (2 ** 2 + 1) ** 3 + 1),
    ("resnet_imagenet", {"units": (2, 4, 22, 4)}, 2 ** (1 + 3 + 21 + 3)),  # first units have no shortcut
    # merge-and-run units after the first of a stage: m + da, m + db on streams (pa, pb):
    # (pa, pb) -> (2pa + pb, pa + 2pb); a first unit keeps (pa, pb); the head adds both streams
    ("cross_imagenet", {"units": (1, 2, 11, 2)}, 2 * 3 ** (1 + 10 + 1)),
])
def test_path_totals_of_the_new_families(network, kwargs, total):
    assert sum(get_model(network, **kwargs).path_lengths().values()) == total


# ---------------------------------------------------------------- lesions on small instances

@pytest.mark.parametrize("family", [_family(f) for f in WITH_BRANCHES])
def test_removing_nothing_is_the_network_and_removing_a_branch_changes_it(family):
    net = _trained_looking(get_model(family, **SMALL[family]))
    x = _batch()
    full = net(x).asnumpy()
    assert np.array_equal(BranchView(net)(x).asnumpy(), full)  # imperative: operation for operation
    view = hybridized(BranchView(net))
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(x).asnumpy()
    assert np.array_equal(view(x).asnumpy(), hybrid)  # hybridized: the same graph
    np.testing.assert_allclose(hybrid, full, rtol=1e-4, atol=1e-5)
    for b in net.branches():
        if not any(net.path_lengths([b]).values()):
            continue
        out = BranchView(net, [b])(x).asnumpy()
        assert not np.allclose(out, full, rtol=1e-4, atol=1e-5), b.label


def _preact_by_hand(net, x, removed):
    """A pre-activation ResNet from docs/networks.md#pre-activation-resnets, block by block, with the residuals in ``removed`` deleted."""
    x = net.stem(x)
    for s, stage in enumerate(net.stages, start=1):
        for j in range(len(stage)):
            block = stage[j]
            pre = nd.relu(block.bn1(x))
            short = block.proj(pre) if block.proj is not None else x
            if (s, j) in removed:
                x = short
                continue
            if net.spec.bottleneck:
                y = block.conv3(nd.relu(block.bn3(block.conv2(nd.relu(block.bn2(block.conv1(pre)))))))
            else:
                y = block.conv2(nd.relu(block.bn2(block.conv1(pre))))
            x = short + y
    return net.head(nd.relu(net.post.bn(x)))


@pytest.mark.parametrize("network,kwargs", [("preresnet", {"depth": 14}), ("wrn", {"depth": 10, "widen_factor": 2}),
                                            ("preresnet", {"depth": 11, "bottleneck": True})])
def test_preact_lesion_leaves_the_shortcut(network, kwargs):
    net = _trained_looking(get_model(network, **kwargs))
    x = _batch()
    for b in net.branches():
        np.testing.assert_allclose(BranchView(net, [b])(x).asnumpy(),
                                   _preact_by_hand(net, x, {(b.stage, b.block)}).asnumpy(), rtol=1e-5, atol=1e-5)
    everything = {(b.stage, b.block) for b in net.branches()}
    np.testing.assert_allclose(BranchView(net, net.branches())(x).asnumpy(),
                               _preact_by_hand(net, x, everything).asnumpy(), rtol=1e-5, atol=1e-5)


def _ror_by_hand(net, x, removed):
    """RoR-3 from docs/networks.md#ror-levels with the net's units; a removed residual or shortcut leaves its sum, a kept
    residual is scaled by its survival probability (stochastic depth at test time)."""
    n = net.spec.blocks
    survivals = iter(net.spec.survivals())
    x = net.stem(x)
    root = net.root(x)
    for s, stage in enumerate(net.stages, start=1):
        mid = stage.mid(x)
        for j in range(n):
            block = getattr(stage, f"b{j}")
            survival = next(survivals)
            if net.spec.preact:
                pre = nd.relu(block.bn1(x))
                short = block.proj(pre) if block.proj is not None else x
                residual = block.conv2(nd.relu(block.bn2(block.conv1(pre))))
            else:
                short = block.short(x) if block.short is not None else x
                residual = block.two(x)
            y = short + (0 if f"g{s}.b{j}" in removed else survival * residual)
            if j == n - 1:
                y = y + (0 if f"g{s}.mid" in removed else mid) + (root if s == 3 and "root" not in removed else 0)
            x = y if net.spec.preact else nd.relu(y)
    return net.head(net.post(x) if net.post is not None else x)


@pytest.mark.parametrize("network,kwargs", [("ror3", {"depth": 20}), ("ror3_wrn", {"depth": 16, "widen_factor": 2}),
                                            ("ror3", {"depth": 20, "stochastic_depth": 0.5}),
                                            ("ror3_wrn", {"depth": 16, "widen_factor": 2, "stochastic_depth": 0.5})])
def test_ror_lesions_remove_residuals_and_level_shortcuts(network, kwargs):
    net = _trained_looking(get_model(network, **kwargs))
    x = _batch()
    labels = [b.label for b in net.branches()]
    assert labels[:3] == ["g1.b0", "g1.b1", "g1.mid"] and labels[-2:] == ["g3.mid", "root"]
    np.testing.assert_allclose(net(x).asnumpy(), _ror_by_hand(net, x, set()).asnumpy(), rtol=1e-5, atol=1e-5)
    for b in net.branches():
        np.testing.assert_allclose(BranchView(net, [b])(x).asnumpy(), _ror_by_hand(net, x, {b.label}).asnumpy(),
                                   rtol=1e-5, atol=1e-5, err_msg=b.label)
    some = net.branches()[1::2]
    np.testing.assert_allclose(hybridized(BranchView(net, some))(x).asnumpy(),
                               _ror_by_hand(net, x, {b.label for b in some}).asnumpy(), rtol=1e-4, atol=1e-5)
    if kwargs.get("stochastic_depth"):
        assert [p for _, p in net.stochastic_blocks()] == net.spec.survivals()[1:]


@pytest.mark.slow
@pytest.mark.parametrize("network", ["resnet_imagenet", "cross_imagenet"])
def test_imagenet_lesions_delete_a_units_residual(network):
    net = _trained_looking(get_model(network, **SMALL[network]))
    x = _batch()
    (b,) = [b for b in net.branches() if b.name in ("residual", "a")]
    assert (b.stage, b.block) == (2, 1)  # the only unit after a stage's first
    trace, full = BranchView(net, [b]).trace(x), BranchView(net).trace(x)
    unit, before = net.g2[1], full[1]  # the state entering g2.b1 (after g1.b0, g2.b0)
    if network == "resnet_imagenet":
        np.testing.assert_allclose(trace[2][0].asnumpy(), before[0].asnumpy(), rtol=1e-6)  # ReLU of a ReLU output
    else:
        m = 0.5 * (before[0] + before[1])
        np.testing.assert_allclose(trace[2][0].asnumpy(), nd.relu(m).asnumpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(trace[2][1].asnumpy(), full[2][1].asnumpy(), rtol=1e-6)  # stream b untouched
    assert unit.BRANCHES and not net.g2[0].BRANCHES  # a stage's first unit has no shortcut: nothing to remove
