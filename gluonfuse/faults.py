"""A test-only fault hook: make this process SIGKILL itself at the N-th occurrence of a named point.

``GLUONFUSE_FAULT=NAME:N`` kills the process (SIGKILL: no handler, no cleanup, as an out-of-memory
kill or a power loss would) when :func:`point` is reached with ``NAME`` for the N-th time (N >= 1).
``GLUONFUSE_FAULT_TRACE=FILE`` appends one line ``NAME DETAIL`` per point reached, so a test can
list the moments of an uninterrupted run and pick some to kill at. Neither variable is set in
normal use; :func:`point` then costs one dictionary lookup. The points:

    batch   before each training or test batch (gluonfuse.train.epoch)
    write   a complete temporary file is about to be renamed onto its final name
            (gluonfuse.io.atomic_path; gluonfuse.export's symbol and parameters)
    record  a data tool is about to write its next record (gluonfuse.data)
"""
import os
import signal

_counts = {}


def point(name, detail=""):
    """Mark that the process reached point ``name`` (``detail``: e.g. the file about to be written)."""
    trace = os.environ.get("GLUONFUSE_FAULT_TRACE")
    if trace:
        with open(trace, "a") as f:
            f.write(f"{name} {detail}\n")
    target = os.environ.get("GLUONFUSE_FAULT")
    if not target:
        return
    want, _, count = target.rpartition(":")
    if want != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
