"""Checkpoint checksums (gluonfuse.train.checkpoint) and run liveness (gluonfuse.train.liveness)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from gluonfuse.errors import DataError
from gluonfuse.train import liveness
from gluonfuse.train.checkpoint import CheckpointStore


def _net_and_trainer():
    import mxnet as mx
    from mxnet import gluon

    net = gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    return net, trainer


@pytest.fixture
def store(tmp_path):
    """A checkpoint store with epochs 1..3 and best = epoch 2."""
    net, trainer = _net_and_trainer()
    store = CheckpointStore(str(tmp_path), keep=3)
    for epoch in (1, 2, 3):
        if epoch == 2:
            store.save_best(epoch, net, {"test": {"error": 0.5}})
        store.save(epoch, net, trainer, {"best": {"epoch": 2, "test_error": 0.5}})
    return store


def _truncate(path, size=100):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_each_checkpoint_records_the_size_and_sha256_of_its_files(store):
    record = json.load(open(os.path.join(store.dir, "epoch-0003.json")))
    for ext in ("params", "states"):
        path = os.path.join(store.dir, f"epoch-0003.{ext}")
        assert record["files"][ext]["bytes"] == os.path.getsize(path)
        assert len(record["files"][ext]["sha256"]) == 64
    best = json.load(open(os.path.join(store.dir, "best.json")))
    assert best["files"]["params"]["bytes"] == os.path.getsize(os.path.join(store.dir, "best.params"))
    assert all(store.verify(e) is None for e in (1, 2, 3, "best"))


def test_verify_names_the_damaged_file_and_how(store):
    params = os.path.join(store.dir, "epoch-0003.params")
    size = os.path.getsize(params)
    _truncate(params)
    assert store.verify(3) == f"checkpoints/epoch-0003.params is damaged (100 bytes, expected {size:,})"
    # same size, other bytes: the checksum catches it
    states = os.path.join(store.dir, "epoch-0002.states")
    data = bytearray(open(states, "rb").read())
    data[-1] ^= 0xFF
    open(states, "wb").write(bytes(data))
    assert store.verify(2) == "checkpoints/epoch-0002.states is damaged (its sha256 is not the one recorded)"
    os.remove(os.path.join(store.dir, "best.params"))
    assert store.verify("best") == "checkpoints/best.params is missing"
    open(os.path.join(store.dir, "epoch-0001.json"), "w").write("{not json")
    assert store.verify(1).startswith("checkpoints/epoch-0001.json is damaged (cannot read checkpoint record")


def test_newest_intact_walks_back_past_damaged_epochs(store):
    _truncate(os.path.join(store.dir, "epoch-0003.params"))
    _truncate(os.path.join(store.dir, "epoch-0002.states"), 10)
    (epoch, info), problems = store.newest_intact()
    assert epoch == 1 and info["epoch"] == 1
    assert [p.split()[0] for p in problems] == ["checkpoints/epoch-0003.params", "checkpoints/epoch-0002.states"]
    _truncate(os.path.join(store.dir, "epoch-0001.params"))
    assert store.newest_intact()[0] is None


def test_params_path_verifies_and_last_falls_back_with_a_notice(store):
    notices = []
    assert store.params_path("last", notice=notices.append).endswith("epoch-0003.params") and not notices
    _truncate(os.path.join(store.dir, "epoch-0003.params"))
    assert store.params_path("last", notice=notices.append).endswith("epoch-0002.params")
    assert notices == [f"{store.run_dir}: checkpoints/epoch-0003.params is damaged "
                       f"(100 bytes, expected {os.path.getsize(os.path.join(store.dir, 'epoch-0002.params')):,}); "
                       "using an older checkpoint"]
    with pytest.raises(DataError, match=r"checkpoints/epoch-0003\.params is damaged \(100 bytes"):
        store.params_path(3)
    _truncate(os.path.join(store.dir, "best.params"))
    with pytest.raises(DataError, match=r"checkpoints/best\.params is damaged"):
        store.params_path("best")
    assert store.params_path(7) is None


def test_a_checkpoint_without_checksums_from_an_earlier_version_still_loads(store):
    for name in ("epoch-0003.json", "best.json"):
        path = os.path.join(store.dir, name)
        record = json.load(open(path))
        del record["files"]
        json.dump(record, open(path, "w"))
    assert store.verify(3) is None and store.verify("best") is None
    assert store.newest_intact()[0][0] == 3
    net, trainer = _net_and_trainer()
    import mxnet as mx

    assert store.load(3, net, trainer, mx.cpu())["epoch"] == 3
    assert store.params_path("best").endswith("best.params")


def test_an_unreadable_old_checkpoint_is_a_data_error_naming_it(store):
    import mxnet as mx

    path = os.path.join(store.dir, "epoch-0003.json")
    record = json.load(open(path))
    del record["files"]
    json.dump(record, open(path, "w"))
    _truncate(os.path.join(store.dir, "epoch-0003.params"))
    net, trainer = _net_and_trainer()
    with pytest.raises(DataError, match=r"cannot load the parameters .*epoch-0003\.params"):
        store.load(3, net, trainer, mx.cpu())


# ------------------------------------------------------------------------------------------ liveness

def test_a_sigkilled_process_is_died_and_a_live_one_running():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = dict(state="running", **liveness.owner(child.pid))
        assert liveness.state_of(status) == "running"
        assert liveness.describe(status) == f"running (process {child.pid} on {socket.gethostname()})"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert liveness.state_of(status) == "died"
    assert liveness.describe(status) == f"died (process {child.pid} on {socket.gethostname()} is gone)"


def test_a_reused_pid_is_not_the_run_process():
    status = dict(state="running", **liveness.owner())
    assert liveness.state_of(status) == "running"
    status["pid_start"] -= 1  # the same pid, but a process that started at another time
    assert liveness.state_of(status) == "died"


def test_another_host_is_judged_by_its_heartbeat():
    now = time.time()
    status = {"state": "running", "pid": 1, "host": "elsewhere", "heartbeat": now - 30}
    assert liveness.state_of(status, now=now) == "running"
    status["heartbeat"] = now - liveness.STALE_SECONDS - 1
    assert liveness.state_of(status, now=now) == "stale"


@pytest.mark.parametrize("status, state", [
    ({"state": "finished", "pid": 999999999, "host": socket.gethostname()}, "finished"),
    ({"state": "failed"}, "failed"),
    ({"state": "running"}, "running"),  # written before pids were recorded: nothing to check
    ({}, None),
])
def test_other_states_pass_through(status, state):
    assert liveness.state_of(status) == state


def test_the_heartbeat_thread_renews_the_heartbeat(tmp_path):
    from gluonfuse.train.rundir import write_status

    write_status(str(tmp_path), state="running", **liveness.owner())
    first = json.load(open(tmp_path / "status.json"))["heartbeat"]
    with liveness.Heartbeat(lambda **f: write_status(str(tmp_path), **f), interval=0.05):
        time.sleep(0.3)
    status = json.load(open(tmp_path / "status.json"))
    assert status["heartbeat"] > first and status["state"] == "running"
