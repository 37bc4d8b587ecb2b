"""Architecture graphs: every registered network draws; the paper style shows the right fusions."""
import os
import re
import shutil

import pytest
from mxnet.gluon import nn

from gluonfuse import viz
from gluonfuse.models import get_entry, get_model, list_models
from conftest import run_gluonfuse

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _incoming(graph):
    into = {n.key: [] for n in graph.nodes}
    for src, dst in graph.edges:
        into[dst].append(src)
    return into


def _check_paper_graph(net, graph):
    ops, _ = viz.trace(net)
    by_kind = {k: [n for n in graph.nodes if n.kind == k] for k in ("input", "conv", "fc", "sum", "mean")}
    # every convolution and Dense layer is a box, nothing else is
    assert len(by_kind["conv"]) == sum(op.op == "Convolution" for op in ops)
    assert len(by_kind["fc"]) == sum(op.op == "FullyConnected" for op in ops)
    assert len(by_kind["input"]) == 1
    assert {n.kind for n in graph.nodes} <= {"input", "conv", "fc", "sum", "mean", "concat"}
    into = _incoming(graph)
    for n in graph.nodes:
        if n.kind == "input":
            assert into[n.key] == []
        elif n.kind in ("sum", "mean"):
            assert len(into[n.key]) >= 2, n
        else:
            assert len(into[n.key]) >= 1, n
    # edges go forward in trace order (a DAG), and everything hangs off the input
    order = {n.key: i for i, n in enumerate(graph.nodes)}
    assert all(order[s] < order[d] for s, d in graph.edges)
    reached = {by_kind["input"][0].key}
    for s, d in graph.edges:
        if s in reached:
            reached.add(d)
    assert reached == set(order)


def _every_network():
    for name in list_models():
        yield pytest.param(name, id=name, marks=[pytest.mark.slow] if get_entry(name).heavy else [])


@pytest.mark.parametrize("name", _every_network())
def test_every_network_draws(name, tmp_path):
    entry = get_entry(name)
    net = get_model(name)
    graph = viz.paper_graph(net, title=name)
    _check_paper_graph(net, graph)
    full = viz.full_graph(net, title=name)
    ops, _ = viz.trace(net)
    assert len(full.nodes) == len(ops)
    # dot itself runs on every light family; presets and heavy nets give the same kind of DOT text
    light_family = entry.kind == "family" and not entry.heavy
    fmt = "png" if light_family and shutil.which("dot") else "gv"
    paths = viz.draw(name, out=str(tmp_path / f"{name}.{fmt}"))
    assert os.path.getsize(paths["source"]) > 0
    if fmt == "png":
        with open(paths["picture"], "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_cross_merge_and_run():
    net = get_model("cross", depth=26)  # blocks [2, 2, 2]
    graph = viz.paper_graph(net)
    into = _incoming(graph)
    means = [n for n in graph.nodes if n.kind == "mean"]
    sums = [n for n in graph.nodes if n.kind == "sum"]
    assert len(means) == 6  # m = 0.5 * (a + b) in every block
    # two sums per block, except the last one: ReLU(m + da + db), one three-input "+"
    assert len(sums) == 2 * 5 + 1
    assert sorted(len(into[s.key]) for s in sums) == [2] * 10 + [3]
    # the first block averages the stem output with itself: two edges from the stem conv
    stem = next(n for n in graph.nodes if n.group == "stem")
    assert into[means[0].key] == [stem.key, stem.key]
    tags = {n.tag for n in graph.nodes if n.kind == "conv"}
    assert tags == {"", "left", "right", "left shortcut", "right shortcut"}
    assert graph.groups == ["stem", "g1", "g2", "g3", "head"]
    # the Dense layer reads the last fusion
    fc = next(n for n in graph.nodes if n.kind == "fc")
    assert into[fc.key] == [sums[-1].key]


def test_half_sums_are_one_node_per_block_and_resnet_has_no_sides():
    half = viz.paper_graph(get_model("half", depth=26))
    into = _incoming(half)
    sums = [n for n in half.nodes if n.kind == "sum"]
    assert len(sums) == 6 and all(len(into[s.key]) == 3 for s in sums)
    assert not any(n.kind == "mean" for n in half.nodes)
    resnet = viz.paper_graph(get_model("resnet", depth=26))
    # resnet's single branch is named 'a_' but there is no right stream: no side tags
    assert {n.tag for n in resnet.nodes} <= {"", "shortcut"}


def test_ensemble_members_are_named():
    graph = viz.paper_graph(get_model("ensemble", depth=26))
    fcs = [n for n in graph.nodes if n.kind == "fc"]
    assert sorted(n.tag for n in fcs) == sorted(f"member {m}" for m in
                                                 ("LLL", "LLR", "LRL", "LRR", "RLL", "RLR", "RRL", "RRR"))


class _Spec:
    name = "toy"
    input_shape = (3, 8, 8)


class _Join(nn.HybridBlock):
    """A FractalNet-style mean join with live drop-path masks: sum(x_i m_i) / max(sum(m_i), 1)."""

    def hybrid_forward(self, F, *xs):
        masks = [F.Dropout(F.ones_like(x), p=0.15) for x in xs]
        kept = F.add_n(*[x * m for x, m in zip(xs, masks)])
        return F.broadcast_div(kept, F.maximum(F.add_n(*masks), 1))


class _Toy(nn.HybridBlock):
    def __init__(self):
        super().__init__(prefix="toy_")
        self.spec = _Spec()
        with self.name_scope():
            self.g1 = nn.HybridSequential(prefix="g1_")
            with self.g1.name_scope():
                self.c1 = nn.Conv2D(4, 3, padding=1, in_channels=3, prefix="col1_conv_")
                self.c2a = nn.Conv2D(4, 3, padding=1, in_channels=3, prefix="col2_u1_conv_")
                self.c2b = nn.Conv2D(4, 3, padding=1, in_channels=4, prefix="col2_u2_conv_")
                self.join = _Join(prefix="join_")
            self.head = nn.Dense(2, in_units=4 * 8 * 8, prefix="head_fc_")

    def hybrid_forward(self, F, x):
        a = F.relu(self.c1(x))
        b = F.relu(self.c2b(F.relu(self.c2a(x))))
        y = self.join(a, b)
        y = (y + y + a) / 3  # a mean by division
        y = 0.3 * (y + a)  # a scaled sum that is not a mean stays a "+"
        return self.head(0.5 * y)  # scaling one input is hidden


def test_mean_joins_and_masks_collapse():
    graph = viz.paper_graph(_Toy())
    into = _incoming(graph)
    kinds = [n.kind for n in graph.nodes]
    assert kinds == ["input", "conv", "conv", "conv", "mean", "mean", "sum", "fc"]
    c1, c2b, join, mean3, plus, fc = (graph.nodes[i].key for i in (1, 3, 4, 5, 6, 7))
    assert into[join] == [c1, c2b]  # the masks add no edges
    assert into[mean3] == [join, join, c1]
    assert into[plus] == [mean3, c1]
    assert into[fc] == [plus]
    assert [n.tag for n in graph.nodes if n.kind == "conv"] == ["column 1", "column 2", "column 2"]
    assert graph.nodes[-1].group == "head"  # from the top-level block head_fc_


class _StackMean(nn.HybridBlock):
    def __init__(self):
        super().__init__(prefix="sm_")
        self.spec = _Spec()
        with self.name_scope():
            self.convs = nn.HybridSequential(prefix="g1_")
            with self.convs.name_scope():
                for i in range(3):
                    self.convs.add(nn.Conv2D(2, 1, in_channels=3, prefix=f"c{i + 1}_conv_"))

    def hybrid_forward(self, F, x):
        return F.mean(F.stack(*[conv(x) for conv in self.convs], axis=0), axis=0)


def test_mean_of_a_stack_is_a_join():
    graph = viz.paper_graph(_StackMean())
    assert [n.kind for n in graph.nodes] == ["input", "conv", "conv", "conv", "mean"]
    assert _incoming(graph)[graph.nodes[-1].key] == [n.key for n in graph.nodes[1:4]]


@pytest.mark.parametrize("name, expected", [
    ("cross_g2_b0_short_a_conv_fwd", ("g2", "left shortcut")),
    ("cross_g1_b1_b_u2_conv_fwd", ("g1", "right")),
    ("cross_stem_conv_fwd", ("stem", "")),
    ("cross_head_fc_fwd", ("head", "")),
    ("cross_g3_b1__plus2", ("g3", "")),
    ("cross_pooling0", ("", "")),
    ("cross_stem_conv_fwd1", ("stem", "")),  # a bare layer registered as 'stem_conv_'
    ("ror_root_conv_fwd", ("root", "root shortcut")),
    ("ror_g2_mid_conv_fwd", ("g2", "mid shortcut")),
])
def test_name_parts(name, expected):
    prefix = name.split("_")[0] + "_"
    assert viz.name_parts(name, prefix, ("stem_conv", "g1", "g2", "g3", "head", "root")) == expected


def test_group_colours():
    colours = viz.group_colours(["stem", "g1", "g2", "b3", "root", "head", "mid", "g1"])
    assert colours["g1"] == viz.STAGE_COLOURS[0] and colours["b3"] == viz.STAGE_COLOURS[2]
    assert colours["stem"] == viz.GROUP_COLOURS["stem"]
    assert colours["root"] != colours["mid"] and len(colours) == 7


def test_output_paths():
    assert viz.output_paths("net.svg") == ("svg", "net.svg", "net.gv")
    assert viz.output_paths("net", "pdf") == ("pdf", "net.pdf", "net.gv")
    assert viz.output_paths("out/net") == ("png", "out/net.png", "out/net.gv")
    assert viz.output_paths("net.gv") == ("gv", "net.gv", "net.gv")
    with pytest.raises(ValueError, match="ends in .svg but --format is 'png'"):
        viz.output_paths("net.svg", "png")
    with pytest.raises(ValueError, match="unknown format 'jpg'"):
        viz.output_paths("net.jpg")
    with pytest.raises(ValueError, match="unknown format 'bmp'"):
        viz.output_paths("net", "bmp")


def test_default_filename():
    from gluonfuse.models import get_spec

    assert viz.default_filename("cross", get_spec("cross")) == "cross_d26.png"
    assert viz.default_filename("cross", get_spec("cross", depth=62, widen_factor=4), "svg") == "cross_d62_w4.svg"
    assert viz.default_filename("dfn_mr1", get_spec("dfn_mr1"), preset=True) == "dfn_mr1.png"


# ---------------------------------------------------------------- the command

@needs_dot
def test_show_default_name_in_current_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("show", "--network", "half")
    assert result.exit_code == 0, result.output
    assert "Wrote half_d26.png" in result.output
    assert (tmp_path / "half_d26.png").read_bytes()[:8] == PNG_MAGIC
    source = (tmp_path / "half_d26.gv").read_text()
    assert 'rankdir="BT"' in source and "3x3 conv, 16" in source


@needs_dot
def test_show_full_style_svg_with_shapes(cli, tmp_path):
    out = tmp_path / "ops.svg"
    result = cli("show", "-n", "cross", "--depth", "14", "--widen-factor", "2", "--style", "full", "--out", out)
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert "<svg" in svg
    assert "BatchNorm" in svg and "32x32x32" in svg  # stem output, widen 2: 32 channels at 32x32


def test_show_model_args_and_gv_only(cli, tmp_path):
    out = tmp_path / "r.gv"
    result = cli("show", "-n", "resnet_imagenet", "--arg", "units=(1,1,1,1)", "--arg", "classes=5",
                 "--out", out)
    assert result.exit_code == 0, result.output
    source = out.read_text()
    # stem + 4 bottleneck units of 3 convolutions, and the Dense layer for 5 classes
    assert len(re.findall(r"label=<\d+x\d+ conv", source)) == 1 + 4 * 3 and "fc 5" in source


@pytest.mark.parametrize("args, message", [
    (["-n", "hlaf"], "Did you mean 'half'"),
    (["-n", "cross", "--depth", "3"], "smallest valid depth"),
    (["-n", "dfn_mr1", "--depth", "56"], "fixes depth=110"),
    (["-n", "cross", "--out", "x.svg", "--format", "png"], "make them agree"),
    (["-n", "cross", "--out", "x.jpg"], "unknown format 'jpg'"),
    (["-n", "cross", "--arg", "depth"], "KEY=VALUE"),
    (["-n", "cross", "--arg", "colour=1"], "accepts: depth, widen_factor, classes"),
])
def test_show_bad_arguments(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli("show", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_show_without_dot_writes_source_and_exits_1(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()  # a PATH without Graphviz
    proc = run_gluonfuse("show", "--network", "fuse3", "--out", tmp_path / "f.png", env={"PATH": str(empty)})
    assert proc.returncode == 1, proc.stderr
    assert "apt-get install graphviz" in proc.stderr and "conda install graphviz" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "f.gv").read_text().startswith("digraph")
    assert not (tmp_path / "f.png").exists()


def test_help():
    proc = run_gluonfuse("show", "--help")
    assert proc.returncode == 0
    assert re.search(r"--style \[paper\|full\]", proc.stdout)
