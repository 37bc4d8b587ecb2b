"""Where one training step's time goes: per operator (mxnet or PyTorch) and per MKLDNN primitive.

The step is tools/bench_models.py's (gluonfuse's trainer step, or the PyTorch version of the same
network), on a fixed random batch, after warm-up steps. Three views (docs/performance.md uses them):

  ops         mxnet's profiler, one row per operator, forward and backward apart (bulk execution is
              switched off so that operators are not merged into segments)
  primitives  the MKLDNN primitives one step runs (MKLDNN_VERBOSE): counts are exact and repeatable,
              so they compare layouts and reorders without timing noise
  torch       torch.profiler's per-operator self time of the PyTorch version (--variant; for compile,
              one more row: the generated kernels inside the compiled graphs)

    python tools/profile_step.py resnet --depth 56 --view primitives
"""
import argparse
import os
import subprocess
import sys
from collections import defaultdict

MARK = "@@step"


def add_arguments(parser):
    parser.add_argument("network", help="a gluonfuse CIFAR network (resnet, cross, ...)")
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--view", choices=("ops", "primitives", "torch"), default="ops")
    parser.add_argument("--variant", choices=("channels_last", "eager", "compile"), default="channels_last",
                        help="the PyTorch version for --view torch (default channels_last)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the MKLDNN_VERBOSE process


def contender(args):
    import bench_common
    import bench_models

    kwargs = {"depth": args.depth}
    if args.view == "torch":
        if args.network not in bench_common.TORCH_NETWORKS:
            raise ValueError(f"no PyTorch version of {args.network!r}; written: {', '.join(bench_common.TORCH_NETWORKS)}")
        desc = {"kind": "torch", "network": args.network, "kwargs": kwargs, "variant": args.variant, "label": ""}
    else:
        desc = {"kind": "gluonfuse", "network": args.network, "kwargs": kwargs, "label": ""}
    reason = bench_models.skip_reason(desc, "cpu")
    if reason:
        raise ValueError(reason)
    c = bench_models.build_contender(desc, "cpu", [0], args.batch_size, 0)
    for _ in range(args.warmup):
        c.train_step()
    c.sync()
    return c


def table(rows, steps, title):
    """rows: (name, calls, milliseconds) summed over ``steps``; prints per-step figures and shares."""
    total = sum(ms for _, _, ms in rows) or 1.0
    print(f"{title}: {total / steps:.1f} ms per step in {len(rows)} kinds")
    print(f"{'ms/step':>9} {'share':>6} {'calls':>6}  name")
    for name, calls, ms in sorted(rows, key=lambda r: -r[2]):
        print(f"{ms / steps:9.2f} {100 * ms / total:5.1f}% {calls / steps:6.0f}  {name}")


def mxnet_ops(args):
    import mxnet as mx

    import tempfile

    c = contender(args)
    # the profiler would write its trace to profile.json in the working directory; only the
    # aggregate table is used, so the trace goes to a temporary directory that is removed
    trace_dir = tempfile.TemporaryDirectory()
    mx.profiler.set_config(profile_imperative=True, profile_symbolic=True, aggregate_stats=True,
                           filename=os.path.join(trace_dir.name, "profile.json"))
    mx.profiler.set_state("run")
    for _ in range(args.steps):
        c.train_step()
    c.sync()
    mx.profiler.set_state("stop")
    import json

    stats = json.loads(mx.profiler.dumps(reset=True, format="json"))["Time"].get("operator", {})
    trace_dir.cleanup()
    table([(op, s["Count"], s["Total"]) for op, s in stats.items()], args.steps, "mxnet operators")


def torch_ops(args):
    c = contender(args)  # a network without a PyTorch version is refused before torch is needed
    try:
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        raise ValueError("--view torch needs PyTorch: pip install -c constraints.txt -e '.[bench]'") from None
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            c.train_step()
    rows = [(e.key, e.count, e.self_cpu_time_total / 1000) for e in prof.key_averages()
            if e.key.startswith("aten::") and e.self_cpu_time_total > 0]
    # torch.compile runs BatchNorm, ReLU and the additions as Inductor's generated C++ kernels, which
    # the profiler shows only as the self time of each compiled graph's call, not as aten operators.
    graphs = [e for e in prof.key_averages() if e.key.startswith("## Call CompiledFxGraph")]
    if graphs:
        rows.append(("compiled graphs' own kernels (Inductor)", sum(e.count for e in graphs),
                     sum(e.self_cpu_time_total for e in graphs) / 1000))
    table(rows, args.steps, f"PyTorch {args.variant} operators (self time)")


def primitives_child(args):
    c = contender(args)
    for i in range(args.steps):
        print(MARK, flush=True)
        c.train_step()
        c.sync()
    print(MARK, flush=True)


def primitives(args):
    """Run the steps in a child with MKLDNN_VERBOSE=1 and count its primitives per step."""
    env = dict(os.environ, MKLDNN_VERBOSE="1", DNNL_VERBOSE="1")
    cmd = [sys.executable, os.path.abspath(__file__), args.network, "--depth", str(args.depth), "--child",
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    counts, ms, step = defaultdict(int), defaultdict(float), -1
    for line in out.splitlines():
        if line == MARK:
            step += 1
        elif line.startswith("dnnl_verbose,exec,") and 0 <= step < args.steps:
            f = line.split(",")
            key = f"{f[3]} {f[5]}" if f[5] != "undef" else f[3]  # primitive and propagation kind
            counts[key] += 1
            ms[key] += float(f[-1])
    table([(k, counts[k], ms[k]) for k in counts], args.steps, "MKLDNN primitives")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    if args.view == "ops":
        # one profiler row per operator: bulk execution would merge them into segments
        os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")
    tools = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.dirname(tools), tools):  # runs from a checkout without installing gluonfuse
        if path not in sys.path:
            sys.path.insert(0, path)
    import gluonfuse  # noqa: F401  (sizes the OpenMP pool before mxnet is imported)

    try:
        if args.child:
            primitives_child(args)
        else:
            {"ops": mxnet_ops, "primitives": primitives, "torch": torch_ops}[args.view](args)
    except ValueError as exc:
        print(f"profile_step.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
