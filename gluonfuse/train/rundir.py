"""Run directories: what ``gluonfuse train`` leaves behind, and the one reader of them, :func:`load_run`.

``runs/<network>_d<depth>_w<widen>_<dataset>_<n>/`` (the spec name instead of ``<network>_d.._w..``
for networks without depth and widen factor) holds::

    config.json         the run's configuration (TrainConfig) plus what was derived from the
                        dataset (model_kwargs as built, classes, mean, std, input_shape, num_workers);
                        get_model(network, **model_kwargs) rebuilds the net
    dataset_meta.json   a copy of the dataset's meta.json (class names for predict)
    metrics.csv         one row per finished epoch (METRIC_COLUMNS; errors are fractions)
    members.csv         test numbers of sub-networks evaluated on their own, per epoch: ensemble's
                        8 members, FractalNet's deepest column (name column<C>)
    log.txt             the authors' log line format
    status.json         state running|finished|failed, epoch, epochs, best epoch and error, message;
                        pid, host, pid_start, started and heartbeat of the process that runs it
                        (gluonfuse.train.liveness tells a dead "running" run: died or stale)
    curves.png          loss and error curves
    checkpoints/        see gluonfuse.train.checkpoint
    export/             best-* and last-* symbol, params and metadata (gluonfuse.export)

:func:`load_run` reads a run for eval, predict, analyze, export and resume (lenient: only
``config.json`` must exist; cells are numbers where they parse). ``load_run(path, strict=True)``
is what ``gluonfuse results`` needs for statistics: ``config.json``, ``status.json`` and
``metrics.csv`` must exist and every metrics cell is checked; anything wrong is a DataError naming
the file and line. Reading never imports mxnet (``results`` runs without it).
"""
import csv
import math
import os
import threading

from gluonfuse.errors import DataError
from gluonfuse.io import atomic_path, read_json, write_json

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_error", "train_top5_error", "test_loss", "test_error",
                  "test_top5_error", "images_per_sec", "seconds"]
# appended to METRIC_COLUMNS by runs with --ema: the moving average of the weights, tested
EMA_COLUMNS = ["ema_test_loss", "ema_test_error", "ema_test_top5_error"]
MEMBER_COLUMNS = ["epoch", "member", "name", "test_loss", "test_error", "test_top5_error"]
# checked by a strict read: what statistics over runs rely on
REQUIRED_COLUMNS = ("epoch", "train_error", "test_error")
ERROR_COLUMNS = ("train_error", "train_top5_error", "test_error", "test_top5_error", "ema_test_error",
                 "ema_test_top5_error")


def run_base_name(network, spec, dataset):
    if hasattr(spec, "depth") and hasattr(spec, "widen_factor"):
        return f"{network}_d{spec.depth}_w{spec.widen_factor}_{dataset}"
    return f"{spec.name}_{dataset}"


def create_run_dir(out_dir, base):
    """Create ``out_dir/base_<n>`` with the first unused n >= 1 (safe against concurrent runs)."""
    os.makedirs(out_dir, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(out_dir, f"{base}_{n}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            n += 1


# the heartbeat thread and the run both update status.json; reentrant, because a signal handler
# (SIGTERM in a distributed job) records the stop while the main thread may be inside a write
_STATUS_LOCK = threading.RLock()


def write_status(run_dir, **fields):
    """Update ``fields`` of ``run_dir``'s status.json (read, change, write atomically)."""
    path = os.path.join(run_dir, "status.json")
    with _STATUS_LOCK:
        status = read_json(path, "run status") if os.path.isfile(path) else {}
        status.update(fields)
        write_json(path, status)
    return status


def read_csv_rows(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv_rows(path, columns, rows):
    """Rewrite the whole CSV atomically (files are small: one row per epoch)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row.get(k, "") for k in columns})


def _number(value):
    if value in ("", None):
        return None
    try:
        f = float(value)
    except ValueError:
        return value
    return int(f) if f.is_integer() and "." not in str(value) else f


class Run:
    """A run directory read back: ``.config``, ``.status``, ``.metrics`` and ``.members`` (lists of
    dicts, one per row), ``.dataset_meta``."""

    def __init__(self, path, config, status, metrics, members, dataset_meta):
        self.path, self.config, self.status = path, config, status
        self.metrics, self.members, self.dataset_meta = metrics, members, dataset_meta

    @property
    def state(self):
        return self.status.get("state")

    @property
    def final(self):
        """The last finished epoch's metrics row."""
        return self.metrics[-1]

    def curve(self, column="test_error"):
        return [row[column] for row in self.metrics]

    def params_path(self, which="best"):
        from gluonfuse.train.checkpoint import CheckpointStore

        path = CheckpointStore(self.path).params_path(which)
        if path is None:
            raise DataError(f"{self.path}: no {which!r} checkpoint in checkpoints/ "
                            "(has the run finished an epoch?)")
        return path

    def build_network(self, which="best", ctx=None):
        """The run's network with the ``which`` ('best', 'last' or an epoch) parameters loaded."""
        import mxnet as mx

        from gluonfuse.models import get_model
        from gluonfuse.train.checkpoint import load_parameters

        net = get_model(self.config["network"], **self.config["model_kwargs"])
        load_parameters(net, self.params_path(which), ctx or mx.cpu())
        return net


def load_run(path, strict=False):
    """Read run directory ``path``; DataError if it is not one (``strict``: if any file is off)."""
    config_path = os.path.join(path, "config.json")
    if not strict and not os.path.isfile(config_path):
        raise DataError(f"{path} is not a run directory (no config.json); runs are written by "
                        "'gluonfuse train' under runs/")
    config = read_json(config_path, "run configuration")
    status = _optional_json(path, "status.json", "run status", required=strict)
    if strict:
        _check_objects(path, config, status)
    metrics_path = os.path.join(path, "metrics.csv")
    metrics = _strict_metrics(metrics_path) if strict else _rows(metrics_path)
    return Run(path, config, status, metrics, _rows(os.path.join(path, "members.csv")),
               _optional_json(path, "dataset_meta.json", "dataset metadata"))


def _optional_json(path, name, what, required=False):
    full = os.path.join(path, name)
    return read_json(full, what) if required or os.path.isfile(full) else {}


def _rows(path):
    return [{k: _number(v) for k, v in row.items()} for row in read_csv_rows(path)]


def _check_objects(path, config, status):
    for name, obj in (("config.json", config), ("status.json", status)):
        if not isinstance(obj, dict):
            raise DataError(f"{os.path.join(path, name)} is not a JSON object")
    if "network" not in config:
        raise DataError(f"{os.path.join(path, 'config.json')} has no 'network'")


def _strict_metrics(path):
    """metrics.csv with every cell checked: numbers, errors in [0, 1], epochs increasing."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = _strict_header(path, next(reader, None))
            rows = []
            for line, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(cells) != len(header):
                    raise DataError(f"{path} line {line}: {len(cells)} fields, the header has {len(header)}")
                row = _strict_row(path, line, dict(zip(header, cells)))
                if rows and row["epoch"] <= rows[-1]["epoch"]:
                    raise DataError(f"{path} line {line}: epoch {row['epoch']:g} does not follow "
                                    f"epoch {rows[-1]['epoch']:g}")
                rows.append(row)
    except FileNotFoundError:
        raise DataError(f"metrics file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise DataError(f"{path} has no epochs (only a header)")
    return rows


def _strict_header(path, header):
    if header is None:
        raise DataError(f"{path} is empty (expected the header {','.join(METRIC_COLUMNS)})")
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path} line 1: the header lacks {', '.join(missing)} "
                        f"(expected {','.join(METRIC_COLUMNS)})")
    return header


def _strict_row(path, line, cells):
    row = {}
    for name, text in cells.items():
        text = text.strip()
        if text == "" and name not in REQUIRED_COLUMNS:
            row[name] = None
            continue
        value = _number(text)
        if not isinstance(value, (int, float)):
            raise DataError(f"{path} line {line}: {name} is {text!r}, not a number")
        if name in REQUIRED_COLUMNS and not math.isfinite(value):
            raise DataError(f"{path} line {line}: {name} is {text}")
        if name in ERROR_COLUMNS and math.isfinite(value) and not 0 <= value <= 1:
            raise DataError(f"{path} line {line}: {name} is {value:g}; errors are fractions in [0, 1]")
        row[name] = value
    return row
