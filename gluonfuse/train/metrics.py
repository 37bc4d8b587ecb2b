"""Exact classification metrics: loss, top-1 and top-5 error, per member for multi-output networks.

Per-sample statistics are computed on the device where the outputs live, copied to the CPU, and
only the first ``batch_size - batch.pad`` rows are counted, so a padded last batch never changes a
number. For a network with several outputs (``ensemble``'s 8 members) the headline numbers are
those of the members' *average* (mean of their softmax probabilities), and each member's loss and
errors are kept too.

Top-5 error is only defined when there are more than 5 classes; otherwise it is reported as None
(an empty cell in ``metrics.csv``).
"""
import math

import numpy as np

from gluonfuse.errors import NonFiniteLossError


def as_outputs(out):
    """A network's output as a list (one element for single-output networks)."""
    return list(out) if isinstance(out, (list, tuple)) else [out]


def sample_stats(outputs, label):
    """(N, 3 * (1 + M)) NDArray on the outputs' device: [loss, err1, err5] for the average, then per member.

    A sample is a top-k error when k or more classes score strictly higher than its label.
    """
    import mxnet as mx

    nd = mx.nd
    log_probs = [nd.log_softmax(o, axis=-1) for o in outputs]
    if len(log_probs) == 1:
        columns = [log_probs[0]]
    else:
        stacked = nd.stack(*log_probs, axis=0)
        peak = stacked.max(axis=0)
        mean_lp = peak + nd.log(nd.exp(stacked - peak.expand_dims(0)).mean(axis=0))
        columns = [mean_lp] + log_probs
    stats = []
    for lp in columns:
        picked = nd.pick(lp, label, axis=-1)
        rank = (lp > picked.expand_dims(-1)).sum(axis=-1)
        stats += [-picked, rank >= 1, rank >= 5]
    return nd.stack(*stats, axis=1)


class Meter:
    """Sums per-sample statistics over an epoch; results as a dict.

    ``add`` takes the (N, S) statistics of one batch (NDArray, any device) and the number of valid
    rows; the copy to the CPU is asynchronous, and the values are read one batch late
    (:meth:`flush`), so the device is never idle waiting for Python.
    """

    def __init__(self, classes, members=1, names=None):
        self.classes, self.members = classes, members
        self.names = names or [f"m{i}" for i in range(members)]
        self.sums = np.zeros(3 * (1 + (members if members > 1 else 0)))
        self.count = 0
        self._pending = []

    def add(self, stats_parts, valid):
        import mxnet as mx

        parts = [s.as_in_context(mx.cpu()) for s in stats_parts]
        stats = parts[0] if len(parts) == 1 else mx.nd.concat(*parts, dim=0)
        self._pending.append((stats, valid))

    def flush(self, keep_last=0):
        """Read all pending batches but the last ``keep_last``; returns the last read batch's means."""
        last = None
        while len(self._pending) > keep_last:
            stats, valid = self._pending.pop(0)
            rows = stats.asnumpy()[:valid].astype(np.float64)
            sums = rows.sum(axis=0)
            if not np.all(np.isfinite(sums)):
                raise NonFiniteLossError("non-finite loss")
            self.sums += sums
            self.count += valid
            last = sums / max(valid, 1)
        return last

    def running(self):
        """Means over the batches read so far: [loss, error, top-5 error, ...]."""
        return self.sums / max(self.count, 1)

    def result(self):
        """{'loss', 'error', 'top5_error', 'count', 'members': [...]} over everything added."""
        self.flush()
        mean = self.sums / max(self.count, 1)
        top5 = self.classes > 5

        def pack(i):
            return {"loss": float(mean[3 * i]), "error": float(mean[3 * i + 1]),
                    "top5_error": float(mean[3 * i + 2]) if top5 else None}

        res = pack(0)
        res["count"] = self.count
        res["members"] = [dict(pack(i + 1), name=self.names[i]) for i in range(self.members)] \
            if self.members > 1 else []
        return res


def fmt_error(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"
