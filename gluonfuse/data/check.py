"""``gluonfuse data verify`` and ``gluonfuse data stats``: reading a ``.rec`` back, record by record.

Both walk the file with the pure-Python reader (so a damaged file is reported by record number and
byte offset, never a crash in MXNet's C++ reader) and decode every image in threads.
"""
import dataclasses
import math
import os
from typing import List

import cv2
import numpy as np

from gluonfuse.data import recordio
from gluonfuse.data.meta import META_NAME, PixelStats, read_meta
from gluonfuse import visible_cores
from gluonfuse.data.pack import ordered_map
from gluonfuse.errors import DataError


@dataclasses.dataclass
class Scanned:
    """One record as read and decoded."""

    number: int
    offset: int
    key: int = -1
    labels: tuple = ()
    shape: tuple = ()
    pixels: tuple = None  # PixelStats.of_image of the RGB image, when asked for
    fault: str = ""


def scan(rec_path, num_thread=None, pixels=False):
    """Yield :class:`Scanned` for every record in file order.

    A damaged record frame ends the walk with one final ``Scanned`` whose ``fault`` says where.
    """
    num_thread = num_thread or visible_cores()

    def records(reader):
        try:
            yield from reader
        except DataError as exc:
            yield ("broken", exc)

    def look(rec):
        if rec[0] == "broken":
            return None
        number, offset, payload = rec
        out = Scanned(number, offset)
        where = f"record {number} at byte offset {offset}"
        try:
            header, image = recordio.unpack(payload, where)
        except DataError as exc:
            out.fault = str(exc)
            return out
        out.key = header.id
        out.labels = tuple(np.atleast_1d(header.label).astype(float).tolist())
        img = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR) if image else None
        if img is None:
            out.fault = f"{where} (key {header.id}): the image does not decode"
            return out
        out.shape = img.shape
        if pixels:
            out.pixels = PixelStats.of_image(img[:, :, ::-1])
        return out

    with recordio.RecordReader(rec_path) as reader:
        walk = records(reader)
        for rec, result, _ in ordered_map(look, walk, num_thread):
            if result is None:
                yield Scanned(-1, -1, fault=str(rec[1]))
                return
            yield result


@dataclasses.dataclass
class Report:
    rec_path: str
    records: int = 0
    faults: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.faults


def _find_meta(rec_path, meta_dir):
    if meta_dir is not None:
        return read_meta(meta_dir)
    folder = os.path.dirname(os.path.abspath(rec_path))
    return read_meta(folder) if os.path.exists(os.path.join(folder, META_NAME)) else None


def verify(rec_path, idx_path=None, meta_dir=None, num_classes=None, num_thread=None, echo=print,
           most=20):
    """Check a ``.rec``: every record decodes, labels are in range, the ``.idx`` agrees, and the counts
    agree with meta.json (found next to the file, or ``meta_dir``). Echoes a report; DataError when
    anything is wrong (the message names the first fault); returns the :class:`Report`."""
    rec_path = os.fspath(rec_path)
    if not os.path.isfile(rec_path):
        raise DataError(f"record file not found: {rec_path}")
    report = Report(rec_path)
    meta = _find_meta(rec_path, meta_dir)
    split = os.path.splitext(os.path.basename(rec_path))[0]
    if meta is not None:
        num_classes = num_classes or meta["num_classes"]
    counts = {}
    offsets = []
    for s in scan(rec_path, num_thread):
        if s.number < 0:
            report.faults.append(s.fault)
            break
        report.records += 1
        offsets.append(s.offset)
        if s.fault:
            report.faults.append(s.fault)
            continue
        for label in s.labels:
            if not math.isfinite(label) or (num_classes is not None
                                            and not (label == int(label) and 0 <= label < num_classes)):
                valid = f"a class index 0..{num_classes - 1}" if num_classes else "a finite number"
                report.faults.append(f"record {s.number} at byte offset {s.offset} (key {s.key}): "
                                     f"label {label:g} is not {valid}")
        if s.labels and math.isfinite(s.labels[0]):
            counts[int(s.labels[0])] = counts.get(int(s.labels[0]), 0) + 1
    report.notes.append(f"{report.records} records; "
                        + ("every image decodes" if not report.faults else f"{len(report.faults)} faults")
                        + (f"; labels checked against {num_classes} classes" if num_classes else ""))
    _check_idx(report, idx_path or recordio.idx_path_for(rec_path), offsets, idx_path is not None)
    if meta is not None and split in meta["splits"]:
        want = meta["splits"][split]
        got = [counts.get(c, 0) for c in range(meta["num_classes"])]
        if report.records != want["count"]:
            report.faults.append(f"meta.json says {want['count']} {split} images, the file has "
                                 f"{report.records} records")
        elif got != want["per_class"]:
            diff = [c for c in range(len(got)) if got[c] != want["per_class"][c]]
            report.faults.append(f"per-class counts differ from meta.json for classes {diff[:10]}")
        else:
            report.notes.append(f"count and per-class counts agree with meta.json ({split})")
    echo(f"{rec_path}: {'OK' if report.ok else 'FAULTY'}")
    for line in report.notes:
        echo(f"  {line}")
    for line in report.faults[:most]:
        echo(f"  fault: {line}")
    if len(report.faults) > most:
        echo(f"  ... and {len(report.faults) - most} more faults")
    if report.faults:
        raise DataError(f"{rec_path}: {len(report.faults)} fault(s); first: {report.faults[0]}")
    return report


def _check_idx(report, idx_path, offsets, required):
    if not os.path.exists(idx_path):
        if required:
            report.faults.append(f"index file not found: {idx_path}")
        else:
            report.notes.append(f"no {os.path.basename(idx_path)} (MXNet then cannot shuffle or "
                                f"index the file)")
        return
    try:
        entries = recordio.read_idx(idx_path, os.path.getsize(report.rec_path))
    except DataError as exc:
        report.faults.append(str(exc))
        return
    starts = set(offsets)
    seen = set()
    bad = 0
    for key, offset in entries:
        if offset not in starts:
            bad += 1
            if bad <= 5:
                report.faults.append(f"{idx_path}: key {key} points to byte offset {offset}, which is "
                                     f"not the start of a record")
        if key in seen:
            report.faults.append(f"{idx_path}: key {key} appears twice")
        seen.add(key)
    if bad > 5:
        report.faults.append(f"{idx_path}: {bad} entries point between records in all")
    if len(entries) != len(offsets):
        report.faults.append(f"{idx_path}: {len(entries)} entries for {len(offsets)} records")
    elif not bad:
        report.notes.append(f"{os.path.basename(idx_path)}: {len(entries)} entries, every offset "
                            f"starts a record")


def stats(rec_path, num_thread=None):
    """Per-channel mean/std (RGB, 0..255) over every pixel, the class histogram and image sizes.

    Any damaged record is a DataError naming it.
    """
    rec_path = os.fspath(rec_path)
    pix = PixelStats(3)
    hist, sizes = {}, {}
    n = 0
    for s in scan(rec_path, num_thread, pixels=True):
        if s.fault:
            raise DataError(f"{rec_path}: {s.fault}")
        n += 1
        pix.add(s.pixels)
        label = s.labels[0] if s.labels else float("nan")
        hist[label] = hist.get(label, 0) + 1
        sizes[s.shape[:2]] = sizes.get(s.shape[:2], 0) + 1
    return {
        "file": rec_path,
        "count": n,
        "mean": [round(float(x), 4) for x in pix.mean()],
        "std": [round(float(x), 4) for x in pix.std()],
        "histogram": {f"{k:g}": v for k, v in sorted(hist.items())},
        "sizes": {f"{h}x{w}": c for (h, w), c in sorted(sizes.items(), key=lambda kv: -kv[1])},
    }
