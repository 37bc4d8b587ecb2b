"""Checkpoints: parameters, trainer (optimizer) state, epoch and random state, written atomically.

Layout in ``RUN/checkpoints/``::

    epoch-0007.params   net.save_parameters (structured names, load_parameters reads them back)
    epoch-0007.states   trainer.save_states (momentum buffers; through the kvstore when it updates);
                        empty under dist_async, whose optimizer state lives on the servers
    epoch-0007.ema      the moving average of the weights (runs with --ema; a .params file)
    epoch-0007.json     epoch, best so far, Python and NumPy random states, and the size and
                        sha256 of the .params, .states (and .ema) ("files") - written LAST
    best.params, best.json (with the size and sha256 of best.params)

Every file goes through :func:`gluonfuse.io.atomic_path`, and an epoch's ``.json`` is written only
after its ``.params`` and ``.states`` are complete, so it is the commit mark: a process killed at
any instant leaves either a whole checkpoint or files that :meth:`CheckpointStore.latest` ignores.
Only the last ``keep`` epochs are kept, plus ``best``.

Damage after the fact (a disk error, a truncated copy, a file edited by hand) is caught by the
recorded sizes and checksums: :meth:`CheckpointStore.verify` names the damaged file,
:meth:`CheckpointStore.newest_intact` walks back from the newest epoch to one that verifies, and
:meth:`CheckpointStore.params_path` verifies before it hands out a path. Checkpoints written before
checksums were recorded (no "files" in their json) are taken as they are.

Random streams: MXNet's generator state cannot be saved, so every epoch reseeds MXNet, NumPy and
Python from ``(seed, epoch)`` (:func:`epoch_seed`); a resumed run sees the same shuffling, crops and
drop-path draws as an uninterrupted one. The saved Python/NumPy states are restored as well.
"""
import glob
import hashlib
import os
import random
import re
import sys

import numpy as np

from gluonfuse.errors import ArgumentError, DataError
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
        self.run_dir = run_dir
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
        record = dict(info, epoch=epoch, rng=rng_state(), optimizer_state=bool(states),
                      files={ext: file_digest(self._path(epoch, ext))
                             for ext in ("params", "states", *(extras or {}))})
        write_json(self._path(epoch, "json"), record)  # the commit mark
        self._prune()

    def save_best(self, epoch, net, info):
        with atomic_path(os.path.join(self.dir, "best.params")) as tmp:
            net.save_parameters(tmp)
        digest = file_digest(os.path.join(self.dir, "best.params"))
        write_json(os.path.join(self.dir, "best.json"), dict(info, epoch=epoch, files={"params": digest}))

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

    def verify(self, which):
        """None when checkpoint ``which`` (an epoch number or 'best') is intact, else one line saying
        which file is damaged and how (missing, unreadable, size or sha256 not the recorded one)."""
        stem = "best" if which == "best" else f"epoch-{int(which):04d}"
        record_path = os.path.join(self.dir, stem + ".json")
        if not os.path.isfile(record_path):
            return f"checkpoints/{stem}.json is missing"
        try:
            record = read_json(record_path, "checkpoint record")
        except DataError as exc:
            return f"checkpoints/{stem}.json is damaged ({exc})"
        files = record.get("files") if isinstance(record, dict) else None
        if not isinstance(files, dict):  # written before checksums were recorded: taken as it is
            return None
        for ext, want in sorted(files.items()):
            problem = _file_problem(os.path.join(self.dir, f"{stem}.{ext}"), want)
            if problem:
                return f"checkpoints/{stem}.{ext} {problem}"
        return None

    def newest_intact(self):
        """``((epoch, info) or None, problems)``: the newest epoch that verifies, walking back from
        the newest, and one line per newer epoch found damaged on the way."""
        problems = []
        for epoch in reversed(self.epochs()):
            problem = self.verify(epoch)
            if problem is None:
                return (epoch, read_json(self._path(epoch, "json"), "checkpoint record")), problems
            problems.append(problem)
        return None, problems

    def params_path(self, which="last", notice=None):
        """Path of the verified parameters for ``which`` = 'best', 'last' or an epoch number (None
        if absent). A damaged 'best' or epoch is a DataError naming the file; 'last' falls back to
        the newest intact epoch and says so through ``notice`` (default: a warning on stderr)."""
        if which != "last" and which != "best" and not str(which).isdigit():
            raise ArgumentError(f"which checkpoint: 'best', 'last' or an epoch number, not {which!r}", "which")
        if which == "last":
            found, problems = self.newest_intact()
            for problem in problems:
                (notice or _warn)(f"{self.run_dir}: {problem}; using an older checkpoint")
            if found is None and problems:
                raise DataError(f"{self.run_dir}: no intact checkpoint ({'; '.join(problems)})")
            return self._path(found[0], "params") if found else None
        if which == "best":
            if not os.path.isfile(os.path.join(self.dir, "best.params")):
                return None
            stem = "best"
        else:
            if int(which) not in self.epochs():
                return None
            stem = f"epoch-{int(which):04d}"
        problem = self.verify(which)
        if problem:
            raise DataError(f"{self.run_dir}: {problem}")
        return os.path.join(self.dir, stem + ".params")

    def load(self, epoch, net, trainer, ctx, states=True):
        """Load epoch ``epoch`` into ``net`` and (when saved, and ``states``) ``trainer``; returns its record."""
        load_parameters(net, self._path(epoch, "params"), ctx)
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



def file_digest(path):
    """``{"bytes", "sha256"}`` of a file (read in 1 MiB blocks)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return {"bytes": os.path.getsize(path), "sha256": sha.hexdigest()}


def _file_problem(path, want):
    """What is wrong with ``path`` against its recorded digest ``want``, or None."""
    try:
        size = os.path.getsize(path)
        if size != want.get("bytes"):
            return f"is damaged ({size:,} bytes, expected {want.get('bytes'):,})"
        if file_digest(path)["sha256"] != want.get("sha256"):
            return "is damaged (its sha256 is not the one recorded)"
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        return f"is unreadable ({exc.strerror or exc})"
    return None


def load_parameters(net, path, ctx):
    """``net.load_parameters(path)``; a file MXNet cannot read (damaged, and too old to carry a
    checksum) is a DataError naming it instead of MXNet's internal error."""
    import mxnet as mx

    try:
        net.load_parameters(path, ctx=ctx)
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load the parameters {path}: {first}") from None


def _warn(message):
    print(f"Warning: {message}", file=sys.stderr)
