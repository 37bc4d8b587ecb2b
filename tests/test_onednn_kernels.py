"""tools/onednn_kernels.py: oneDNN's own per-primitive timing of a network's plain, fused and int8
graphs. The counts asserted are structural (resnet 8 has 9 convolutions: the stem, 6 in the blocks
and 2 projections), so they hold on any CPU; no timing is asserted."""
import json
import os
import subprocess
import sys

from conftest import REPO

TOOL = os.path.join(REPO, "tools", "onednn_kernels.py")


def run_tool(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd="/")


def _load():
    import importlib.util

    spec = importlib.util.spec_from_file_location("onednn_kernels", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parse_counts_only_the_timed_calls_and_averages_per_pass():
    tool = _load()
    text = "\n".join([
        "dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src,,alg,mb2,9.0",  # untimed
        tool.MARK,
        "dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src,,alg,mb2,1.5",
        "dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src,,alg,mb2,2.5",
        "dnnl_verbose,exec,cpu,reorder,jit:uni,undef,src,,,2x3,0.5",
        "dnnl_verbose,create:cache_miss,cpu,convolution,jit:avx2,forward_inference,,,,,7.0",
    ])
    assert tool.parse(text, calls=2) == {("convolution", "jit:avx2"): [1.0, 2.0], ("reorder", "jit:uni"): [0.5, 0.25]}


def test_each_graph_runs_its_own_kernels():
    proc = run_tool("--network", "resnet", "--depth", "8", "--batch", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert list(rows) == ["plain", "fused", "int8"]

    def convolutions(graph, marker):
        return sum(r["calls"] for r in rows[graph] if r["primitive"] == "convolution" and marker in r["implementation"])

    assert convolutions("plain", "") == convolutions("fused", "") == 9
    assert convolutions("int8", "") == 9
    # no convolution falls back to oneDNN's reference kernels (the names of the fast ones vary by CPU)
    assert not any(r["implementation"].startswith("ref") for graph in rows.values() for r in graph
                   if r["primitive"] == "convolution")
    # the plain graph runs BatchNorm on its own; the fused one folded it into the convolutions
    assert any(r["primitive"] == "batch_normalization" for r in rows["plain"])
    assert not any(r["primitive"] == "batch_normalization" for r in rows["fused"] + rows["int8"])


def test_bad_graph_names_are_refused():
    proc = run_tool("--graphs", "plain,fp16")
    assert proc.returncode == 2 and "--graphs takes names from plain, fused, int8" in proc.stderr
