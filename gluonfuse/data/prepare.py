"""``gluonfuse data prepare``: datasets in their official formats -> a prepared dataset directory.

``prepare(name, src, out)`` writes ``train.rec/.idx/.lst``, ``test.rec/.idx/.lst`` and, last,
``meta.json`` (see :mod:`gluonfuse.data.meta`). Records hold the float label and the image encoded
from BGR with ``cv2.imencode`` (so MXNet's decoders give RGB): PNG for images of 64 px or less,
JPEG quality 95 above. Every prepared dataset has 3 channels (grey sources are repeated), so the
trainer always feeds ``(3, H, W)``.

Sources (``sources.py`` reads them): cifar10, cifar100 (official python archive or its folder;
fine labels unless ``coarse``), svhn (cropped-digit ``.mat`` files; ``with_extra`` adds the 531,131
extra images), mnist (idx files, gzipped or not), folder (one sub-folder per class, split by ratio),
digits (scikit-learn's 8x8 digits upscaled to 32x32; no download).
"""
import os

import numpy as np

from gluonfuse.data import recordio, sources
from gluonfuse.data.dataset import Dataset
from gluonfuse.data.lists import ListItem, write_list
from gluonfuse.data.meta import META_NAME, SPLITS, PixelStats, build_meta, meta_path, write_meta
from gluonfuse import visible_cores
from gluonfuse.data.pack import encode, format_bytes, pack_records
from gluonfuse.errors import DataError, did_you_mean

PNG_MAX_SIDE = 64  # contract: PNG up to 64 px (lossless, tiny), JPEG quality 95 above
PNG_COMPRESSION = 3  # within 1% of level 9 in size on 32 px photos, and faster to write


def encode_rgb(img):
    """Contract encoding of an RGB (or grey) uint8 image: bytes of a PNG or JPEG made from BGR."""
    bgr = img[..., ::-1] if img.ndim == 3 and img.shape[2] == 3 else img
    if max(img.shape[:2]) <= PNG_MAX_SIDE:
        return encode(np.ascontiguousarray(bgr), ".png", PNG_COMPRESSION)
    return encode(np.ascontiguousarray(bgr), ".jpg", 95)


def write_dataset(ds: Dataset, out, num_thread=None, strict=False, progress=True, echo=print):
    """Pack every split of ``ds`` into ``out`` and write meta.json last; returns the meta dict."""
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    if os.path.exists(meta_path(out)):
        os.remove(meta_path(out))  # until the new meta.json lands, the directory is not whole
    num_thread = num_thread or visible_cores()
    n_classes = len(ds.classes)
    stats = PixelStats(3)
    per_class = {}
    shapes = {}
    for split in SPLITS:
        jobs, load = ds.splits[split]
        counts = np.zeros(n_classes, np.int64)
        listed = []

        def encode_job(job, load=load, want_stats=(split == "train")):
            img, label, name = load(job)
            if not 0 <= label < n_classes:
                raise DataError(f"{name}: label {label} is outside 0..{n_classes - 1}")
            key = job if isinstance(job, (int, np.integer)) else job.index
            payload = recordio.pack(float(label), encode_rgb(img), key=int(key))
            part = PixelStats.of_image(img) if want_stats else None
            return int(key), payload, (int(key), label, name, part, img.shape[:2])

        def collect(job, extra, counts=counts, listed=listed):
            key, label, name, part, hw = extra
            counts[label] += 1
            listed.append(ListItem(key, name, (float(label),)))
            shapes[hw] = shapes.get(hw, 0) + 1
            if part is not None:
                stats.add(part)

        summary = pack_records(os.path.join(out, f"{split}.rec"), jobs, encode_job,
                               num_thread=num_thread, strict=strict, progress=progress,
                               collect=collect, describe=ds.describe)
        if summary.packed == 0:
            raise DataError(f"{ds.name}: the {split} split has no images")
        write_list(os.path.join(out, f"{split}.lst"), listed)
        per_class[split] = counts.tolist()
        for line in summary.lines():
            echo(line)
    (h, w), n = max(shapes.items(), key=lambda kv: kv[1])
    if len(shapes) > 1:
        echo(f"note: images differ in size ({len(shapes)} sizes); meta.json gives the most common, "
             f"{h}x{w} ({n} images); prepare with --size N for a uniform N x N")
    source = ds.source() if callable(ds.source) else ds.source  # a folder's digest exists only now
    meta = build_meta(ds.name, ds.classes, (3, h, w), stats, per_class, source)
    write_meta(out, meta)
    echo(f"prepared {ds.name}: {sum(per_class['train'])} train / "
         f"{sum(per_class['test'])} test images, {n_classes} classes, in {out} "
         f"({format_bytes(_dir_bytes(out))})")
    return meta


def _dir_bytes(out):
    return sum(os.path.getsize(os.path.join(out, f"{s}.rec")) for s in SPLITS)


def check_target(out, overwrite):
    """Refuse to replace a prepared dataset unless asked to."""
    if os.path.exists(os.path.join(out, META_NAME)) and not overwrite:
        raise ValueError(f"{out} already holds a prepared dataset; pass --overwrite to replace it")


DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "folder", "digits")


def prepare(name, src=None, out=None, coarse=False, with_extra=False, train_ratio=0.8, size=0,
            num_thread=None, strict=False, overwrite=False, progress=True, echo=print):
    """Convert dataset ``name`` from ``src`` into ``out`` (default ``data/NAME``); returns meta.json."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}."
                         + did_you_mean(name, DATASETS))
    if coarse and name != "cifar100":
        raise ValueError("--coarse applies to cifar100 only")
    if with_extra and name != "svhn":
        raise ValueError("--with-extra applies to svhn only")
    if name != "folder" and (size or train_ratio != 0.8):
        raise ValueError("--size and --train-ratio apply to the folder dataset only")
    if name == "digits":
        if src is not None:
            raise ValueError("digits ships with scikit-learn; it takes no --src")
    elif src is None:
        raise ValueError(f"{name} needs --src (the downloaded files; or use 'gluonfuse data fetch')")
    elif not os.path.exists(src):
        raise ValueError(f"--src {src!r} does not exist")
    out = out or os.path.join("data", name)
    check_target(out, overwrite)
    if name in ("cifar10", "cifar100"):
        ds = sources.cifar(src, name, coarse=coarse)
    elif name == "svhn":
        ds = sources.svhn(src, with_extra=with_extra)
    elif name == "mnist":
        ds = sources.mnist(src)
    elif name == "folder":
        ds = sources.folder(src, train_ratio=train_ratio, size=size)
    else:
        ds = sources.digits()
    if name in ("folder", "mnist"):  # generic formats: the dataset is called after its directory
        ds.name = os.path.basename(os.path.normpath(os.path.abspath(out)))
    return write_dataset(ds, out, num_thread=num_thread, strict=strict, progress=progress, echo=echo)
