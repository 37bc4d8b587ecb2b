"""What every benchmark section shares: interleaved timing, statistics, the report and its JSON.

A *contender* is anything with ``label``, ``run(mode, iters) -> (wall_seconds, cpu_seconds)`` and
``close()``. :func:`interleave` times all contenders round by round, reversing the order every other
round (A B, B A, A B, ...), so a slow drift of the shared machine hits every contender alike, and
:func:`ratio` compares two contenders round by round (each ratio from neighbours in time) before
taking the median.
"""
import os
import platform
import statistics
import sys
import time

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


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "visible_cores": visible_cores(), "python": platform.python_version(),
            "platform": platform.platform()}


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


def interleave(contenders, modes, rounds, iters, batch_size, log=None, max_other_load=None):
    """Time every contender in every mode for ``rounds`` rounds of ``iters`` iterations.

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
    while done < rounds:
        order = contenders if (done + discarded) % 2 == 0 else contenders[::-1]
        this = []
        for mode in modes:
            for c in order:
                t = c.run(mode, iters)
                other = None if t["busy"] is None else max(0.0, (t["busy"] - t["cpu"]) / t["wall"])
                this.append((c.label, mode, iters * batch_size / t["wall"], t["cpu"] / t["wall"], other))
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


def ratio(a, b):
    """Median of the per-round ratios a[i] / b[i], with their range."""
    per_round = [x / y for x, y in zip(a, b)]
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round),
            "rounds": per_round}


# ---------------------------------------------------------------- reporting

def markdown_table(headers, rows):
    """A GitHub markdown table; numbers are formatted by the caller."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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
