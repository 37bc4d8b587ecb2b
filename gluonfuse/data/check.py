"""``gluonfuse data verify`` and ``gluonfuse data stats``: reading a ``.rec`` back, record by record;
and :func:`check_record_file`, the cheap check made before MXNet's C++ reader opens a file.

``verify`` and ``stats`` walk the file with the pure-Python reader (so a damaged file is reported by
record number and byte offset, never a crash in MXNet's C++ reader) and decode every image in threads.
``check_record_file`` reads the ``.idx`` and two record headers only: MXNet's ``ImageRecordIter``
does not report a damaged file, it takes the process down (a ``.rec`` cut short under an intact
``.idx`` is a segmentation fault, a bad magic number an abort), so the trainer, ``eval`` and
``analyze`` run this check on every file first.
"""
import contextlib
import dataclasses
import math
import os
import sys
from typing import List

import cv2
import numpy as np

from gluonfuse.data import recordio
from gluonfuse.data.meta import META_NAME, SPLITS, PixelStats, read_meta
from gluonfuse import visible_cores
from gluonfuse.data.pack import ImageSkipped, decode, ordered_map
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
        try:
            img = decode(image, cv2.IMREAD_COLOR)
        except ImageSkipped as exc:
            out.fault = f"{where} (key {header.id}): the image does not decode ({exc})"
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


@contextlib.contextmanager
def scanning(rec_path, num_thread=None, pixels=False):
    """:func:`scan` for a ``with`` block, which ends the walk (its threads joined) on leaving.

    Meanwhile what C libraries write to file descriptor 2 goes to /dev/null: libpng prints
    "libpng error: ..." for every corrupt PNG, which the walk reports itself, by record and offset.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        with contextlib.closing(scan(rec_path, num_thread, pixels)) as walk:
            yield walk
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
    with scanning(rec_path, num_thread) as walk:
        for s in walk:
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
    with scanning(rec_path, num_thread, pixels=True) as walk:
        for s in walk:
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


# ------------------------------------------------------------------------------- cheap pre-pass check
def _verify_hint(rec_path):
    folder = os.path.dirname(os.path.abspath(rec_path))
    target = folder if os.path.exists(os.path.join(folder, META_NAME)) else rec_path
    return f"; 'gluonfuse data verify {target}' checks every record"


def check_record_file(rec_path, expected=None, idx_path=None, require_idx=False):
    """Check that MXNet's reader can open ``rec_path`` without crashing; returns its record count.

    With the ``.idx`` (``idx_path``, default beside the file): every entry parses, the offsets are
    distinct multiples of 4 inside the file, the lowest is 0, the records at the lowest and highest
    offsets have sound headers (magic number, part flags, lengths inside the file) and end where the
    next indexed record starts and where the file ends. That reads the ``.idx`` and two record
    headers, never an image: O(records) on the index only. Without an ``.idx`` (an error with
    ``require_idx``) every record header is walked instead (no payload is read). ``expected``: the
    record count the file must have.

    Raises DataError naming the file and the byte offset. Damage in the middle of the file (a record
    header or an image that is corrupt under an intact index) is found only by reading every record:
    the messages point to ``gluonfuse data verify``.
    """
    rec_path = os.fspath(rec_path)
    if not os.path.isfile(rec_path):
        raise DataError(f"record file not found: {rec_path}")
    idx_path = os.fspath(idx_path or recordio.idx_path_for(rec_path))
    hint = _verify_hint(rec_path)
    with recordio.RecordReader(rec_path) as reader:
        if reader.size == 0:
            raise DataError(f"{rec_path}: empty file (0 bytes), not a dataset split; prepare or pack "
                            f"it again")
        if os.path.isfile(idx_path):
            count = _check_index(reader, idx_path, hint)
        elif require_idx:
            raise DataError(f"{idx_path} not found: the index of {rec_path} (a prepared dataset has one "
                            f"per .rec; prepare it again, or pack it with im2rec, which writes it)")
        else:
            try:
                count = sum(1 for _ in reader.offsets())
            except DataError as exc:
                raise DataError(f"{exc}{hint}") from None
    if expected is not None and count != expected:
        raise DataError(f"{rec_path}: {count} records, expected {expected}{hint}")
    return count


def _check_index(reader, idx_path, hint):
    """The checks of :func:`check_record_file` with an index; returns its number of entries."""
    rec, size = reader.path, reader.size
    entries = recordio.read_idx(idx_path)
    if not entries:
        raise DataError(f"{idx_path}: no entries, but {rec} has {size} bytes{hint}")
    for key, offset in entries:
        if offset >= size:
            raise DataError(f"{rec}: {idx_path} places key {key} at byte offset {offset}, past the end "
                            f"of the file ({size} bytes): the .rec is cut short, or the index belongs "
                            f"to another file{hint}")
        if offset % 4:
            raise DataError(f"{rec}: {idx_path} places key {key} at byte offset {offset}, which cannot "
                            f"start a record (records start at multiples of 4){hint}")
    by_offset = sorted(entries, key=lambda e: e[1])
    for (key0, off0), (key1, off1) in zip(by_offset, by_offset[1:]):
        if off0 == off1:
            raise DataError(f"{rec}: {idx_path} places keys {key0} and {key1} at the same byte offset "
                            f"{off0}{hint}")
    if by_offset[0][1] != 0:
        raise DataError(f"{rec}: {idx_path} starts at byte offset {by_offset[0][1]}, not 0: the index "
                        f"does not cover the start of the file{hint}")
    first_end = by_offset[1][1] if len(by_offset) > 1 else size  # where the next record starts
    for (key, offset), must_end in ((by_offset[0], first_end), (by_offset[-1], size)):
        try:
            _, end = reader.frame(offset)
        except DataError as exc:
            raise DataError(f"{exc} (key {key} of {idx_path}){hint}") from None
        if end != must_end:
            there = (f"the next indexed record starts at byte {must_end}" if must_end < size
                     else f"the file ends at byte {size}")
            raise DataError(f"{rec}: the record of key {key} at byte offset {offset} ends at byte {end}, "
                            f"but {there}: {idx_path} and the file disagree{hint}")
    return len(entries)


def check_split_file(rec_path):
    """:func:`check_record_file` for a file of a prepared dataset (``meta.json`` beside it): the
    ``.idx`` is required and the count must be meta.json's for the split (the file's name). A file
    with no meta.json beside it gets the plain check. Returns the record count."""
    rec_path = os.fspath(rec_path)
    folder = os.path.dirname(os.path.abspath(rec_path))
    if not os.path.exists(os.path.join(folder, META_NAME)):
        return check_record_file(rec_path)
    meta = read_meta(folder)
    count = check_record_file(rec_path, require_idx=True)
    split = os.path.splitext(os.path.basename(rec_path))[0]
    want = meta["splits"][split]["count"] if split in SPLITS else None
    if want is not None and count != want:
        raise DataError(f"{rec_path}: its index {recordio.idx_path_for(rec_path)} lists {count} "
                        f"records, meta.json says {want} {split} images: the files do not belong "
                        f"together{_verify_hint(rec_path)}")
    return count
