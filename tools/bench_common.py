"""What every benchmark section shares: the section protocol, interleaved timing, statistics, rendering.

A *section* is a module ``tools/bench_<name>.py`` with a docstring (its ``--help``),
``add_arguments(parser)`` and ``run(args) -> result``, registered in ``benchmark.SECTIONS``. A result
is a JSON-able dict with at least ``section``, ``markdown`` (what is printed) and ``ratios``: a list of
:func:`ratio` dicts named ``A / B``: A's speed over B's, per round (above 1: A is faster), or
``{"name", "skipped": reason}`` for a comparison that could not run here. ``benchmark.py report`` collects
the ratios of every section into one table.

A *contender* is anything with ``label``, ``run(mode, iters) -> timed(...)`` and ``close()``.
:func:`interleave` times all contenders round by round, reversing the order every other round
(A B, B A, A B, ...), so a slow drift of the shared machine hits every contender alike, and
:func:`ratio` compares two contenders round by round (each ratio from neighbours in time) before
taking the median.
"""
import argparse
import os
import platform
import statistics
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))

# the CIFAR networks tools/bench_torch.py writes in PyTorch; here, not there, because bench_models must
# know them without importing torch
TORCH_NETWORKS = ("plain", "resnet", "cross", "half", "side")
THREAD_VARS = ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS")
# The thread variables as the user left them, recorded by benchmark.py before gluonfuse is imported.
USER_THREAD_ENV = {}


def visible_cores():
    # imported here, not at the top: benchmark.py records the user's thread settings before gluonfuse
    # is imported (importing it sets OMP_NUM_THREADS)
    from gluonfuse import visible_cores as cores

    return cores()


def thread_count():
    """OpenMP threads this process's mxnet uses (gluonfuse sets OMP_NUM_THREADS when it is unset)."""
    for var in THREAD_VARS[::-1]:  # mxnet prefers MXNET_OMP_MAX_THREADS
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return max(1, visible_cores() // 2)  # mxnet's own default on x86: it assumes hyper-threading


def thread_source():
    """Who chose the thread count: the user's variable or gluonfuse's default."""
    for var in THREAD_VARS[::-1]:
        if USER_THREAD_ENV.get(var):
            return f"{var}={USER_THREAD_ENV[var]} set by the user"
    if os.environ.get("OMP_NUM_THREADS"):
        return f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} set by gluonfuse ({visible_cores()} visible cores)"
    return "mxnet's default (half the visible cores)"


# ---------------------------------------------------------------- timing

def machine_busy_seconds():
    """CPU seconds all processes on the machine have used (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def timed(step, sync, iters):
    """Run ``step()`` ``iters`` times, then ``sync()``.

    Returns wall seconds, this process's CPU seconds and the whole machine's busy CPU seconds.
    """
    busy0 = machine_busy_seconds()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    sync()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    busy1 = machine_busy_seconds()
    return {"wall": wall, "cpu": cpu, "busy": None if busy0 is None else busy1 - busy0}


def interleave(contenders, modes, rounds, iters, batch_size, log=None, max_other_load=None, rotate=False):
    """Time every contender in every mode for ``rounds`` rounds of ``iters`` iterations.

    ``iters`` and ``batch_size`` are numbers or ``{mode: number}``. A contender's timing may carry
    ``calls``, the wall seconds of each call: its speed is then the batch over the median call (a
    latency), not the images over the whole wall time. With ``rotate``, round r starts with the r-th
    contender (A B C, B C A, C A B, ...) instead of reversing the order every other round.

    ``results`` is ``{label: {mode: {"images_per_sec": [...], "cores_busy": [...], "other_load": [...]}}}``,
    one entry per round: ``cores_busy`` is the contender's CPU time over wall time (2.0 = two cores
    kept busy), ``other_load`` the cores other processes kept busy meanwhile (the noise on a shared
    machine). With ``max_other_load``, a round in which other processes used more cores than that is
    thrown away and run again (at most ``2 * rounds`` extra rounds), so busy spells do not count.
    Returns ``(results, number of discarded rounds)``.
    """
    results = {c.label: {m: {"images_per_sec": [], "cores_busy": [], "other_load": []} for m in modes}
               for c in contenders}
    done = discarded = 0
    iters_of, batch_of = (v if isinstance(v, dict) else dict.fromkeys(modes, v) for v in (iters, batch_size))
    while done < rounds:
        k = done + discarded
        if rotate:
            order = contenders[k % len(contenders):] + contenders[:k % len(contenders)]
        else:
            order = contenders if k % 2 == 0 else contenders[::-1]
        this = []
        for mode in modes:
            for c in order:
                t = c.run(mode, iters_of[mode])
                other = None if t["busy"] is None else max(0.0, (t["busy"] - t["cpu"]) / t["wall"])
                speed = (batch_of[mode] / statistics.median(t["calls"]) if t.get("calls")
                         else iters_of[mode] * batch_of[mode] / t["wall"])
                this.append((c.label, mode, speed, t["cpu"] / t["wall"], other))
        worst = max((o for *_, o in this if o is not None), default=0.0)
        if max_other_load is not None and worst > max_other_load and discarded < 2 * rounds:
            discarded += 1
            if log:
                log(f"round discarded: other processes kept {worst:.2f} cores busy (limit {max_other_load})")
            continue
        done += 1
        for label, mode, speed, cores, other in this:
            rec = results[label][mode]
            rec["images_per_sec"].append(speed)
            rec["cores_busy"].append(cores)
            if other is not None:
                rec["other_load"].append(other)
        if log:
            parts = [f"{c.label} " + "/".join(f"{results[c.label][m]['images_per_sec'][-1]:.0f}" for m in modes)
                     for c in contenders]
            log(f"round {done}/{rounds} ({'/'.join(modes)} img/s): " + "; ".join(parts))
    return results, discarded


def summary(values):
    """Median, min, max and spread ((max - min) / median) of a list of per-round figures."""
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / med if med else 0.0, "rounds": list(values)}


def ratio(a, b, name=None):
    """Median of the per-round ratios a[i] / b[i], with their range (and ``name`` when given)."""
    per_round = [x / y for x, y in zip(a, b)]
    out = {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round),
           "rounds": per_round}
    return out if name is None else dict(out, name=name)


def fmt_ratio(r):
    """``1.47 (per round 1.34-1.55)``; one round has no range."""
    if len(r["rounds"]) == 1:
        return f"{r['median']:.2f} (1 round)"
    return f"{r['median']:.2f} (per round {r['min']:.2f}-{r['max']:.2f})"


# ---------------------------------------------------------------- reporting

def markdown_table(headers, rows):
    """A GitHub markdown table; numbers are formatted by the caller."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def trainer_parts():
    """gluonfuse's own training step, initialisation, trainer and epoch loop, which the benchmarks time.

    The one place tools/ imports them from: ``Step, initialize, make_trainer, TrainingPass``.
    """
    from gluonfuse.train.epoch import TrainingPass
    from gluonfuse.train.step import Step, initialize, make_trainer

    return Step, initialize, make_trainer, TrainingPass


def versions():
    """Versions of the frameworks that are importable, without importing the ones that are not loaded."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("mxnet", "gluoncv", "torch", "numpy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    import gluonfuse

    out["gluonfuse"] = gluonfuse.__version__
    return out


def command_line():
    return " ".join(["python", os.path.relpath(sys.argv[0])] + sys.argv[1:]) if sys.argv else ""


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the section protocol

def check_counts(args, at_least_1=(), at_least_0=()):
    """ValueError naming the first option (by its ``args`` attribute) below its minimum; None skips."""
    for names, low in ((at_least_1, 1), (at_least_0, 0)):
        for name in names:
            value = getattr(args, name)
            if value is not None and value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be {'at least 1' if low else '0 or more'}, "
                                 f"got {value}")


def section_args(module, argv):
    """Parse ``argv`` with ``module``'s own options: how one section runs another (``report``)."""
    parser = argparse.ArgumentParser(prog=module.__name__)
    module.add_arguments(parser)
    return parser.parse_args(argv)


def exec_section(name):
    """``python tools/bench_NAME.py ARGS`` is ``python tools/benchmark.py NAME ARGS``: replace this
    process by the latter, which imports gluonfuse before mxnet and reports errors in one line."""
    script = os.path.join(TOOLS, "benchmark.py")
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, script, name, *sys.argv[1:]])
