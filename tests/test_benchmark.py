"""tools/benchmark.py: it runs, its table and JSON are well formed, its PyTorch networks are the same
architecture as gluonfuse's. Tiny networks and one or two steps; no timing is asserted."""
import importlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

TOOLS = os.path.join(REPO, "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)

import benchmark  # noqa: E402
import bench_models  # noqa: E402

QUICK = ["--batch-size", "4", "--rounds", "2", "--iters", "1", "--warmup", "1", "--quiet"]


def run_tool(*args, env=None):
    """Run tools/benchmark.py as a user does, from the checkout, without installing gluonfuse."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, os.path.join(TOOLS, "benchmark.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, env=full_env, cwd="/")


def table_rows(markdown):
    """The cells of the first Markdown table in ``markdown``, checked to be well formed."""
    lines = markdown[markdown.index("\n|") + 1:].splitlines()
    lines = lines[:next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]
    header, rule, rows = lines[0], lines[1], lines[2:]
    width = header.count("|")
    assert rule.count("|") == width and all(row.count("|") == width for row in rows)
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_resnet_against_gluoncv_and_torch(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_tool("models", "--network", "resnet", "--depth", 20, *QUICK, "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    labels = [c["label"] for c in report["contenders"]] + [s["label"] for s in report["skipped"]]
    assert labels[:2] == ["gluonfuse resnet_d20_w1", "gluoncv cifar_resnet20_v1"]
    assert labels[2] == "PyTorch eager resnet_d20_w1"
    gf, cv = report["contenders"][:2]
    assert gf["params"] == cv["params"] == 272_474  # the same architecture
    for c in report["contenders"]:
        for mode in ("train", "infer"):
            assert len(c[mode]["rounds"]) == 2 and all(v > 0 for v in c[mode]["rounds"])
            assert c[mode]["min"] <= c[mode]["median"] <= c[mode]["max"]
    assert gf["train"]["first_over_this"]["median"] == pytest.approx(1.0)
    # the table printed on stdout is the report's, one row per contender, skipped ones included
    assert report["markdown"] in proc.stdout
    rows = table_rows(proc.stdout)
    assert [r[0] for r in rows] == labels
    assert rows[1][1] == "272,474"
    assert f"mxnet: {len(os.sched_getaffinity(0))} OpenMP threads" in proc.stdout
    assert "each contender in its own process" in proc.stdout  # mxnet and PyTorch never share one


def test_threads_check_compares_mxnet_default_with_gluonfuse(tmp_path):
    out = tmp_path / "threads.json"
    proc = run_tool("models", "--network", "resnet", "--depth", 8, "--threads-check", *QUICK, "--modes", "train",
                    "--json", out, env={"OMP_NUM_THREADS": "1"})  # the check ignores the caller's setting
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    ours, default = report["contenders"]
    assert "OMP_NUM_THREADS unset" in default["label"] and "gluonfuse threads" in ours["label"]
    cores = len(os.sched_getaffinity(0))
    assert report["threads"].split(";")[0].endswith(f": {cores} OpenMP thread(s)")
    assert report["threads"].split(";")[1].endswith(f": {max(1, cores // 2)} OpenMP thread(s)")
    assert len(table_rows(proc.stdout)) == 2


def test_missing_torch_is_reported_as_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_models, "torch_installed", lambda: False)
    out = tmp_path / "b.json"
    assert benchmark.main(["models", "--network", "cross", "--depth", "14", "--against", "torch,resnet:8",
                           *QUICK, "--modes", "infer", "--in-process", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert "all contenders in one process" in report["markdown"]
    assert [c["label"] for c in report["contenders"]] == ["gluonfuse cross_d14_w1", "gluonfuse resnet_d8_w1"]
    assert report["skipped"] == [{"label": "PyTorch eager cross_d14_w1", "reason": bench_models.TORCH_HINT}]
    rows = table_rows(capsys.readouterr().out)
    assert rows[-1][0] == "PyTorch eager cross_d14_w1" and "skipped: torch is not installed" in rows[-1][2]


@pytest.mark.parametrize("args, message", [
    (["--against", "gluoncvv"], "unknown network 'gluoncvv'"),
    (["--network", "cross", "--against", "gluoncv"], "gluoncv has no counterpart of cross_d26_w1"),
    (["--against", "resnet:x"], "write NET, NET:DEPTH or NET:DEPTH:WIDEN"),
    (["--network", "resnet", "--depth", 7], "depth 7 of 'resnet' leaves a stage"),
    (["--modes", "fast"], "--modes takes train, infer"),
    (["--rounds", 0], "--rounds must be at least 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main(["models", *map(str, args)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_auto_contenders():
    parser = benchmark.build_parser()

    def labels(*argv):
        return [d["label"] for d in bench_models.contender_descriptions(parser.parse_args(["models", *argv]))]

    assert labels() == ["gluonfuse resnet_d56_w1", "gluoncv cifar_resnet56_v1", "PyTorch eager resnet_d56_w1"]
    assert labels("--network", "cross", "--depth", "110") == [
        "gluonfuse cross_d110_w1", "gluonfuse resnet_d110_w1", "PyTorch eager cross_d110_w1"]
    assert labels("--network", "dfn_mr1") == [
        "gluonfuse cross_d110_w1", "gluonfuse resnet_d110_w1", "PyTorch eager cross_d110_w1"]
    assert labels("--network", "dfn_mr50_imagenet") == ["gluonfuse dfn_mr50_imagenet", "PyTorch eager dfn_mr50_imagenet"]
    assert labels("--network", "resnet", "--depth", "20", "--against", "none") == ["gluonfuse resnet_d20_w1"]


@pytest.mark.parametrize("network, depth", [("plain", 8), ("resnet", 20), ("cross", 26), ("half", 14), ("side", 14)])
def test_torch_networks_match_gluonfuse(network, depth):
    torch = pytest.importorskip("torch")
    import bench_torch

    from gluonfuse.models import count_params, get_model

    net = get_model(network, depth=depth, classes=7)
    model = bench_torch.FusionNet(net.spec)
    assert bench_torch.count_params(model) == count_params(net)
    # same number of conv layers, in the same order of shapes
    gluon_convs = [p.shape for name, p in net.collect_params().items() if name.endswith("conv_weight")]
    torch_convs = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(gluon_convs) == sorted(torch_convs)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_interleave_alternates_order_and_discards_busy_rounds():
    import bench_common

    calls = []

    class Fake:
        def __init__(self, label, busy):
            self.label, self.busy = label, iter(busy)

        def run(self, mode, iters):
            calls.append(self.label)
            # 1 s wall, 1 core of our own; "busy" is the whole machine's CPU seconds meanwhile
            return {"wall": 1.0, "cpu": 1.0, "busy": next(self.busy)}

    a, b = Fake("a", [1.0, 1.0, 1.0]), Fake("b", [1.0, 2.5, 1.2])
    results, discarded = bench_common.interleave([a, b], ["train"], rounds=2, iters=3, batch_size=4,
                                                 max_other_load=0.5)
    assert calls == ["a", "b", "b", "a", "a", "b"]  # A B, then B A (thrown away: b saw 1.5 other cores), A B
    assert discarded == 1
    assert results["a"]["train"]["images_per_sec"] == [12.0, 12.0]
    assert results["b"]["train"]["other_load"] == pytest.approx([0.0, 0.2])


# ---------------------------------------------------------------- one protocol, no cycles

def _tool_imports(path):
    """The tools/ modules a tools/ file imports, at the top or inside functions."""
    import ast

    local = {name[:-3] for name in os.listdir(TOOLS) if name.endswith(".py")}
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found & local


def test_tools_modules_import_each_other_without_cycles():
    graph = {name[:-3]: _tool_imports(os.path.join(TOOLS, name)) for name in os.listdir(TOOLS) if name.endswith(".py")}
    graph["benchmark"] |= set(benchmark.SECTIONS.values())  # imported by name from its registry

    def visit(name, path):
        assert name not in path, "import cycle: " + " -> ".join(path + [name])
        for other in graph[name]:
            visit(other, path + [name])

    for name in graph:
        visit(name, [])
    assert {"bench_common", "bench_machine"} <= graph["bench_models"]  # the walk sees imports


@pytest.mark.parametrize("section", list(benchmark.SECTIONS))
def test_every_section_follows_the_protocol(section, capsys):
    module = importlib.import_module(benchmark.SECTIONS[section])
    assert module.__doc__ and callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exc:
        benchmark.main([section, "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert f"benchmark.py {section}" in help_text and "--json" in help_text
    assert module.__doc__.strip().split("\n")[0] in help_text


def test_a_section_file_run_as_a_script_is_that_section():
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, "bench_dist.py"), "--workers", "0"],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert proc.returncode == 2 and proc.stderr.strip() == "Error: --workers must be at least 1, got 0"


# ---------------------------------------------------------------- the report and its machine line

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
bogomips\t: 4000.00

processor\t: 1
model name\t: some other name
flags\t\t: fpu
"""
LSCPU = """Architecture:            x86_64
Model name:              AMD EPYC 7B13
Flags:                   fpu sse2 avx2 avx_vnni
"""


def test_cpu_model_and_flags_are_read_from_cpuinfo_and_lscpu_text():
    import bench_machine

    intel = bench_machine.parse_cpu(CPUINFO)
    assert intel["model"] == "Intel(R) Xeon(R) Platinum 8480+"  # the first CPU's lines
    assert {"avx512f", "amx_tile", "amx_int8"} <= intel["flags"] and "avx_vnni" not in intel["flags"]
    amd = bench_machine.parse_cpu(LSCPU)
    assert amd == {"model": "AMD EPYC 7B13", "flags": {"fpu", "sse2", "avx2", "avx_vnni"}}
    assert bench_machine.parse_cpu("processor : 0\n") == {"model": None, "flags": set()}


def _fake_stamp(cpu_text, torch=None):
    import bench_machine

    cpu = bench_machine.parse_cpu(cpu_text)
    return {"cpu": cpu["model"], "flags": {f: f in cpu["flags"] for f in bench_machine.VECTOR_FLAGS},
            "cores": {"visible": 2, "machine": 4}, "threads": "OMP_NUM_THREADS=2 set by the user",
            "mxnet": {"version": "1.9.1", "mkldnn": True, "onednn": "2.4.4", "isa": "Intel AVX2"},
            "torch": torch or {"version": None}, "versions": {"python": "3.11.7"},
            "load_average": {"before": 0.25, "after": None}}


def test_machine_line_names_the_flags_present_and_absent():
    import bench_machine

    line = bench_machine.stamp_line(_fake_stamp(LSCPU, torch={
        "version": "2.13.0", "onednn": "3.12.0", "mkl": "2024.2", "capability": "AVX2", "mkldnn": True}))
    assert line.startswith("**Machine:** AMD EPYC 7B13 (avx2, avx_vnni; not avx512f, avx512_bf16, avx512_vnni, "
                           "amx_tile, amx_bf16, amx_int8); 2 visible cores (of 4); ")
    assert "mxnet 1.9.1 with MKLDNN (oneDNN 2.4.4, ISA Intel AVX2)" in line
    assert "torch 2.13.0 (oneDNN 3.12.0, MKL 2024.2, CPU capability AVX2)" in line
    assert line.endswith("OpenMP threads: OMP_NUM_THREADS=2 set by the user")
    bare = bench_machine.stamp_line(_fake_stamp("flags : fpu\n"))
    assert "(none of avx2, avx512f" in bare and "torch not installed" in bare


def test_framework_build_texts_are_parsed_or_unknown():
    import bench_machine

    verbose = ("dnnl_verbose,info,oneDNN v2.4.4 (commit 5818c40f)\ndnnl_verbose,info,cpu,runtime:OpenMP\n"
               "dnnl_verbose,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions\n")
    assert bench_machine.parse_onednn_verbose(verbose) == {
        "version": "2.4.4", "isa": "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions"}
    assert bench_machine.parse_onednn_verbose("") == {"version": "unknown", "isa": "unknown"}
    config = ("  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605\n"
              "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71)\n  - CPU capability usage: AVX512\n")
    assert bench_machine.parse_torch_config(config) == {"onednn": "3.12.0", "mkl": "2024.2", "capability": "AVX512"}
    assert bench_machine.parse_torch_config("")["onednn"] == "unknown"


def test_report_markdown_lists_every_ratio_and_the_skipped_ones():
    import bench_common
    import bench_report

    part = {"title": "models: resnet 56", "section": "models", "argv": ["--network", "resnet"], "seconds": 12.0,
            "result": {"markdown": "(the section's own tables)"}}
    ratios = [dict(bench_common.ratio([2.0, 3.0, 2.4], [2.0, 2.0, 2.0], name="train: gluonfuse / gluoncv"),
                   part="models: resnet 56"),
              {"name": "gluonfuse / PyTorch eager", "skipped": "torch is not installed", "part": "models: resnet 56"}]
    text = bench_report.markdown({"quick": False, "command": "python tools/benchmark.py report", "date": "today",
                                  "seconds": 12.0, "machine": _fake_stamp(CPUINFO), "parts": [part],
                                  "ratios": ratios})
    assert text.startswith("# gluonfuse benchmark report\n\n**Machine:** Intel(R) Xeon(R) Platinum 8480+ (avx2, ")
    assert "**Load average** (1 minute; 2 visible cores): 0.25 before, unknown after" in text
    rows = table_rows(text)
    assert rows[0] == ["models: resnet 56", "train: gluonfuse / gluoncv", "1.20", "1.00-1.50", "42%", "3"]
    assert rows[1][1:3] == ["gluonfuse / PyTorch eager", "skipped: torch is not installed"]
    assert "## models: resnet 56 (12 s)\n\n`python tools/benchmark.py models --network resnet`" in text


def test_report_quick_runs_every_part_end_to_end(tmp_path):
    out, js = tmp_path / "reports" / "r.md", tmp_path / "r.json"
    proc = run_tool("report", "--quick", "--quiet", "--out", out, "--json", js)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.strip() in proc.stdout and not list(out.parent.glob(".*.part"))  # renamed into place
    report = json.loads(js.read_text())
    assert [p["name"] for p in report["parts"]] == ["resnet56", "cross56", "infer", "train", "data"]
    lines = text.splitlines()
    assert lines[2].startswith("**Machine:** ") and f"{len(os.sched_getaffinity(0))} visible cores" in lines[2]
    has_torch = importlib.util.find_spec("torch") is not None
    assert "OpenMP threads: " in lines[2] and "mxnet 1.9.1 with MKLDNN (oneDNN " in lines[2]
    assert ("; torch 2." in lines[2]) == has_torch and ("torch not installed" in lines[2]) != has_torch
    assert lines[4].startswith("**Load average** ")
    rows = table_rows(text)
    assert len(rows) == len(report["ratios"])
    assert {r[0] for r in rows} == {p["title"] for p in report["parts"]}
    torch_rows = [r for r in rows if "PyTorch eager" in r[1] and r[0].startswith("models")]
    if has_torch:  # train and infer ratios of both models parts
        assert len(torch_rows) == 4 and all(float(r[2]) > 0 for r in torch_rows)
    else:  # never silently left out
        assert [r[2] for r in torch_rows] == ["skipped: " + bench_models.TORCH_HINT] * 2
    for r in report["ratios"]:
        if "skipped" not in r:
            assert r["min"] <= r["median"] <= r["max"] and len(r["rounds"]) == (1 if r["part"].startswith("data") else 2)
    assert any(r[1].startswith("train: pipeline / module") for r in rows)
    assert any(r[1].startswith("pack end to end: gluonfuse tools/im2rec / mxnet im2rec.py") for r in rows)
    assert [line for line in lines if line.startswith("## ")] == [
        f"## {p['title']} ({p['seconds']:.0f} s)" for p in report["parts"]]


@pytest.mark.parametrize("args, message", [
    (["--parts", "resnet56,bogus"], "--parts takes names from resnet56, cross56, dfn_mr1, infer, train, data"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--out", "/"], "--out / is a directory"),
])
def test_bad_report_arguments_are_one_line_and_exit_2(args, message, capsys):
    assert_one_line_exit_2(["report", *args], message, capsys)


def assert_one_line_exit_2(argv, message, capsys):
    """``benchmark.py ARGV`` exits with 2 and one line on stderr that contains ``message``."""
    with pytest.raises(SystemExit) as exc:
        benchmark.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- infer

INFER_LABELS = ["fp32 plain", "fp32 fused (MKLDNN)", "int8 (MKLDNN, naive calibration)", "PyTorch eager",
                "PyTorch channels_last", "PyTorch int8 (torch.ao x86)"]
INFER_QUICK = ["--quick", "--network", "resnet", "--depth", "8", "--batch-sizes", "1,4", "--rounds", "1", "--quiet"]


def _infer_rows(report):
    (net,) = report["networks"]
    return net, [r["label"] for r in net["rows"]] + [s["label"] for s in net["skipped"]]


def test_infer_runs_every_variant_end_to_end(tmp_path):
    out = tmp_path / "infer.json"
    proc = run_tool("infer", *INFER_QUICK, "--json", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    net, labels = _infer_rows(report)
    assert net["network"] == "resnet_d8_w1"
    assert sorted(labels) == sorted(INFER_LABELS)  # every variant is a row: timed or skipped with a reason
    has_torch = importlib.util.find_spec("torch") is not None
    timed = [r["label"] for r in net["rows"]]
    assert timed[:3] == INFER_LABELS[:3]  # the mxnet variants run on this MKLDNN build
    if has_torch:
        assert {"PyTorch eager", "PyTorch channels_last"} <= set(timed)
    for r in net["rows"]:
        assert r["params"] == 78_042  # the same architecture everywhere
        for b in ("1", "4"):
            assert len(r[b]["rounds"]) == 1 and r[b]["median"] > 0
    assert net["rows"][0]["1"]["speedup"]["median"] == pytest.approx(1.0)
    names = [r["name"] for r in report["ratios"]]
    assert "resnet_d8_w1 batch 1 latency: int8 (MKLDNN, naive calibration) / fp32 plain" in names
    assert "resnet_d8_w1 batch 4 throughput: fp32 fused (MKLDNN) / fp32 plain" in names
    rows = table_rows(proc.stdout)
    assert [r[0] for r in rows] == labels
    assert rows[0][2].endswith(" ms") and "random-normal" in proc.stdout


def test_infer_torch_rows_skip_without_torch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_models, "torch_installed", lambda: False)
    out = tmp_path / "infer.json"
    assert benchmark.main(["infer", *INFER_QUICK, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    net, labels = _infer_rows(report)
    assert labels == INFER_LABELS
    assert net["skipped"] == [{"label": label, "reason": bench_models.TORCH_HINT} for label in INFER_LABELS[3:]]
    rows = table_rows(capsys.readouterr().out)
    assert rows[-1][2] == "skipped: " + bench_models.TORCH_HINT


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "1,x"], "--batch-sizes takes distinct positive numbers"),
    (["--network", "fractalnet20"], "has versions of the CIFAR"),
    (["--latency-calls", "0"], "--latency-calls must be at least 1"),
])
def test_bad_infer_arguments_are_one_line_and_exit_2(args, message, capsys):
    assert_one_line_exit_2(["infer", *args], message, capsys)
