"""End to end: `gluonfuse train`, `eval` and `predict` on a tiny generated dataset, on 2 CPU contexts."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, run_gluonfuse
from train_fixtures import *  # noqa: F401,F403 - fixtures
from train_fixtures import only_run, train_args


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def test_train_writes_the_run_directory(trained_run):
    run_dir, proc = trained_run
    assert os.path.basename(run_dir) == "cross_d14_w1_patterns_1"
    for name in ("config.json", "dataset_meta.json", "metrics.csv", "log.txt", "status.json", "curves.png",
                 "export/best-symbol.json", "export/best-0000.params", "export/best-meta.json",
                 "export/last-symbol.json", "export/last-0000.params", "export/last-meta.json",
                 "checkpoints/best.params", "checkpoints/epoch-0002.params", "checkpoints/epoch-0002.states"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["contexts"] == ["cpu(0)", "cpu(1)"]
    assert config["model_kwargs"] == {"depth": 14, "widen_factor": 1, "classes": 10}
    assert (config["optimizer"], config["momentum"], config["wd"], config["lr"]) == ("nag", 0.9, 1e-4, 0.1)
    assert config["lr_steps"] == [1]  # 1/2, 3/4, 7/8 of 2 epochs collapse to epoch 1
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [float(r["lr"]) for r in rows] == [0.1, pytest.approx(0.01)]
    for r in rows:
        for key in ("train_error", "train_top5_error", "test_error", "test_top5_error"):
            assert 0 <= float(r[key]) <= 1
    # the stripe patterns are easy: two epochs must learn something (chance is 90% error)
    assert float(rows[-1]["test_error"]) < 0.6
    status = json.load(open(os.path.join(run_dir, "status.json")))
    assert status["state"] == "finished" and status["epoch"] == 2 and status["epochs"] == 2
    assert status["best_test_error"] == min(float(r["test_error"]) for r in rows)
    log = open(os.path.join(run_dir, "log.txt")).read()
    assert "Epoch[1] Validation-accuracy=" in log and "Epoch[1] Time cost=" in log
    assert re.search(r"Epoch\[0\] Batch \[4\]\tSpeed: \d+\tloss: [\d.]+\([\d.]+\)\ttop1: [\d.]+\([\d.]+\)", log)
    assert "Test error" in proc.stdout and "Traceback" not in proc.stderr


def test_eval_equals_the_trainers_last_test_numbers(cli, trained_run, pattern_data):
    run_dir, _ = trained_run
    last = _metrics(run_dir)[-1]
    result = cli("eval", run_dir, "--which", "last", "--json")
    assert result.exit_code == 0, result.output
    res = json.loads(result.output)
    assert res["count"] == 50  # exactly the test set: 50 records in batches of 16 (last one padded)
    assert res["error"] == pytest.approx(float(last["test_error"]), abs=1e-6)
    assert res["top5_error"] == pytest.approx(float(last["test_top5_error"]), abs=1e-6)
    assert res["loss"] == pytest.approx(float(last["test_loss"]), abs=1e-4)
    # the exported symbol with plain MXNet gives the same numbers, here on 2 CPU contexts
    export = os.path.join(run_dir, "export")
    result = cli("eval", "--symbol", os.path.join(export, "last-symbol.json"), "--params",
                 os.path.join(export, "last-0000.params"), "--data",
                 os.path.join(pattern_data, "test.rec"), "--cpus", "2", "--batch-size", "7", "--json")
    assert result.exit_code == 0, result.output
    res2 = json.loads(result.output)
    assert res2["count"] == 50
    assert res2["error"] == pytest.approx(res["error"], abs=1e-6)
    assert res2["loss"] == pytest.approx(res["loss"], abs=1e-4)
    result = cli("eval", run_dir)
    assert result.exit_code == 0 and "top-1 error" in result.output and "on 50 images" in result.output


def test_predict_names_classes_on_any_image_size(cli, trained_run, tmp_path):
    import cv2

    from gluonfuse.train.synthetic import pattern

    run_dir, _ = trained_run
    rng = np.random.RandomState(5)
    paths = []
    for k, (size, ext) in enumerate([((80, 100), ".jpg"), ((32, 32), ".png"), ((17, 50), ".bmp")]):
        img = cv2.resize(pattern(k, 10, 32, rng)[:, :, ::-1], size[::-1], interpolation=cv2.INTER_NEAREST)
        paths.append(str(tmp_path / f"img{k}{ext}"))
        cv2.imwrite(paths[-1], img)
    gray = str(tmp_path / "gray.png")
    cv2.imwrite(gray, np.full((40, 40), 128, np.uint8))
    result = cli("predict", run_dir, *paths, gray, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    results = json.loads(result.output)
    assert [r["image"] for r in results] == paths + [gray]
    for r in results:
        assert len(r["top"]) == 3
        assert all(name.startswith("class") for name, _ in r["top"])
        probs = [p for _, p in r["top"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    result = cli("predict", run_dir, paths[0])
    assert result.exit_code == 0 and result.output.startswith(paths[0] + ": class")
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"hello")
    result = cli("predict", run_dir, str(bad))
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "OpenCV cannot read" in result.output


def _signal_after_first_epoch(args, out, sig):
    """Start ``gluonfuse ARGS``, send ``sig`` half a second after its first checkpoint; return the exit code."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "gluonfuse", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        marker = None
        while time.time() < deadline and proc.poll() is None:
            found = [os.path.join(r, "checkpoints", "epoch-0001.json") for r in
                     (os.path.join(out, d) for d in os.listdir(out))] if os.path.isdir(out) else []
            if found and os.path.isfile(found[0]):
                marker = found[0]
                break
            time.sleep(0.05)
        assert marker, "the first epoch never finished"
        time.sleep(0.5)  # into the second epoch
        os.kill(proc.pid, sig)
    finally:
        proc.wait()
    return proc.returncode


def test_resume_after_sigkill_mid_epoch_reproduces_the_uninterrupted_run(trained_run, pattern_data, tmp_path):
    reference = _metrics(trained_run[0])
    out = str(tmp_path / "runs")
    assert _signal_after_first_epoch(train_args(pattern_data, out), out, signal.SIGKILL) == -signal.SIGKILL
    run_dir = only_run(out)
    assert json.load(open(os.path.join(run_dir, "status.json")))["state"] == "running"
    resumed = run_gluonfuse("train", "--resume", run_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed" in resumed.stdout
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # per-epoch reseeding: the resumed run sees the same data order, crops and updates
    for got, want in zip(rows, reference):
        for key in ("train_loss", "train_error", "test_loss", "test_error", "test_top5_error"):
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-4), key
    assert json.load(open(os.path.join(run_dir, "status.json")))["state"] == "finished"
    assert os.path.isfile(os.path.join(run_dir, "export", "last-symbol.json"))


def test_sigterm_marks_the_run_failed(pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    code = _signal_after_first_epoch(train_args(pattern_data, out, "--epochs", "30"), out, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    status = json.load(open(os.path.join(only_run(out), "status.json")))
    assert status["state"] == "failed" and status["message"] == "terminated by SIGTERM"


@pytest.mark.parametrize("args, code, message", [
    (["--data-dir", "{missing}"], 1, "dataset directory not found"),
    (["--classes", "5"], 2, "does not match the dataset"),
    (["--depth", "3"], 2, "leaves a stage"),
    (["--gpus", "0"], 2, "no GPU"),
    (["--recipe", "fusoin"], 2, "Did you mean 'fusion'"),
    (["--network", "crosss"], 2, "Did you mean 'cross'"),
    (["--lr-steps", "3,1"], 2, "--lr-steps"),
    (["--batch-size", "1"], 2, "smaller than the 2 devices"),
    (["--kvstore", "devcie"], 2, "Did you mean 'device'"),
    (["--epochs", "0"], 2, "--epochs must be a positive integer, got 0"),
    (["--wd", "-1"], 2, "--wd must be >= 0"),
    (["--batch-size", "3", "--kvstore", "dist_sync"], 2, "--kvstore dist_sync trains as one worker"),
])
def test_bad_arguments_give_one_clear_line(cli, pattern_data, tmp_path, args, code, message):
    missing = str(tmp_path / "nowhere")
    args = [a.format(missing=missing) for a in args]
    base = train_args(pattern_data, str(tmp_path / "runs"))
    if "--gpus" in args:
        i = base.index("--cpus")
        del base[i:i + 2]
    result = cli(*base, *args)
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not os.path.exists(tmp_path / "runs") or not os.listdir(tmp_path / "runs")


def test_eval_and_train_bad_arguments(cli, tmp_path, trained_run):
    run_dir, _ = trained_run
    result = cli("train", "--resume", run_dir, "--lr", "0.5")
    assert result.exit_code == 2 and "only --epochs" in result.output and "lr" in result.output
    result = cli("eval", run_dir, "--column", "2")
    assert result.exit_code == 2 and "needs a FractalNet" in result.output
    result = cli("eval", run_dir, "--which", "newest")
    assert result.exit_code == 2 and "--which checkpoint: 'best', 'last' or an epoch number" in result.output
    result = cli("predict", run_dir, str(tmp_path / "any.png"), "--top-k", "0")
    assert result.exit_code == 2 and result.output == "Error: --top-k must be at least 1, got 0\n"
    result = cli("eval", str(tmp_path))
    assert result.exit_code == 1 and "not a run directory" in result.output
    result = cli("eval")
    assert result.exit_code == 2 and "RUN_DIR" in result.output
    result = cli("train", "--dataset", "cifar10")
    assert result.exit_code == 2 and "--network" in result.output


@pytest.mark.parametrize("args, message", [
    (["--resume", "{run}", "--arg", "dataset=x"], "--arg cannot set 'dataset'; use --dataset"),
    (["--resume", "{run}", "--arg", "data-dir=x"], "--arg cannot set 'data_dir'; use --data-dir"),
    (["--network", "cross", "--arg", "network=resnet"], "--arg cannot set 'network'; use --network"),
    (["--network", "cross", "--arg", "lr=0.5"], "--arg cannot set 'lr'; use --lr"),
    (["--network", "cross", "--arg", "preprocess_threads=4"], "--arg cannot set 'preprocess_threads'; use --threads"),
])
def test_arg_cannot_set_a_train_option(cli, tmp_path, args, message):
    result = cli("train", *[a.format(run=tmp_path) for a in args], "--out", str(tmp_path / "runs"))
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"Error: {message}"], result.output
    assert not os.path.exists(tmp_path / "runs")


def _help_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _listed_defaults(help_text):
    """``{recipe: value}`` and ``[(dataset, recipe or None, value)]`` from an option's ``[...]`` list."""
    from gluonfuse.train.config import RECIPES

    (listed,) = re.findall(r"\[([^\]]*)\]", help_text)
    per_recipe, _, departures = listed.partition("; ")
    if per_recipe.endswith(" in every recipe"):
        values = dict.fromkeys(RECIPES, per_recipe[:-len(" in every recipe")])
    else:
        values = dict(entry.split(" ", 1) for entry in per_recipe.split(", "))
    found = []
    for entry in filter(None, departures.split(", ")):
        where, value = entry.rsplit(" ", 1)
        dataset, _, recipe = where.partition(" with ")
        found.append((dataset, recipe or None, value))
    return values, found


@pytest.mark.parametrize("option", ["optimizer", "lr", "lr_factor", "lr_steps", "epochs", "batch_size", "wd",
                                    "momentum", "aug_type", "lr_schedule", "warmup_epochs", "label_smoothing", "ema",
                                    "cutout"])
def test_help_lists_each_recipes_default_as_the_run_gets_it(cli, option):
    from fractions import Fraction

    from gluonfuse.cli.train import train_cmd
    from gluonfuse.train.config import RECIPE_OPTIONS, RECIPES, resolve_config
    from gluonfuse.train.schedule import steps_from_fractions

    assert option in RECIPE_OPTIONS
    (param,) = [p for p in train_cmd.params if p.name == option]
    values, departures = _listed_defaults(param.help)
    assert list(values) == list(RECIPES)
    for recipe, text in values.items():
        got = resolve_config("cross", "cifar10", recipe=recipe)
        if option == "lr_steps":
            fractions = [] if text == "none" else text.split()
            assert got.lr_steps == steps_from_fractions(fractions, got.epochs), recipe
        elif option == "warmup_epochs":  # a fraction of the epochs
            assert got.warmup_epochs == float(Fraction(text) * got.epochs), recipe
        else:
            assert getattr(got, option) == _help_value(text), recipe
    for dataset, recipe, text in departures:
        for r in [recipe] if recipe else list(RECIPES):
            assert getattr(resolve_config("cross", dataset, recipe=r), option) == _help_value(text), (dataset, r)
    if option == "epochs":
        assert ("svhn", "fusion", "40") in departures  # docs/recipes.md#dataset-departures
    shown = " ".join(cli("train", "--help").output.split())
    assert " ".join(param.help.split()) in shown


def test_help_shows_the_defaults_no_recipe_sets():
    from gluonfuse.cli.train import train_cmd
    from gluonfuse.train.config import resolve_config

    config = resolve_config("cross", "cifar10")
    helps = {p.name: p.help for p in train_cmd.params}
    for option in ("kvstore", "dtype", "keep_checkpoints", "log_interval", "preprocess_threads", "out_dir"):
        assert re.search(rf"\(default {getattr(config, option)}/?\)", helps[option]), option


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_the_cli_imports_no_mxnet_before_gluonfuse_sets_threads():
    code = ("import os, sys; os.environ.pop('OMP_NUM_THREADS', None); import gluonfuse.cli; "
            "import gluonfuse.cli.train; print('mxnet' in sys.modules, os.environ.get('OMP_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")}
    env["PYTHONPATH"] = REPO
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split()
    assert out[0] == "False" and int(out[1]) >= 1
