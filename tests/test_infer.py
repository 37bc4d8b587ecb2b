"""Which graph eval, predict and analyze run (gluonfuse.deploy.infer): MKLDNN-fused fp32 by default on
CPUs, plain with --no-fuse or after a one-line notice, int8 with --int8 or an int8 pair; and the
refusals. End to end on a real 1-epoch digits run of a tiny resnet.
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from conftest import run_gluonfuse
from train_fixtures import pattern_data  # noqa: F401 - fixture
from gluonfuse.deploy import fuse as fusemod
from gluonfuse.deploy.infer import FUSED, PLAIN, fp32_path
from gluonfuse.deploy.quantize import int8_paths
from gluonfuse.models import get_model


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A finished 1-epoch run of resnet depth 8 on the digits set (about 6 s)."""
    root = tmp_path_factory.mktemp("digits")
    proc = run_gluonfuse("train", "--network", "resnet", "--depth", "8", "--dataset", "digits", "--data-dir",
                         root / "data", "--epochs", "1", "--seed", "0", "--out", root / "runs", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [os.path.join(root, "runs", d) for d in os.listdir(root / "runs")]
    return run_dir, str(root / "data")


@pytest.fixture(scope="module")
def int8_run(digits_run):
    """The digits run with an int8 model of its best weights (gluonfuse quantize, 64 images)."""
    run_dir, _ = digits_run
    proc = run_gluonfuse("quantize", run_dir, "--calib-images", "64")
    assert proc.returncode == 0, proc.stderr
    return run_dir, int8_paths(os.path.join(run_dir, "export"), "best")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    import cv2

    path = str(tmp_path_factory.mktemp("img") / "digit.png")
    cv2.imwrite(path, (np.random.RandomState(0).rand(20, 20) * 255).astype("uint8"))
    return path


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(result, code, *words):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    for word in words:
        assert word in lines[0], lines[0]


# ---------------------------------------------------------------- fp32: fused by default

def test_eval_runs_the_fused_graph_and_counts_what_the_plain_one_counts(cli, digits_run):
    run_dir, _ = digits_run
    fused = _json(cli("eval", run_dir, "--json"))
    plain = _json(cli("eval", run_dir, "--no-fuse", "--json"))
    assert (fused["path"], plain["path"]) == (FUSED, PLAIN)
    assert fused["count"] == plain["count"] == 359
    assert round(fused["error"] * 359) == round(plain["error"] * 359)  # the same images wrong
    assert fused["loss"] == pytest.approx(plain["loss"], rel=1e-5)
    text = cli("eval", run_dir)
    assert text.exit_code == 0 and text.stdout.strip().endswith("(MKLDNN-fused fp32)") and text.stderr == ""
    assert cli("eval", run_dir, "--no-fuse").stdout.strip().endswith("(plain fp32)")


def test_eval_fuses_an_exported_pair_and_two_cpu_contexts(cli, digits_run):
    run_dir, data = digits_run
    export = os.path.join(run_dir, "export")
    pair = _json(cli("eval", "--symbol", os.path.join(export, "best-symbol.json"), "--params",
                     os.path.join(export, "best-0000.params"), "--data", os.path.join(data, "test.rec"), "--json"))
    two = _json(cli("eval", run_dir, "--cpus", "2", "--json"))
    plain = _json(cli("eval", run_dir, "--no-fuse", "--json"))
    assert pair["path"] == two["path"] == FUSED
    assert round(pair["error"] * 359) == round(two["error"] * 359) == round(plain["error"] * 359)


def test_no_mkldnn_runs_plain_with_one_notice(cli, digits_run, monkeypatch):
    run_dir, _ = digits_run
    monkeypatch.setattr(fusemod, "mkldnn_available", lambda: False)
    result = cli("eval", run_dir, "--json")
    assert _json(result)["path"] == PLAIN
    assert result.stderr.strip().splitlines() == [
        "Note: running the plain fp32 graph, not the MKLDNN-fused one: this mxnet build has no MKLDNN "
        "(--no-fuse skips the attempt)"]
    assert cli("eval", run_dir, "--no-fuse").stderr == ""  # fusion not asked: nothing to say


def test_a_failed_check_falls_back_to_plain_with_one_notice(cli, digits_run, monkeypatch):
    run_dir, _ = digits_run
    monkeypatch.setattr(fusemod, "AGREE_ATOL", -1.0)  # no fused output can agree now
    result = cli("eval", run_dir, "--json")
    assert _json(result)["path"] == PLAIN
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Note: running the plain fp32 graph") and "differ from the plain ones" in line


def test_gpu_contexts_run_plain_without_trying():
    net = get_model("resnet", depth=8)  # uninitialised: fusing it would fail loudly
    path = fp32_path(net, None, [mx.gpu(0)], notice=pytest.fail)
    assert (path.block, path.name) == (net, PLAIN)


def test_a_fused_ensemble_keeps_its_member_names(pattern_data):  # noqa: F811 - the fixture
    from gluonfuse.train.evaluate import Evaluation

    mx.random.seed(0)
    net = get_model("ensemble", depth=14)
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize(static_alloc=True, static_shape=True)
    ev = Evaluation(net, os.path.join(pattern_data, "test.rec"), (3, 32, 32), [128.0] * 3, [64.0] * 3, 10, 16,
                    [mx.cpu()])
    path = fp32_path(net, ev.sample(), notice=pytest.fail)
    assert path.name == FUSED and path.block is not net
    fused, plain = ev.run(path.block), ev.run()
    assert [m["name"] for m in fused["members"]] == [m["name"] for m in plain["members"]] == list(net.output_names())
    assert [round(m["error"] * 50) for m in fused["members"]] == [round(m["error"] * 50) for m in plain["members"]]


def test_predict_fused_equals_plain(cli, digits_run, image):
    run_dir, _ = digits_run
    fused = _json(cli("predict", run_dir, image, "--json"))
    plain = _json(cli("predict", run_dir, image, "--no-fuse", "--json"))
    assert [n for n, _ in fused[0]["top"]] == [n for n, _ in plain[0]["top"]]
    np.testing.assert_allclose([p for _, p in fused[0]["top"]], [p for _, p in plain[0]["top"]], atol=1e-5)


def test_analyze_tables_are_those_of_the_plain_graphs(cli, digits_run):
    run_dir, _ = digits_run
    args = ("analyze", run_dir, "--max-lesions", "2", "--draws", "2", "-q")
    fused = cli(*args, "--format", "json")
    plain = cli(*args, "--format", "json", "--no-fuse")
    assert fused.exit_code == plain.exit_code == 0, fused.output + plain.output
    fused_rows, plain_rows = json.loads(fused.stdout)["components"], json.loads(plain.stdout)["components"]
    assert [r["path"] for r in fused_rows] == [FUSED] * len(fused_rows)  # the lesioned ones too, each checked
    assert [r["path"] for r in plain_rows] == [PLAIN] * len(plain_rows)
    assert len(fused_rows) == 8  # full, 3 single lesions, 2 random sets for each of k = 1, 2
    for f, p in zip(fused_rows, plain_rows):
        assert (f["name"], round(f["error"] * 359)) == (p["name"], round(p["error"] * 359))
        assert f["loss"] == pytest.approx(p["loss"], rel=1e-5)
    assert cli(*args, "--format", "csv").stdout == cli(*args, "--format", "csv", "--no-fuse").stdout
    assert "Computed with the MKLDNN-fused fp32 graph: 4 of 4 components" in cli("analyze", run_dir, "-q").stdout


# ---------------------------------------------------------------- int8

def test_int8_is_refused_before_quantize_and_with_no_fuse(cli, digits_run, image, tmp_path):
    run_dir, _ = digits_run
    for which, option in (("last", " --which last"), ("1", " --which 1")):
        _refused(cli("eval", run_dir, "--int8", "--which", which), 2, "no int8 model",
                 f"run 'gluonfuse quantize {run_dir}{option}' first")
    _refused(cli("predict", run_dir, image, "--int8", "--which", "last"), 2, "no int8 model", "gluonfuse quantize")
    for command in (("eval", run_dir), ("predict", run_dir, image)):
        _refused(cli(*command, "--int8", "--no-fuse"), 2, "always fused", "drop --no-fuse")
    export = os.path.join(run_dir, "export")
    _refused(cli("eval", "--symbol", os.path.join(export, "best-symbol.json"), "--params",
                 os.path.join(export, "best-0000.params"), "--data", "x.rec", "--int8"), 2, "is not an int8 model")
    _refused(cli("eval", run_dir, "--int8", "--column", "1"), 2, "--column")


@pytest.mark.slow
def test_eval_and_predict_run_the_int8_model(cli, int8_run, image):
    run_dir, paths = int8_run
    meta = json.load(open(paths["meta"]))
    res = _json(cli("eval", run_dir, "--int8", "--json"))
    assert res["path"] == "int8" and res["symbol"] == paths["symbol"]
    assert res["error"] == pytest.approx(meta["accuracy"]["int8"]["top1_error"])
    assert cli("eval", run_dir, "--int8").stdout.strip().endswith("(int8)")
    # the pair itself is recognised as int8, from its graph alone too
    pair = ("eval", "--symbol", paths["symbol"], "--params", paths["params"], "--data", meta["accuracy"]["data"])
    assert _json(cli(*pair, "--json"))["path"] == "int8"
    _refused(cli(*pair, "--no-fuse"), 2, "is an int8 model, whose graph is always fused: drop --no-fuse")
    int8 = _json(cli("predict", run_dir, image, "--int8", "--json"))
    fp32 = _json(cli("predict", run_dir, image, "--json"))
    assert len(int8[0]["top"]) == 5 and abs(sum(p for _, p in int8[0]["top"]) - sum(p for _, p in fp32[0]["top"])) < 0.2


@pytest.mark.slow
def test_int8_without_mkldnn_is_one_line_and_exit_1(cli, int8_run, image, monkeypatch):
    run_dir, paths = int8_run
    monkeypatch.setattr(fusemod, "mkldnn_available", lambda: False)
    _refused(cli("eval", run_dir, "--int8"), 1, "an int8 model needs an mxnet build with MKLDNN")
    _refused(cli("predict", run_dir, image, "--int8"), 1, "needs an mxnet build with MKLDNN")


def test_an_int8_graph_is_recognised_without_its_meta(tmp_path):
    from gluonfuse.deploy.infer import is_int8

    plain = {"nodes": [{"op": "Convolution", "name": "c", "inputs": []}], "heads": [[0, 0, 0]]}
    quantized = {"nodes": [{"op": "_sg_mkldnn_conv", "name": "c", "attrs": {"quantized": "true"}, "inputs": []}],
                 "heads": [[0, 0, 0]]}
    for name, graph, expected in (("a", plain, False), ("b", quantized, True)):
        path = tmp_path / f"{name}-symbol.json"
        path.write_text(json.dumps(graph))
        assert is_int8(str(path)) is expected
    (tmp_path / "a-meta.json").write_text(json.dumps({"format": "gluonfuse int8 (mxnet MKLDNN quantization)"}))
    assert is_int8(str(tmp_path / "a-symbol.json"))
