"""MXNet RecordIO files (``.rec`` + ``.idx``) written and read in plain Python, without importing mxnet.

The bytes are exactly those ``mx.recordio.MXIndexedRecordIO`` writes (dmlc-core's RecordIO), so
``ImageRecordIter``, ``ImageRecordDataset`` and ``MXIndexedRecordIO`` read our files, and we read theirs.
Doing it here keeps ``tools/im2rec`` free of mxnet's import (seconds on a small machine) and lets the
reader report a damaged file by byte offset instead of crashing inside the C++ library.

Layout of one record at offset ``o`` (little endian)::

    uint32 magic 0xCED7230A | uint32 lrec = cflag << 29 | length | payload | zero padding to 4 bytes

A payload that holds the magic number at a 4-byte-aligned position is split there into parts
(cflag 1 = first, 2 = middle, 3 = last; the magic itself is dropped and restored on reading), so the
magic number found at an aligned offset always starts a record part.

Image record payload (``mx.recordio.pack``)::

    IRHeader: uint32 flag | float32 label | uint64 id | uint64 id2 | flag x float32 labels | image bytes

with ``flag = 0`` for one label (kept in ``label``) and ``flag = n`` for ``n`` labels stored after the header.

The ``.idx`` file is text, one ``key<TAB>byte offset`` line per record.
"""
import collections
import contextlib
import os
import struct

import numpy as np

from gluonfuse import faults
from gluonfuse.errors import DataError
from gluonfuse.io import atomic_path, text_lines

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEAD = struct.Struct("<II")  # magic, lrec
_IR = struct.Struct("<IfQQ")  # flag, label, id, id2 (mx.recordio's 'IfQQ': 24 bytes, no padding)
_MAX_LENGTH = (1 << 29) - 1

IRHeader = collections.namedtuple("IRHeader", ["flag", "label", "id", "id2"])


# ----------------------------------------------------------------------------------------- payloads
def pack(label, image_bytes, key=0, id2=0):
    """An image record payload: IRHeader for ``label`` (a number, or a sequence of numbers) + bytes.

    Same bytes as ``mx.recordio.pack(IRHeader(0, label, key, 0), image_bytes)``.
    """
    if isinstance(label, (int, float, np.integer, np.floating)):
        return _IR.pack(0, float(label), key, id2) + bytes(image_bytes)
    labels = np.asarray(label, dtype="<f4").ravel()
    return _IR.pack(labels.size, 0.0, key, id2) + labels.tobytes() + bytes(image_bytes)


def unpack(payload, where="record"):
    """Split a payload into (IRHeader, image bytes); ``where`` names it in errors.

    ``IRHeader.label`` is a float for a one-label record, a float32 array when ``flag > 0``.
    """
    if len(payload) < _IR.size:
        raise DataError(f"{where}: {len(payload)} bytes is too short for an image record header "
                        f"({_IR.size} bytes)")
    flag, label, key, id2 = _IR.unpack_from(payload)
    start = _IR.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(payload):
            raise DataError(f"{where}: header says {flag} labels but the record has only "
                            f"{len(payload) - start} bytes after the header")
        label = np.frombuffer(payload, dtype="<f4", count=flag, offset=start)
        start = end
    return IRHeader(flag, label, key, id2), payload[start:]


# -------------------------------------------------------------------------------------------- writing
def frame(payload):
    """The bytes dmlc's RecordIOWriter puts on disk for one payload (header(s), parts, padding)."""
    n = len(payload)
    if n > _MAX_LENGTH:
        raise ValueError(f"a record holds at most {_MAX_LENGTH} bytes, this one has {n}")
    # aligned occurrences of the magic number split the payload into parts
    cuts = []
    pos = payload.find(_MAGIC_BYTES)
    while pos >= 0:
        if pos % 4 == 0:
            cuts.append(pos)
            pos = payload.find(_MAGIC_BYTES, pos + 4)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    pieces = []
    start = 0
    for cut in cuts:
        pieces.append(_HEAD.pack(MAGIC, ((1 if start == 0 else 2) << 29) | (cut - start)))
        pieces.append(payload[start:cut])
        start = cut + 4
    pieces.append(_HEAD.pack(MAGIC, ((3 if cuts else 0) << 29) | (n - start)))
    pieces.append(payload[start:])
    pieces.append(b"\0" * (-n % 4))
    return b"".join(pieces)


class RecordWriter:
    """Appends records to an open ``.rec`` file and their offsets to an open ``.idx`` file."""

    def __init__(self, rec_file, idx_file=None):
        self._rec = rec_file
        self._idx = idx_file
        self.offset = 0
        self.count = 0

    def write(self, key, payload):
        """Write one record under ``key`` (an int); returns its byte offset."""
        offset = self.offset
        faults.point("record")
        data = frame(payload)
        self._rec.write(data)
        if self._idx is not None:
            self._idx.write(f"{int(key)}\t{offset}\n")
        self.offset += len(data)
        self.count += 1
        return offset


@contextlib.contextmanager
def open_writer(rec_path, idx_path=None):
    """A :class:`RecordWriter` on temporary files that become ``rec_path``/``idx_path`` only when the
    block finishes without an exception (the ``.idx`` is renamed first, the ``.rec`` last)."""
    with contextlib.ExitStack() as stack:
        tmp_rec = stack.enter_context(atomic_path(rec_path))
        tmp_idx = stack.enter_context(atomic_path(idx_path)) if idx_path else None
        with open(tmp_rec, "wb", buffering=1 << 20) as frec:
            fidx = stack.enter_context(open(tmp_idx, "w")) if tmp_idx else None
            yield RecordWriter(frec, fidx)
            if fidx is not None:
                fidx.close()


# -------------------------------------------------------------------------------------------- reading
class RecordReader:
    """Reads a ``.rec`` file record by record, or at the offsets of its ``.idx`` file.

    Every fault (bad magic, truncated record, broken multi-part record) is a :class:`DataError` that
    names the file, the record number when known, and the byte offset. A length field is checked
    against the file's size before anything is read, so a damaged header never makes the reader
    allocate the (up to 512 MB) length it declares.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        try:
            self._f = open(self.path, "rb", buffering=0)
        except FileNotFoundError:
            raise DataError(f"record file not found: {self.path}") from None
        self.size = os.fstat(self._f.fileno()).st_size

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _where(self, offset, number):
        rec = f"record {number} " if number is not None else ""
        return f"{self.path}: {rec}at byte offset {offset}"

    def _read(self, pos, n):
        return os.pread(self._f.fileno(), n, pos)

    def frame(self, offset, number=None):
        """The parts of the record at ``offset`` as ``[(payload start, length), ...]`` and the offset
        just past it, from its part headers alone (no payload is read)."""
        pos = offset
        parts = []
        while True:
            head = self._read(pos, _HEAD.size)
            if len(head) < _HEAD.size:
                raise DataError(f"{self._where(offset, number)}: truncated (the file ends at byte "
                                f"{self.size}, inside a record header)")
            magic, lrec = _HEAD.unpack(head)
            if magic != MAGIC:
                raise DataError(f"{self._where(offset, number)}: no RecordIO magic number at byte "
                                f"{pos} (found 0x{magic:08x}); the file is corrupt or not a .rec file")
            cflag, length = lrec >> 29, lrec & _MAX_LENGTH
            if pos + _HEAD.size + length > self.size:
                raise DataError(f"{self._where(offset, number)}: truncated (the record needs {length} "
                                f"bytes from byte {pos + _HEAD.size}, the file ends at byte {self.size})")
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                raise DataError(f"{self._where(offset, number)}: broken multi-part record (part flag "
                                f"{cflag} at byte {pos})")
            parts.append((pos + _HEAD.size, length))
            pos += _HEAD.size + length + (-length % 4)
            if pos > self.size:  # MXNet's reader aborts on a record whose zero padding is cut off
                raise DataError(f"{self._where(offset, number)}: truncated (the record's padding to 4 "
                                f"bytes ends at byte {pos}, the file at byte {self.size})")
            if cflag in (0, 3):
                return parts, pos

    def read_at(self, offset, number=None):
        """The payload of the record starting at ``offset`` and the offset just past it."""
        parts, end = self.frame(offset, number)
        return _MAGIC_BYTES.join(self._read(pos, n) for pos, n in parts), end

    def offsets(self):
        """Yield ``(number, offset)`` of every record in file order, reading only their headers."""
        offset, number = 0, 0
        while offset < self.size:
            _, nxt = self.frame(offset, number)
            yield number, offset
            offset, number = nxt, number + 1

    def __iter__(self):
        """Yield ``(number, offset, payload)`` for every record, in file order."""
        offset, number = 0, 0
        while offset < self.size:
            payload, nxt = self.read_at(offset, number)
            yield number, offset, payload
            offset, number = nxt, number + 1


def read_idx(path, rec_size=None):
    """The ``.idx`` file as a list of ``(key, offset)`` in file order (DataError on a bad line)."""
    path = os.fspath(path)
    entries = []
    for number, line in text_lines(path, "index file"):
        fields = line.strip().split("\t")
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise DataError(f"{path} line {number}: expected 'key<TAB>byte offset', got "
                            f"{line.strip()[:60]!r}") from None
        if offset < 0 or (rec_size is not None and offset >= rec_size):
            raise DataError(f"{path} line {number}: key {key} points to byte offset {offset}, "
                            f"outside the .rec file ({rec_size} bytes)")
        entries.append((key, offset))
    return entries


def idx_path_for(rec_path):
    """The ``.idx`` path that MXNet pairs with ``rec_path`` (same name, ``.idx`` suffix)."""
    return os.path.splitext(os.fspath(rec_path))[0] + ".idx"
