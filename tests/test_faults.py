"""Fault injection: SIGKILL training, ``data prepare`` and ``im2rec`` at seeded moments, then rerun.

Each tool runs with ``GLUONFUSE_FAULT=POINT:N`` (:mod:`gluonfuse.faults`): the process kills itself
at the N-th time it reaches POINT - a training or test batch, a complete temporary file about to be
renamed onto its final name (a checkpoint, an export, metrics.csv, ...), a record about to be
packed. The moments are drawn (seeded) from the trace of an uninterrupted run, spread over the
kinds of moment. After each kill:

* training: every file under a final name in the run directory is whole (parses or loads, and the
  checkpoints verify against their checksums), ``results`` calls the run "died", and ``train
  --resume`` finishes it with the uninterrupted run's metrics.csv (every column but the timings);
* data prepare and im2rec: every output file under a final name is byte for byte the uninterrupted
  run's (whole) or absent, and rerunning the same command completes with identical output.

The default tier tries a few moments of each; the ``slow`` tier tries the rest (24 training moments,
10 of each data tool). The README's reliability section quotes the slow tier's counts.
"""
import csv
import glob
import json
import os
import pickle
import random
import signal
import subprocess
import time

import pytest

from conftest import run_gluonfuse
from train_fixtures import only_run, pattern_data, train_args  # noqa: F401 (a fixture)

SEED = 15
TRAIN_MOMENTS = {"batch": 9, "checkpoint": 9, "export": 3, "record": 3}  # 24 in all
DATA_MOMENTS = 10
FAST = 3  # moments of each tool in the default tier
TIMING_COLUMNS = ("images_per_sec", "seconds")


def _traced(args, trace, **kwargs):
    proc = run_gluonfuse(*args, env={"GLUONFUSE_FAULT_TRACE": str(trace)}, **kwargs)
    assert proc.returncode == 0, proc.stderr
    with open(trace) as f:
        return [line.rstrip("\n").split(" ", 1) for line in f]


def _moments(trace, kind_of, quota, seed=SEED):
    """``[(point, n, kind, detail)]``: seeded picks, ``quota[kind]`` of each kind, fast ones first."""
    counts, by_kind = {}, {}
    for name, detail in trace:
        counts[name] = counts.get(name, 0) + 1
        kind = kind_of(name, detail)
        if kind:
            by_kind.setdefault(kind, []).append((name, counts[name], kind, detail))
    rng = random.Random(seed)
    picks = {kind: rng.sample(by_kind[kind], min(n, len(by_kind[kind]))) for kind, n in quota.items()}
    ordered = []
    while any(picks.values()):  # round robin: the first FAST moments cover the kinds
        for kind in quota:
            if picks[kind]:
                ordered.append(picks[kind].pop())
    return ordered


def _killed(args, point, n, **kwargs):
    proc = run_gluonfuse(*args, env={"GLUONFUSE_FAULT": f"{point}:{n}"}, **kwargs)
    assert proc.returncode == -signal.SIGKILL, f"not killed at {point}:{n}: {proc.returncode} {proc.stderr[-2000:]}"
    return proc


def _final_files(root):
    """Files under their final names (the temporary ones are hidden ``.NAME.*.part``)."""
    return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
                  if os.path.isfile(p))


# ------------------------------------------------------------------------------------------ training

def _train_kind(name, detail):
    if name == "batch":
        return "batch"
    if name != "write":
        return None
    where = detail.replace(os.sep, "/")
    if "/checkpoints/" in where:
        return "checkpoint"
    return "export" if "/export/" in where else "record"  # metrics.csv, members.csv, status.json, curves


@pytest.fixture(scope="module")
def reference(pattern_data, tmp_path_factory):  # noqa: F811
    """An uninterrupted 3-epoch run, its trace and the moments to kill at."""
    out = str(tmp_path_factory.mktemp("reference"))
    args = train_args(pattern_data, out, "--epochs", "3")
    trace = _traced(args, os.path.join(out, "..", "trace.txt"))
    run_dir = only_run(out)
    # the moments once training is under way (a kill before config.json exists leaves nothing to resume)
    first = next(i for i, (name, _) in enumerate(trace) if name == "batch")
    skipped = {name: sum(1 for n, _ in trace[:first] if n == name) for name in ("batch", "write")}
    moments = [(p, n, kind, d) for p, n, kind, d in _moments(trace, _train_kind, TRAIN_MOMENTS)
               if n > skipped[p]]
    return {"run_dir": run_dir, "metrics": _metrics(run_dir), "moments": moments, "pattern_data": pattern_data}


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def _check_whole(run_dir):
    """Every final-named file of a run directory parses or loads; checkpoints match their checksums."""
    import mxnet as mx

    from gluonfuse.train.checkpoint import CheckpointStore

    for name in _final_files(run_dir):
        path = os.path.join(run_dir, name)
        if name.endswith(".json"):
            json.load(open(path))
        elif name.endswith(".csv"):
            rows = list(csv.reader(open(path, newline="")))
            assert rows and all(len(r) == len(rows[0]) for r in rows), name
        elif name.endswith(".params"):
            mx.nd.load(path)
        elif name.endswith(".states"):
            pickle.loads(open(path, "rb").read())
        elif name.endswith(".png"):
            assert open(path, "rb").read()[-8:-4] == b"IEND", name
    store = CheckpointStore(run_dir)
    for epoch in store.epochs():
        assert store.verify(epoch) is None
    if os.path.isfile(os.path.join(store.dir, "best.json")):
        assert store.verify("best") is None


def _kill_and_resume(reference, k, tmp_path):
    point, n, kind, detail = reference["moments"][k]
    out = str(tmp_path / "runs")
    _killed(train_args(reference["pattern_data"], out, "--epochs", "3"), point, n)
    run_dir = only_run(out)
    _check_whole(run_dir)
    status = json.load(open(os.path.join(run_dir, "status.json")))
    assert status["state"] == "running"
    results = run_gluonfuse("results", out)
    assert f"died (process {status['pid']} on {status['host']} is gone" in results.stdout + results.stderr
    resumed = run_gluonfuse("train", "--resume", run_dir, "--quiet")
    assert resumed.returncode == 0, f"{kind} moment {point}:{n} ({detail}): {resumed.stderr}"
    assert "taking the run over" in resumed.stdout
    _check_whole(run_dir)
    assert _metrics(run_dir) == reference["metrics"], f"{kind} moment {point}:{n} ({detail})"
    assert json.load(open(os.path.join(run_dir, "status.json")))["state"] == "finished"
    for which in ("best", "last"):
        assert os.path.isfile(os.path.join(run_dir, "export", f"{which}-symbol.json"))


def test_the_moments_cover_batches_checkpoint_writes_and_exports(reference):
    kinds = [m[2] for m in reference["moments"]]
    assert len(kinds) >= 20 and {"batch", "checkpoint", "export", "record"} <= set(kinds[:4])
    epochs = {m[3].split(" epoch ")[1].split()[0] for m in reference["moments"] if m[2] == "batch"}
    assert len(epochs) >= 2, epochs  # batches of more than one epoch


@pytest.mark.parametrize("k", range(FAST))
def test_training_killed_and_resumed(reference, k, tmp_path):
    _kill_and_resume(reference, k, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(FAST, sum(TRAIN_MOMENTS.values())))
def test_training_killed_and_resumed_all_moments(reference, k, tmp_path):
    if k >= len(reference["moments"]):
        pytest.skip("moment before training started")
    _kill_and_resume(reference, k, tmp_path)


def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact(reference, tmp_path):
    import shutil

    run_dir = str(tmp_path / "run")
    shutil.copytree(reference["run_dir"], run_dir)
    params = os.path.join(run_dir, "checkpoints", "epoch-0003.params")
    size = os.path.getsize(params)
    with open(params, "r+b") as f:
        f.truncate(100)
    resumed = run_gluonfuse("train", "--resume", run_dir, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoints/epoch-0003.params is damaged (100 bytes, expected {size:,}); resuming from epoch 2" \
        in resumed.stdout
    assert _metrics(run_dir) == reference["metrics"]
    _check_whole(run_dir)
    # a damaged best is reported by eval, and by a resume, which keeps it as it is
    best = os.path.join(run_dir, "checkpoints", "best.params")
    with open(best, "r+b") as f:
        f.truncate(100)
    evaluated = run_gluonfuse("eval", run_dir, "--which", "best")
    assert evaluated.returncode == 1 and "checkpoints/best.params is damaged (100 bytes" in evaluated.stderr
    resumed = run_gluonfuse("train", "--resume", run_dir, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoints/best.params is damaged (100 bytes" in resumed.stdout
    assert "the best weights are not exported" in resumed.stdout
    assert os.path.getsize(best) == 100


def test_a_run_whose_process_lives_is_not_taken_over(reference, tmp_path):
    import shutil

    from gluonfuse.train import liveness
    from gluonfuse.train.rundir import write_status

    run_dir = str(tmp_path / "run")
    shutil.copytree(reference["run_dir"], run_dir)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        write_status(run_dir, state="running", **liveness.owner(sleeper.pid))
        refused = run_gluonfuse("train", "--resume", run_dir)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            f"Error: {run_dir} is being trained by process {sleeper.pid} on {liveness.owner()['host']}; "
            "stop it first (or wait for it to finish) before --resume")
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.1)
    assert liveness.state_of(json.load(open(os.path.join(run_dir, "status.json")))) == "died"


# ------------------------------------------------------------------------------ data prepare, im2rec

def _data_kind(name, detail):
    return name if name in ("record", "write") else None


def _snapshot(root):
    return {name: open(os.path.join(root, name), "rb").read() for name in _final_files(root)}


@pytest.fixture(scope="module")
def prepare_case(tmp_path_factory):
    import datagen

    base = tmp_path_factory.mktemp("prepare")
    archive = str(base / "cifar-10-python.tar.gz")
    datagen.cifar10_archive(archive, per_batch=8, n_test=12)
    args = ["data", "prepare", "cifar10", "--src", archive, "--num-thread", "2", "--quiet"]
    trace = _traced([*args, "--out", str(base / "reference")], base / "trace.txt")
    return {"args": args, "want": _snapshot(str(base / "reference")),
            "moments": _moments(trace, _data_kind, {"record": DATA_MOMENTS - 4, "write": 4})}


@pytest.fixture(scope="module")
def im2rec_case(tmp_path_factory):
    import datagen

    base = tmp_path_factory.mktemp("im2rec")
    root = str(base / "images")
    datagen.image_folder(root, per_class=(6, 7, 5))

    def listed(prefix):
        proc = run_gluonfuse("im2rec", prefix, root, "--list", "--recursive", "--train-ratio", "0.7",
                             "--test-ratio", "0.3")
        assert proc.returncode == 0, proc.stderr
        return prefix

    args = [root, "--num-thread", "2", "--quiet"]
    ref = listed(str(base / "reference" / "d"))
    trace = _traced(["im2rec", ref, *args], base / "trace.txt")
    return {"args": args, "listed": listed, "base": base, "want": _snapshot(str(base / "reference")),
            "moments": _moments(trace, _data_kind, {"record": DATA_MOMENTS - 4, "write": 4})}


def _interrupt_and_rerun(command, out, want, moment):
    point, n, _, detail = moment
    _killed(command, point, n)
    for name, data in _snapshot(out).items():  # whole (the reference's bytes) or not there at all
        assert name not in want or data == want[name], f"{name} is partial after a kill at {point}:{n} {detail}"
        assert name in want or name.endswith(".lst"), name
    rerun = run_gluonfuse(*command)
    assert rerun.returncode == 0, rerun.stderr
    assert _snapshot(out) == want


def _prepare(case, k, tmp_path):
    out = str(tmp_path / "out")
    _interrupt_and_rerun([*case["args"], "--out", out], out, case["want"], case["moments"][k])


def _im2rec(case, k, tmp_path):
    out = str(tmp_path / "out")
    prefix = case["listed"](os.path.join(out, "d"))
    _interrupt_and_rerun(["im2rec", prefix, *case["args"]], out, case["want"], case["moments"][k])


TOOLS = {"prepare": _prepare, "im2rec": _im2rec}


@pytest.mark.parametrize("tool, k", [(tool, k) for tool in TOOLS for k in range(FAST)])
def test_data_tool_killed_and_rerun(tool, k, request, tmp_path):
    TOOLS[tool](request.getfixturevalue(f"{tool}_case"), k, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("tool, k", [(tool, k) for tool in TOOLS for k in range(FAST, DATA_MOMENTS)])
def test_data_tool_killed_and_rerun_all_moments(tool, k, request, tmp_path):
    TOOLS[tool](request.getfixturevalue(f"{tool}_case"), k, tmp_path)
