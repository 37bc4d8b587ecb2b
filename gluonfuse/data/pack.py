"""Encoding images and packing them into RecordIO, in threads, in a fixed order.

Images are read, decoded, cropped, resized and encoded by worker threads (OpenCV releases the GIL
while it decodes, resizes and encodes, so threads scale without the pickling that MXNet's
multiprocessing im2rec pays per image); the main thread writes the results strictly in list order,
so the output is byte-for-byte the same whatever ``num_thread`` is.

Image semantics follow ``mxnet/tools/im2rec.py``: ``--center-crop`` cuts the longer side to a square,
``--resize N`` scales the shorter side to N with ``cv2.resize``'s default (bilinear) interpolation,
``--quality`` is the JPEG quality (1-100) or the PNG compression level (0-9, higher values act as 9),
``--color`` is ``cv2.imread``'s flag (1 colour, 0 grey, -1 unchanged). With the same options the
records are the same bytes MXNet's im2rec writes.
"""
import collections
import concurrent.futures
import contextlib
import dataclasses
import os
import sys
import time
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from gluonfuse.data import recordio
from gluonfuse.data.lists import read_list
from gluonfuse.errors import DataError

ENCODINGS = (".jpg", ".png")


class ImageSkipped(Exception):
    """An input image that cannot be packed (unreadable, corrupt); the message says why."""


@dataclasses.dataclass(frozen=True)
class EncodeOptions:
    """im2rec's pack-mode options (the same names and meanings as MXNet's flags)."""

    resize: int = 0
    center_crop: bool = False
    quality: int = 95
    encoding: str = ".jpg"
    color: int = 1
    pass_through: bool = False
    pack_label: bool = False

    def __post_init__(self):
        enc = self.encoding.lower() if self.encoding.startswith(".") else "." + self.encoding.lower()
        enc = ".jpg" if enc == ".jpeg" else enc
        if enc not in ENCODINGS:
            raise ValueError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        object.__setattr__(self, "encoding", enc)
        if self.color not in (-1, 0, 1):
            raise ValueError(f"--color must be -1 (unchanged), 0 (grey) or 1 (colour), got {self.color}")
        if self.resize < 0:
            raise ValueError(f"--resize must be 0 (keep the size) or a positive edge length, "
                             f"got {self.resize}")
        if enc == ".jpg" and not 1 <= self.quality <= 100:
            raise ValueError(f"--quality for .jpg must be 1-100, got {self.quality}")
        if enc == ".png" and self.quality < 0:
            raise ValueError(f"--quality for .png is the compression level 0-9, got {self.quality}")


# ------------------------------------------------------------------------------------ single images
def read_bytes(path):
    """The bytes of an image file; ImageSkipped when it is missing, empty or a truncated JPEG."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageSkipped(f"cannot read: {exc.strerror or exc}") from None
    if not data:
        raise ImageSkipped("empty file")
    # libjpeg decodes a cut-off JPEG with only a warning (grey lower part). Markers cannot occur
    # inside entropy-coded data, so a complete file has an end-of-image marker after its last
    # start-of-scan (an EXIF thumbnail's end marker comes before it, appended data after it)
    if data[:2] == b"\xff\xd8":
        eoi = data.rfind(b"\xff\xd9")
        if eoi < 0 or data.find(b"\xff\xda", eoi) >= 0:
            raise ImageSkipped("truncated JPEG (no end-of-image marker after the last scan)")
    return data


@contextlib.contextmanager
def opencv_errors():
    """An OpenCV failure (``cv2.error``) on one image becomes ImageSkipped: it must not end a run."""
    try:
        yield
    except cv2.error as exc:
        raise ImageSkipped(f"OpenCV cannot process it: {str(exc).strip().splitlines()[-1]}") from None


def decode(data, color=1):
    """Decode image bytes with ``cv2.imdecode``; ImageSkipped when OpenCV cannot."""
    if not len(data):
        raise ImageSkipped("no image bytes")
    with opencv_errors():  # e.g. a header declaring more pixels than OpenCV's limit
        img = cv2.imdecode(np.frombuffer(data, np.uint8), color)
    if img is None or img.size == 0:
        raise ImageSkipped("cannot decode (corrupt or not an image)")
    return img


def transform(img, resize=0, center_crop=False):
    """im2rec's geometry: optional centre square crop, then the shorter side scaled to ``resize``."""
    h, w = img.shape[:2]
    if center_crop:
        if h > w:
            m = (h - w) // 2
            img = img[m:m + w]
        else:
            m = (w - h) // 2
            img = img[:, m:m + h]
        h, w = img.shape[:2]
    if resize:
        size = (resize, h * resize // w) if h > w else (w * resize // h, resize)
        img = cv2.resize(img, size)
    return img


def encode(img, encoding=".jpg", quality=95):
    """``cv2.imencode`` with im2rec's parameters; returns bytes."""
    param = cv2.IMWRITE_JPEG_QUALITY if encoding == ".jpg" else cv2.IMWRITE_PNG_COMPRESSION
    ok, buf = cv2.imencode(encoding, img, [param, int(quality)])
    if not ok:
        raise ImageSkipped(f"cannot encode as {encoding}")
    return buf.tobytes()


def encode_file(path, opts: EncodeOptions):
    """The encoded image bytes of one file, as im2rec would pack them."""
    data = read_bytes(path)
    if opts.pass_through:
        # decoded anyway, so a corrupt file is never packed; JPEGs at 1/8 scale, which is cheap
        decode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        return data
    with opencv_errors():
        img = decode(data, opts.color)
        return encode(transform(img, opts.resize, opts.center_crop), opts.encoding, opts.quality)


def item_payload(item, image_bytes, pack_label=False):
    """The record payload of a ``.lst`` item: im2rec packs all labels only with ``--pack-label``."""
    label = item.labels if pack_label and len(item.labels) > 1 else item.labels[0]
    return recordio.pack(label, image_bytes, key=item.index)


# ------------------------------------------------------------------------------------------ packing
def ordered_map(fn, items, num_thread=1):
    """Yield ``(item, result, error)`` for every item in order; ``fn`` runs in ``num_thread`` threads.

    Only ImageSkipped is caught (as ``error``); any other exception stops the run.
    """
    def call(item):
        try:
            return fn(item), None
        except ImageSkipped as exc:
            return None, exc

    if num_thread <= 1:
        for item in items:
            yield (item, *call(item))
        return
    window = 8 * num_thread  # enough work in flight to keep every thread busy, bounded memory
    with concurrent.futures.ThreadPoolExecutor(num_thread) as pool:
        pending = collections.deque()
        try:
            for item in items:
                pending.append((item, pool.submit(call, item)))
                if len(pending) >= window:
                    head, fut = pending.popleft()
                    yield (head, *fut.result())
            for head, fut in pending:
                yield (head, *fut.result())
        finally:
            for _, fut in pending:
                fut.cancel()


@dataclasses.dataclass
class PackSummary:
    """What a packing run did."""

    rec_path: str
    packed: int = 0
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, reason)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def images_per_sec(self):
        return (self.packed + len(self.skipped)) / self.seconds if self.seconds > 0 else 0.0

    def lines(self, most=20):
        """Human-readable closing summary."""
        out = [f"{self.rec_path}: packed {self.packed} images, skipped {len(self.skipped)}, "
               f"{format_bytes(self.bytes)}, {self.images_per_sec:.0f} images/s"]
        for name, reason in self.skipped[:most]:
            out.append(f"  skipped {name}: {reason}")
        if len(self.skipped) > most:
            out.append(f"  ... and {len(self.skipped) - most} more")
        return out


def format_bytes(n):
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def pack_records(rec_path, jobs: Sequence, encode_job: Callable, idx_path=None, num_thread=1,
                 strict=False, progress=True, collect: Optional[Callable] = None,
                 describe: Callable = str):
    """Encode ``jobs`` in threads and write the records in job order to ``rec_path`` (+ ``.idx``).

    ``encode_job(job) -> (key, payload, extra)``; ImageSkipped skips the job (or, with ``strict``,
    is a DataError naming ``describe(job)``); ``collect(job, extra)`` sees every packed job in order.
    Outputs appear only when complete.
    """
    if idx_path is None:
        idx_path = recordio.idx_path_for(rec_path)
    summary = PackSummary(os.fspath(rec_path))
    start = time.perf_counter()
    bar = _progress(len(jobs), os.path.basename(summary.rec_path), progress)
    # parallelism is one image per thread; OpenCV's own pool inside each call only adds contention
    # (measured: 1 worker went from 180 to 269 images/s with it off)
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with recordio.open_writer(rec_path, idx_path) as writer:
            for job, result, error in ordered_map(encode_job, jobs, num_thread):
                bar.update(1)
                if error is not None:
                    if strict:
                        raise DataError(f"{describe(job)}: {error} (--strict stops at the first bad "
                                        f"image; without it the image is skipped)")
                    summary.skipped.append((describe(job), str(error)))
                    continue
                key, payload, extra = result
                writer.write(key, payload)
                summary.packed += 1
                if collect is not None:
                    collect(job, extra)
            summary.bytes = writer.offset
    finally:
        bar.close()
        cv2.setNumThreads(cv_threads)
    summary.seconds = time.perf_counter() - start
    return summary


def _progress(total, desc, enabled):
    from tqdm import tqdm

    # disable=None: shown on a terminal, silent in logs and pipes
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True, file=sys.stderr,
                leave=False, dynamic_ncols=True)


def pack_list(lst_path, root, rec_path=None, opts: EncodeOptions = EncodeOptions(), num_thread=1,
              strict=False, progress=True):
    """im2rec's pack mode for one list: images under ``root`` -> ``<list stem>.rec`` and ``.idx``."""
    lst_path = os.fspath(lst_path)
    items = read_list(lst_path)
    rec_path = rec_path or os.path.splitext(lst_path)[0] + ".rec"

    def encode_item(item):
        data = encode_file(os.path.join(root, item.path), opts)
        return item.index, item_payload(item, data, opts.pack_label), None

    return pack_records(rec_path, items, encode_item, num_thread=num_thread, strict=strict,
                        progress=progress, describe=lambda item: item.path)
