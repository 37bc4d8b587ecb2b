"""gluonfuse analyze: the components of trained networks are the right sub-networks.

Tiny runs (one epoch of a few steps on the synthetic pattern set) are trained with the trainer's
library; each component is checked against a network built independently from the same weights.
Structural facts (path counts) need no training.
"""
import collections
import json
import os

import numpy as np
import pytest

from conftest import run_gluonfuse
from train_fixtures import pattern_data  # noqa: F401 - a fixture

mx = pytest.importorskip("mxnet")


@pytest.fixture(scope="module")
def tiny_run(pattern_data, tmp_path_factory):  # noqa: F811
    """``tiny_run('fuse3', depth=11)`` -> the directory of a finished 1-epoch run (cached per module)."""
    from gluonfuse.train.config import resolve_config
    from gluonfuse.train.session import train

    out = str(tmp_path_factory.mktemp("analyze_runs"))
    cache = {}

    def make(network, recipe=None, **model_kwargs):
        key = (network, repr(sorted(model_kwargs.items())))
        if key not in cache:
            conf = resolve_config(network, "patterns", data_dir=pattern_data, recipe=recipe, model_kwargs=model_kwargs,
                                  overrides={"epochs": 1, "batch_size": 32, "seed": 0, "out_dir": out,
                                             "log_interval": 100})
            cache[key] = train(conf, quiet=True, echo=lambda *a, **k: None)["run_dir"]
        return cache[key]

    return make


def _batch(n=6, seed=0):
    rng = np.random.RandomState(seed)
    return mx.nd.array(rng.normal(0, 1, (n, 3, 32, 32)))


def _close(a, b):
    np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- path lengths (structure only)

def _coeffs(poly):
    """A path polynomial (Counter {length: paths}) as coefficients, index = length."""
    out = np.zeros(max(poly) + 1, dtype=np.int64)
    for length, n in poly.items():
        out[length] = n
    return out


def _z(*lengths):
    """One path of each of ``lengths`` layers, as coefficients."""
    out = np.zeros(max(lengths) + 1, dtype=np.int64)
    for length in lengths:
        out[length] += 1
    return out


@pytest.mark.parametrize("network,kwargs", [
    ("resnet", {"depth": 14}), ("resnet", {"depth": 56}), ("cross", {"depth": 14}), ("cross", {"depth": 110}),
    ("half", {"depth": 26}), ("side", {"depth": 26}), ("fuse3", {"depth": 11}), ("fuse6", {"depth": 110}),
    ("ensemble", {"depth": 11}), ("fractalnet", {}), ("fractalnet", {"columns": 4, "blocks": 2, "widths": [8, 8]}),
])
def test_longest_path_is_the_networks_own(network, kwargs):
    from gluonfuse.analysis.paths import path_distribution
    from gluonfuse.models import get_model

    net = get_model(network, **kwargs)
    dist = path_distribution(net)
    assert max(length for length, _ in dist) == net.spec.describe()["longest_path"]
    assert all(n > 0 for _, n in dist)


def fusion_paths(net, removed=()):
    return net.path_lengths(removed)


def test_path_counts_of_the_fusion_families():
    from gluonfuse.models import get_model

    # resnet 14: blocks [2, 2, 2]; identity blocks add 0 or 2 layers, the two projection blocks 1 or 2
    net = get_model("resnet", depth=14)
    expected = _z(2)  # stem and Dense
    for step in [_z(0, 2)] * 4 + [_z(1, 2)] * 2:
        expected = np.convolve(expected, step)
    np.testing.assert_array_equal(_coeffs(fusion_paths(net)), expected)
    assert sum(fusion_paths(net).values()) == 2 ** 6
    for depth in (56, 110):
        n = sum(get_model("resnet", depth=depth).spec.blocks)
        assert sum(fusion_paths(get_model("resnet", depth=depth)).values()) == 2 ** n
    n = sum(get_model("cross", depth=110).spec.blocks)
    # merge-and-run: each block multiplies the paths by 3 (merge, or the stream's own branch),
    # the last one by 4 (merge + both branches)
    assert sum(fusion_paths(get_model("cross", depth=110)).values()) == 4 * 3 ** (n - 1)
    assert sum(fusion_paths(get_model("half", depth=26)).values()) == 3 ** 6
    side = fusion_paths(get_model("side", depth=26))
    assert side == {14: 2 ** 6}  # no shortcut: every path takes a branch in every block


def test_fractal_paths_follow_the_recursive_rule():
    from gluonfuse.models import get_model

    f = _z(1)  # f_1 = conv; f_{C+1} = join(f_C o f_C, conv)
    for _ in range(2):
        square = np.convolve(f, f)
        square[1] += 1
        f = square
    expected = _z(0)
    for _ in range(5):  # consecutive blocks
        expected = np.convolve(expected, f)
    net = get_model("fractalnet", columns=3)
    np.testing.assert_array_equal(_coeffs(net.path_lengths()), expected)
    assert net.column_net(2).path_lengths() == {10: 1}


def test_member_depths_are_the_ensembles():
    from gluonfuse.analysis.components import member_components
    from gluonfuse.models import get_model

    net = get_model("ensemble", depth=11)
    members = member_components(net)[1:]
    assert [m.name for m in members] == list(net.MEMBERS)
    assert [m.depth for m in members] == net.member_depths()
    assert all(m.paths == 1 for m in members)
    assert len(member_components(get_model("fuse6", depth=20))) == 1 + 64


def test_random_lesions_are_seeded_distinct_and_keep_blocks_connected():
    from gluonfuse.analysis.components import lesion_sets
    from gluonfuse.models import get_model

    side = get_model("side", depth=26)  # 6 blocks, no shortcut: one branch of each must stay
    sets = lesion_sets(side, max_lesions=6, draws=4, seed=1)
    assert sets == lesion_sets(side, max_lesions=6, draws=4, seed=1)
    assert sets != lesion_sets(side, max_lesions=6, draws=4, seed=2)
    for k, _, removed in sets:
        assert len(removed) == k and sum(fusion_paths(side, removed).values()) > 0
        assert len({(b.stage, b.block) for b in removed}) == k  # never both branches of a block
    by_k = collections.defaultdict(list)
    for k, _, removed in sets:
        by_k[k].append(removed)
    assert all(len(set(v)) == len(v) == 4 for v in by_k.values())
    with pytest.raises(ValueError, match="keeps every block"):
        lesion_sets(side, max_lesions=7, draws=2)
    resnet = get_model("resnet", depth=14)
    assert len(resnet.branches()) == 6
    # only C(6, 6) = 1 set of six: taken once, not drawn three times
    assert [k for k, _, _ in lesion_sets(resnet, max_lesions=6, draws=3)].count(6) == 1
    with pytest.raises(ValueError, match="exceeds the 6 removable branches"):
        lesion_sets(resnet, max_lesions=7)


# ---------------------------------------------------------------- trained networks

def _explicit_shallow_path(params, x):
    """fuse3's member LLL from the saved arrays alone: stem, three left convs, pool, Dense."""
    nd = mx.nd

    def unit(x, name, stride, relu):
        w = params[f"{name}.conv.weight"]
        y = nd.Convolution(x, w, kernel=w.shape[2:], stride=(stride, stride), pad=(1, 1), num_filter=w.shape[0],
                           no_bias=True)
        y = nd.BatchNorm(y, params[f"{name}.bn.gamma"], params[f"{name}.bn.beta"], params[f"{name}.bn.running_mean"],
                         params[f"{name}.bn.running_var"], eps=2e-5, fix_gamma=False, use_global_stats=True)
        return nd.relu(y) if relu else y

    x = unit(x, "stem", 1, True)
    for stage, stride in (("g1", 1), ("g2", 2), ("g3", 2)):
        x = nd.relu(unit(x, f"{stage}.0.left", stride, False))  # the block's ReLU after the chosen path
    x = x.mean(axis=(2, 3))
    bias = params["head.fc.bias"]
    return nd.FullyConnected(x, params["head.fc.weight"], bias, num_hidden=bias.shape[0])


def test_fuse3_members_are_the_single_path_networks(tiny_run):
    from gluonfuse.analysis import analyze_run
    from gluonfuse.analysis.components import member_components
    from gluonfuse.models import get_model
    from gluonfuse.train.rundir import load_run

    run_dir = tiny_run("fuse3", depth=11)
    run = load_run(run_dir)
    net = run.build_network("best")
    comps = member_components(net)
    x = _batch()
    lll = comps[1].build()
    assert comps[1].name == "LLL"
    # the same Parameter objects, not copies
    shared = net.collect_params()
    assert all(p is shared[name] for name, p in lll.collect_params().items())
    saved = mx.nd.load(run.params_path("best"))
    _close(lll(x), _explicit_shallow_path(saved, x))
    # every member equals the ensemble view built independently and loaded with fuse3's weights
    ens = get_model("ensemble", **run.config["model_kwargs"])
    ens.load_parameters(run.params_path("best"))
    for comp, out in zip(comps[1:], ens(x)):
        _close(comp.build()(x), out)

    analysis = analyze_run(run_dir)
    rows = {r["name"]: r for r in analysis["components"]}
    assert rows["full"]["error"] == pytest.approx(run.status["best_test_error"], abs=1e-9)
    # the trainer's evaluation of the ensemble network, from the same weights, agrees member by member
    from gluonfuse.train.data import record_iter
    from gluonfuse.train.evaluate import evaluate

    cfg = run.config
    it = record_iter(os.path.join(cfg["data_dir"], "test.rec"), 16, cfg["input_shape"], cfg["mean"], cfg["std"])
    ens_result = evaluate(ens, it, [mx.cpu()], cfg["classes"])
    for m in ens_result["members"]:
        assert rows[m["name"]]["error"] == pytest.approx(m["error"], abs=1e-9)
        assert rows[m["name"]]["loss"] == pytest.approx(m["loss"], rel=1e-4)
    assert analysis["summary"]["deepest"] == ["RRR"] and analysis["summary"]["deepest_depth"] == 11
    assert [p["paths"] for p in analysis["path_lengths"]] == [1, 3, 3, 1]


def test_fractal_columns_are_column_nets(tiny_run):
    from gluonfuse.analysis import analyze_run
    from gluonfuse.analysis.components import column_components
    from gluonfuse.models import get_model
    from gluonfuse.train.rundir import load_run

    run_dir = tiny_run("fractalnet", recipe="fractal", columns=2, blocks=2, widths=[8, 16])
    run = load_run(run_dir)
    net = run.build_network("best")
    x = _batch()
    for comp in column_components(net)[1:]:
        c = int(comp.name[len("column"):])
        alone = get_model("fractalnet", **dict(run.config["model_kwargs"], column=c))
        alone.load_parameters(run.params_path("best"), ignore_extra=True)
        _close(comp.build()(x), alone(x))
        _close(comp.build()(x), net.column_net(c)(x))
    analysis = analyze_run(run_dir, which="last")
    (deepest,) = [m for m in run.members if m["epoch"] == 1]
    rows = {r["name"]: r for r in analysis["components"]}
    assert rows[deepest["name"]]["error"] == pytest.approx(deepest["test_error"], abs=1e-6)
    assert [rows["column1"]["depth"], rows["column2"]["depth"], rows["full"]["depth"]] == [2, 4, 4]
    with pytest.raises(ValueError, match="has no columns to evaluate apart"):
        column_components(net.column_net(1))


def test_resnet_lesions_remove_exactly_one_branch(tiny_run):
    from gluonfuse.models.views import BranchView
    from gluonfuse.train.rundir import load_run

    net = load_run(tiny_run("resnet", depth=14)).build_network("best")
    x = _batch()
    nothing = BranchView(net)
    _close(nothing(x), net(x))
    full = nothing.trace(x)
    for i, branch in enumerate(net.branches()):
        states = BranchView(net, [branch]).trace(x)
        for j, (state, ref) in enumerate(zip(states, full)):
            same = np.array_equal(state[0].asnumpy(), ref[0].asnumpy())
            assert same == (j < i), (branch.label, j)  # unchanged upstream, changed from the block on
        if net.stages[branch.stage - 1][branch.block].short is None:
            # an identity block without its branch passes its input (a ReLU output) on unchanged
            _close(states[i][0], full[i - 1][0] if i else net.stem(x))


def test_cross_lesion_removes_one_streams_residual(tiny_run):
    from gluonfuse.models.views import Branch, BranchView
    from gluonfuse.train.rundir import load_run

    net = load_run(tiny_run("cross", depth=14)).build_network("best")
    x = _batch()
    full = BranchView(net).trace(x)
    _close(BranchView(net)(x), net(x))
    states = BranchView(net, [Branch(2, 0, "a")]).trace(x)
    assert np.array_equal(states[0][0].asnumpy(), full[0][0].asnumpy())  # g1: upstream
    assert not np.array_equal(states[1][0].asnumpy(), full[1][0].asnumpy())  # stream a loses da
    assert np.array_equal(states[1][1].asnumpy(), full[1][1].asnumpy())  # stream b untouched in that block
    assert not np.array_equal(states[2][0].asnumpy(), full[2][0].asnumpy())  # merged downstream
    # both branches out: the block is the bare merge, the same on both streams
    both = BranchView(net, [Branch(2, 0, "a"), Branch(2, 0, "b")]).trace(x)
    assert np.array_equal(both[1][0].asnumpy(), both[1][1].asnumpy())


def _random_statistics(net):
    net.initialize(mx.init.Xavier(magnitude=2))
    for p in net.collect_params(".*running_(mean|var)").values():
        p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))  # trained-looking statistics
    return net


def test_half_without_both_branches_is_its_shortcut():
    from gluonfuse.models.views import Branch, BranchView
    from gluonfuse.models import get_model

    net = _random_statistics(get_model("half", depth=26))
    x = _batch()
    full = BranchView(net).trace(x)
    _close(BranchView(net)(x), net(x))
    view = BranchView(net, [Branch(1, 1, "a"), Branch(1, 1, "b")])
    _close(view.trace(x)[1][0], full[0][0])  # g1.b1 is an identity block: ReLU(x) = x
    block, before = net.g1[1], full[0][0]
    _close(BranchView(net, [Branch(1, 1, "a")]).trace(x)[1][0], mx.nd.relu(block.two_b(before) + before))


def test_members_of_an_ensemble_network_are_its_own_outputs():
    from gluonfuse.analysis.components import member_components
    from gluonfuse.models import get_model

    net = _random_statistics(get_model("ensemble", depth=11))
    x = _batch()
    comps = member_components(net)
    for comp, out in zip(comps[1:], net(x)):
        _close(comp.build()(x), out)
    assert comps[0].build() is net  # the full row is the ensemble itself (its members' average)


def test_side_refuses_a_block_without_branches():
    from gluonfuse.models.views import Branch, BranchView
    from gluonfuse.models import get_model

    with pytest.raises(ValueError, match="disconnects"):
        BranchView(get_model("side", depth=26), [Branch(1, 0, "a"), Branch(1, 0, "b")])


# ---------------------------------------------------------------- the command

def test_analyze_command_end_to_end(cli, tiny_run, tmp_path):
    run_dir = tiny_run("resnet", depth=14)
    out, plot = tmp_path / "out", tmp_path / "lesions.svg"
    result = cli("analyze", run_dir, "--max-lesions", "2", "--draws", "2", "--cpus", "2", "--format", "json",
                 "--out", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    rows = analysis["components"]
    assert [r["kind"] for r in rows] == ["full"] + ["single"] * 6 + ["random"] * 4
    assert [r["name"] for r in rows[1:3]] == ["without g1.b0", "without g1.b1"]
    assert analysis["count"] == 50 and analysis["kind"] == "lesion"
    assert sum(p["paths"] for p in analysis["path_lengths"]) == 2 ** 6
    assert rows[0]["paths"] == 64 and all(r["paths"] == 64 // 2 ** len(r["removed"]) for r in rows)
    assert json.load(open(out / "analysis.json"))["components"] == rows
    assert open(out / "components.csv").readline().startswith("name,kind,depth,paths")
    assert open(out / "path_lengths.csv").read().splitlines()[:2] == ["length,paths", "4,1"]
    assert plot.read_text().lstrip().startswith("<?xml") and not (out / "analysis.png").exists()
    assert "[11/11] random k=2 #2" in result.stderr

    table = cli("analyze", run_dir, "--which", "last", "-q").output
    assert table.startswith("Ensemble view (lesion) of ") and "Removing one branch: mean error" in table
    assert "Path lengths (64 paths" in table and "trained running statistics" in table
    md = cli("analyze", run_dir, "-q", "--format", "markdown").output
    assert "| without g3.b1 | single | 12 | 32 | g3.b1 |" in md
    csv_lines = cli("analyze", run_dir, "-q", "--format", "csv").output.splitlines()
    assert len(csv_lines) == 1 + 7 and csv_lines[1].startswith("full,full,14,64,0,,")


@pytest.mark.parametrize("network,kwargs", [
    ("preresnet", {"depth": 8}),
    ("wrn", {"depth": 10, "widen_factor": 1}),
    ("ror3", {"depth": 14, "stochastic_depth": 0.5}),
    pytest.param("ror3_wrn", {"depth": 10, "widen_factor": 1}, marks=pytest.mark.slow),
    pytest.param("resnet_imagenet", {"units": [1, 2, 2, 1]}, marks=pytest.mark.slow),
    pytest.param("cross_imagenet", {"units": [1, 2, 1, 1]}, marks=pytest.mark.slow),
])
def test_analyze_covers_the_families_with_branches(cli, tiny_run, tmp_path, network, kwargs):
    from gluonfuse.models import get_model
    from gluonfuse.train.rundir import load_run

    run_dir = tiny_run(network, **kwargs)
    out = tmp_path / "out"
    result = cli("analyze", run_dir, "--max-lesions", "2", "--draws", "1", "--format", "json", "-q", "--out", out)
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    net = get_model(network, **kwargs)
    rows = analysis["components"]
    assert analysis["kind"] == "lesion" and (out / "analysis.png").stat().st_size > 0
    # the full row is the trainer's own number for these weights
    assert rows[0]["error"] == pytest.approx(load_run(run_dir).status["best_test_error"], abs=1e-9)
    singles = [r for r in rows if r["kind"] == "single"]
    assert [r["removed"] for r in singles] == [[b.label] for b in net.branches()]
    assert [b["label"] for b in analysis["branches"]] == [b.label for b in net.branches()]
    lengths = {p["length"]: p["paths"] for p in analysis["path_lengths"]}
    assert lengths == net.path_lengths() and max(lengths) == net.spec.describe()["longest_path"]
    for r, b in zip(singles, net.branches()):
        poly = net.path_lengths([b])
        assert (r["depth"], r["paths"], r["position"]) == (max(poly), sum(poly.values()), b.position)
    assert [r["kind"] for r in rows[1 + len(singles):]] == ["random", "random"]
    table = cli("analyze", run_dir, "-q").output
    assert "Removing one branch: mean error" in table
    if network.startswith("ror3"):
        assert [r["removed"][0] for r in singles][-2:] == ["g3.mid", "root"]
        assert "Removing one level shortcut: g1.mid " in table and ", root " in table
    if kwargs.get("stochastic_depth"):
        assert [b["survival"] for b in analysis["branches"] if b["kind"] == "residual"] == net.spec.survivals()
        assert "Stochastic depth: every residual a component keeps is scaled by its survival probability " \
               "(0.75 down to 0.50)" in table


def test_bad_runs_and_unsupported_networks_say_so(cli, tmp_path, tiny_run):
    not_run = tmp_path / "empty"
    not_run.mkdir()
    result = cli("analyze", not_run)
    assert result.exit_code == 1 and "is not a run directory" in result.output
    assert cli("analyze", tmp_path / "missing").exit_code == 2
    plain = tmp_path / "plain_run"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps({"network": "plain", "model_kwargs": {"depth": 8}}))
    proc = run_gluonfuse("analyze", plain)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert "no ensemble view of 'plain'" in proc.stderr and "resnet (lesion)" in proc.stderr
    run_dir = tiny_run("resnet", depth=14)
    assert cli("analyze", run_dir, "--plot", tmp_path / "x.gif").exit_code == 2
    result = cli("analyze", run_dir, "--max-lesions", "9")
    assert result.exit_code == 2 and "exceeds the 6 removable branches" in result.output
    result = cli("analyze", run_dir, "--data", tmp_path / "none.rec")
    assert result.exit_code == 1 and "none.rec" in result.output
    moved = tmp_path / "moved"
    moved.mkdir()
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    (moved / "config.json").write_text(json.dumps(dict(cfg, data_dir=str(tmp_path / "gone"))))
    result = cli("analyze", moved)
    assert result.exit_code == 1 and "give --data" in result.output
