"""Run directories: what ``gluonfuse train`` leaves behind, and :func:`load_run` to read it back.

``runs/<network>_d<depth>_w<widen>_<dataset>_<n>/`` (the spec name instead of ``<network>_d.._w..``
for networks without depth and widen factor) holds::

    config.json         the resolved TrainConfig; get_model(network, **model_kwargs) rebuilds the net
    dataset_meta.json   a copy of the dataset's meta.json (class names for predict)
    metrics.csv         one row per finished epoch (METRIC_COLUMNS; errors are fractions)
    members.csv         test numbers of sub-networks evaluated on their own, per epoch: ensemble's
                        8 members, FractalNet's deepest column (name column<C>)
    log.txt             the authors' log line format
    status.json         state running|finished|failed, epoch, epochs, best epoch and error, message
    curves.png          loss and error curves
    checkpoints/        see gluonfuse.train.checkpoint
    export/             best-* and last-* symbol, params and metadata (gluonfuse.export)
"""
import csv
import os

from gluonfuse.errors import DataError
from gluonfuse.io import atomic_path, read_json, write_json

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "train_error", "train_top5_error", "test_loss", "test_error",
                  "test_top5_error", "images_per_sec", "seconds"]
MEMBER_COLUMNS = ["epoch", "member", "name", "test_loss", "test_error", "test_top5_error"]


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


def write_status(run_dir, **fields):
    path = os.path.join(run_dir, "status.json")
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
    """A run directory read back: ``.config``, ``.metrics`` (list of dicts), ``.status``, ``.dataset_meta``."""

    def __init__(self, path):
        self.path = path
        self.config = read_json(os.path.join(path, "config.json"), "run configuration")
        self.status = read_json(os.path.join(path, "status.json"), "run status") \
            if os.path.isfile(os.path.join(path, "status.json")) else {}
        meta_path = os.path.join(path, "dataset_meta.json")
        self.dataset_meta = read_json(meta_path, "dataset metadata") if os.path.isfile(meta_path) else {}

    @property
    def metrics(self):
        return [{k: _number(v) for k, v in row.items()}
                for row in read_csv_rows(os.path.join(self.path, "metrics.csv"))]

    @property
    def members(self):
        return [{k: _number(v) for k, v in row.items()}
                for row in read_csv_rows(os.path.join(self.path, "members.csv"))]

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

        net = get_model(self.config["network"], **self.config["model_kwargs"])
        net.load_parameters(self.params_path(which), ctx=ctx or mx.cpu())
        return net


def load_run(path):
    """Read a run directory; DataError if it is not one."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise DataError(f"{path} is not a run directory (no config.json); runs are written by "
                        "'gluonfuse train' under runs/")
    return Run(path)
