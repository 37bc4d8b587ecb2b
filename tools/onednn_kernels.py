#!/usr/bin/env python3
"""Where inference time goes inside oneDNN: each graph's primitives, as oneDNN itself times them.

For a network (random weights) this runs its plain fp32 graph, its MKLDNN-fused fp32 graph
(gluonfuse.deploy.fuse) and its int8 graph (gluonfuse.deploy.quantize.quantize_network, naive
calibration on random-normal images) each in a child process with ``MKLDNN_VERBOSE=1``, times
``--calls`` forward passes of one batch after two untimed ones, and sums oneDNN's own per-call
times by primitive and implementation (e.g. ``convolution jit_uni_int8:avx2``). Operators that
mxnet runs outside oneDNN (the head's mean, a scalar multiply) do not appear.

The summary compares the graphs' convolution time and their whole oneDNN time: the whole time of
the plain graph over the int8 one's is the int8 speed-up that the kernels alone allow, before any
framework overhead.

    python tools/onednn_kernels.py --network resnet --depth 56 --batch 256
    python tools/onednn_kernels.py --network cross --depth 14 --batch 8 --graphs fused,int8
"""
import argparse
import collections
import json
import os
import subprocess
import sys

GRAPHS = ("plain", "fused", "int8")
MARK = "=== timed calls start"


def child(args):
    """Build the graph and run it; oneDNN prints its verbose lines on stdout."""
    import mxnet as mx

    from gluonfuse.models import get_model

    mx.random.seed(0)
    net = get_model(args.network, depth=args.depth)
    net.initialize(mx.init.Xavier(magnitude=2))
    net.hybridize(static_alloc=True, static_shape=True)
    shape = (args.batch,) + tuple(net.spec.input_shape)
    x = mx.nd.random.normal(shape=shape)
    net(x).wait_to_read()
    block = net
    if args.child == "fused":
        from gluonfuse.deploy.fuse import fuse

        result = fuse(net, x[:2])
        if not result.fused:
            raise SystemExit(f"{args.network}: not fused: {result.reason}")
        block = result.block
    elif args.child == "int8":
        from gluonfuse.deploy.quantize import quantize_network

        images = mx.nd.random.normal(shape=(32,) + shape[1:])
        block, _ = quantize_network(net, mx.io.NDArrayIter({"data": images}, batch_size=16), 32)
    with mx.autograd.predict_mode():
        for _ in range(2):
            block(x).wait_to_read()
        print(MARK, flush=True)
        for _ in range(args.calls):
            block(x).wait_to_read()
    sys.stdout.flush()


def parse(text, calls):
    """``{(primitive, implementation): [calls, ms]}`` per forward pass from oneDNN's verbose lines."""
    rows = collections.defaultdict(lambda: [0, 0.0])
    timed = False
    for line in text.splitlines():
        if line.startswith(MARK):
            timed = True
        elif timed and line.startswith(("dnnl_verbose,exec,", "mkldnn_verbose,exec,")):
            fields = line.split(",")
            key = (fields[3], fields[4])
            rows[key][0] += 1
            rows[key][1] += float(fields[-1])
    return {k: [n / calls, ms / calls] for k, (n, ms) in rows.items()}


def measure(graph, args):
    argv = [sys.executable, os.path.abspath(__file__), "--child", graph, "--network", args.network,
            "--depth", str(args.depth), "--batch", str(args.batch), "--calls", str(args.calls)]
    env = dict(os.environ, MKLDNN_VERBOSE="1", DNNL_VERBOSE="1")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"onednn_kernels: the {graph} graph failed: {tail}")
    rows = parse(proc.stdout, args.calls)
    if not rows:
        raise SystemExit("onednn_kernels: oneDNN printed no timings (an mxnet without MKLDNN?)")
    return rows


def summary(results):
    conv = {g: sum(ms for (prim, _), (_, ms) in rows.items() if prim == "convolution") for g, rows in results.items()}
    total = {g: sum(ms for _, ms in rows.values()) for g, rows in results.items()}
    lines = []
    for a, b in (("plain", "int8"), ("fused", "int8"), ("plain", "fused")):
        if a in results and b in results and conv[b] and total[b]:
            lines.append(f"- {a} over {b}: convolutions {conv[a] / conv[b]:.2f}x, all oneDNN time "
                         f"{total[a] / total[b]:.2f}x ({total[a]:.1f} / {total[b]:.1f} ms per pass)")
    return lines, conv, total


def markdown(args, results):
    out = [f"# oneDNN primitives: {args.network} {args.depth}, batch {args.batch}, "
           f"{args.calls} timed pass(es) per graph", "",
           "| graph | primitive | implementation | calls per pass | ms per pass |", "|---|---|---|---|---|"]
    for graph, rows in results.items():
        for (prim, impl), (n, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
            out.append(f"| {graph} | {prim} | {impl} | {n:g} | {ms:.1f} |")
    lines, _, _ = summary(results)
    return "\n".join(out + [""] + lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="resnet", help="a registered family with a depth (default resnet)")
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--calls", type=int, default=1, help="timed forward passes per graph (default 1)")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help=f"comma-separated, from {', '.join(GRAPHS)}")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--child", choices=GRAPHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.calls < 1:
        parser.error("--batch and --calls must be at least 1")
    if args.child:
        return child(args)
    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        parser.error(f"--graphs takes names from {', '.join(GRAPHS)}, not {args.graphs!r}")
    results = {g: measure(g, args) for g in graphs}
    if args.json:
        print(json.dumps({g: [{"primitive": p, "implementation": i, "calls": n, "ms": ms}
                              for (p, i), (n, ms) in rows.items()] for g, rows in results.items()}, indent=2))
    else:
        print(markdown(args, results), end="")


if __name__ == "__main__":
    sys.exit(main())
