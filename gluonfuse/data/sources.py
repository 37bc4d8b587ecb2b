"""Readers of the official dataset formats, each returning a :class:`gluonfuse.data.dataset.Dataset`.

Every damaged input is a DataError naming the file (and the byte offset where it applies), never
another exception, a crash or an allocation the file's bytes do not back. CIFAR's pickles are read
by :mod:`gluonfuse.data.safepickle` (plain containers and numeric arrays only, so a doctored archive
can neither run code nor crash numpy), SVHN's .mat files by :mod:`gluonfuse.data.matfile` (scipy's
reader crashes on some damaged files).
"""
import gzip
import hashlib
import io
import lzma
import math
import os
import re
import struct
import tarfile
import zlib

import numpy as np

from gluonfuse.data import safepickle
from gluonfuse.data.dataset import Dataset
from gluonfuse.data.lists import ListItem, list_images, split_items
from gluonfuse.data.matfile import DEFLATE_MAX_RATIO, read_mat
from gluonfuse.data.pack import decode, opencv_errors, read_bytes, transform
from gluonfuse.errors import DataError


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ArrayImages:
    """Images held in arrays: ``parts`` is a list of ``(array N x H x W [x 3] uint8 RGB, source)``."""

    def __init__(self, parts):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(a) for a, _ in parts])

    def __len__(self):
        return int(self.starts[-1])

    def get(self, k):
        p = int(np.searchsorted(self.starts, k, side="right")) - 1
        arr, source = self.parts[p]
        img = arr[k - self.starts[p]]
        if img.ndim == 2:  # grey sources become 3 identical channels (every prepared dataset is RGB)
            img = np.repeat(img[:, :, None], 3, axis=2)
        return img, f"{source}#{k - self.starts[p]}"


def array_dataset(name, classes, splits, source):
    """A Dataset over in-memory arrays: ``splits[name] = (ArrayImages, labels, order or None)``."""
    def make(images, labels, order):
        labels = np.asarray(labels).astype(np.int64)
        if len(labels) != len(images):
            raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")

        def load(k):
            img, where = images.get(k)
            return img, int(labels[k]), where

        return (list(range(len(images))) if order is None else list(order)), load

    return Dataset(name, classes, {s: make(*v) for s, v in splits.items()}, source)


# --------------------------------------------------------------------------------------------- CIFAR
_CIFAR = {
    "cifar10": dict(folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    meta="batches.meta"),
    "cifar100": dict(folder="cifar-100-python", archive="cifar-100-python.tar.gz",
                     train=["train"], test=["test"], meta="meta"),
}

_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)
_CHUNK = 1 << 20


def _batch(data, where):
    """A CIFAR pickle as a dict with str keys (see :mod:`gluonfuse.data.safepickle`)."""
    obj = safepickle.load(data, where)
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR batch (a {type(obj).__name__}, not a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_chunked(stream, n):
    """Up to ``n`` bytes of ``stream``, read in chunks: memory follows the bytes present, not ``n``
    (a damaged header may declare terabytes)."""
    chunks, left = [], n
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_member(tar, member):
    data = _read_chunked(tar.extractfile(member), member.size)
    if len(data) < member.size:
        raise tarfile.ReadError(f"{member.name} ends {member.size - len(data)} bytes early")
    return data


def _cifar_members(src, spec):
    """``(bytes by member name, {source file: sha256})`` from the archive or its extracted folder."""
    wanted = spec["train"] + spec["test"] + [spec["meta"]]
    found = {}
    if os.path.isfile(src):
        try:
            with tarfile.open(src, "r:*") as tar:
                for member in tar:
                    base = os.path.basename(member.name)
                    if member.isfile() and base in wanted and base not in found:
                        found[base] = _read_member(tar, member)
        except _TAR_ERRORS as exc:
            raise DataError(f"{src}: damaged or not a tar archive ({exc})") from None
        files = {os.path.basename(src): sha256_file(src)}
    else:
        folder = src
        if not os.path.exists(os.path.join(folder, spec["meta"])):
            folder = os.path.join(src, spec["folder"])
            archive = os.path.join(src, spec["archive"])
            if not os.path.isdir(folder) and os.path.isfile(archive):
                return _cifar_members(archive, spec)
        files = {}
        for base in wanted:
            path = os.path.join(folder, base)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    found[base] = f.read()
                files[base] = hashlib.sha256(found[base]).hexdigest()
    missing = [w for w in wanted if w not in found]
    if missing:
        raise DataError(f"{src}: missing {', '.join(missing)} (expected the official "
                        f"{spec['archive']} or its {spec['folder']}/ folder)")
    return found, files


def _class_names(meta, key, count, where):
    names = meta.get(key)
    if not (isinstance(names, (list, tuple)) and len(names) == count
            and all(isinstance(n, (str, bytes)) for n in names)):
        raise DataError(f"{where}: {key!r} must list {count} class names")
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in names]


def _batch_arrays(batch, labels_key, n_classes, where):
    """``(images N x 32 x 32 x 3 uint8 RGB, labels int64)`` of one batch, every field checked."""
    if "data" not in batch or labels_key not in batch:
        raise DataError(f"{where}: no 'data' or {labels_key!r} entry")
    labels = safepickle.resolve(batch[labels_key])
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        labels = labels.tolist()
    if not isinstance(labels, (list, tuple)):
        raise DataError(f"{where}: {labels_key!r} is a {type(labels).__name__}, not a list of labels")
    for i, v in enumerate(labels):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < n_classes:
            raise DataError(f"{where}: label {str(v)[:20]!r} of image {i} is not a class index "
                            f"0..{n_classes - 1}")
    data = safepickle.resolve(batch["data"])
    n = len(labels)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape == (n, 3072)):
        what = f"a {data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else \
            f"a {type(data).__name__}"
        raise DataError(f"{where}: data is {what}, expected uint8 ({n}, 3072) for {n} labels")
    return data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, np.int64)


def cifar(src, name="cifar10", coarse=False):
    """CIFAR-10 / CIFAR-100 from the official python archive (.tar.gz) or its extracted folder.

    The pickled batches are loaded by :mod:`gluonfuse.data.safepickle`, which builds nothing but
    plain containers and numeric arrays: a doctored archive can neither run code nor crash the
    process, and every field is checked (dtype, shape, one label per image, labels in range).
    """
    spec = _CIFAR[name]
    members, files = _cifar_members(src, spec)
    where = f"{src}:{spec['meta']}"
    meta = _batch(members[spec["meta"]], where)
    names_key = "label_names" if name == "cifar10" else ("coarse_label_names" if coarse
                                                         else "fine_label_names")
    labels_key = "labels" if name == "cifar10" else ("coarse_labels" if coarse else "fine_labels")
    classes = _class_names(meta, names_key, 10 if name == "cifar10" else (20 if coarse else 100), where)
    splits = {}
    for split in ("train", "test"):
        parts, labels = [], []
        for base in spec[split]:
            where = f"{src}:{base}"
            images, batch_labels = _batch_arrays(_batch(members[base], where), labels_key,
                                                 len(classes), where)
            parts.append((images, base))
            labels.append(batch_labels)
        splits[split] = (ArrayImages(parts), np.concatenate(labels), None)
    source = {"files": files, "format": "cifar-python",
              "labels": ("coarse" if coarse else "fine") if name == "cifar100" else "labels"}
    return array_dataset(name, classes, splits, source)


# ---------------------------------------------------------------------------------------------- SVHN
def _loadmat(path):
    """SVHN's ``X`` (32 x 32 x 3 x N uint8) and ``y`` (N labels 1..10) as (N x 32 x 32 x 3, digits)."""
    found = read_mat(path, {"X", "y"})
    if "X" not in found or "y" not in found:
        raise DataError(f"{path}: no numeric 'X' and 'y' variables (expected SVHN's cropped-digit "
                        f"format)")
    X, y = found["X"], found["y"]
    if X.data.dtype != np.uint8 or X.cls != np.uint8:
        raise DataError(f"{path}: X holds {X.cls} values stored as {X.data.dtype}, expected uint8 images")
    y = y.data.ravel(order="F").astype(np.float64)
    if X.data.ndim != 4 or X.data.shape[:3] != (32, 32, 3) or X.data.shape[3] != len(y):
        raise DataError(f"{path}: X has shape {X.data.shape}, expected (32, 32, 3, {len(y)})")
    bad = np.flatnonzero((y < 1) | (y > 10) | (y != np.round(y)))
    if len(bad):
        raise DataError(f"{path}: label {y[bad[0]]:g} of image {bad[0]} is not a digit label 1..10")
    # SVHN writes digit 0 as label 10
    return np.moveaxis(X.data, 3, 0), (y.astype(np.int64) % 10)


def svhn(src, with_extra=False):
    """SVHN cropped digits from ``train_32x32.mat``, ``test_32x32.mat`` (+ ``extra_32x32.mat``)."""
    names = ["train_32x32.mat", "test_32x32.mat"] + (["extra_32x32.mat"] if with_extra else [])
    paths = {n: os.path.join(src, n) for n in names}
    missing = [n for n, p in paths.items() if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{src}: missing {', '.join(missing)}")
    loaded = {n: _loadmat(p) for n, p in paths.items()}
    train = [n for n in names if n != "test_32x32.mat"]
    splits = {
        "train": (ArrayImages([(loaded[n][0], n) for n in train]),
                  np.concatenate([loaded[n][1] for n in train]), None),
        "test": (ArrayImages([(loaded["test_32x32.mat"][0], "test_32x32.mat")]),
                 loaded["test_32x32.mat"][1], None),
    }
    source = {"files": {n: sha256_file(p) for n, p in paths.items()}, "format": "svhn-mat",
              "with_extra": bool(with_extra), "labels": "digit (the .mat files' 10 means 0)"}
    return array_dataset("svhn", [str(d) for d in range(10)], splits, source)


# --------------------------------------------------------------------------------------------- MNIST
_IDX_NAME = re.compile(r"^(train|t10k|test)[-_.]?(images|labels)[-_.]idx[13][-_.]ubyte(\.gz)?$")


def read_idx_array(path):
    """An idx file of unsigned bytes (gzipped or not) as a numpy array.

    The header is read first and the data no further than its dimensions say, so a damaged header
    or a gzip bomb cannot make the reader allocate what the file does not hold.
    """
    with open(path, "rb") as f:
        raw = f.read()
    gz = raw[:2] == b"\x1f\x8b"
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gz else io.BytesIO(raw)
    at = "in the decompressed data" if gz else "in the file"
    try:
        head = stream.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] != 0x08:
            raise DataError(f"{path}: not an idx file of unsigned bytes (header {head.hex()} at byte 0)")
        ndim = head[3]
        start = 4 + 4 * ndim
        dims_raw = stream.read(4 * ndim)
        if len(dims_raw) < 4 * ndim:
            raise DataError(f"{path}: truncated in the header (byte {4 + len(dims_raw)} of {start} "
                            f"{at})")
        dims = struct.unpack(f">{ndim}I", dims_raw)
        need = math.prod(dims)
        if not need:
            raise DataError(f"{path}: no data (dimensions {dims} in the header)")
        if gz and need > DEFLATE_MAX_RATIO * len(raw):
            raise DataError(f"{path}: dimensions {dims} need {need} bytes, more than {len(raw)} "
                            f"gzipped bytes can hold")
        data = _read_chunked(stream, need)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: damaged gzip data ({exc})") from None
    if len(data) < need:
        raise DataError(f"{path}: truncated: dimensions {dims} need {need} bytes from byte {start}, "
                        f"the data ends at byte {start + len(data)}")
    return np.frombuffer(data, np.uint8).reshape(dims)


def mnist(src):
    """MNIST-format idx files in folder ``src`` (train-/t10k-images/labels, gzipped or not)."""
    if not os.path.isdir(src):
        raise ValueError(f"--src for mnist is the folder holding the idx files, got {src!r}")
    found = {}
    for fname in sorted(os.listdir(src)):
        m = _IDX_NAME.match(fname.lower())
        if m:
            split = "train" if m.group(1) == "train" else "test"
            found.setdefault((split, m.group(2)), os.path.join(src, fname))
    missing = [f"{s}-{k}" for s in ("train", "test") for k in ("images", "labels")
               if (s, k) not in found]
    if missing:
        raise DataError(f"{src}: no idx file for {', '.join(missing)} (expected names like "
                        f"train-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)")
    splits, top = {}, 0
    for split in ("train", "test"):
        images = read_idx_array(found[(split, "images")])
        labels = read_idx_array(found[(split, "labels")])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{found[(split, 'images')]}: {images.shape} images do not match "
                            f"{labels.shape} labels in {found[(split, 'labels')]}")
        if not images.size:
            raise DataError(f"{found[(split, 'images')]}: no images (dimensions {images.shape})")
        top = max(top, int(labels.max()) + 1)
        splits[split] = (ArrayImages([(images, os.path.basename(found[(split, "images")]))]),
                         labels, None)
    source = {"files": {os.path.basename(p): sha256_file(p) for p in found.values()},
              "format": "idx"}
    return array_dataset("mnist", [str(c) for c in range(top)], splits, source)


# -------------------------------------------------------------------------------------------- digits
DIGITS_SPLIT = {"method": "stratified", "train_ratio": 0.8, "test_ratio": 0.2, "seed": 0}


def digits():
    """scikit-learn's 1,797 handwritten 8x8 digits, upscaled to 32x32 RGB, fixed stratified split."""
    import cv2
    import sklearn
    import sklearn.datasets

    d = sklearn.datasets.load_digits()
    # 0..16 ink levels -> 0..255, then bilinear 8 -> 32 px
    small = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in small])
    labels = d.target.astype(np.int64)
    items = [ListItem(i, f"digits#{i}", (float(y),)) for i, y in enumerate(labels)]
    parts = dict(split_items(items, DIGITS_SPLIT["train_ratio"], DIGITS_SPLIT["test_ratio"],
                             stratified=True, seed=DIGITS_SPLIT["seed"]))
    images = ArrayImages([(big, "digits")])
    splits = {s: (images, labels, [it.index for it in parts["_" + s]]) for s in ("train", "test")}
    csv = os.path.join(os.path.dirname(sklearn.datasets.__file__), "data", "digits.csv.gz")
    source = {"files": {"digits.csv.gz": sha256_file(csv)} if os.path.exists(csv) else {},
              "format": "sklearn.datasets.load_digits", "sklearn_version": sklearn.__version__,
              "upscale": "8x8 -> 32x32 bilinear, ink 0..16 -> 0..255, grey repeated to 3 channels",
              "split": DIGITS_SPLIT}
    return array_dataset("digits", [str(c) for c in range(10)], splits, source)


# -------------------------------------------------------------------------------------------- folder
def folder(src, train_ratio=0.8, size=0, seed=100):
    """An image-folder tree (one sub-folder per class), split per class by ``train_ratio``.

    ``size`` > 0 crops the centre square and scales it to ``size`` x ``size`` (im2rec's
    ``--center-crop --resize``).
    """
    if not os.path.isdir(src):
        raise ValueError(f"--src for folder is a folder with one sub-folder per class, got {src!r}")
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"--train-ratio for folder must be between 0 and 1 (exclusive), "
                         f"got {train_ratio}")
    if size < 0:
        raise ValueError(f"--size must be positive (or 0 to keep the size), got {size}")
    items, classes = list_images(src, recursive=True)
    if not items:
        raise DataError(f"{src}: no .jpg, .jpeg or .png images in its sub-folders")
    if "." in classes:
        raise DataError(f"{src}: holds images directly; put every class in its own sub-folder")
    parts = dict(split_items(items, train_ratio, 1.0 - train_ratio, stratified=True, seed=seed))
    digests = {}

    def load(item):
        data = read_bytes(os.path.join(src, item.path))
        digests[item.path] = hashlib.sha256(data).hexdigest()
        with opencv_errors():
            img = decode(data, 1)
            if size:
                img = transform(img, size, center_crop=True)
        return img[:, :, ::-1], int(item.label), item.path

    def source():
        tree = hashlib.sha256("".join(f"{p}\t{digests[p]}\n" for p in sorted(digests)).encode())
        return {"files": {}, "format": "image-folder", "root": os.path.abspath(src),
                "tree_sha256": tree.hexdigest(), "size": size,
                "split": {"method": "stratified", "train_ratio": train_ratio,
                          "test_ratio": round(1.0 - train_ratio, 6), "seed": seed}}

    splits = {"train": (parts["_train"], load), "test": (parts["_test"], load)}
    return Dataset("folder", classes, splits, source, describe=lambda item: item.path)
