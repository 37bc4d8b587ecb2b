"""Small file helpers every module shares: outputs appear whole or not at all.

Nothing here imports matplotlib (or mxnet) at module level; :func:`saved_figure` imports it when used.
"""
import contextlib
import json
import os
import tempfile

from gluonfuse import faults


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failed write leaves no file that looks complete (the temporary one is removed).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield tmp
        if os.path.isfile(tmp):
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        faults.point("write", path)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")


def read_json(path, what="JSON file"):
    """Read a JSON file; a missing or malformed one is a DataError naming the file."""
    from gluonfuse.errors import DataError

    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise DataError(f"cannot read {what} {path}: {exc}") from None


def text_lines(path, what="file"):
    """Yield ``(line number, line)`` of the non-blank lines of a text file (``\\r\\n`` read as
    ``\\n``); a missing file, or a line that is not text, is a DataError naming the file (and the
    line and byte offset)."""
    import locale

    from gluonfuse.errors import DataError

    encoding = locale.getpreferredencoding(False)  # what open() would use, and what writers used
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    offset = 0
    with f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path} line {number}: not a text {what} (the byte at offset "
                                f"{offset + exc.start} does not decode as {encoding})") from None
            offset += len(raw)
            if line.strip():
                yield number, (line[:-2] + "\n" if line.endswith("\r\n") else line)


PLOT_FORMATS = ("png", "svg", "pdf")


def plot_format(out):
    """The picture format of plot file ``out`` (its suffix); ValueError for others."""
    ext = os.path.splitext(out)[1][1:].lower()
    if ext not in PLOT_FORMATS:
        raise ValueError(f"cannot plot to {out!r}: choose a file ending in "
                         + ", ".join("." + f for f in PLOT_FORMATS))
    return ext


@contextlib.contextmanager
def saved_figure(out, **subplots):
    """``(fig, axes)`` of a headless matplotlib figure (``plt.subplots(**subplots)``), saved to ``out``
    (format from its suffix, see :func:`plot_format`) when the block ends without an error.

    The file is written atomically (:func:`atomic_path`); the figure is closed in every case, also
    when the block or the saving raises.
    """
    ext = plot_format(out)
    import matplotlib

    matplotlib.use("Agg")  # headless: never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=ext, dpi=120)
    finally:
        plt.close(fig)
