"""Run directories written by older code still resume, evaluate and aggregate.

tests/fixtures/runs holds a finished 2-epoch run written by the trainer before its redesign (see
tests/fixtures/README.md). Its paths are relative: each test works in a copy, with the tests'
pattern dataset at data/patterns.
"""
import csv
import json
import os
import shutil

import pytest

from conftest import REPO
from train_fixtures import pattern_data  # noqa: F401 - a fixture

NAME = "fractalnet_c2_b2_patterns_1"
FIXTURE = os.path.join(REPO, "tests", "fixtures", "runs", NAME)


@pytest.fixture
def old_run(pattern_data, tmp_path, monkeypatch):  # noqa: F811
    shutil.copytree(FIXTURE, tmp_path / "runs" / NAME)
    (tmp_path / "data").mkdir()
    os.symlink(pattern_data, tmp_path / "data" / "patterns")
    monkeypatch.chdir(tmp_path)
    return os.path.join("runs", NAME)


def _rows(run_dir, name):
    with open(os.path.join(run_dir, name), newline="") as f:
        return list(csv.DictReader(f))


def _read(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return f.read()


def _eval(cli, run_dir, *args):
    result = cli("eval", run_dir, "--which", "last", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _assert_matches(res, row):
    assert res["count"] == 50
    assert res["error"] == pytest.approx(float(row["test_error"]), abs=1e-6)
    assert res["loss"] == pytest.approx(float(row["test_loss"]), abs=1e-4)


def test_an_old_run_evaluates_to_its_recorded_numbers(cli, old_run):
    _assert_matches(_eval(cli, old_run), _rows(old_run, "metrics.csv")[-1])
    _assert_matches(_eval(cli, old_run, "--column", "2"), _rows(old_run, "members.csv")[-1])


def test_an_old_run_aggregates(cli, old_run):
    result = cli("results", "runs")
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("fractalnet")]
    assert "60.00 (60.00 ± 0.00, 60.00)" in row


def test_an_old_run_resumes_one_more_epoch(cli, old_run):
    metrics_before = _read(old_run, "metrics.csv").splitlines()
    config_before = json.loads(_read(old_run, "config.json"))
    result = cli("train", "--resume", old_run, "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert f"Resumed {old_run} after epoch 2 of 3" in result.output
    # the recorded epochs stay as they were; the new one follows the same schedule
    assert _read(old_run, "metrics.csv").splitlines()[:3] == metrics_before
    rows = _rows(old_run, "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and float(rows[2]["lr"]) == pytest.approx(0.002)
    assert [(r["epoch"], r["name"]) for r in _rows(old_run, "members.csv")] == \
        [("1", "column2"), ("2", "column2"), ("3", "column2")]
    # config.json keeps every key (derived ones included); only the extended epochs differ, and the
    # training options added since are recorded at the values that reproduce the old run
    config_after = json.loads(_read(old_run, "config.json"))
    assert {k: config_after[k] for k in config_before} == dict(config_before, epochs=3)
    from gluonfuse.train.config import TrainConfig

    added = {k: v for k, v in config_after.items() if k not in config_before}
    assert added.pop("warmup_fraction") == 0  # derived: the warm-up (none) as a fraction of the run
    assert added and added == {k: v for k, v in TrainConfig.from_dict(config_before).to_dict().items() if k in added}
    status = json.loads(_read(old_run, "status.json"))
    assert (status["state"], status["epoch"], status["epochs"]) == ("finished", 3, 3)
    assert sorted(os.listdir(os.path.join(old_run, "checkpoints"))) == \
        ["best.json", "best.params", "epoch-0003.json", "epoch-0003.params", "epoch-0003.states"]
    _assert_matches(_eval(cli, old_run), rows[2])
    result = cli("results", "runs", "--format", "csv")
    assert result.exit_code == 0 and f",1,3,{100 * float(rows[2]['test_error']):.4f}," in result.output


def test_the_fixtures_command_still_trains_the_same_epochs(cli, old_run):
    """The fixture's own command (tests/fixtures/README.md) run by today's trainer: the same losses.

    Per-epoch reseeding makes a CPU run repeatable; 1e-3 leaves room for another CPU's arithmetic
    and still catches any change of initialisation, data order, augmentation or schedule.
    """
    config = json.loads(_read(old_run, "config.json"))
    result = cli("train", "--network", "fractalnet", "--arg", "columns=2", "--arg", "blocks=2",
                 "--arg", "widths=[8,16]", "--recipe", "fractal", "--dataset", "patterns", "--data-dir", "data/patterns", "--epochs", "2",
                 "--batch-size", "20", "--cpus", "2", "--seed", "0", "--log-interval", "4", "--keep-checkpoints", "1",
                 "--out", "again", "--quiet")
    assert result.exit_code == 0, result.output
    again = os.path.join("again", NAME)
    config_again = json.loads(_read(again, "config.json"))  # plus the training options added since, all off
    assert {k: config_again[k] for k in config} == dict(config, out_dir="again")
    for got, want in zip(_rows(again, "metrics.csv"), _rows(old_run, "metrics.csv")):
        assert got["lr"] == want["lr"]
        for key in ("train_loss", "test_loss"):
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-3), key
