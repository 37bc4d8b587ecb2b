"""Loading CIFAR's pickled batches without trusting them.

A pickle is a program: unpickling calls whatever callables it names, so a doctored CIFAR archive
could run code, and even numpy's own array reconstruction, fed a damaged state, is not a place to
send unchecked bytes. :func:`load` therefore names nothing real: the only globals a batch may use
(``numpy ... _reconstruct``, ``numpy ndarray``, ``numpy dtype``, ``numpy ... scalar``,
``numpy ... _frombuffer`` and ``_codecs encode``, which is how numpy arrays, numpy scalars and bytes
are pickled) resolve to stand-ins here that check their arguments and build plain numeric arrays with
``np.frombuffer`` (no object arrays, no copy, never larger than the bytes of the pickle). Everything
else a pickle can hold without naming a global (dicts, lists, tuples, str, bytes, ints, floats)
loads as usual. Any fault is a DataError.
"""
import io
import math
import pickle

import numpy as np

from gluonfuse.errors import DataError

NUMERIC = ("b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")
MAX_DIMS = 32  # numpy's own limit


class _Refused(pickle.UnpicklingError):
    pass


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _NdarrayType:
    """What ``numpy.ndarray`` names in a pickle: only a marker for ``_reconstruct``."""


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` + its pickled state (the byte order); numeric kinds only."""

    def __init__(self, spec, align=False, copy=True):
        if not isinstance(spec, str) or spec.lstrip("<>|=") not in NUMERIC:
            raise _Refused(f"dtype {_short(spec)} (only numeric arrays belong in a CIFAR batch)")
        self.spec, self.order = spec.lstrip("<>|="), spec[0] if spec[0] in "<>|=" else "|"

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=")):
            raise _Refused(f"dtype state {_short(state)}")
        self.order = state[1]

    def numpy(self):
        return np.dtype(("" if self.order == "|" else self.order) + self.spec)


def _as_dtype(value):
    if isinstance(value, _Dtype):
        return value.numpy()
    raise _Refused(f"an array of {type(value).__name__}, not of a numeric dtype")


def _array(data, dtype, shape, fortran=False):
    """A read-only numpy array over ``data`` (bytes, or a Python 2 str read as latin1)."""
    if isinstance(data, str):
        data = data.encode("latin1")  # Python 2 pickled the buffer as a str; latin1 maps it back
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused(f"array data of type {type(data).__name__}")
    if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise _Refused(f"array shape {_short(shape)}")
    count = math.prod(shape)
    if count * dtype.itemsize != len(data):
        raise _Refused(f"array of shape {shape} and dtype {dtype} in {len(data)} bytes")
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C")


class _PendingArray:
    """What ``_reconstruct`` returns; the pickle's BUILD step then gives it its state."""

    array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("array state")
        _version, shape, dtype, fortran, data = state if len(state) == 5 else (1, *state)
        self.array = _array(data, _as_dtype(dtype), shape, bool(fortran))


def _reconstruct(cls, shape, typecode):
    if cls is not _NdarrayType:
        raise _Refused("_reconstruct of something other than numpy.ndarray")
    return _PendingArray()


def _scalar(dtype, data):
    return _array(data, _as_dtype(dtype), (1,))[0]


def _frombuffer(buffer, dtype, shape, order):  # protocol 5
    return _array(buffer, _as_dtype(dtype), shape, order == "F")


def _encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with {_short(encoding)}")
    return text.encode("latin1")


_STAND_INS = {
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _encode,
}
for _module in ("numpy.core", "numpy._core"):  # numpy 2 renamed the private module
    _STAND_INS.update({(f"{_module}.multiarray", "_reconstruct"): _reconstruct,
                       (f"{_module}.multiarray", "scalar"): _scalar,
                       (f"{_module}.numeric", "_frombuffer"): _frombuffer})


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler: its memo is a dict, where the C one allocates an array as long as
    the largest memo index a pickle names (``LONG_BINPUT 309448972``: gigabytes, found by the
    property tests). As fast on CIFAR batches, which hold few opcodes and one large string."""

    def find_class(self, module, name):
        if (module, name) not in _STAND_INS:
            raise _Refused(f"refusing to load {module}.{name} (only numpy arrays and plain "
                           f"containers belong in a CIFAR batch)")
        return _STAND_INS[(module, name)]


def resolve(value):
    """``value`` with an array that came out of the pickle as a pending one replaced by the array."""
    if isinstance(value, _PendingArray):
        if value.array is None:
            raise DataError("an array without its data")
        return value.array
    return value


def load(data, where):
    """Unpickle ``data`` (a CIFAR batch: Python 2 str read as latin1); DataError naming ``where``.

    Arrays inside containers may come back pending: pass each value used through :func:`resolve`.
    """
    try:
        return _Unpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - whatever a damaged pickle raises, it is damaged
        raise DataError(f"{where}: not a readable CIFAR batch ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None
