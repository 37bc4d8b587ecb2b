"""``meta.json`` of a prepared dataset directory: building it, reading and checking it.

The contract the trainer relies on (docs/datasets.md#dataset-metadata)::

    {"name", "num_classes", "classes", "image_shape": [C, H, W],
     "mean": [r, g, b], "std": [r, g, b],          # training split, per channel, 0..255, RGB
     "splits": {"train": {"count", "per_class"}, "test": {...}},
     "source": {"files": {name: sha256}, ...}, "gluonfuse_version"}

``meta.json`` is written last, so a directory without it is an unfinished (or interrupted) prepare.
"""
import math
import os

import numpy as np

from gluonfuse.errors import DataError
from gluonfuse.io import read_json, write_json

META_NAME = "meta.json"
SPLITS = ("train", "test")


class PixelStats:
    """Per-channel running sums over images (HWC, RGB): mean and population std over all pixels."""

    def __init__(self, channels=3):
        self.sum = np.zeros(channels, np.float64)
        self.sumsq = np.zeros(channels, np.float64)
        self.pixels = 0

    @staticmethod
    def of_image(img_rgb):
        """``(sum, sum of squares, pixel count)`` of one image; cheap enough to run in workers."""
        flat = img_rgb.reshape(-1, img_rgb.shape[-1]) if img_rgb.ndim == 3 else img_rgb.reshape(-1, 1)
        f = flat.astype(np.float64)
        return f.sum(0), np.einsum("ij,ij->j", f, f), flat.shape[0]

    def add(self, part):
        s, sq, n = part
        if len(s) != len(self.sum):  # a grey image in a colour dataset counts in every channel
            s, sq = np.broadcast_to(s, self.sum.shape), np.broadcast_to(sq, self.sum.shape)
        self.sum += s
        self.sumsq += sq
        self.pixels += n

    def mean(self):
        return self.sum / max(self.pixels, 1)

    def std(self):
        m = self.mean()
        return np.sqrt(np.maximum(self.sumsq / max(self.pixels, 1) - m * m, 0.0))


def build_meta(name, classes, image_shape, stats: PixelStats, per_class, source):
    """The meta.json dict; ``per_class`` maps split name -> list of counts by label."""
    from gluonfuse import __version__

    return {
        "name": name,
        "num_classes": len(classes),
        "classes": list(classes),
        "image_shape": [int(x) for x in image_shape],
        "mean": [round(float(x), 4) for x in stats.mean()],
        "std": [round(float(x), 4) for x in stats.std()],
        "splits": {split: {"count": int(sum(counts)), "per_class": [int(c) for c in counts]}
                   for split, counts in per_class.items()},
        "source": source,
        "gluonfuse_version": __version__,
    }


def write_meta(directory, meta):
    write_json(os.path.join(directory, META_NAME), meta)


def meta_path(directory):
    return os.path.join(os.fspath(directory), META_NAME)


def read_meta(directory):
    """The meta.json of a prepared dataset directory (or the path of the file itself), checked.

    DataError when it is missing (an unprepared or interrupted directory) or malformed.
    """
    path = os.fspath(directory)
    if os.path.isdir(path):
        path = meta_path(path)
    if not os.path.exists(path):
        raise DataError(f"{path} not found: the directory is not a prepared dataset, or its "
                        f"preparation did not finish (run 'gluonfuse data prepare')")
    meta = read_json(path, "dataset metadata")
    _check(meta, path)
    return meta


def read_class_names(path):
    """Class names from a text file, one per line in label order (blank lines ignored); ValueError
    naming the problem when the file is missing, empty or repeats a name."""
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise ValueError(f"class names file {path}: {exc.strerror}") from None
    if not names:
        raise ValueError(f"class names file {path} is empty; write one name per line, in label order")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"class names file {path} repeats {', '.join(map(repr, repeated))}; names must be unique")
    return names


def set_class_names(directory, names, source="the class names file"):
    """Replace the class names in ``directory``'s meta.json by ``names`` (as many as its classes)."""
    meta = read_meta(directory)
    if len(names) != meta["num_classes"]:
        n = meta["num_classes"]
        raise ValueError(f"{source} has {len(names)} names but the dataset has {n} classes (labels 0..{n - 1}); "
                         "give one name per class, in label order (meta.json keeps its names)")
    meta["classes"] = list(names)
    write_meta(directory, meta)
    return meta


def stored_size(meta):
    """The side of a dataset's stored images (the shorter of ``image_shape``'s H and W), None if unknown.

    ``meta`` is a meta.json dict (or None). The trainer's input pipeline resizes the images to the
    network's input when it differs (:func:`gluonfuse.train.data.record_iter`).
    """
    shape = (meta or {}).get("image_shape")
    return min(shape[1:]) if shape else None


def _check(meta, path):
    def bad(what):
        raise DataError(f"{path}: {what}")

    if not isinstance(meta, dict):
        bad("not a JSON object")
    for key in ("name", "num_classes", "classes", "image_shape", "mean", "std", "splits", "source"):
        if key not in meta:
            bad(f"missing key {key!r}")
    n = meta["num_classes"]
    if not _count(n) or n < 1:
        bad(f"num_classes must be a positive integer, got {_short(n)}")
    classes = meta["classes"]
    if not (isinstance(classes, list) and len(classes) == n and all(isinstance(c, str) for c in classes)):
        bad(f"classes must list {n} names")
    shape = meta["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(_count(x) and x > 0 for x in shape)):
        bad(f"image_shape must be [C, H, W], got {_short(shape)}")
    for key in ("mean", "std"):
        v = meta[key]
        if not (isinstance(v, list) and len(v) == shape[0]
                and all(_number(x) and (key == "mean" or x >= 0) for x in v)):
            kind = "numbers" if key == "mean" else "non-negative numbers"
            bad(f"{key} must list {shape[0]} finite {kind} (one per channel), got {_short(v)}")
    splits = meta["splits"]
    if not isinstance(splits, dict):
        bad("splits must be an object")
    for split in SPLITS:
        s = splits.get(split)
        if not isinstance(s, dict) or not _count(s.get("count")):
            bad(f"splits.{split} must hold a count")
        pc = s.get("per_class")
        counts_ok = isinstance(pc, list) and all(_count(c) for c in pc)
        if not (counts_ok and len(pc) == n and sum(pc) == s["count"]):
            bad(f"splits.{split}.per_class must list {n} counts that add up to {s['count']}")


def _count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
