"""gluonfuse: deeply-fused nets and their relatives as MXNet Gluon blocks.

Importing gluonfuse sizes mxnet's OpenMP pool to every visible core *before* mxnet is imported:
mxnet 1.9.1 otherwise assumes hyper-threading and uses half the vCPUs, which on a 2-core machine
halves training speed (docs/mxnet-notes.md#openmp-threads). A value the user set is left alone.
"""
import os

__version__ = "0.1.0"


_MARK = "GLUONFUSE_DEFAULT_OMP_NUM_THREADS"  # the value gluonfuse chose, inherited by child processes


def visible_cores():
    """The cores this process may run on (its CPU affinity on Linux), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _size_thread_pool():
    """Set OMP_NUM_THREADS to the visible cores unless the user chose; True when gluonfuse chose it."""
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp is not None or "MXNET_OMP_MAX_THREADS" in os.environ:
        return omp is not None and os.environ.get(_MARK) == omp  # a gluonfuse parent's choice
    os.environ["OMP_NUM_THREADS"] = os.environ[_MARK] = str(visible_cores())
    return True


# the launcher gives each process of a job its share of the cores unless the user chose a value
THREADS_CHOSEN_BY_GLUONFUSE = _size_thread_pool()
