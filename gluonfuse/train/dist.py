"""Distributed training on MXNet's parameter server (ps-lite): the job, the shards and the reductions.

A job is a scheduler, S servers and W workers started by ``gluonfuse launch`` (or mxnet's own
``tools/launch.py``); every worker runs the same ``gluonfuse train ... --kvstore dist_sync`` command
and learns its rank from the kvstore. What the trainer's numbers mean in a job:

* ``--batch-size`` is the GLOBAL batch, over all workers and all their devices: each worker reads
  ``batch_size / W`` records per step (an error when W does not divide it) and splits them over its
  devices. The learning rate applies to the global batch (gradients are summed over the job and
  divided by it) and an epoch has ``ceil(records / batch_size)`` steps, as in one process.
* Worker r reads part r of W of ``train.rec`` (``ImageRecordIter``'s ``num_parts``/``part_index``:
  contiguous runs of ``ceil(N / W)`` records in file order, shuffled within the part every epoch).
  Every worker makes exactly the epoch's number of steps; a worker whose part runs out first fills
  its last step with a second pass of its part, counted as padding (like the wrapped tail of an
  epoch's last batch in one process).
* Evaluation is exact over the whole test set: worker r evaluates part r of ``test.rec``, and the
  loss/error sums and counts are added over the job (:meth:`Team.reduce_meter`).
* BatchNorm running statistics are averaged over the devices and then over the workers before
  every evaluation and checkpoint.
* ``dist_sync``/``dist_device_sync``: the servers only add gradients; every worker applies the same
  optimizer step to the same summed gradient, so all workers hold identical weights (each logs a
  parameter digest per epoch to show it), and the optimizer state is checkpointed like on one machine.
* ``dist_async``: MXNet applies the optimizer on the servers as each push arrives, so workers'
  weights differ during an epoch. At the end of every epoch all workers wait for each other and pull
  the servers' weights; those weights (with the averaged running statistics) are what is evaluated,
  checkpointed and exported. The learning-rate schedule runs on the servers (an update-count
  scheduler, because MXNet never forwards a worker's lr change to them), and the servers' momentum
  cannot be saved: a resumed ``dist_async`` run restarts it from zero.
* Only rank 0 writes the run directory (config, metrics, status, checkpoints, export, ``log.txt``);
  rank r > 0 writes ``worker-<r>.log`` there. Rank 0 creates the directory and tells the others its
  name through the kvstore, so all workers agree without extra options; on a cluster ``--out`` must
  be a filesystem every worker sees (checkpoints are read by every worker on ``--resume``).

Failure: a worker that exits normally after a peer died waits forever in ps-lite's finalize barrier,
so in a job the CLI leaves with ``os._exit`` on any error (:func:`run_worker`, :func:`leave`), and
SIGTERM/SIGINT end the process at once (:class:`HardExit`), even while it is blocked inside a kvstore
call.
"""
import hashlib
import math
import os
import signal
import sys
import threading
import traceback

import numpy as np

from gluonfuse.errors import ArgumentError

DIST_KVSTORES = ("dist_sync", "dist_device_sync", "dist_async")


def is_distributed(kvstore):
    return str(kvstore).startswith("dist")


def job_size(kvstore, environ=None):
    """The number of workers of the job this process belongs to (1 for a single-machine kvstore).

    ValueError when a distributed kvstore is asked for outside a job, or a single-machine one inside.
    """
    environ = os.environ if environ is None else environ
    role = environ.get("DMLC_ROLE")
    if is_distributed(kvstore):
        if role != "worker":
            raise ArgumentError(f"kvstore {kvstore} trains as one worker of a distributed job; start the job with "
                                f"'gluonfuse launch -n WORKERS -- gluonfuse train ... --kvstore {kvstore}' "
                                f"(DMLC_ROLE is {role or 'not set'})", "kvstore")
        try:
            workers = int(environ["DMLC_NUM_WORKER"])
        except (KeyError, ValueError):
            raise ValueError("DMLC_NUM_WORKER is missing or not a number; start the job with gluonfuse launch") \
                from None
        return workers
    if role == "worker" and int(environ.get("DMLC_NUM_WORKER", "1") or 1) > 1:
        raise ArgumentError(f"this process is one of {environ['DMLC_NUM_WORKER']} workers of a distributed job, "
                            f"but kvstore {kvstore} trains on one machine; use kvstore "
                            f"{', '.join(DIST_KVSTORES[:-1])} or {DIST_KVSTORES[-1]}", "kvstore")
    return 1


def worker_batch(batch_size, workers, devices):
    """Records per worker and step for a global ``batch_size`` (ValueError when it does not divide)."""
    if batch_size % workers:
        lower, upper = batch_size // workers * workers, -(-batch_size // workers) * workers
        near = " or ".join(str(b) for b in sorted({lower, upper}) if b > 0)
        raise ArgumentError(f"batch_size {batch_size} is the global batch over all {workers} workers and must "
                            f"divide by {workers} (e.g. {near})", "batch_size")
    per_worker = batch_size // workers
    if per_worker < devices:
        raise ArgumentError(f"batch_size {batch_size} gives {per_worker} records per worker, fewer than its "
                            f"{devices} devices (the batch size is global over workers and devices)", "batch_size")
    return per_worker


def shard_range(records, parts, index):
    """Records ``[begin, end)`` (file order) that part ``index`` of ``parts`` holds.

    This is how ImageRecordIter splits an indexed ``.rec`` (``num_parts``/``part_index``): runs of
    ``ceil(records / parts)``, the last part shorter.
    """
    size = -(-records // parts)
    return min(index * size, records), min((index + 1) * size, records)


def steps_per_epoch(records, batch_size):
    """Steps of an epoch over ``records`` with a global ``batch_size`` (the last batch wrapped or padded)."""
    return math.ceil(records / batch_size)


class ShardBatches:
    """Exactly ``steps`` batches from ``make_iter()`` (one pass over a part of a .rec).

    If the part ends early, a second pass fills the remaining steps with every record marked as
    padding (``batch.pad`` = the batch size): the step still runs, as it must on every worker of a
    synchronous job, and no metric counts those records. ``classes`` > 0 counts the labels read
    (padding excluded) into ``label_counts``.
    """

    def __init__(self, make_iter, steps, classes=0):
        self.make_iter, self.steps = make_iter, steps
        self.label_counts = np.zeros(max(classes, 0), dtype=np.int64)
        self.records = 0

    def __iter__(self):
        import mxnet as mx

        done, passes = 0, 0
        while done < self.steps:
            it = self.make_iter()
            passes += 1
            got = 0
            for batch in it:
                if passes > 1:
                    batch = mx.io.DataBatch(batch.data, batch.label, pad=batch.data[0].shape[0])
                valid = batch.data[0].shape[0] - batch.pad
                if valid and self.label_counts.size:
                    labels = batch.label[0].asnumpy()[:valid].astype(np.int64)
                    labels = labels[(labels >= 0) & (labels < self.label_counts.size)]
                    self.label_counts += np.bincount(labels, minlength=self.label_counts.size)
                self.records += valid
                got += 1
                yield batch
                done += 1
                if done == self.steps:  # the first part always has exactly `steps` batches
                    return
            if got == 0:
                return  # an empty part: nothing to fill with (the caller checks the counts)


class Team:
    """The workers of one training run, seen from one of them: rank, size and reductions.

    ``Team()`` is a single process (rank 0 of 1; every reduction is the identity); ``Team(kvstore)``
    is a worker of a distributed job. Reductions go through the job's kvstore and must be called
    in the same order on every worker.
    """

    # Keys for reductions: above the trainer's parameter keys (0..P-1), and below the point where
    # ps-lite's key-to-server map (key * 9973 in a 32-bit int) overflows.
    FIRST_KEY, LAST_KEY = 50000, 215000

    def __init__(self, kvstore=None):
        self.kv = kvstore
        self.rank = kvstore.rank if kvstore is not None else 0
        self.size = kvstore.num_workers if kvstore is not None else 1
        self.distributed = kvstore is not None
        self.asynchronous = kvstore is not None and "async" in kvstore.type
        self._keys = {}
        self._next_key = self.FIRST_KEY

    @property
    def lead(self):
        """True for the worker that writes the run directory (rank 0)."""
        return self.rank == 0

    def _take_keys(self, count):
        if self._next_key + count > self.LAST_KEY:
            raise RuntimeError("out of kvstore keys for reductions between workers (dist_async uses fresh keys "
                               "for every reduction); run fewer epochs per job and --resume")
        key = self._next_key
        self._next_key += count
        return key

    def barrier(self):
        if self.distributed:
            import mxnet as mx

            mx.nd.waitall()
            self.kv._barrier()

    def sum(self, name, values):
        """The element-wise sum over all workers of a float vector (float32 arithmetic on the servers)."""
        values = np.asarray(values, dtype=np.float32).ravel()
        if not self.distributed:
            return values.astype(np.float64)
        import mxnet as mx

        mx.nd.waitall()
        local = mx.nd.array(values, dtype="float32")
        if not self.asynchronous:
            # the servers hold no optimizer in sync mode (gluonfuse updates on the workers), so a push
            # by every worker is summed and stored, and a pull reads the sum
            if name not in self._keys:
                key = self._take_keys(1)
                self.kv.init(key, mx.nd.zeros(local.shape))
                self._keys[name] = (key, local.shape)
            key, shape = self._keys[name]
            if local.shape != shape:
                raise RuntimeError(f"reduction {name!r} changed shape from {shape} to {local.shape}")
            self.kv.push(key, local)
            out = mx.nd.zeros(shape)
            self.kv.pull(key, out=out)
            return out.asnumpy().astype(np.float64)
        # dist_async: the servers apply the optimizer to every push of a stored key, but the first
        # push of a new key is stored as it is; so each worker pushes to a fresh key of its own and
        # every worker pulls all of them
        base = self._take_keys(self.size)
        self.kv.push(base + self.rank, local)
        self.barrier()
        outs = [mx.nd.zeros(local.shape) for _ in range(self.size)]
        for r, out in enumerate(outs):
            self.kv.pull(base + r, out=out)
        return sum(out.asnumpy().astype(np.float64) for out in outs)

    def sum_exact(self, name, values):
        """The sum over all workers of float64 ``values`` (counts, loss sums), exact to ~1e-14.

        The kvstore carries float32: each value travels as a float32 pair (high part, remainder), in
        the worker's own slot, so the servers only ever add zeros to it.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        if not self.distributed:
            return values
        high = values.astype(np.float32)
        low = (values - high.astype(np.float64)).astype(np.float32)
        slots = np.zeros((self.size, 2, values.size), dtype=np.float32)
        slots[self.rank] = high, low
        total = self.sum(name, slots.ravel()).reshape(self.size, 2, values.size)
        return total.sum(axis=(0, 1))

    def broadcast_int(self, name, value):
        """Rank 0's integer ``value`` on every worker."""
        return int(round(self.sum_exact(name, [value if self.lead else 0])[0]))

    def reduce_meter(self, name):
        """A ``reduce`` for :class:`gluonfuse.train.metrics.Meter`: (sums, count) -> the job's totals."""
        def reduce(sums, count):
            total = self.sum_exact(name, np.concatenate([np.asarray(sums, dtype=np.float64), [count]]))
            return total[:-1], int(round(total[-1]))

        return None if not self.distributed else reduce

    def average_running_stats(self, net):
        """Give every worker the mean over workers of the non-trained parameters (BatchNorm statistics).

        Call after the per-device average (all devices of a worker then hold the same values).
        """
        if not self.distributed:
            return
        import mxnet as mx

        params = [p for _, p in sorted(net.collect_params().items()) if p.grad_req == "null"]
        if not params:
            return
        first = [p.list_data()[0] for p in params]
        mx.nd.waitall()
        flat = np.concatenate([a.asnumpy().astype(np.float32).ravel() for a in first])
        mean = self.sum("running_stats", flat) / self.size
        offset = 0
        for p, a in zip(params, first):
            value = mx.nd.array(mean[offset:offset + a.size].reshape(a.shape), dtype=a.dtype)
            offset += a.size
            for arr in p.list_data():  # in place: Parameter.set_data would re-initialise the kvstore
                value.copyto(arr)

    def pull_weights(self, trainer):
        """dist_async: wait for every worker, then load the servers' weights into every worker."""
        if not self.asynchronous:
            return
        self.barrier()
        for i, param in enumerate(trainer._params):
            if param.grad_req != "null":
                self.kv.pull(i, out=param.list_data(), priority=-i)
        self.barrier()


    def close(self):
        """Leave the job: drop the kvstore now, while MXNet is fully alive (ps-lite's finalize runs here).

        Left to interpreter shutdown, its destruction can abort the process.
        """
        if self.kv is None:
            return
        import gc

        import mxnet as mx

        mx.nd.waitall()
        self.kv = None
        gc.collect()


def parameter_digest(net):
    """SHA-1 over every parameter's value on its first device (names sorted): equal digests, equal weights."""
    h = hashlib.sha1()
    for name, p in sorted(net.collect_params().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(p.list_data()[0].asnumpy()).tobytes())
    return h.hexdigest()


def leave(code):
    """End a worker of a distributed job now, with ``code``, after flushing its output.

    A normal exit would wait in ps-lite's finalize barrier for workers that may be dead.
    """
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def run_worker(fn, *args, **kwargs):
    """Call ``fn`` in a worker of a distributed job: whatever ends it but success ends the process.

    A ``SystemExit`` with a non-zero code leaves with that code (its message printed, if it has
    one); any other exception (e.g. one re-raised for ``GLUONFUSE_DEBUG=1``) prints its traceback
    and leaves with 1. :func:`leave` never returns: a normal exit would hang for the dead peers.
    """
    try:
        return fn(*args, **kwargs)
    except SystemExit as exc:
        if exc.code is None or exc.code == 0:
            raise
        if not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        leave(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:  # noqa: B036 - ends the process; nothing may pass here to a normal exit
        traceback.print_exc()
        leave(1)


class HardExit:
    """In a distributed job, SIGTERM and SIGINT end the process at once (``os._exit(128 + signal)``).

    Python runs signal handlers only between bytecodes, so a worker blocked in a kvstore call
    (waiting for a dead peer) would never run one. CPython's C-level handler also writes the signal
    number to the wakeup fd; a thread reading it calls ``cleanup(signum)`` (mark the run failed,
    flush the log; at most ``grace`` seconds) and exits.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, cleanup, grace=3.0):
        self.cleanup, self.grace = cleanup, grace
        self._old = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._fds = read_fd, write_fd
        self._old_wakeup = signal.set_wakeup_fd(write_fd)
        self._old = {s: signal.signal(s, lambda signum, frame: None) for s in self.SIGNALS}
        threading.Thread(target=self._watch, daemon=True, name="gluonfuse-hard-exit").start()
        return self

    def _watch(self):
        read_fd = self._fds[0]
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                data = b""
            if not data:  # the write end was closed: the guard is over
                os.close(read_fd)
                return
            for signum in data:
                if signum in self.SIGNALS:
                    worker = threading.Thread(target=self.cleanup, args=(signum,), daemon=True)
                    worker.start()
                    worker.join(self.grace)
                    leave(128 + signum)

    def __exit__(self, *exc):
        if self._old is None:
            return False
        for s, handler in self._old.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._old_wakeup)
        os.close(self._fds[1])  # the watcher reads EOF and closes its end
        self._old = None
        return False
