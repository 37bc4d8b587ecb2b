"""The local parameter-server launcher on loopback: success, failure teardown, Ctrl-C, hand-over."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO, run_gluonfuse
from gluonfuse.launch import job_environment, mxnet_launcher_command

WORKER = textwrap.dedent("""
    import os, sys, time
    import mxnet as mx
    kv = mx.kv.create("dist_sync")
    with open(os.path.join(sys.argv[1], "pid-%d" % kv.rank), "w") as f:
        f.write(str(os.getpid()))
    kv.init(3, mx.nd.ones((2, 3)))
    kv.push(3, mx.nd.ones((2, 3)) * (kv.rank + 1))
    out = mx.nd.zeros((2, 3))
    kv.pull(3, out=out)
    print("rank %d of %d sum %g" % (kv.rank, kv.num_workers, out.asnumpy()[0, 0]), flush=True)
    mode = sys.argv[2]
    if mode == "fail" and kv.rank == 1:
        # a failing dist worker must leave with os._exit: a normal exit runs ps-lite's finalize
        # barrier, which waits forever for the other workers (gluonfuse train does the same)
        sys.stdout.flush()
        os._exit(3)
    if mode == "sigkill" and kv.rank == 1:
        os.kill(os.getpid(), 9)
    if mode in ("fail", "sigkill", "hang"):
        time.sleep(600)   # rank 0 would wait forever: the launcher must stop it
""")


@pytest.fixture
def worker(tmp_path):
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pids(tmp_path):
    return [int((tmp_path / name).read_text()) for name in os.listdir(tmp_path) if name.startswith("pid-")]


def test_two_workers_aggregate_through_the_server(worker, tmp_path):
    result = run_gluonfuse("launch", "-n", "2", "-s", "1", "--", sys.executable, worker, tmp_path, "ok",
                           timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # each worker pushed rank+1; the server summed them: 1 + 2
    assert result.stdout.count("sum 3") == 2
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout


@pytest.mark.parametrize("mode,needle", [("fail", "exited with code 3"), ("sigkill", "killed by signal 9")])
def test_a_dead_worker_tears_the_job_down(worker, tmp_path, mode, needle):
    start = time.time()
    result = run_gluonfuse("launch", "-n", "2", "--", sys.executable, worker, tmp_path, mode, timeout=120)
    assert result.returncode == 1
    assert needle in result.stdout and "stopping the rest of the job" in result.stdout
    assert time.time() - start < 60  # bounded: the surviving worker sleeps for 600 s
    pids = _pids(tmp_path)
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)


def test_ctrl_c_stops_the_whole_job(worker, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "gluonfuse", "launch", "-n", "2", "--", sys.executable,
                             str(worker), str(tmp_path), "hang"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while len(_pids(tmp_path)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(_pids(tmp_path)) == 2, "workers did not start"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted" in out
    assert all(_gone(pid) for pid in _pids(tmp_path))


def test_loopback_environment():
    env, threads = job_environment(2, 1, 9000)
    assert env["DMLC_PS_ROOT_URI"] == env["DMLC_NODE_HOST"] == "127.0.0.1"
    assert env["DMLC_NUM_WORKER"] == "2" and env["DMLC_NUM_SERVER"] == "1"
    assert threads >= 1


def test_ssh_hands_over_to_mxnets_launcher(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("node1\nnode2\n")
    argv = mxnet_launcher_command(["gluonfuse", "train", "--kvstore", "dist_sync"], 2, 1, "ssh", str(hosts))
    assert argv[1].endswith(os.path.join("mxnet", "tools", "launch.py")) and os.path.isfile(argv[1])
    assert argv[2:] == ["-n", "2", "-s", "1", "--launcher", "ssh", "-H", str(hosts),
                        "gluonfuse", "train", "--kvstore", "dist_sync"]


@pytest.mark.parametrize("args,needle", [
    (["launch", "-n", "2", "--launcher", "ssh", "--", "true"], "needs -H HOSTFILE"),
    (["launch", "-n", "2", "--launcher", "ssh", "-H", "/nonexistent", "--", "true"], "host file not found"),
    (["launch", "-n", "2", "-H", "/tmp/h", "--", "true"], "for the ssh and mpi launchers"),
])
def test_launch_bad_arguments(args, needle):
    result = run_gluonfuse(*args)
    assert result.returncode == 2 and needle in result.stderr
