"""Checkpoints: parameters, trainer (optimizer) state, epoch and random state, written atomically.

Layout in ``RUN/checkpoints/``::

    epoch-0007.params   net.save_parameters (structured names, load_parameters reads them back)
    epoch-0007.states   trainer.save_states (momentum buffers; through the kvstore when it updates);
                        empty under dist_async, whose optimizer state lives on the servers
    epoch-0007.ema      the moving average of the weights (runs with --ema; a .params file)
    epoch-0007.json     epoch, best so far, Python and NumPy random states - written LAST
    best.params, best.json

Every file goes through :func:`gluonfuse.io.atomic_path`, and an epoch's ``.json`` is written only
after its ``.params`` and ``.states`` are complete, so it is the commit mark: a process killed at
any instant leaves either a whole checkpoint or files that :meth:`CheckpointStore.latest` ignores.
Only the last ``keep`` epochs are kept, plus ``best``.

Random streams: MXNet's generator state cannot be saved, so every epoch reseeds MXNet, NumPy and
Python from ``(seed, epoch)`` (:func:`epoch_seed`); a resumed run sees the same shuffling, crops and
drop-path draws as an uninterrupted one. The saved Python/NumPy states are restored as well.
"""
import glob
import os
import random
import re

import numpy as np

from gluonfuse.errors import ArgumentError
from gluonfuse.io import atomic_path, read_json, write_json

_EPOCH_FILE = re.compile(r"epoch-(\d+)\.json$")


def epoch_seed(seed, epoch):
    """A 31-bit seed derived from (seed, epoch); stable across runs and machines."""
    return int(np.random.SeedSequence([int(seed) % (2 ** 32), int(epoch)]).generate_state(1)[0]) % (2 ** 31)


def seed_everything(seed):
    import mxnet as mx

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed % (2 ** 31))


def rng_state():
    py = random.getstate()
    np_state = np.random.get_state()
    return {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}


def set_rng_state(state):
    if not state:
        return
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


class CheckpointStore:
    """The ``checkpoints/`` directory of a run."""

    def __init__(self, run_dir, keep=3):
        self.dir = os.path.join(run_dir, "checkpoints")
        self.keep = keep
        os.makedirs(self.dir, exist_ok=True)

    def _path(self, epoch, ext):
        return os.path.join(self.dir, f"epoch-{epoch:04d}.{ext}")

    def save(self, epoch, net, trainer, info, states=True, extras=None):
        """Checkpoint after ``epoch`` finished epochs; ``info`` (a dict) goes into the json.

        ``extras``: ``{extension: save(path)}`` for more files of the epoch (``ema``), written
        before the json.

        ``states=False``: the optimizer state cannot be read here (dist_async keeps it on the
        servers); the ``.states`` file is left empty and loading skips it.
        """
        with atomic_path(self._path(epoch, "params")) as tmp:
            net.save_parameters(tmp)
        with atomic_path(self._path(epoch, "states")) as tmp:
            if states:
                trainer.save_states(tmp)
            else:
                open(tmp, "wb").close()
        for ext, save in (extras or {}).items():
            with atomic_path(self._path(epoch, ext)) as tmp:
                save(tmp)
        record = dict(info, epoch=epoch, rng=rng_state(), optimizer_state=bool(states))
        write_json(self._path(epoch, "json"), record)  # the commit mark
        self._prune()

    def save_best(self, epoch, net, info):
        with atomic_path(os.path.join(self.dir, "best.params")) as tmp:
            net.save_parameters(tmp)
        write_json(os.path.join(self.dir, "best.json"), dict(info, epoch=epoch))

    def epochs(self):
        """Committed epochs (json, params and states all present), ascending."""
        found = []
        for path in glob.glob(os.path.join(self.dir, "epoch-*.json")):
            m = _EPOCH_FILE.search(path)
            if m and all(os.path.isfile(self._path(int(m.group(1)), e)) for e in ("params", "states")):
                found.append(int(m.group(1)))
        return sorted(found)

    def latest(self):
        """(epoch, info) of the newest complete checkpoint, or None."""
        epochs = self.epochs()
        if not epochs:
            return None
        return epochs[-1], read_json(self._path(epochs[-1], "json"), "checkpoint record")

    def extra_path(self, epoch, ext):
        """The ``ext`` file of committed ``epoch`` (e.g. ``ema``), or None if it was not saved."""
        path = self._path(epoch, ext)
        return path if os.path.isfile(path) else None

    def params_path(self, which="last"):
        """Path of the parameters for ``which`` = 'best', 'last' or an epoch number (None if absent)."""
        if which == "best":
            path = os.path.join(self.dir, "best.params")
            return path if os.path.isfile(path) else None
        epochs = self.epochs()
        if which != "last" and not str(which).isdigit():
            raise ArgumentError(f"which checkpoint: 'best', 'last' or an epoch number, not {which!r}", "which")
        if which == "last":
            return self._path(epochs[-1], "params") if epochs else None
        return self._path(int(which), "params") if int(which) in epochs else None

    def load(self, epoch, net, trainer, ctx, states=True):
        """Load epoch ``epoch`` into ``net`` and (when saved, and ``states``) ``trainer``; returns its record."""
        net.load_parameters(self._path(epoch, "params"), ctx=ctx)
        info = read_json(self._path(epoch, "json"), "checkpoint record")
        if states and info.get("optimizer_state", True):
            trainer.load_states(self._path(epoch, "states"))
        set_rng_state(info.get("rng"))
        return info

    def _prune(self):
        for epoch in self.epochs()[:-self.keep]:
            # the json goes first, so a half-pruned epoch is never taken for a complete one
            for ext in ("json", "params", "states", "ema"):
                try:
                    os.remove(self._path(epoch, ext))
                except FileNotFoundError:
                    pass

