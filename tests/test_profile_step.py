"""tools/profile_step.py: each view runs on a tiny network and accounts for the step it profiles.

The counts asserted are structural (resnet 20 has 21 convolutions: the stem, 18 in the blocks and 2
projections), so they hold on any CPU; no timing is asserted."""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

TOOL = os.path.join(REPO, "tools", "profile_step.py")
QUICK = ["--depth", "20", "--batch-size", "4", "--steps", "2", "--warmup", "1"]


def run_tool(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd="/")


def rows(out):
    """{name: calls per step} from the tool's table."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+%\s+(\d+)\s+(.+)$", line)
        if m:
            found[m.group(2)] = int(m.group(1))
    return found


def test_mxnet_operators_one_row_each():
    proc = run_tool("resnet", *QUICK, "--view", "ops")
    assert proc.returncode == 0, proc.stderr
    ops = rows(proc.stdout)
    assert ops["Convolution"] == 21 and ops["_backward_Convolution"] == 21
    assert ops["nag_mom_update"] == 65  # one update per trainable parameter: no aggregation for NAG


def test_mkldnn_primitives_per_step():
    proc = run_tool("resnet", *QUICK, "--view", "primitives")
    assert proc.returncode == 0, proc.stderr
    prims = rows(proc.stdout)
    assert prims["convolution forward_training"] == 21
    assert prims["convolution backward_weights"] == 21
    assert prims["convolution backward_data"] == 20  # the stem's input needs no gradient
    assert prims["reorder"] > 0


def test_torch_channels_last_operators():
    pytest.importorskip("torch")
    proc = run_tool("cross", "--depth", "14", "--batch-size", "4", "--steps", "1", "--warmup", "1",
                    "--view", "torch")
    assert proc.returncode == 0, proc.stderr
    assert "PyTorch channels_last" in proc.stdout and "aten::convolution_backward" in proc.stdout


def test_network_without_a_pytorch_version_is_a_clear_error():
    proc = run_tool("fractalnet", "--depth", "20", "--view", "torch")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "profile_step.py: no PyTorch version of 'fractalnet'; written: plain, resnet, cross, half, side"]
