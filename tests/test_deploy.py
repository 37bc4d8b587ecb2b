"""Deployment: MKLDNN-fused fp32 and calibrated int8 inference (gluonfuse.deploy, gluonfuse quantize).

Every registered family is fused and quantized at a tiny size (its presets at their real size in the
slow tier); the int8 pair is loaded by a Python that never imports gluonfuse; ``gluonfuse quantize``
runs end to end on a trained run and on an exported pair, and bad input is one line and no file.
"""
import glob
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from conftest import run_gluonfuse
from train_fixtures import *  # noqa: F401,F403 - fixtures
from gluonfuse.deploy import fuse as fusemod
from gluonfuse.deploy.fuse import agreement, fuse, outputs
from gluonfuse.deploy.graph import constant_nodes, guard_shared_convolutions, inference_graph, symbol_block
from gluonfuse.deploy.quantize import (CalibrationIter, calibration_batch, int8_paths, quantize_network,
                                       write_int8)
from gluonfuse.export import unique_node_names
from gluonfuse.models import get_entry, get_model, list_models
from gluonfuse.models.stats import symbol_of

# the smallest configuration of every family (a new family without a row fails test_every_family_has_a_tiny_size)
TINY = {
    "plain": {"depth": 8}, "resnet": {"depth": 8}, "cross": {"depth": 14}, "half": {"depth": 14},
    "side": {"depth": 14}, "fuse3": {"depth": 14}, "fuse6": {"depth": 20}, "ensemble": {"depth": 14},
    "resnet_imagenet": {"units": (1, 1, 1, 1), "classes": 10},
    "cross_imagenet": {"units": (1, 2, 1, 2), "classes": 10},
    "fractalnet": {"columns": 3, "blocks": 2, "widths": [8, 16]},  # drop-path on: its masks stay fp32
    "preresnet": {"depth": 8}, "wrn": {"depth": 10, "dropout": 0.3},
    "ror3": {"depth": 14, "stochastic_depth": 0.5}, "ror3_wrn": {"depth": 10, "stochastic_depth": 0.5},
}
FAMILIES = [pytest.param(n, marks=pytest.mark.slow) if get_entry(n).heavy else n for n in list_models(kind="family")]
PRESETS = [pytest.param(n, marks=pytest.mark.slow) for n in list_models(kind="preset")]


def _net(name, **kwargs):
    """An initialised network with BatchNorm statistics that are not the identity."""
    mx.random.seed(0)
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier(magnitude=2))
    rng = np.random.RandomState(1)
    for key, param in net.collect_params().items():
        if key.endswith(("running_var", "gamma")):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif key.endswith(("running_mean", "beta")):
            param.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, param.shape)))
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _batch(net, n=2, seed=0):
    return mx.nd.array(np.random.RandomState(seed).normal(0, 1, (n,) + tuple(net.spec.input_shape)))


def test_every_family_has_a_tiny_size():
    assert set(TINY) == set(list_models(kind="family"))


# ---------------------------------------------------------------- fused fp32

@pytest.mark.parametrize("name", ["cross", "half"])
def test_gluon_optimize_for_fuses_merge_and_run(name):
    # mxnet 1.9.1's conv+sum fusion fails on `x + conv(...)` when x is off the conv's input path;
    # cross and half put the convolution branch on the left of every add (fusion._conv_first)
    net = _net(name, depth=14)
    x = _batch(net)
    plain = outputs(net, x)
    net.optimize_for(x, backend="MKLDNN")
    assert "_sg_mkldnn_conv" in net._cached_graph[1].tojson()
    np.testing.assert_allclose(outputs(net, x)[0], plain[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_fused_graph_agrees_with_the_plain_network(name):
    net = _net(name, **TINY[name])
    x = _batch(net, seed=3)
    result = fuse(net, x)
    assert result.fused, result.reason
    assert result.subgraphs > 0 and result.block is not net
    diff, ok = agreement(outputs(net, x), outputs(result.block, x))
    assert ok and diff == pytest.approx(result.max_diff, abs=1e-6)


def test_guard_keeps_the_numbers_and_lets_preresnet_fuse():
    # preresnet's stem conv feeds the first block's BN and its identity shortcut: unguarded, MKLDNN
    # folds the BN into the stem and the shortcut reads normalised values
    net = _net("preresnet", depth=8)
    graph = inference_graph(net)
    assert graph.count('"preresnet_stem_conv_fwd_guard"') == 1
    x = _batch(net)
    guarded = symbol_block(graph, net.collect_params())
    np.testing.assert_allclose(outputs(guarded, x)[0], outputs(net, x)[0], rtol=1e-5, atol=1e-6)
    assert guard_shared_convolutions(graph) == graph  # the guard itself is not shared: nothing more to do
    assert fuse(net, x, graph).fused
    unguarded = fuse(net, x, unique_node_names(symbol_of(net).tojson()))
    assert not unguarded.fused and "the MKLDNN partition failed" in unguarded.reason


def test_fuse_falls_back_with_a_reason(monkeypatch):
    net = _net("resnet", depth=8)
    x = _batch(net)
    monkeypatch.setattr(fusemod, "AGREE_ATOL", -1.0)  # nothing can agree now
    result = fuse(net, x)
    assert (result.fused, result.block) == (False, net)
    assert "differ from the plain ones" in result.reason
    monkeypatch.setattr(fusemod, "mkldnn_available", lambda: False)
    assert fuse(net, x).reason == "this mxnet build has no MKLDNN"


# ---------------------------------------------------------------- int8

def _calibration(net, images=8, batch=4, seed=5):
    data = np.random.RandomState(seed).normal(0, 1, (images,) + tuple(net.spec.input_shape))
    return mx.io.NDArrayIter(mx.nd.array(data), batch_size=batch), images


def _check_int8(net, tolerance):
    qnet, excluded = quantize_network(net, *_calibration(net))
    x = _batch(net, n=4, seed=7)
    fp32, int8 = outputs(net, x), outputs(qnet, x)
    assert len(int8) == len(fp32) and all(a.shape == b.shape for a, b in zip(fp32, int8))
    for a, b in zip(fp32, int8):
        assert np.linalg.norm(a - b) <= tolerance * np.linalg.norm(a)
    graph = qnet._cached_graph[1].tojson()
    assert "quantize" in graph and '"quantized": "true"' in graph
    return excluded


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_quantizes(name):
    net = _net(name, **TINY[name])
    # random weights, 8 calibration images: int8 is within 25% of fp32 (measured: 1-14%)
    excluded = _check_int8(net, 0.25)
    masks = set(constant_nodes(inference_graph(net)))
    assert {layer for layer, _, _ in excluded} == masks
    # drop-path masks (FractalNet) and stochastic-depth gates (RoR +SD) are kept in fp32 automatically
    assert bool(masks) == (name in ("fractalnet", "ror3", "ror3_wrn"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_quantizes(name):
    _check_int8(_net(name), 0.35)


def test_a_layer_the_user_names_stays_fp32():
    net = _net("resnet", depth=8)
    qnet, excluded = quantize_network(net, *_calibration(net), exclude=["resnet_stem_conv_fwd"])
    assert [(layer, op) for layer, op, _ in excluded] == [("resnet_stem_conv_fwd", "Convolution")]
    nodes = json.loads(qnet._cached_graph[1].tojson())["nodes"]
    stem = [n for n in nodes if "resnet_stem_conv_weight" in [nodes[i[0]]["name"] for i in n["inputs"]]]
    assert stem and all(n.get("attrs", {}).get("quantized") != "true" for n in stem)
    with pytest.raises(ValueError, match="matches no layer"):
        quantize_network(net, *_calibration(net), exclude=["nosuchlayer*"])


def test_quantize_keeps_what_the_family_declares(monkeypatch):
    from gluonfuse.deploy.quantize import _registered
    from gluonfuse.models.fusion import FusionNet
    from gluonfuse.models.views import MASKS_IN_FP32

    net = _net("resnet", depth=8)
    assert net.fp32_layers() == []  # the protocol's default: nothing
    monkeypatch.setattr(FusionNet, "fp32_layers", lambda self: [("layer", "resnet_stem_c*", "declared by the family")])
    _, excluded = quantize_network(net, *_calibration(net))
    assert excluded == [("resnet_stem_conv_fwd", "Convolution", "declared by the family")]
    # an imported graph is asked through the registered network its metadata names
    _, excluded = quantize_network(symbol_block(inference_graph(net), net.collect_params()), *_calibration(net),
                                   views=_registered({"network": "resnet", "model_kwargs": {"depth": 8}}))
    assert [layer for layer, _, _ in excluded] == ["resnet_stem_conv_fwd"]
    assert _registered({"network": "no_such_net"}) is None
    for name in ("fractalnet", "ror3", "ror3_wrn"):
        assert get_model(name, **TINY[name]).fp32_layers() == [MASKS_IN_FP32]


def test_a_graph_of_unknown_origin_keeps_its_constant_masks_in_fp32():
    # an exported pair without its -meta.json: no family to ask, so the rule safe for any graph applies
    net = _net("ror3", **TINY["ror3"])
    imported = symbol_block(inference_graph(net), net.collect_params())
    _, excluded = quantize_network(imported, *_calibration(net))
    masks = set(constant_nodes(inference_graph(net)))
    assert masks and {layer for layer, _, _ in excluded} == masks


def test_calibration_reads_exactly_the_images_asked():
    batches = [mx.io.DataBatch([mx.nd.full((4, 1, 2, 2), i)], pad=0) for i in range(3)]
    batches[-1].pad = 1  # the reader's round-batch padding: 3 real images in the last batch
    it = CalibrationIter(lambda: iter(batches), 10, 4, (1, 2, 2), "x.rec")
    got = [b.data[0].asnumpy()[:, 0, 0, 0] for b in it]
    # 4 + 4 + 2: the last two images are repeated to fill the batch, padding never used
    assert [list(g) for g in got] == [[0] * 4, [1] * 4, [2] * 4]
    assert it.seen == 10
    it.reset()
    short = CalibrationIter(lambda: iter(batches), 12, 4, (1, 2, 2), "x.rec")
    with pytest.raises(Exception, match="only 11 images, 12 needed"):
        list(short)
    assert calibration_batch(1000) == 50 and calibration_batch(160) == 40 and calibration_batch(7) == 7
    assert calibration_batch(997) == 64


def test_a_failed_write_leaves_no_file(tmp_path):
    class Broken:
        def export(self, prefix, epoch=0):
            open(prefix + "-symbol.json", "w").write("{}")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_int8(Broken(), str(tmp_path), "best", {})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- gluonfuse quantize, end to end

@pytest.fixture(scope="module")
def quantized_run(trained_run, tmp_path_factory):
    run_dir, _ = trained_run
    out = str(tmp_path_factory.mktemp("int8"))
    proc = run_gluonfuse("quantize", run_dir, "--calib-images", "64", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return run_dir, out, proc


def test_quantize_writes_the_pair_and_its_meta(quantized_run, pattern_data):
    run_dir, out, proc = quantized_run
    paths = int8_paths(out, "best")
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths.values())
    meta = json.load(open(paths["meta"]))
    assert meta["calibration"] | {"data": None} == {"mode": "naive", "images": 64, "data": None,
                                                     "shuffle_seed": 0, "batch_size": 64}
    assert meta["calibration"]["data"] == os.path.join(pattern_data, "train.rec")
    assert meta["source"]["run"] == run_dir and meta["source"]["which"] == "best"
    assert (meta["network"], meta["model_kwargs"]["depth"]) == ("cross", 14)
    acc = meta["accuracy"]
    assert acc["images"] == 50 and acc["data"] == os.path.join(pattern_data, "test.rec")
    for key in ("fp32", "int8"):
        assert 0 <= acc[key]["top1_error"] <= 1 and 0 <= acc[key]["top5_error"] <= acc[key]["top1_error"]
    assert acc["top1_change_points"] == pytest.approx(100 * (acc["int8"]["top1_error"] - acc["fp32"]["top1_error"]))
    speed = meta["speed"]
    assert speed["batch_size"] == 16 and speed["int8_images_per_sec"] > 0 and speed["fp32_fused_images_per_sec"] > 0
    assert speed["int8_speedup"] == pytest.approx(speed["int8_images_per_sec"] / speed["fp32_images_per_sec"])
    assert meta["int8_nodes"] > 10 and meta["excluded"] == []
    lines = proc.stdout.strip().splitlines()
    assert lines[-3].startswith("top-1 error: int8 ") and "points" in lines[-3]
    assert lines[-2].startswith("speed at batch 16: int8 ") and lines[-1].startswith("wrote ")


def test_the_int8_numbers_are_those_of_the_written_pair(quantized_run, pattern_data, cli):
    _, out, _ = quantized_run
    paths = int8_paths(out, "best")
    result = cli("eval", "--symbol", paths["symbol"], "--params", paths["params"], "--data",
                 os.path.join(pattern_data, "test.rec"), "--batch-size", "16", "--json")
    assert result.exit_code == 0, result.output
    meta = json.load(open(paths["meta"]))
    assert json.loads(result.output)["error"] == pytest.approx(meta["accuracy"]["int8"]["top1_error"])


PLAIN_MXNET = """
import sys
import mxnet as mx, numpy as np
net = mx.gluon.SymbolBlock.imports(sys.argv[1], ["data"], sys.argv[2])
np.save(sys.argv[4], net(mx.nd.array(np.load(sys.argv[3]))).asnumpy())
assert not any(m.startswith("gluonfuse") for m in sys.modules)
"""


def test_the_int8_pair_loads_in_plain_mxnet(quantized_run, tmp_path):
    _, out, _ = quantized_run
    paths = int8_paths(out, "best")
    x = np.random.RandomState(0).normal(0, 1, (3, 3, 32, 32)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", PLAIN_MXNET, paths["symbol"], paths["params"], str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from gluonfuse.export import load_exported

    here = load_exported(paths["symbol"], paths["params"])(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), here, rtol=1e-5, atol=1e-5)


def test_quantize_an_exported_pair(trained_run, pattern_data, tmp_path):
    run_dir, _ = trained_run
    export = os.path.join(run_dir, "export")
    proc = run_gluonfuse("quantize", "--symbol", os.path.join(export, "last-symbol.json"), "--params",
                         os.path.join(export, "last-0000.params"), "--data", os.path.join(pattern_data, "train.rec"),
                         "--calib-images", "32", "--calib-mode", "entropy", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    meta = json.load(open(int8_paths(str(tmp_path), "last")["meta"]))
    assert meta["calibration"]["mode"] == "entropy" and meta["calibration"]["images"] == 32
    assert meta["accuracy"]["data"] == os.path.join(pattern_data, "test.rec")  # test.rec beside train.rec
    assert meta["source"]["symbol"].endswith("last-symbol.json") and meta["network"] == "cross"


# ---------------------------------------------------------------- bad input: one line, no file

def _one_line_error(result, code, *words):
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0]


def test_a_run_without_checkpoints(cli, trained_run, tmp_path):
    run_dir, _ = trained_run
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "dataset_meta.json"):
        (bare / name).write_text(open(os.path.join(run_dir, name)).read())
    _one_line_error(cli("quantize", str(bare), "--out", str(tmp_path / "out")), 1, "no 'best' checkpoint")
    assert not (tmp_path / "out").exists()


def test_more_calibration_images_than_the_training_set(cli, trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "out"
    _one_line_error(cli("quantize", run_dir, "--calib-images", "161", "--out", str(out)), 2,
                    "--calib-images 161 is more than the 160 images", "160 or fewer")
    assert not out.exists() or os.listdir(out) == []


def test_no_mkldnn(cli, trained_run, tmp_path, monkeypatch):
    run_dir, _ = trained_run
    monkeypatch.setattr(fusemod, "mkldnn_available", lambda: False)
    out = tmp_path / "out"
    _one_line_error(cli("quantize", run_dir, "--calib-images", "16", "--out", str(out)), 1, "needs an mxnet build with MKLDNN")
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("args, code, words", [
    (["--calib-mode", "minmax"], 2, ["Invalid value for '--calib-mode'"]),
    (["--calib-images", "0"], 2, ["at least 1"]),
    (["--exclude", "nosuch*"], 2, ["--exclude 'nosuch*' matches no layer"]),
    (["--which", "7"], 1, ["no '7' checkpoint"]),
])
def test_bad_arguments(cli, trained_run, tmp_path, args, code, words):
    run_dir, _ = trained_run
    result = cli("quantize", run_dir, "--out", str(tmp_path / "out"), "--calib-images", "16", *args)
    if code == 2 and words[0].startswith("Invalid value"):
        assert result.exit_code == 2 and words[0] in result.output  # click's own usage error
    else:
        _one_line_error(result, code, *words)
    assert not glob.glob(str(tmp_path / "out" / "*int8*"))


def test_neither_run_nor_pair(cli):
    _one_line_error(cli("quantize"), 2, "give a RUN_DIR")
    _one_line_error(cli("quantize", "--symbol", "a-symbol.json"), 2, "give a RUN_DIR")
