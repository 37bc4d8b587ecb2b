"""Compare repeated runs: final errors as median (mean ± std, best), and test-error curves.

Reads run directories written by ``gluonfuse train`` (``config.json``, ``metrics.csv``,
``status.json``; the contract, the metrics columns and the reader are :mod:`gluonfuse.train.rundir`'s), without
mxnet. The statistics follow the authors'
``get_results.py`` (zlmzju/fusenet), so figures compare with the papers' tables:

* the *median run* is the run whose final test error is the median; with an even number of runs it
  is the worse of the two middle runs (the authors sort by accuracy and take index ``(n - 1) // 2``),
  so the median is always an error some run really reached;
* the training-error median is that same run's training error, so both columns describe one run;
* mean ± std over all runs, with the population std (``numpy.std``, as the authors), and best = the
  lowest final error of any run. Errors are shown in percent;
* runs trained with ``--ema`` also tested the moving average of their weights: its final test error
  gets the same statistics (the EMA's own median run) in one more column, shown when some group
  has it ("-" for a group where not every run has it).

Unfinished, failed or corrupt runs are not silently dropped: :func:`scan_runs` returns them with the
reason, and the CLI lists them. Runs are read with :func:`gluonfuse.train.rundir.load_run` in its
strict mode (every file and cell checked; a bad cell is a DataError naming the file and line), the
same reader ``eval``, ``predict`` and ``analyze`` use leniently.
"""
import csv
import dataclasses
import math
import os

from gluonfuse.errors import DataError, did_you_mean
from gluonfuse.io import saved_figure
from gluonfuse.train.config import TrainConfig
from gluonfuse.train import liveness
from gluonfuse.train.rundir import Run, load_run  # the one reader of run directories (no mxnet import)

RUN_FILES = ("config.json", "metrics.csv", "status.json")
# --by names -> where they live in config.json; any other config or model_kwargs key works too
GROUP_KEYS = {"network": ("network",), "depth": ("model_kwargs", "depth"),
              "widen": ("model_kwargs", "widen_factor"), "dataset": ("dataset",)}
DEFAULT_BY = ("network", "depth", "widen", "dataset")
FORMATS = ("table", "csv", "markdown")
# training options with one default (off): --by groups runs written before an option existed with its default
OPTION_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def run_value(run, key):
    """The value of grouping key ``key`` (``network``, ``depth``, ... or any config key) for ``run``."""
    if key in GROUP_KEYS:
        where = GROUP_KEYS[key]
    elif key in run.config:
        where = (key,)
    elif key in OPTION_DEFAULTS:  # a run older than the option trained without it
        return OPTION_DEFAULTS[key]
    else:
        where = ("model_kwargs", key)
    value = run.config
    for part in where:
        value = value.get(part) if isinstance(value, dict) else None
    return tuple(value) if isinstance(value, list) else value


def find_run_dirs(root):
    """Directories under ``root`` (itself included) holding any run file; runs are not descended."""
    if not os.path.isdir(root):
        raise DataError(f"runs directory not found: {root}")
    found = []
    for current, dirs, files in os.walk(root):
        if any(f in files for f in RUN_FILES):
            found.append(current)
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def _unfinished_reason(run):
    state, status = run.state, run.status
    if state == "finished":
        epochs = status.get("epochs")
        if isinstance(epochs, int) and len(run.metrics) != epochs:
            return (f"corrupt: status.json says {epochs} epochs but metrics.csv has "
                    f"{len(run.metrics)} rows")
        return None
    if state == "running":
        # a process killed without a word leaves "running": say "died" when it is gone
        return (f"unfinished ({liveness.describe(status)}, epoch {status.get('epoch', '?')} of "
                f"{status.get('epochs', '?')})")
    if state == "failed":
        message = status.get("message")
        return "failed" + (f": {message}" if message else "")
    return f"corrupt: status.json has state {state!r} (expected running, finished or failed)"


def _not_yet_finished(path):
    """Why a run that fails the strict read is unfinished (running, died, failed: e.g. before its
    first epoch, no metrics.csv yet), or None when its status does not explain it."""
    try:
        run = load_run(path)
    except DataError:
        return None
    if not isinstance(run.status, dict) or run.state not in ("running", "failed"):
        return None
    return _unfinished_reason(run)


def scan_runs(root):
    """``(finished runs, skipped)`` under ``root``; ``skipped`` lists ``(path, reason)``.

    Raises :class:`DataError` when ``root`` holds no run directory at all.
    """
    paths = find_run_dirs(root)
    if not paths:
        raise DataError(f"no run directories under {root} (a run directory holds "
                        + ", ".join(RUN_FILES) + ", as 'gluonfuse train' writes them)")
    finished, skipped = [], []
    for path in paths:
        if not os.path.exists(os.path.join(path, "status.json")):
            skipped.append((path, "unfinished (no status.json yet)"))
            continue
        try:
            run = load_run(path, strict=True)
        except DataError as exc:
            skipped.append((path, _not_yet_finished(path) or f"corrupt: {exc}"))
            continue
        reason = _unfinished_reason(run)
        if reason:
            skipped.append((path, reason))
        else:
            finished.append(run)
    return finished, skipped


# ---------------------------------------------------------------- statistics

STAT_NAMES = ("median", "mean", "std", "best")

@dataclasses.dataclass
class Stats:
    median: float
    mean: float
    std: float
    best: float

    def text(self, scale=100.0, digits=2):
        f = f"{{:.{digits}f}}"
        return (f"{f.format(self.median * scale)} ({f.format(self.mean * scale)} ± "
                f"{f.format(self.std * scale)}, {f.format(self.best * scale)})")


@dataclasses.dataclass
class Group:
    key: tuple
    runs: list
    median_run: Run
    test: Stats
    train: Stats
    ema: Stats = None  # the moving average's test error (--ema), when every run of the group has it

    @property
    def epochs(self):
        return sorted({len(r.metrics) for r in self.runs})


def median_index(errors):
    """Index of the median run: the authors' rule (worse of the two middle runs when n is even)."""
    order = sorted(range(len(errors)), key=lambda i: (-errors[i], i))
    return order[(len(errors) - 1) // 2]


def stats(values, median_at):
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return Stats(values[median_at], mean, std, min(values))


def split_by(by):
    """Grouping keys as a list: ``'network, depth'`` -> ``['network', 'depth']``; lists pass as given.

    Only splits; :func:`check_by` (through :func:`group_runs`) decides which keys exist.
    """
    if isinstance(by, str):
        return [b.strip() for b in by.split(",") if b.strip()]
    return list(by)


def check_by(by, runs=()):
    """Validate grouping keys: the standard four or any key of the runs' configurations."""
    by = split_by(by)
    if not by:
        raise ValueError("--by needs at least one key, e.g. --by network")
    known = set(GROUP_KEYS) | set(OPTION_DEFAULTS)
    for run in runs:
        known.update(run.config)
        known.update(run.config.get("model_kwargs") or {})
    for key in by:
        if key not in known:
            raise ValueError(f"cannot group by {key!r}.{did_you_mean(key, known)} Keys: "
                             + ", ".join(sorted(known)))
    if len(set(by)) != len(by):
        raise ValueError(f"--by names a key twice: {','.join(by)}")
    return by


def _sort_key(key):
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))
                 for v in key)


def group_runs(runs, by=DEFAULT_BY):
    """Summaries of ``runs`` grouped by the keys ``by``, in sorted key order.

    This is where ``by`` is validated (against the standard keys and the runs' configurations);
    :func:`format_groups` and :func:`plot_groups` take the same ``by`` as given.
    """
    by = check_by(by, runs)
    groups = {}
    for run in runs:
        groups.setdefault(tuple(run_value(run, k) for k in by), []).append(run)
    out = []
    for key in sorted(groups, key=_sort_key):
        members = sorted(groups[key], key=lambda r: r.path)
        test = [r.final["test_error"] for r in members]
        train = [r.final["train_error"] for r in members]
        m = median_index(test)
        out.append(Group(key, members, members[m], stats(test, m), stats(train, m), _ema_stats(members)))
    return out


def _ema_stats(runs):
    """Stats of the final EMA test errors (median: the EMA's own median run), or None unless every
    run tested a moving average (its ``ema_test_error`` column)."""
    ema = [r.final.get("ema_test_error") for r in runs]
    if not ema or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in ema):
        return None
    return stats(ema, median_index(ema))


# ---------------------------------------------------------------- output

def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def format_groups(groups, by, fmt="table"):
    """The groups as an aligned text table, CSV (numbers in percent) or a Markdown table.

    ``by`` is the grouping the groups were made with (:func:`group_runs` validated it).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    by = split_by(by)
    with_ema = any(g.ema for g in groups)  # a column only when some group trained with --ema
    if fmt == "csv":
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        kinds = ("test", "train") + (("ema_test",) if with_ema else ())
        stat_cols = [f"{which}_error_pct_{s}" for which in kinds for s in STAT_NAMES]
        writer.writerow(list(by) + ["runs", "epochs"] + stat_cols + ["median_run"])
        for g in groups:
            cells = [f"{getattr(st, s) * 100:.4f}" for st in (g.test, g.train) for s in STAT_NAMES]
            if with_ema:
                cells += [f"{getattr(g.ema, s) * 100:.4f}" if g.ema else "" for s in STAT_NAMES]
            writer.writerow([_cell(v) for v in g.key] + [len(g.runs), "/".join(map(str, g.epochs))]
                            + cells + [g.median_run.path])
        return buf.getvalue()
    header = list(by) + ["runs", "epochs", "test error % median (mean ± std, best)",
                         "train error % median (mean ± std, best)"]
    header += ["EMA test error % median (mean ± std, best)"] if with_ema else []
    rows = [[_cell(v) for v in g.key] + [str(len(g.runs)), "/".join(map(str, g.epochs)), g.test.text(),
                                        g.train.text()] + ([g.ema.text() if g.ema else "-"] if with_ema else [])
            for g in groups]
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines) + "\n"


def format_skipped(skipped):
    if not skipped:
        return ""
    lines = [f"Skipped {len(skipped)} run director{'y' if len(skipped) == 1 else 'ies'}:"]
    lines += [f"  {path}: {reason}" for path, reason in skipped]
    return "\n".join(lines) + "\n"


def group_label(group, by):
    parts = []
    for k, v in zip(by, group.key):
        if k == "depth":
            parts.append(f"d{_cell(v)}")
        elif k == "widen":
            parts.append(f"w{_cell(v)}")
        else:
            parts.append(_cell(v) if k in ("network", "dataset") else f"{k}={_cell(v)}")
    return " ".join(parts) + f" (n={len(group.runs)})"


def plot_groups(groups, by, out):
    """Test error (%) per epoch for each group: the median run's curve, a band from min to max.

    ``by`` is the grouping the groups were made with (:func:`group_runs` validated it).
    """
    by = split_by(by)
    with saved_figure(out, figsize=(8, 5)) as (fig, ax):
        import matplotlib.ticker

        for g in groups:
            curves = [[100 * e for e in r.curve()] for r in g.runs]
            longest = max(len(c) for c in curves)
            lo = [min(c[i] for c in curves if i < len(c)) for i in range(longest)]
            hi = [max(c[i] for c in curves if i < len(c)) for i in range(longest)]
            median = [100 * e for e in g.median_run.curve()]
            label = f"{group_label(g, by)}: {100 * g.test.median:.2f} %"
            line, = ax.plot(range(1, len(median) + 1), median, label=label, linewidth=1.2)
            if len(g.runs) > 1:
                ax.fill_between(range(1, longest + 1), lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        # a log scale keeps the last epochs, where runs differ by tenths of a percent, readable
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test error (%, log scale)")
        ax.set_title("test error per epoch: median run, band from best to worst run")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return out
