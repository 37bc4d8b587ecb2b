"""tools/bench_data.py (`benchmark.py data`) runs end to end on a tiny input (speed itself is the
benchmark's job)."""
import os
import sys

import pytest

from conftest import REPO

TOOLS = os.path.join(REPO, "tools")
if TOOLS not in sys.path:
    sys.path.insert(0, TOOLS)


@pytest.mark.slow
def test_bench_data_runs_and_both_tools_agree():
    import bench_common
    import bench_data

    res = bench_data.run(bench_common.section_args(bench_data, [
        "--images", "12", "--read-images", "300", "--epochs", "2", "--repeat", "2", "--threads", "2"]))
    pack = res["pack"]
    assert pack["identical_output"] is True
    assert pack["gluonfuse_images_per_s"] > 0 and pack["mxnet_images_per_s"] > 0
    # 12 images cost less CPU than start-up jitter, so only the presence of the figure is certain
    assert pack["mxnet_cpu_ms_per_image"] >= 0 and pack["gluonfuse_cpu_ms_per_image"] >= 0
    # one per-round ratio per alternating round, the best times behind the table
    end_to_end = pack["end_to_end"]
    assert len(end_to_end["rounds"]) == 2 and end_to_end["min"] <= end_to_end["median"] <= end_to_end["max"]
    assert res["ratios"][0] is end_to_end and res["ratios"][1]["name"].startswith("pack CPU per image")
    assert res["read"]["images_per_s"] > 0 and len(res["read"]["per_epoch"]["rounds"]) == 2
    text = res["markdown"]
    assert "| gluonfuse tools/im2rec |" in text and "| mxnet im2rec.py |" in text
    assert "gluonfuse / mxnet, end to end: " in text and "ImageRecordIter" in text
