"""gluonfuse results: statistics over fake run directories with known numbers, and the skipping."""
import csv
import io
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO, run_gluonfuse
from gluonfuse import results as res
from gluonfuse.errors import DataError

HEADER = ("epoch,lr,train_loss,train_error,train_top5_error,test_loss,test_error,test_top5_error,"
          "images_per_sec,seconds")


def make_run(root, name, test, train=None, network="cross", depth=26, widen=1, dataset="cifar10",
             state="finished", epochs=None, lr=0.1, metrics_text=None):
    """A run directory per the contract; ``test``/``train`` are the per-epoch error fractions."""
    train = train if train is not None else [e / 2 for e in test]
    run = root / name
    run.mkdir(parents=True)
    config = {"network": network, "model_kwargs": {"depth": depth, "widen_factor": widen, "classes": 10},
              "dataset": dataset, "data_dir": f"data/{dataset}", "epochs": epochs or len(test),
              "batch_size": 64, "lr": lr, "lr_steps": [2, 3], "wd": 1e-4, "momentum": 0.9,
              "optimizer": "nag", "seed": 0, "aug_type": 1}
    (run / "config.json").write_text(json.dumps(config))
    if metrics_text is None:
        rows = [HEADER] + [f"{i + 1},0.1,1.0,{tr},{tr / 3},1.2,{te},{te / 3},100.0,10.0"
                           for i, (tr, te) in enumerate(zip(train, test))]
        metrics_text = "\n".join(rows) + "\n"
    (run / "metrics.csv").write_text(metrics_text)
    status = {"state": state, "epoch": len(test), "epochs": epochs or len(test),
              "best_epoch": 1 + min(range(len(test)), key=test.__getitem__),
              "best_test_error": min(test) if test else None, "message": ""}
    if state is not None:
        (run / "status.json").write_text(json.dumps(status))
    return run


@pytest.fixture
def runs(tmp_path):
    """4 cross runs (final test 5, 6, 4, 7 %), 3 resnet runs (8, 10, 9 %), and 7 bad directories."""
    root = tmp_path / "runs"
    for i, final in enumerate([0.05, 0.06, 0.04, 0.07]):
        make_run(root, f"cross_d26_w1_cifar10_{i}", [0.5, 0.2, final], train=[0.4, 0.1, final / 5])
    for i, final in enumerate([0.08, 0.10, 0.09]):
        make_run(root, f"resnet_d26_w1_cifar10_{i}", [0.6, final], train=[0.5, final / 4], network="resnet")
    make_run(root, "running", [0.5], state="running", epochs=3)
    bad = make_run(root, "failed", [0.5], state="failed")
    (bad / "status.json").write_text(json.dumps({"state": "failed", "epoch": 1, "epochs": 3,
                                                 "message": "loss became NaN"}))
    make_run(root, "truncated", [0.5, 0.4], epochs=5)  # says finished at 5 epochs, has 2 rows
    make_run(root, "garbage", [0.1], metrics_text=HEADER + "\n1,0.1,1,0.2,0.1,1,oops,0.1,1,1\n")
    make_run(root, "percent", [0.1], metrics_text=HEADER + "\n1,0.1,1,0.2,0.1,1,12.5,0.1,1,1\n")
    make_run(root, "nostatus", [0.1], state=None)
    (make_run(root, "noconfig", [0.1]) / "config.json").unlink()
    (root / "notes").mkdir()  # not a run: ignored
    (root / "notes" / "todo.txt").write_text("x")
    return root


def test_metric_columns_are_the_run_directory_contract(tmp_path):
    """results reads runs with the trainer's own reader, which knows the columns train writes."""
    from gluonfuse.train import rundir

    assert res.load_run is rundir.load_run
    assert HEADER.split(",") == list(rundir.METRIC_COLUMNS)
    with pytest.raises(DataError, match="expected the header " + HEADER):
        rundir.load_run(str(make_run(tmp_path, "empty", [0.1], metrics_text="")), strict=True)


def test_strict_and_lenient_reading_of_one_run(tmp_path):
    from gluonfuse.train.rundir import load_run

    run = make_run(tmp_path, "garbage", [0.1], metrics_text=HEADER + "\n1,0.1,1,0.2,0.1,1,oops,0.1,1,1\n")
    lenient = load_run(str(run))
    assert lenient.metrics[0]["test_error"] == "oops" and lenient.metrics[0]["epoch"] == 1
    with pytest.raises(DataError, match="metrics.csv line 2: test_error is 'oops', not a number"):
        load_run(str(run), strict=True)
    (run / "status.json").unlink()
    assert load_run(str(run)).status == {}
    with pytest.raises(DataError, match="run status not found"):
        load_run(str(make_run(tmp_path, "nostatus", [0.1], state=None)), strict=True)
    with pytest.raises(DataError, match="not a run directory"):
        load_run(str(tmp_path))
    good = load_run(str(make_run(tmp_path, "good", [0.3, 0.2])), strict=True)
    assert good.state == "finished" and good.curve() == [0.3, 0.2] and good.final["epoch"] == 2


def test_importing_results_loads_neither_mxnet_nor_matplotlib():
    code = ("import sys, gluonfuse.results; "
            "print(sorted(m for m in ('mxnet', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_median_index_follows_the_authors():
    assert res.median_index([0.05]) == 0
    assert res.median_index([0.05, 0.07, 0.06]) == 2
    # even count: the worse of the two middle runs (authors: accuracy ascending, index (n-1)//2)
    assert res.median_index([0.05, 0.06, 0.04, 0.07]) == 1
    assert res.median_index([0.04, 0.05]) == 1


def test_scan_skips_and_explains(runs):
    finished, skipped = res.scan_runs(str(runs))
    assert len(finished) == 7
    reasons = {p.rsplit("/", 1)[1]: r for p, r in skipped}
    assert sorted(reasons) == ["failed", "garbage", "noconfig", "nostatus", "percent", "running", "truncated"]
    assert reasons["running"] == "unfinished (running, epoch 1 of 3)"
    assert reasons["failed"] == "failed: loss became NaN"
    assert "status.json says 5 epochs but metrics.csv has 2 rows" in reasons["truncated"]
    assert "line 2: test_error is 'oops'" in reasons["garbage"]
    assert "fractions in [0, 1]" in reasons["percent"]
    assert "config.json" in reasons["noconfig"] and reasons["noconfig"].startswith("corrupt")
    assert reasons["nostatus"].startswith("unfinished")


def test_group_statistics(runs):
    finished, _ = res.scan_runs(str(runs))
    groups = res.group_runs(finished)
    assert [g.key for g in groups] == [("cross", 26, 1, "cifar10"), ("resnet", 26, 1, "cifar10")]
    cross, resnet = groups
    # test errors 5, 6, 4, 7 %: median run is the 6 % one, mean 5.5, population std sqrt(1.25)
    assert cross.test.median == pytest.approx(0.06)
    assert cross.test.mean == pytest.approx(0.055)
    assert cross.test.std == pytest.approx(math.sqrt(1.25) / 100)
    assert cross.test.best == pytest.approx(0.04)
    assert cross.median_run.path.endswith("cross_d26_w1_cifar10_1")
    # training error: the median run's own, mean/std/best over all runs (finals are test / 5)
    assert cross.train.median == pytest.approx(0.012)
    assert cross.train.mean == pytest.approx(0.011)
    assert cross.train.best == pytest.approx(0.008)
    assert cross.test.text() == "6.00 (5.50 ± 1.12, 4.00)"
    assert resnet.test.text() == "9.00 (9.00 ± 0.82, 8.00)"
    assert cross.epochs == [3] and len(resnet.runs) == 3


def test_group_by_other_keys(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", [0.2, 0.1], lr=0.1)
    make_run(root, "b", [0.2, 0.3], lr=0.05)
    make_run(root, "c", [0.2, 0.2], lr=0.1, dataset="cifar100")
    finished, _ = res.scan_runs(str(root))
    assert [g.key for g in res.group_runs(finished, "lr")] == [(0.05,), (0.1,)]
    assert [len(g.runs) for g in res.group_runs(finished, ["network"])] == [3]
    assert [g.key for g in res.group_runs(finished, "classes,dataset")] == [(10, "cifar10"), (10, "cifar100")]
    with pytest.raises(ValueError, match="Did you mean 'dataset'"):
        res.group_runs(finished, "datset")


def test_a_single_run_directory_is_a_run(tmp_path):
    run = make_run(tmp_path, "one", [0.3, 0.2])
    finished, skipped = res.scan_runs(str(run))
    assert len(finished) == 1 and skipped == []
    with pytest.raises(DataError, match="runs directory not found"):
        res.scan_runs(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no run directories under"):
        res.scan_runs(str(tmp_path / "empty"))


# ---------------------------------------------------------------- the command

def test_results_table_lists_skipped_runs(cli, runs):
    result = cli("results", runs)
    assert result.exit_code == 0
    out = result.stdout
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["network", "depth", "widen", "dataset", "runs", "epochs"]
    assert lines[1].split()[:6] == ["cross", "26", "1", "cifar10", "4", "3"]
    assert "6.00 (5.50 ± 1.12, 4.00)" in lines[1] and "1.20 (1.10 ± 0.22, 0.80)" in lines[1]
    assert "9.00 (9.00 ± 0.82, 8.00)" in lines[2]
    assert "Skipped 7 run directories:" in result.stderr
    assert "failed: loss became NaN" in result.stderr and "Skipped" not in out


def test_results_csv_and_markdown(cli, runs):
    result = cli("results", runs, "--format", "csv", "--by", "network")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["network"] for r in rows] == ["cross", "resnet"]
    assert float(rows[0]["test_error_pct_median"]) == pytest.approx(6.0)
    assert float(rows[0]["test_error_pct_std"]) == pytest.approx(1.1180, abs=1e-4)
    assert float(rows[1]["train_error_pct_best"]) == pytest.approx(2.0)
    assert rows[0]["median_run"].endswith("cross_d26_w1_cifar10_1")
    md = cli("results", runs, "--format", "markdown").stdout.splitlines()
    assert md[0].startswith("| network | depth | widen | dataset | runs |") and md[1].startswith("|---|")
    assert md[2].startswith("| cross | 26 | 1 | cifar10 | 4 | 3 | 6.00 (5.50 ± 1.12, 4.00) |")


def test_results_plot(cli, runs, tmp_path):
    out = tmp_path / "curves.png"
    result = cli("results", runs, "--plot", out)
    assert result.exit_code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, code, message", [
    (["--by", "netwrk"], 2, "Did you mean 'network'"),
    (["--plot", "curves.bmp"], 2, "choose a file ending in .png, .svg, .pdf"),
    (["--format", "xls"], 2, "Invalid value for '--format'"),
    (["--by", ","], 2, "--by needs at least one key"),
])
def test_results_bad_arguments(cli, runs, args, code, message):
    result = cli("results", runs, *args)
    assert result.exit_code == code
    assert message in result.output
    assert "cross" not in result.stdout  # nothing printed before the error


def test_results_without_finished_runs(cli, tmp_path):
    root = tmp_path / "runs"
    make_run(root, "running", [0.5], state="running", epochs=3)
    result = cli("results", root)
    assert result.exit_code == 1
    assert "unfinished (running, epoch 1 of 3)" in result.stderr
    assert "no finished runs" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("results", empty)
    assert result.exit_code == 1 and "no run directories" in result.stderr
    result = cli("results", tmp_path / "missing")
    assert result.exit_code == 2


def test_format_and_plot_take_any_grouping_key(tmp_path):
    """Keys beyond the standard four (validated by group_runs) are not rejected by the formatters."""
    root = tmp_path / "runs"
    make_run(root, "a", [0.2, 0.1], lr=0.1)
    make_run(root, "b", [0.2, 0.3], lr=0.05)
    finished, _ = res.scan_runs(str(root))
    groups = res.group_runs(finished, "lr,aug_type")
    lines = res.format_groups(groups, "lr,aug_type").splitlines()
    assert lines[0].split()[:3] == ["lr", "aug_type", "runs"]
    assert lines[1].split()[:3] == ["0.05", "1", "1"]
    rows = list(csv.DictReader(io.StringIO(res.format_groups(groups, ["lr", "aug_type"], "csv"))))
    assert [r["lr"] for r in rows] == ["0.05", "0.1"]
    out = tmp_path / "lr.svg"
    assert res.plot_groups(groups, ["lr", "aug_type"], str(out)) == str(out)
    assert "lr=0.05 aug_type=1 (n=1)" in out.read_text()


def test_results_by_a_config_key_end_to_end(tmp_path):
    """``--by lr`` (offered by --help) groups, prints and plots: text output and --plot."""
    root = tmp_path / "runs"
    make_run(root, "a", [0.2, 0.1], lr=0.1)
    make_run(root, "b", [0.2, 0.3], lr=0.05)
    make_run(root, "c", [0.2, 0.2], lr=0.1, dataset="cifar100")
    plot = tmp_path / "lr.png"
    proc = run_gluonfuse("results", root, "--by", "lr", "--plot", plot)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["lr", "runs", "epochs"]
    assert lines[1].split()[:3] == ["0.05", "1", "2"] and "30.00 (30.00 ± 0.00, 30.00)" in lines[1]
    assert lines[2].split()[:3] == ["0.1", "2", "2"] and "20.00 (15.00 ± 5.00, 10.00)" in lines[2]
    assert f"Wrote {plot}" in proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_gluonfuse("results", root, "--by", "lr,dataset", "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[2].startswith("| 0.05 | cifar10 | 1 | 2 | 30.00 ")
    proc = run_gluonfuse("results", root, "--by", "lrr")
    assert proc.returncode == 2 and "Did you mean 'lr'" in proc.stderr


def test_results_end_to_end(runs):
    proc = run_gluonfuse("results", runs, "--by", "network,dataset", "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    assert "| cross | cifar10 | 4 | 3 | 6.00 (5.50 ± 1.12, 4.00) |" in proc.stdout
    assert "Skipped 7 run directories" in proc.stderr
    help_proc = run_gluonfuse("results", "--help")
    assert help_proc.returncode == 0 and "median (mean ± std, best)" in help_proc.stdout


def test_a_run_whose_process_died_is_reported_died_even_before_its_first_epoch(tmp_path):
    import socket

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    root = tmp_path / "runs"
    for name in ("early", "later"):
        run = make_run(root, name, [0.5], state="running", epochs=3)
        status = json.loads((run / "status.json").read_text())
        status.update(pid=child.pid, host=socket.gethostname(), pid_start=None)
        (run / "status.json").write_text(json.dumps(status))
    (root / "early" / "metrics.csv").unlink()  # killed during its first epoch
    _, skipped = res.scan_runs(str(root))
    reasons = {p.rsplit("/", 1)[1]: r for p, r in skipped}
    died = f"unfinished (died (process {child.pid} on {socket.gethostname()} is gone), epoch 1 of 3)"
    assert reasons == {"early": died, "later": died}


def test_runs_trained_with_ema_report_its_test_error_too(cli, tmp_path):
    root = tmp_path / "runs"
    header = HEADER + ",ema_test_loss,ema_test_error,ema_test_top5_error"
    for i, (test, ema) in enumerate([(0.05, 0.04), (0.06, 0.03), (0.07, 0.05)]):
        make_run(root, f"ema_{i}", [test], metrics_text=f"{header}\n1,0.1,1,0.01,0,1,{test},0,1,1,1,{ema},0\n")
    make_run(root, "plain_0", [0.08], network="resnet")
    finished, _ = res.scan_runs(str(root))
    cross, resnet = res.group_runs(finished)
    assert cross.ema.text() == "4.00 (4.00 ± 0.82, 3.00)" and cross.test.median == pytest.approx(0.06)
    assert resnet.ema is None
    table = cli("results", root).stdout.splitlines()
    assert table[0].endswith("EMA test error % median (mean ± std, best)")
    assert table[1].endswith("4.00 (4.00 ± 0.82, 3.00)") and table[2].endswith("-")
    rows = list(csv.DictReader(io.StringIO(cli("results", root, "--format", "csv").stdout)))
    assert float(rows[0]["ema_test_error_pct_best"]) == pytest.approx(3.0) and rows[1]["ema_test_error_pct_best"] == ""
    # without any EMA run the output keeps its columns
    assert "EMA" not in cli("results", root / "plain_0").stdout
