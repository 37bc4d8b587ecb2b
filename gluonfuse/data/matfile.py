"""Numeric variables of MATLAB v5 ``.mat`` files (the format SVHN ships in), read with numpy only.

``scipy.io.loadmat`` takes the interpreter down on some damaged files (a segmentation fault in its
compiled reader, scipy 1.11, found by the property tests), so the SVHN reader uses this one. It reads
numeric arrays only, checks every length against the bytes that hold it before reading, and never
allocates more than the file holds (a compressed variable: more than deflate's 1032-fold expansion
of its compressed bytes allows). Every fault is a DataError naming the file and the byte offset.

Layout (byte order from the header's ``IM``/``MI`` mark; offsets inside a compressed variable are
those of its inflated bytes)::

    header: 116 bytes of text | 8 bytes subsystem offset | uint16 version 0x0100 | 'IM' or 'MI'
    element: uint32 type | uint32 byte count | data, padded to 8 bytes (a compressed element is not)
    small element (at most 4 bytes): uint16 type | uint16 byte count | 4 bytes holding the data
    variable: miMATRIX (14) holding the elements  array flags (uint32 x 2; class in the low byte,
      0x0800 complex) | dimensions (int32 x n) | name (int8) | real part (numeric, column-major);
      or miCOMPRESSED (15): a zlib stream holding one miMATRIX element
"""
import math
import struct
import zlib

import numpy as np

from gluonfuse.errors import DataError

MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
# storage types of numeric data, and the MATLAB classes of numeric arrays
STORAGE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
COMPLEX_FLAG = 0x0800
HEADER_BYTES = 128
DEFLATE_MAX_RATIO = 1032  # zlib's documented worst case: 1032 output bytes per input byte


class MatArray:
    """One numeric variable: ``data`` in its stored dtype (shape from the file, column-major), and
    ``cls``, the dtype of its MATLAB class (MATLAB may store e.g. a double array as uint8 bytes)."""

    def __init__(self, data, cls):
        self.data, self.cls = data, cls


class _Elements:
    """Reads the elements of ``buf[start:end]`` (``where(offset)`` names a place in errors)."""

    def __init__(self, buf, order, where, start, end):
        self.buf, self.order, self.where = buf, order, where
        self.pos, self.end = start, end

    def next(self, padded=True):
        """``(type, data start, byte count)`` of the element at the cursor; moves past it."""
        pos = self.pos
        if pos + 8 > self.end:
            raise DataError(f"{self.where(pos)}: truncated inside an element tag")
        first, = struct.unpack_from(self.order + "I", self.buf, pos)
        if first >> 16:  # small element: type and count share the first word, data in the second
            mtype, count = first & 0xFFFF, first >> 16
            if count > 4:
                raise DataError(f"{self.where(pos)}: a small element cannot hold {count} bytes")
            self.pos = pos + 8
            return mtype, pos + 4, count
        mtype, count = struct.unpack_from(self.order + "II", self.buf, pos)
        if pos + 8 + count > self.end:
            raise DataError(f"{self.where(pos)}: element of {count} bytes, but only "
                            f"{self.end - pos - 8} follow")
        self.pos = pos + 8 + count + (-count % 8 if padded else 0)
        return mtype, pos + 8, count

    def expect(self, mtype, what):
        pos = self.pos
        got, start, count = self.next()
        if got != mtype:
            raise DataError(f"{self.where(pos)}: expected the {what} (type {mtype}), found type {got}")
        return start, count


def _matrix(buf, order, where):
    """``(name, MatArray or None)`` of the miMATRIX element that fills ``buf``; None for a variable
    that is not a real numeric array (cells, structs, text, sparse or complex ones)."""
    outer = _Elements(buf, order, where, 0, len(buf))
    start, count = outer.expect(MI_MATRIX, "variable (miMATRIX)")
    inner = _Elements(buf, order, where, start, start + count)
    at, n = inner.expect(MI_UINT32, "array flags")
    if n < 4:
        raise DataError(f"{where(at)}: array flags of {n} bytes")
    flags, = struct.unpack_from(order + "I", buf, at)
    at, n = inner.expect(MI_INT32, "dimensions")
    if n % 4 or n < 8:
        raise DataError(f"{where(at)}: {n} bytes of dimensions (two or more int32 expected)")
    dims = struct.unpack_from(f"{order}{n // 4}i", buf, at)
    if min(dims) < 0:
        raise DataError(f"{where(at)}: negative dimension in {dims}")
    at, n = inner.expect(MI_INT8, "name")
    name = bytes(buf[at:at + n]).decode("latin1")
    cls = CLASSES.get(flags & 0xFF)
    if cls is None or flags & COMPLEX_FLAG:
        return name, None
    pos = inner.pos
    mtype, at, n = inner.next()
    if mtype not in STORAGE:
        raise DataError(f"{where(pos)}: data of {name!r} has type {mtype}, not a numeric type")
    dtype = np.dtype(order + STORAGE[mtype])
    items = math.prod(dims)
    if items * dtype.itemsize != n:
        raise DataError(f"{where(pos)}: {name!r} has dimensions {dims} ({items} values of "
                        f"{dtype.itemsize} bytes) but {n} bytes of data")
    data = np.frombuffer(buf, dtype, count=items, offset=at).reshape(dims, order="F")
    return name, MatArray(data, np.dtype(cls))


def _inflate(buf, start, count, order, where):
    """The element compressed in ``buf[start:start + count]``, inflated no further than it declares."""
    unzip = zlib.decompressobj()
    try:
        head = unzip.decompress(buf[start:start + count], 8)
        if len(head) < 8:
            raise DataError(f"{where(start)}: compressed variable ends inside its tag")
        size = struct.unpack(order + "II", head)[1]
        if 8 + size > DEFLATE_MAX_RATIO * count + 64:
            raise DataError(f"{where(start)}: compressed variable declares {8 + size} bytes, more "
                            f"than its {count} compressed bytes can hold")
        # max_length 0 would mean no limit
        body = unzip.decompress(unzip.unconsumed_tail, size) if size else b""
    except zlib.error as exc:
        raise DataError(f"{where(start)}: damaged compressed variable ({exc})") from None
    if len(body) < size:
        raise DataError(f"{where(start)}: compressed variable inflates to {8 + len(body)} bytes, "
                        f"its tag says {8 + size}")
    return head + body


def _place(path, pos, compressed):
    """``where(offset)`` for errors inside the variable at byte ``pos`` of ``path``."""
    if compressed:
        return lambda p: f"{path}: compressed variable at byte offset {pos}, inflated byte {p}"
    return lambda p: f"{path}: byte offset {pos + p}"


def read_mat(path, names):
    """``{name: MatArray}`` of the variables ``names`` found in the v5 .mat file ``path`` (a name
    that is missing, or not a real numeric array, is left out)."""
    with open(path, "rb") as f:
        buf = f.read()
    mark = buf[126:128]
    if len(buf) < HEADER_BYTES or mark not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB v5 .mat file (no 'IM'/'MI' mark at byte 126; "
                        f"v7.3 files are HDF5 and are not read)")
    order = "<" if mark == b"IM" else ">"
    version, = struct.unpack_from(order + "H", buf, 124)
    if version != 0x0100:
        raise DataError(f"{path}: MAT-file version 0x{version:04x} at byte 124, expected 0x0100 (v5)")
    top = _Elements(buf, order, _place(path, 0, False), HEADER_BYTES, len(buf))
    found = {}
    while top.pos < len(buf) and len(found) < len(names):
        pos = top.pos
        mtype, start, count = top.next(padded=False)  # a compressed element is not padded
        if mtype == MI_COMPRESSED:
            element = _inflate(buf, start, count, order, _place(path, 0, False))
        elif mtype == MI_MATRIX:
            element = memoryview(buf)[pos:start + count]
            top.pos += -count % 8
        else:
            raise DataError(f"{path}: byte offset {pos}: element of type {mtype} where a variable "
                            f"belongs")
        name, array = _matrix(element, order, _place(path, pos, mtype == MI_COMPRESSED))
        if name in names and array is not None:
            found.setdefault(name, array)
    return found
