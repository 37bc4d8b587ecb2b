"""The network commands as users run them: list, summary, export, and --help everywhere."""
import json
import subprocess
import sys

import pytest

from conftest import run_gluonfuse
from gluonfuse.cli import main
from gluonfuse.export import MXNET_ONNX_OPSET


def test_every_command_has_help(cli):
    assert cli("--help").exit_code == 0
    for name in main.commands:
        result = cli(name, "--help")
        assert result.exit_code == 0, name
        assert "Usage:" in result.output


def test_list_shows_networks_and_presets(cli):
    result = cli("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert any(line.startswith("cross ") and "merge-and-run" in line for line in lines)
    assert any(line.startswith("dfn_mr1 ") and "preset of cross" in line for line in lines)
    assert cli("list", "dfn*", "--kind", "preset").output.count("\n") == 4


def test_summary_text_and_json(cli):
    text = cli("summary", "--network", "cross", "--depth", "56").output
    assert "blocks per stage: [4, 4, 5]" in text and "886,234" in text
    info = json.loads(cli("summary", "-n", "dfn_mr1", "--classes", "100", "--json").output)
    assert info["params"] == 1_716_276 and info["longest_path"] == 56
    assert [s["name"] for s in info["stages"]] == ["stem", "g1", "g2", "g3", "head"]
    assert sum(s["params"] for s in info["stages"]) == info["params"]
    assert sum(s["multiply_adds"] for s in info["stages"]) == info["multiply_adds"]


@pytest.mark.parametrize("args,needle", [
    (["summary", "--network", "crss"], "Did you mean 'cross'"),
    (["summary", "--network", "cross", "--depth", "9"], "smallest valid depth is 14"),
    (["summary", "--network", "cross", "--widen-factor", "0"], "widen_factor must be a positive integer"),
    (["summary", "--network", "cross", "--arg", "colums=3"], "accepts: depth"),
    (["export", "--network", "cross", "--out", "{tmp}", "--params", "{tmp}/missing.params"],
     "parameter file not found"),
])
def test_bad_arguments_exit_non_zero_with_one_line(args, needle, tmp_path):
    result = run_gluonfuse(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode in (1, 2)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_loads_in_plain_mxnet_without_gluonfuse(tmp_path):
    result = run_gluonfuse("export", "--network", "cross", "--depth", "14", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "cross_d14_w1-meta.json").read_text())
    assert meta["network"] == "cross" and meta["model_kwargs"]["depth"] == 14
    code = (
        "import sys, mxnet as mx\n"
        f"net = mx.gluon.SymbolBlock.imports(r'{tmp_path}/cross_d14_w1-symbol.json', ['data'],"
        f" r'{tmp_path}/cross_d14_w1-0000.params')\n"
        "out = net(mx.nd.ones((3, 3, 32, 32)))\n"
        "assert out.shape == (3, 10), out.shape\n"
        "assert 'gluonfuse' not in sys.modules\n"
        "print('ok')\n")
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "ok"


def test_export_onnx_reports_the_check(tmp_path):
    result = run_gluonfuse("export", "-n", "half", "-d", "14", "--out", tmp_path, "--format", "onnx")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "half_d14_w1.onnx").is_file()
    assert "onnxruntime check passed" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tmp_path / "half_d14_w1.onnx"))
    # the opset its nodes follow (mxnet's converters), not the newest the installed onnx knows
    assert [(o.domain, o.version) for o in model.opset_import] == [("", MXNET_ONNX_OPSET)]
    onnx.checker.check_model(model, full_check=True)


def test_export_trained_parameters_round_trip(tmp_path):
    import mxnet as mx

    from gluonfuse.models import get_model

    net = get_model("resnet", depth=8)
    net.initialize(mx.init.Normal(0.5))
    net.save_parameters(str(tmp_path / "w.params"))
    result = run_gluonfuse("export", "-n", "resnet", "-d", "8", "--out", tmp_path / "out",
                           "--params", tmp_path / "w.params")
    assert result.returncode == 0, result.stderr
    loaded = mx.nd.load(str(tmp_path / "out" / "resnet_d8_w1-0000.params"))
    np_weight = net.collect_params()["resnet_stem_conv_weight"].data().asnumpy()
    assert (loaded["arg:resnet_stem_conv_weight"].asnumpy() == np_weight).all()
    bad = run_gluonfuse("export", "-n", "resnet", "-d", "14", "--out", tmp_path / "o2",
                        "--params", tmp_path / "w.params")
    assert bad.returncode == 1 and "does not fit" in bad.stderr
