"""Distributed training on loopback (1 server, 2 workers of 1 CPU context each) and mixed precision.

The distributed runs take 10-20 s each (four processes import mxnet) and are marked slow.
"""
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

from conftest import REPO, process_gone, run_gluonfuse
from train_fixtures import *  # noqa: F401,F403 - fixtures
from train_fixtures import only_run

# cross depth 14 on 160 training images: 5 steps of a global batch of 32 (16 per worker) per epoch;
# no augmentation, so the data order is the only randomness
# One OpenMP thread per process everywhere: MKLDNN's sums depend on the thread count, and compared
# runs must do the same arithmetic.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
DIST_ARGS = ["--network", "cross", "--depth", "14", "--dataset", "patterns", "--batch-size", "32", "--seed", "0",
             "--aug-type", "0", "--log-interval", "2", "--quiet"]


def launch_args(data_dir, out_dir, *extra, workers=2):
    return ["launch", "-n", str(workers), "-s", "1", "--", sys.executable, "-m", "gluonfuse", "train", *DIST_ARGS,
            "--data-dir", data_dir, "--out", out_dir, *extra]


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def _read(run_dir, name):
    with open(os.path.join(run_dir, name)) as f:
        return f.read()


def _digests(run_dir):
    """Per-epoch parameter digests logged by rank 0 (log.txt) and rank 1 (worker-1.log)."""
    pattern = re.compile(r"Epoch\[(\d+)\] rank (\d) parameters sha1 ([0-9a-f]{40})")
    found = {}
    for name in ("log.txt", "worker-1.log"):
        for epoch, rank, digest in pattern.findall(_read(run_dir, name)):
            found.setdefault(int(epoch), {})[int(rank)] = digest
    return found


def _file_labels(rec_path):
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(rec_path, "r")
    labels = []
    while True:
        item = reader.read()
        if item is None:
            break
        labels.append(int(mx.recordio.unpack(item)[0].label))
    reader.close()
    return labels


@pytest.fixture(scope="module")
def sync_run(pattern_data, tmp_path_factory):
    """A finished 2-epoch dist_sync job: 1 server, 2 workers."""
    out = str(tmp_path_factory.mktemp("dist_sync"))
    proc = run_gluonfuse(*launch_args(pattern_data, out, "--epochs", "2", "--kvstore", "dist_sync"), timeout=300,
                         env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return only_run(out), proc


def reference_first_epoch(run_dir, out):
    """The run's first epoch in one process on 2 CPU contexts, context r getting rank r's batches.

    Saves the parameters to ``out``.params and the exact test numbers to ``out``.json. Runs in a
    fresh process with one OpenMP thread (see ONE_THREAD).
    """
    import mxnet as mx

    from gluonfuse.train.evaluate import evaluate

    from gluonfuse.models import get_model
    from gluonfuse.train.checkpoint import epoch_seed, seed_everything
    from gluonfuse.train.data import record_iter
    from gluonfuse.train.step import Step, average_running_stats, initialize, make_trainer

    cfg = json.loads(_read(run_dir, "config.json"))
    contexts = [mx.cpu(0), mx.cpu(1)]
    seed_everything(cfg["seed"])
    net = get_model(cfg["network"], **cfg["model_kwargs"])
    initialize(net, contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    step = Step(net, make_trainer(net, cfg["optimizer"], cfg["lr"], cfg["wd"], cfg["momentum"], "device"), contexts)
    seed = epoch_seed(cfg["seed"], 0)
    seed_everything(seed)
    parts = [record_iter(os.path.join(cfg["data_dir"], "train.rec"), cfg["batch_size"] // 2, cfg["input_shape"],
                         cfg["mean"], cfg["std"], aug_type=cfg["aug_type"], shuffle=True, seed=seed,
                         threads=cfg["preprocess_threads"], num_parts=2, part_index=rank) for rank in (0, 1)]
    steps = 0
    for batches in zip(*parts):
        data = [b.data[0].as_in_context(c) for b, c in zip(batches, contexts)]
        label = [b.label[0].as_in_context(c) for b, c in zip(batches, contexts)]
        step(data, label, cfg["batch_size"])
        steps += 1
    assert steps == 5
    average_running_stats(net)
    net.save_parameters(out + ".params")
    test = evaluate(net, record_iter(os.path.join(cfg["data_dir"], "test.rec"), 25, cfg["input_shape"], cfg["mean"],
                                     cfg["std"]), contexts, cfg["classes"], expected=50)
    with open(out + ".json", "w") as f:
        json.dump(test, f)


@pytest.mark.slow
def test_two_workers_train_like_one_process_with_two_devices(sync_run, pattern_data, tmp_path):
    import mxnet as mx

    run_dir, proc = sync_run
    assert "Test error" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    config = json.loads(_read(run_dir, "config.json"))
    assert (config["kvstore"], config["num_workers"], config["batch_size"]) == ("dist_sync", 2, 32)
    # rank 0 writes the run; rank 1 only its own log
    assert json.loads(_read(run_dir, "status.json"))["state"] == "finished"
    assert [r["epoch"] for r in _metrics(run_dir)] == ["1", "2"]
    assert os.path.isfile(os.path.join(run_dir, "export", "best-symbol.json"))
    assert not os.path.exists(os.path.join(run_dir, "worker-0.log"))
    assert "Epoch[1] Validation-accuracy=" in _read(run_dir, "log.txt")

    # both workers hold identical weights after every epoch
    digests = _digests(run_dir)
    assert sorted(digests) == [0, 1] and all(d[0] == d[1] for d in digests.values()), digests

    # each read its own half of train.rec: the logged label counts are those of its records
    labels = _file_labels(os.path.join(pattern_data, "train.rec"))
    for rank, name, (begin, end) in ((0, "log.txt", (0, 80)), (1, "worker-1.log", (80, 160))):
        line = re.search(rf"Epoch\[0\] rank {rank} read (\d+) records of train.rec \(records (\d+)\.\.(\d+)\), "
                         r"per class ([\d,]+)", _read(run_dir, name))
        assert line, name
        assert (int(line.group(1)), int(line.group(2)), int(line.group(3))) == (80, begin, end - 1)
        assert [int(c) for c in line.group(4).split(",")] == np.bincount(labels[begin:end], minlength=10).tolist()

    # the same numbers as one process whose 2 devices get the two workers' batches
    out = str(tmp_path / "reference")
    code = f"import test_dist; test_dist.reference_first_epoch({run_dir!r}, {out!r})"
    ref = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
                                  **ONE_THREAD))
    assert ref.returncode == 0, ref.stderr
    saved = mx.nd.load(os.path.join(run_dir, "checkpoints", "epoch-0001.params"))
    mine = mx.nd.load(out + ".params")
    assert sorted(saved) == sorted(mine)
    for name, value in saved.items():
        np.testing.assert_allclose(value.asnumpy(), mine[name].asnumpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    with open(out + ".json") as f:
        expected = json.load(f)
    first = _metrics(run_dir)[0]
    assert float(first["test_error"]) == pytest.approx(expected["error"], abs=1e-6)
    assert float(first["test_loss"]) == pytest.approx(expected["loss"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kvstore", ["dist_device_sync", "dist_async"])
def test_device_sync_and_async_jobs_run(kvstore, sync_run, pattern_data, tmp_path):
    import mxnet as mx

    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*launch_args(pattern_data, out, "--epochs", "1", "--kvstore", kvstore), timeout=300,
                         env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(out)
    assert json.loads(_read(run_dir, "status.json"))["state"] == "finished"
    row = _metrics(run_dir)[0]
    assert all(np.isfinite(float(row[k])) for k in ("train_loss", "test_loss", "test_error"))
    # dist_async: after the epoch every worker pulled the servers' weights
    digests = _digests(run_dir)
    assert digests[0][0] == digests[0][1]
    record = json.loads(_read(run_dir, os.path.join("checkpoints", "epoch-0001.json")))
    params = mx.nd.load(os.path.join(run_dir, "checkpoints", "epoch-0001.params"))
    if kvstore == "dist_device_sync":
        # the same arithmetic as dist_sync on CPU contexts: the same first epoch
        assert record["optimizer_state"] is True
        reference = mx.nd.load(os.path.join(sync_run[0], "checkpoints", "epoch-0001.params"))
        for name, value in reference.items():
            np.testing.assert_allclose(params[name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-6)
    else:
        # the servers keep dist_async's optimizer state, so the checkpoint cannot hold it
        assert record["optimizer_state"] is False
        assert os.path.getsize(os.path.join(run_dir, "checkpoints", "epoch-0001.states")) == 0


def _pid(run_dir, name, rank):
    match = re.search(rf"worker rank {rank} of 2 \(pid (\d+)", _read(run_dir, name))
    assert match, name
    return int(match.group(1))


@pytest.mark.slow
def test_a_killed_worker_stops_the_job_and_resume_finishes_it(sync_run, pattern_data, tmp_path):
    out = str(tmp_path / "runs")
    env = dict(os.environ, PYTHONPATH=REPO, **ONE_THREAD)
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gluonfuse",
                                 *launch_args(pattern_data, out, "--epochs", "3", "--kvstore", "dist_sync")],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 240
            marker = None
            while time.time() < deadline and proc.poll() is None and marker is None:
                runs = os.listdir(out) if os.path.isdir(out) else []
                if runs and os.path.isfile(os.path.join(out, runs[0], "checkpoints", "epoch-0001.json")):
                    marker = os.path.join(out, runs[0])
                time.sleep(0.05)
            assert marker, "the first epoch never finished"
            victim, survivor = _pid(marker, "worker-1.log", 1), _pid(marker, "log.txt", 0)
            os.kill(victim, signal.SIGKILL)
            start = time.time()
            code = proc.wait(timeout=60)
            assert time.time() - start < 30  # torn down, not hung in ps-lite's barrier
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text()
    assert code == 1, output
    assert f"(pid {victim}) was killed by signal 9; stopping the rest of the job" in output
    assert process_gone(survivor)
    run_dir = only_run(out)
    status = json.loads(_read(run_dir, "status.json"))
    assert status["state"] == "failed" and status["message"] == "terminated by SIGTERM"

    resumed = run_gluonfuse("launch", "-n", "2", "-s", "1", "--", sys.executable, "-m", "gluonfuse", "train",
                            "--resume", run_dir, "--quiet", timeout=300, env=ONE_THREAD)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resumed" in _read(run_dir, "log.txt") and "Resumed" in _read(run_dir, "worker-1.log")
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert json.loads(_read(run_dir, "status.json"))["state"] == "finished"
    # epochs 1-2 have the same lr as the 2-epoch run: resuming reproduces the uninterrupted job
    for got, want in zip(rows[:2], _metrics(sync_run[0])):
        for key in ("lr", "train_loss", "train_error", "test_loss", "test_error"):
            assert float(got[key]) == pytest.approx(float(want[key]), abs=1e-5), key
    assert all(d[0] == d[1] for d in _digests(run_dir).values())


@pytest.mark.slow
def test_a_failing_worker_fails_the_job_with_its_message(pattern_data, tmp_path):
    # both workers see the loss explode; each leaves with os._exit(1) instead of hanging in ps-lite
    out = str(tmp_path / "runs")
    proc = run_gluonfuse(*launch_args(pattern_data, out, "--epochs", "2", "--kvstore", "dist_sync", "--lr", "1e9"),
                         timeout=120, env=ONE_THREAD)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Error: non-finite training loss" in proc.stdout and "exited with code 1" in proc.stdout
    status = json.loads(_read(only_run(out), "status.json"))
    assert status["state"] == "failed" and "non-finite training loss" in status["message"]


@pytest.mark.slow
def test_workers_without_seed_share_rank_0s_seed(pattern_data, tmp_path):
    # each worker draws a seed when --seed is not given; the job must train with rank 0's (the one
    # config.json keeps for --resume) on every rank
    args = launch_args(pattern_data, str(tmp_path / "runs"), "--epochs", "1", "--kvstore", "dist_sync")
    at = args.index("--seed")
    del args[at:at + 2]
    proc = run_gluonfuse(*args, timeout=300, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(str(tmp_path / "runs"))
    seeds = [re.search(r"start with arguments .*'seed': (\d+)", _read(run_dir, name)).group(1)
             for name in ("log.txt", "worker-1.log")]
    assert seeds[0] == seeds[1] == str(json.loads(_read(run_dir, "config.json"))["seed"]), seeds


@pytest.mark.slow
def test_a_failing_worker_leaves_in_debug_mode_too(tmp_path):
    # GLUONFUSE_DEBUG=1 re-raises instead of exiting with a code; a worker must still leave with
    # os._exit (after the traceback), not wait forever in ps-lite's finalize barrier
    args = launch_args(str(tmp_path / "missing"), str(tmp_path / "runs"), "--epochs", "1", "--kvstore", "dist_sync")
    env = dict(os.environ, PYTHONPATH=REPO, GLUONFUSE_DEBUG="1", **ONE_THREAD)
    proc = subprocess.Popen([sys.executable, "-m", "gluonfuse", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        output = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.terminate()  # the launcher stops the job's processes (a kill would orphan them)
            proc.communicate(timeout=30)
    assert proc.returncode == 1, output
    assert "Traceback" in output and "dataset directory not found" in output, output
    assert "exited with code 1" in output, output


def test_run_worker_leaves_on_every_failure(monkeypatch, capsys):
    from gluonfuse.train import dist

    left = []

    def leave(code):
        left.append(code)

    monkeypatch.setattr(dist, "leave", leave)
    assert dist.run_worker(lambda: 7) == 7 and left == []
    with pytest.raises(SystemExit):
        dist.run_worker(sys.exit, 0)
    assert left == []
    for code, want in ((2, 2), ("bad input", 1)):
        dist.run_worker(sys.exit, code)
        assert left.pop() == want
    assert "bad input" in capsys.readouterr().err

    def fail():
        raise RuntimeError("boom")

    dist.run_worker(fail)
    assert left == [1] and "RuntimeError: boom" in capsys.readouterr().err


# ---------------------------------------------------------------- fast: definitions and refusals

def test_batch_size_is_global_over_workers_and_devices():
    from gluonfuse.train.dist import shard_range, worker_batch

    assert worker_batch(64, 2, 1) == 32 and worker_batch(64, 4, 2) == 16
    with pytest.raises(ValueError, match=r"must divide by 4 \(e.g. 28 or 32\)"):
        worker_batch(30, 4, 1)
    with pytest.raises(ValueError, match="fewer than its 4 devices"):
        worker_batch(4, 2, 4)
    assert [shard_range(70, 4, r) for r in range(4)] == [(0, 18), (18, 36), (36, 54), (54, 70)]


def test_steps_and_kvstore_names_have_one_definition():
    from gluonfuse.train.config import KVSTORES
    from gluonfuse.train.dist import DIST_KVSTORES, is_distributed, job_size, steps_per_epoch

    assert [steps_per_epoch(n, 32) for n in (1, 32, 160, 161)] == [1, 1, 5, 6]
    assert [k for k in KVSTORES if is_distributed(k)] == list(DIST_KVSTORES)
    with pytest.raises(ValueError, match="use kvstore dist_sync, dist_device_sync or dist_async"):
        job_size("local", {"DMLC_ROLE": "worker", "DMLC_NUM_WORKER": "2"})


def test_parts_of_a_rec_are_disjoint_and_complete(pattern_data):
    from gluonfuse.train.data import record_iter
    from gluonfuse.train.dist import shard_range

    rec = os.path.join(pattern_data, "train.rec")

    def labels(parts, index, shuffle):
        out = []
        for batch in record_iter(rec, 16, (3, 32, 32), (0, 0, 0), (1, 1, 1), shuffle=shuffle, seed=3,
                                 num_parts=parts, part_index=index):
            out += batch.label[0].asnumpy()[:16 - batch.pad].astype(int).tolist()
        return out

    everything = _file_labels(rec)
    for parts in (2, 3):
        for index in range(parts):
            begin, end = shard_range(len(everything), parts, index)
            assert labels(parts, index, False) == everything[begin:end]
            assert sorted(labels(parts, index, True)) == sorted(everything[begin:end])  # shuffled within


def test_distributed_kvstores_need_a_job(cli, pattern_data, tmp_path):
    from gluonfuse.train.dist import job_size

    result = cli("train", *DIST_ARGS, "--data-dir", pattern_data, "--out", str(tmp_path / "runs"),
                 "--kvstore", "dist_sync")
    assert result.exit_code == 2 and "gluonfuse launch -n WORKERS" in result.output, result.output
    assert not os.path.exists(tmp_path / "runs")
    with pytest.raises(ValueError, match="trains on one machine; use kvstore dist_sync"):
        job_size("device", {"DMLC_ROLE": "worker", "DMLC_NUM_WORKER": "2"})
    assert job_size("dist_async", {"DMLC_ROLE": "worker", "DMLC_NUM_WORKER": "3"}) == 3


def test_a_job_shares_the_cores_between_its_workers(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text("import os, mxnet as mx\nkv = mx.kv.create('dist_sync')\n"
                      "print('threads', os.environ['OMP_NUM_THREADS'], flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GLUONFUSE_DEFAULT_OMP_NUM_THREADS")}
    env["PYTHONPATH"] = REPO
    proc = subprocess.run([sys.executable, "-m", "gluonfuse", "launch", "-n", "2", "--", sys.executable, str(worker)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert proc.stdout.count(f"threads {share}") == 2, proc.stdout
    env["OMP_NUM_THREADS"] = "3"  # the user's choice stands
    proc = subprocess.run([sys.executable, "-m", "gluonfuse", "launch", "-n", "2", "--", sys.executable, str(worker)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("threads 3") == 2, proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--dtype", "float16"], "--dtype float16 runs on GPUs only"),
    (["--dtype", "bfloat16", "--gpus", "0"], "--dtype bfloat16 runs on CPUs"),
    (["--dtype", "float16", "--gpus", "0", "--kvstore", "dist_async"], "cannot use --kvstore dist_async"),
    (["--dtype", "float16", "--gpus", "0"], "no GPU"),
    (["--dtype", "float61"], "Did you mean 'float16'"),
    (["--kvstore", "dist_synk"], "Did you mean 'dist_sync'"),
])
def test_precision_refusals_are_one_clear_line(cli, pattern_data, tmp_path, args, message):
    result = cli("train", *DIST_ARGS, "--data-dir", pattern_data, "--out", str(tmp_path / "runs"), *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output


def test_bfloat16_needs_native_support():
    from gluonfuse.train.precision import check_support, cpu_flags

    with pytest.raises(ValueError, match="avx512_bf16 or amx_bf16"):
        check_support("bfloat16", flags={"sse4_2", "avx2", "avx512f"}, mkldnn=True)
    with pytest.raises(ValueError, match="MKLDNN"):
        check_support("bfloat16", flags={"avx512_bf16"}, mkldnn=False)
    check_support("bfloat16", flags={"amx_bf16"}, mkldnn=True)
    check_support("float16", flags=set(), mkldnn=False)  # checked against the devices instead
    assert "fpu" in cpu_flags() or not os.path.isfile("/proc/cpuinfo")


def test_mixed_precision_is_process_wide():
    # amp.init cannot be undone: a second, float32 training in the same process is refused
    code = ("from gluonfuse.train import precision\nprecision.activate('bfloat16')\nprecision.activate('bfloat16')\n"
            "try:\n    precision.activate('float32')\nexcept ValueError as e:\n    print('refused:', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert "refused: this process already runs mixed precision" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_bfloat16_trains_and_exports_float32(pattern_data, tmp_path):
    import mxnet as mx

    from gluonfuse.export import export_model, load_exported
    from gluonfuse.train.evaluate import evaluate_run
    from gluonfuse.train.precision import check_support
    from gluonfuse.train.rundir import load_run

    try:
        check_support("bfloat16")
    except ValueError as exc:
        pytest.skip(str(exc))
    out = str(tmp_path / "runs")
    proc = run_gluonfuse("train", *DIST_ARGS, "--data-dir", pattern_data, "--out", out, "--epochs", "2",
                         "--dtype", "bfloat16", timeout=300)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(out)
    assert json.loads(_read(run_dir, "config.json"))["dtype"] == "bfloat16"
    rows = _metrics(run_dir)
    losses = [float(r["train_loss"]) for r in rows]
    assert all(np.isfinite(losses)) and losses[1] < losses[0]
    # the export is float32: no casts in the graph, float32 weights, the float32 network's graph
    export = os.path.join(run_dir, "export")
    graph = json.loads(_read(export, "last-symbol.json"))
    assert not {n["op"] for n in graph["nodes"]} & {"amp_cast", "amp_multicast"}
    assert {v.dtype for v in mx.nd.load(os.path.join(export, "last-0000.params")).values()} == {np.float32}
    assert json.loads(_read(export, "last-meta.json"))["trained_dtype"] == "bfloat16"
    net = load_run(run_dir).build_network("last")
    plain = export_model(net, str(tmp_path / "plain"), name="last")
    assert json.loads(_read(str(tmp_path / "plain"), "last-symbol.json"))["nodes"] == graph["nodes"]
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (4, 3, 32, 32)))
    deployed = load_exported(os.path.join(export, "last-symbol.json"), os.path.join(export, "last-0000.params"))
    np.testing.assert_allclose(deployed(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    assert os.path.isfile(plain["params"])
    # the trainer's test numbers were computed in bfloat16: close to float32's, not equal
    fp32 = evaluate_run(run_dir, which="last")
    assert fp32["loss"] == pytest.approx(float(rows[-1]["test_loss"]), abs=0.2)
    assert fp32["loss"] != pytest.approx(float(rows[-1]["test_loss"]), abs=1e-6)


@pytest.mark.slow
def test_every_role_can_run_the_train_command(pattern_data, tmp_path):
    """mxnet's ssh/mpi launcher starts the same command as scheduler, servers and workers."""
    from gluonfuse.launch import free_port, job_environment

    shared, _ = job_environment(2, 1, free_port())
    command = [sys.executable, "-m", "gluonfuse", "train", *DIST_ARGS, "--data-dir", pattern_data,
               "--out", str(tmp_path / "runs"), "--epochs", "1", "--kvstore", "dist_sync"]
    procs = [subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=REPO, DMLC_ROLE=role, **shared, **ONE_THREAD),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for role in ("scheduler", "server", "worker", "worker")]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    assert json.loads(_read(only_run(str(tmp_path / "runs")), "status.json"))["state"] == "finished"


@pytest.mark.slow
def test_bench_dist_runs():
    """tools/bench_dist.py end to end on a tiny input (speed itself is the benchmark's job)."""
    if os.path.join(REPO, "tools") not in sys.path:
        sys.path.insert(0, os.path.join(REPO, "tools"))
    import bench_common
    import bench_dist

    res = bench_dist.run(bench_common.section_args(bench_dist, ["--images", "80", "--epochs", "1", "--batch-size", "32"]))
    assert res["workers"] == 2 and res["single"]["images_per_sec"] > 0 and res["job"]["images_per_sec"] > 0
    assert "dist_sync" in res["markdown"]
