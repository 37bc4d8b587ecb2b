"""Inference speed: fp32 plain, MKLDNN-fused fp32 and int8 mxnet against PyTorch eager, channels_last and int8.

For each network (default the standard set, resnet 56 and cross 56; --network/--depth pick one) six
variants of the same architecture, with the same random weights on the mxnet side:
  fp32 plain       the gluonfuse network, hybridized (static_alloc, static_shape)
  fp32 fused       gluonfuse.deploy.fuse: the MKLDNN-partitioned graph (conv+BN+ReLU+sum fused), used
                   only when it agrees with the plain network on a check batch
  int8             gluonfuse.deploy.quantize.quantize_network: mxnet's MKLDNN int8, naive calibration
                   on a few random-normal batches. That is enough to time it, not to judge its
                   accuracy (gluonfuse quantize calibrates on the training set and measures that)
  PyTorch eager, PyTorch channels_last
                   bench_torch's version of the network (same parameter count), torch.inference_mode
  PyTorch int8     torch.ao post-training static quantization (FX graph mode, the x86 backend's
                   qconfig), calibrated on the same random batches
A variant that cannot run here (torch missing, a partition or quantization failure) is a row saying
why. Every variant runs in its own process; the processes take turns, round r starting with the
r-th variant (rotated order). Batch 1 gives the latency: the median of --latency-calls calls per
round, in ms per image; larger batches the throughput, images/s over --iters calls per round. A
round's first call per batch size, and --warmup calls per batch size at start-up, are not timed.
"speed-up" is the median of the per-round ratios of the variant's speed to fp32 plain's (above 1:
faster), with their range. All variants use the same OpenMP thread count (the threads line).
"""
import time

import bench_common
import bench_machine
import bench_models

NETWORKS = (("resnet", 56), ("cross", 56))  # the default set
QUICK_NETWORKS = (("resnet", 8), ("cross", 14))  # the smallest of each
# (kind, variant, row label); the first is the baseline of every ratio and must run
VARIANTS = (("gluonfuse", "plain", "fp32 plain"), ("gluonfuse", "fused", "fp32 fused (MKLDNN)"),
            ("gluonfuse", "int8", "int8 (MKLDNN, naive calibration)"), ("torch", "eager", "PyTorch eager"),
            ("torch", "channels_last", "PyTorch channels_last"), ("torch", "int8", "PyTorch int8 (torch.ao x86)"))
# calls per variant and round: batch 1 is a few ms a call, batch 256 about half a second (resnet 56, fp32)
TIMING = {"latency_calls": 30, "iters": 2, "warmup": 3}
QUICK_TIMING = {"latency_calls": 3, "iters": 1, "warmup": 1}
CALIBRATION = {"batches": 2, "batch_size": 32}
QUICK_CALIBRATION = {"batches": 1, "batch_size": 4}
# A worker's OpenMP threads keep spinning for a while after its last call (libgomp and Intel's OpenMP
# both wait actively, a few hundred ms by default) and take cores from the next variant: a batch-1
# call lasts a few ms, so each variant lets the previous one's threads go to sleep before it starts.
SETTLE_SECONDS = 0.3


def add_arguments(parser):
    net = parser.add_argument_group("network")
    net.add_argument("--network", help="a registered network with a PyTorch version (default: resnet 56 and "
                                       "cross 56)")
    net.add_argument("--depth", type=int, help="depth (default 56; the smallest, 8 or 14, with --quick)")
    run = parser.add_argument_group("timing")
    run.add_argument("--batch-sizes", default=None, metavar="N,N",
                     help="batch sizes; 1 is timed as latency, the others as throughput (default 1,256; "
                          "1,4 with --quick)")
    run.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    run.add_argument("--latency-calls", type=int,
                     help="timed batch-1 calls per variant and round; their median is the round's latency "
                          f"(default {TIMING['latency_calls']}; {QUICK_TIMING['latency_calls']} with --quick)")
    run.add_argument("--iters", type=int,
                     help="timed calls per variant, round and batch size above 1 "
                          f"(default {TIMING['iters']}; {QUICK_TIMING['iters']} with --quick)")
    run.add_argument("--warmup", type=int, help="untimed calls per batch size at start-up "
                                                f"(default {TIMING['warmup']}; {QUICK_TIMING['warmup']} with --quick)")
    run.add_argument("--quick", action="store_true",
                     help="resnet 8 and cross 14, batch sizes 1,4, 3 latency calls, 1 iteration, a 4-image calibration: "
                          "checks that the section runs; its figures mean nothing")
    run.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")


# ---------------------------------------------------------------- contenders (built in the worker process)

def _inputs(batch_sizes, input_shape, seed):
    import numpy as np

    rng = np.random.RandomState(seed)
    return {b: rng.normal(size=(b,) + tuple(input_shape)).astype("float32") for b in batch_sizes}


def _calibration_batches(desc, input_shape):
    """The random-normal calibration images, the same on the mxnet and the PyTorch side."""
    import numpy as np

    cal = desc["calibration"]
    rng = np.random.RandomState(desc["seed"] + 1)
    return rng.normal(size=(cal["batches"] * cal["batch_size"],) + tuple(input_shape)).astype("float32")


class InferContender:
    """One variant: ``run(batch_size_text, calls)`` times ``calls`` forward calls one by one."""

    def __init__(self, desc, call, inputs, n_params, notes=None):
        self.desc, self.label = desc, desc["label"]
        self.call, self.inputs, self.n_params = call, inputs, n_params
        self.notes = notes or {}

    def params(self):
        return self.n_params

    def run(self, mode, calls):
        x = self.inputs[int(mode)]
        time.sleep(SETTLE_SECONDS)
        self.call(x)  # untimed: the first call after another batch size re-plans mxnet's static memory
        timings = [bench_common.timed(lambda: self.call(x), lambda: None, 1) for _ in range(calls)]
        busy = [t["busy"] for t in timings]
        return {"wall": sum(t["wall"] for t in timings), "cpu": sum(t["cpu"] for t in timings),
                "busy": None if None in busy else sum(busy), "calls": [t["wall"] for t in timings]}

    def close(self):
        pass


def _mxnet_contender(desc, batch_sizes, seed):
    import mxnet as mx

    from gluonfuse.models import count_params, get_model

    _, initialize, _, _ = bench_common.trainer_parts()
    net = get_model(desc["network"], **desc["kwargs"])
    mx.random.seed(seed)
    initialize(net, [mx.cpu()])
    net.hybridize(static_alloc=True, static_shape=True)
    notes, block = {}, net
    if desc["variant"] == "fused":
        from gluonfuse.deploy.fuse import fuse

        fused = fuse(net, mx.nd.array(_inputs([2], net.spec.input_shape, seed + 2)[2]))
        if not fused.fused:
            raise RuntimeError(f"not fused: {fused.reason}")
        block, notes = fused.block, {"note": f"{fused.subgraphs} MKLDNN subgraphs"}
    elif desc["variant"] == "int8":
        from gluonfuse.deploy.quantize import quantize_network

        images = _calibration_batches(desc, net.spec.input_shape)
        calib = mx.io.NDArrayIter({"data": images}, batch_size=desc["calibration"]["batch_size"])
        block, excluded = quantize_network(net, calib, len(images), "naive")
        notes = {"note": f"naive calibration on {len(images)} random-normal images, {len(excluded)} layers fp32"}
    inputs = {b: mx.nd.array(x) for b, x in _inputs(batch_sizes, net.spec.input_shape, seed).items()}

    def call(x):
        with mx.autograd.predict_mode():
            out = block(x)
        for o in out if isinstance(out, (list, tuple)) else [out]:
            o.wait_to_read()

    return InferContender(desc, call, inputs, count_params(net), notes)


def _torch_int8(torch, model, desc, input_shape):
    """torch.ao FX post-training static quantization of ``model`` (eval mode), x86 backend."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    images = torch.from_numpy(_calibration_batches(desc, input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (images[:1],))
        with torch.inference_mode():
            for batch in images.split(desc["calibration"]["batch_size"]):
                prepared(batch)
        return convert_fx(prepared)


def _torch_contender(desc, batch_sizes, seed, threads):
    import torch

    import bench_torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = bench_models._spec(desc["network"], desc["kwargs"])
    model = bench_torch.FusionNet(spec).eval()
    n_params = bench_torch.count_params(model)
    inputs = {b: torch.from_numpy(x) for b, x in _inputs(batch_sizes, spec.input_shape, seed).items()}
    if desc["variant"] == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        inputs = {b: x.contiguous(memory_format=torch.channels_last) for b, x in inputs.items()}
    elif desc["variant"] == "int8":
        model = _torch_int8(torch, model, desc, spec.input_shape)

    def call(x):
        with torch.inference_mode():
            model(x)

    return InferContender(desc, call, inputs, n_params)


def skip_reason(desc, ctx_kind):
    """Why ``desc`` cannot run here (None when it can), without importing a framework."""
    return bench_models.skip_reason(desc, ctx_kind)


def build_contender(desc, ctx_kind, ctx_ids, batch_size, seed):
    """The variant ``desc`` in this process; ``batch_size`` is the list of batch sizes it will run."""
    if desc["kind"] == "torch":
        return _torch_contender(desc, batch_size, seed, bench_common.thread_count())
    return _mxnet_contender(desc, batch_size, seed)


# ---------------------------------------------------------------- the run

def _batch_sizes(args):
    text = args.batch_sizes or ("1,4" if args.quick else "1,256")
    try:
        sizes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise ValueError(f"--batch-sizes takes distinct positive numbers like 1,256, not {text!r}")
    return sizes


def _networks(args):
    """``[(network, kwargs)]``: --network/--depth, or the default set."""
    defaults = dict(QUICK_NETWORKS if args.quick else NETWORKS)
    if args.network:
        pairs = [(args.network, args.depth or defaults.get(args.network))]
    else:
        pairs = [(n, args.depth or d) for n, d in defaults.items()]
    out = []
    for network, d in pairs:
        kwargs = {} if d is None else {"depth": d}
        spec = bench_models._spec(network, kwargs)  # ValueError for unknown networks and bad depths
        if getattr(spec, "network", None) not in bench_common.TORCH_NETWORKS or not hasattr(spec, "blocks"):
            raise ValueError(f"--network {network}: the inference section compares with PyTorch and has "
                             f"versions of the CIFAR {', '.join(bench_common.TORCH_NETWORKS)} networks only")
        out.append((network, kwargs, spec.name))
    return out


def _descs(network, kwargs, name, args):
    calibration = QUICK_CALIBRATION if args.quick else CALIBRATION
    return [{"kind": kind, "variant": variant, "network": network, "kwargs": kwargs, "label": label,
             "name": name, "seed": args.seed, "calibration": calibration, "optional": i > 0}
            for i, (kind, variant, label) in enumerate(VARIANTS)]


def run(args):
    for name, value in (QUICK_TIMING if args.quick else TIMING).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    bench_common.check_counts(args, ("rounds", "latency_calls", "iters"), ("warmup",))
    sizes = _batch_sizes(args)
    networks = _networks(args)
    say = None if args.quiet else bench_common.log
    parts = [_run_network(args, sizes, *network, say) for network in networks]
    return _report(args, sizes, parts)


def _run_network(args, sizes, network, kwargs, name, say):
    modes = [str(b) for b in sizes]
    setup = {"builder": __name__, "ctx_kind": "cpu", "ctx_ids": [0], "batch_size": sizes, "seed": args.seed,
             "modes": modes, "warmup": args.warmup}
    contenders, skipped = bench_models.start_contenders(_descs(network, kwargs, name, args), setup, True, say)
    iters = {m: args.latency_calls if m == "1" else args.iters for m in modes}
    try:
        results, _ = bench_common.interleave(contenders, modes, args.rounds, iters, dict(zip(modes, sizes)),
                                             log=say, rotate=True)
    finally:
        for c in contenders:
            c.close()
    return {"network": name, "contenders": contenders, "skipped": skipped, "results": results}


def _mode_name(batch):
    return "batch 1 latency" if batch == 1 else f"batch {batch} throughput"


def _rows(part, sizes):
    """Per variant: its label, params, note and per batch size the speed summary and speed-up."""
    base = part["contenders"][0].label
    rows = []
    for c in part["contenders"]:
        row = {"label": c.label, "params": c.params(), "note": c.info.get("note", "")}
        for b in sizes:
            speeds = part["results"][c.label][str(b)]["images_per_sec"]
            row[str(b)] = dict(bench_common.summary(speeds),
                               speedup=bench_common.ratio(speeds, part["results"][base][str(b)]["images_per_sec"]))
        rows.append(row)
    return rows


def _cells(row, b):
    r = row[str(b)]
    speed = f"{1000 / r['median']:.2f} ms" if b == 1 else f"{r['median']:.0f}"
    s = r["speedup"]
    return [speed, f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"]


def _table(rows, skipped, sizes):
    headers = ["variant", "params"]
    for b in sizes:
        headers += ["batch 1 ms/image" if b == 1 else f"batch {b} img/s", "speed-up vs fp32 plain (range)"]
    headers.append("note")
    table = [[r["label"], f"{r['params']:,}", *[c for b in sizes for c in _cells(r, b)], r["note"]]
             for r in rows]
    table += [[s.label, "", f"skipped: {s.reason}"] + [""] * (2 * len(sizes) - 1) + [""] for s in skipped]
    return bench_common.markdown_table(headers, table)


def _report(args, sizes, parts):
    threads = (f"{bench_common.thread_count()} OpenMP threads for mxnet ({bench_common.thread_source()}), "
               f"torch.set_num_threads({bench_common.thread_count()})")
    cpu = bench_machine.cpu()["model"]
    lines = [f"{cpu}, {bench_common.visible_cores()} visible cores; {args.rounds} rounds (rotated order); "
             f"batch 1: median of {args.latency_calls} calls per round; larger batches: {args.iters} calls per "
             f"round; {args.warmup} warm-up calls per batch size; each variant in its own process",
             f"threads: {threads}",
             "int8 rows are calibrated on random-normal images: right for timing, not for accuracy"]
    ratios, out_parts = [], []
    for part in parts:
        rows = _rows(part, sizes)
        base = rows[0]["label"]
        lines += ["", f"### {part['network']}", "", _table(rows, part["skipped"], sizes)]
        noise = bench_models.noise_line(part["contenders"], part["results"], 0)
        if noise:
            lines += ["", noise]
        for row in rows[1:]:
            ratios += [dict(row[str(b)]["speedup"], name=f"{part['network']} {_mode_name(b)}: {row['label']} / {base}")
                       for b in sizes]
        ratios += [{"name": f"{part['network']}: {s.label} / {base}", "skipped": s.reason} for s in part["skipped"]]
        out_parts.append({"network": part["network"], "rows": rows,
                          "skipped": [{"label": s.label, "reason": s.reason} for s in part["skipped"]]})
    return {"section": "infer", "command": bench_common.command_line(),
            "machine": {"cpu": cpu, "visible_cores": bench_common.visible_cores()},
            "versions": bench_common.versions(), "threads": threads, "batch_sizes": sizes, "rounds": args.rounds,
            "latency_calls": args.latency_calls, "iters": args.iters, "warmup": args.warmup,
            "networks": out_parts, "ratios": ratios, "markdown": "\n".join(lines)}


if __name__ == "__main__":
    bench_common.exec_section("infer")
