"""tools/bench_data.py runs end to end on a tiny input (speed itself is the benchmark's job)."""
import importlib.util
import os

import pytest

from conftest import REPO


@pytest.mark.slow
def test_bench_data_runs_and_both_tools_agree():
    spec = importlib.util.spec_from_file_location("bench_data", os.path.join(REPO, "tools", "bench_data.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run(bench.parse_args(["--images", "12", "--read-images", "300", "--epochs", "1",
                                      "--repeat", "1", "--threads", "2"]))
    assert res["pack"]["identical_output"] is True
    assert res["pack"]["gluonfuse_images_per_s"] > 0 and res["pack"]["mxnet_images_per_s"] > 0
    # 12 images cost less CPU than start-up jitter, so only the presence of the figure is certain
    assert res["pack"]["mxnet_cpu_ms_per_image"] >= 0 and res["pack"]["gluonfuse_cpu_ms_per_image"] >= 0
    assert res["read"]["images_per_s"] > 0
    text = bench.report(res)
    assert "ratio gluonfuse/mxnet" in text and "ImageRecordIter" in text
