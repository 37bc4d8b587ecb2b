"""The standard set of benchmarks in one Markdown report, stamped with the machine it ran on.

Parts, each an ordinary section run with its own options, one after the other:
  resnet56  models: gluonfuse resnet 56 vs gluoncv cifar_resnet56_v1 and PyTorch eager, channels_last
            and torch.compile, training and inference
  cross56   models: cross 56 vs resnet 56 and the PyTorch versions
  dfn_mr1   models: dfn_mr1 (cross 110) vs resnet 110 and the PyTorch versions
  infer     inference of resnet 56 and cross 56: fp32 plain, MKLDNN-fused, int8 against PyTorch eager,
            channels_last and torch.ao int8, batch 1 latency and batch 256 throughput
  train     the trainer's whole pipeline vs the bare step and the authors' Module.fit
  data      packing vs mxnet's im2rec.py; reading through the trainer's input pipeline
(`dist` is left out: a loopback job on one machine shows the parameter server's cost, not a speed.)

The report opens with the machine (CPU model and its AVX2 / AVX-512 / AMX flags, visible cores,
mxnet and its oneDNN, torch and its oneDNN and MKL, OpenMP threads and who set them, load average
before and after), then one table of every ratio: the median of the per-round ratios over
interleaved rounds, their range and spread, then each part's own tables with the time it took.
PyTorch rows that cannot run (torch not installed) are listed as skipped, with the reason. The
defaults took 13.6 minutes on a 2-core AMD EPYC at a load average of 1.3-1.6 (models parts 6.9,
infer 5.0, train and data 1.5); --quick shrinks every part to a few seconds, to check that the report runs, not to
measure.

    python tools/benchmark.py report --out report.md
    python tools/benchmark.py report --parts resnet56,train --rounds 7
"""
import datetime
import os
import time

import bench_common
import bench_data
import bench_infer
import bench_machine
import bench_models
import bench_train

TORCH_ALL = "torch,torch-cl,torch-compile"
# the models parts' timing: batch 64 as in training, 3 steps per contender, mode and round
MODEL_TIMING = ["--batch-size", "64", "--iters", "3", "--warmup", "2"]
# --quick: the smallest networks, a few images, every contender in this process (no worker start-up)
QUICK_MODEL_TIMING = ["--batch-size", "4", "--iters", "1", "--warmup", "1", "--in-process"]

# name -> (title, section module, its arguments, (title, arguments) under --quick or None to leave it
# out); the models and train parts also get --rounds / --repeat from the report's --rounds
PARTS = {
    "resnet56": ("models: resnet 56", bench_models,
                 ["--network", "resnet", "--depth", "56", "--against", "gluoncv," + TORCH_ALL, *MODEL_TIMING],
                 ("models: resnet 20", ["--network", "resnet", "--depth", "20", "--against", "gluoncv,torch",
                                        *QUICK_MODEL_TIMING])),
    "cross56": ("models: cross 56", bench_models,
                ["--network", "cross", "--depth", "56", "--against", "resnet:56," + TORCH_ALL, *MODEL_TIMING],
                ("models: cross 14", ["--network", "cross", "--depth", "14", "--against", "resnet:14,torch",
                                      *QUICK_MODEL_TIMING])),
    "dfn_mr1": ("models: dfn_mr1 (cross 110)", bench_models,
                ["--network", "dfn_mr1", "--against", "resnet:110," + TORCH_ALL, *MODEL_TIMING], None),
    "infer": ("infer: fp32, fused, int8 vs PyTorch", bench_infer,
              ["--latency-calls", "10", "--iters", "3", "--warmup", "2"],
              ("infer: fp32, fused, int8 vs PyTorch", ["--quick"])),
    "train": ("train: the trainer's pipeline", bench_train,
              ["--network", "cross", "--depth", "14", "--batch-size", "64", "--batches", "12", "--warmup", "3"],
              ("train: the trainer's pipeline",
               ["--network", "cross", "--depth", "14", "--batch-size", "8", "--batches", "2", "--warmup", "1"])),
    "data": ("data: packing and reading", bench_data,
             ["--images", "1000", "--read-images", "10000", "--epochs", "2", "--repeat", "3"],
             ("data: packing and reading", ["--images", "6", "--read-images", "200", "--epochs", "2",
                                            "--repeat", "1"])),
}
# Time budget of the defaults on an idle 2-core machine, estimated from the parts (README speeds and
# timings on the 2-core development machine; the report prints each part's real time):
# - models rounds: 3 steps of 64 images per contender and mode, training at 120-180 images/s and
#   inference about 4x faster: a round is ~8 s for resnet 56 (5 contenders) and for cross 56, ~15 s
#   for dfn_mr1, so 5 rounds ~155 s; starting the 13 contender processes (import, build, 2 warm-up
#   steps per mode) ~5 s each, ~65 s;
# - torch.compile compiles a training and an inference graph per network: resnet 56 took 150 CPU
#   seconds on the busy machine, ~1.5-2 min of wall time when idle; cross 56 has as many convolutions
#   (about the same parameters), cross 110 twice as many: ~6-8 min for the three;
# - train: 5 rounds x 3 cases x ~5 s (network build, 15 batches) ~75 s; data: ~50 s (1000 JPEGs
#   packed 3 times by each tool, 10,000 records read twice); the framework probes ~10 s.
# - infer: 12 worker processes (two networks x six variants; the int8 ones calibrate, ~10 s each to
#   start), then per round 6 variants x (10 batch-1 calls + 3 batch-256 calls + untimed first calls
#   and 0.3 s settling): `infer` with its own defaults (3 rounds, 30 latency calls, 2 iterations) took
#   10 min at a load average of 1.2-2.9 from other processes; the report's settings with 5 rounds
#   took 295 s alone on an idle machine (212 s with 1 batch-256 call, too few for steady medians).
# Measured on a 2-core AMD EPYC: 813 s in all at a load average of 1.3-1.6 (models 113 + 117 +
# 186 s, infer 302 s, train 46 s, data 42 s); 762 s idle with the lighter infer part; more rounds
# buy narrower ranges at ~30 s each.
DEFAULT_ROUNDS, QUICK_ROUNDS = 5, 2
CPU_NOTE = ("mxnet (oneDNN 2.x inside mxnet 1.9.1) and PyTorch (its own oneDNN and MKL) choose their kernels at "
            "run time from the CPU's instruction sets (the ISA in the machine line): ratios between them, and "
            "against gluoncv, hold for this CPU and may differ on one with other flags.")


def add_arguments(parser):
    parser.add_argument("--out", metavar="FILE.md",
                        help="also write the report to FILE.md (written whole under a temporary name first)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny networks and inputs, PyTorch eager only, contenders in one process: checks "
                             "in about a minute that the report runs; its figures mean nothing")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    parser.add_argument("--rounds", type=int,
                        help=f"interleaved rounds of the models and train parts (default {DEFAULT_ROUNDS}; "
                             f"{QUICK_ROUNDS} with --quick)")
    parser.add_argument("--max-other-load", type=float, metavar="CORES",
                        help="models parts: run a round again when other processes kept more cores than this busy")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _parts(args):
    names = [n.strip() for n in args.parts.split(",") if n.strip()]
    unknown = [n for n in names if n not in PARTS]
    if unknown or not names:
        raise ValueError(f"--parts takes names from {', '.join(PARTS)}, not {args.parts!r}")
    if args.quick:
        names = [n for n in names if PARTS[n][3] is not None]
    return names


def part_plan(name, args):
    """The title, section module and arguments of part ``name`` under ``args`` (--quick, --rounds ...)."""
    title, module, argv, quick = PARTS[name]
    if args.quick:
        title, argv = quick
    argv = list(argv)
    rounds = str(args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS))
    if module is bench_models:
        argv += ["--rounds", rounds] + (["--quiet"] if args.quiet else [])
        if args.max_other_load is not None:
            argv += ["--max-other-load", str(args.max_other_load)]
    elif module is bench_infer:
        argv += ["--rounds", rounds] + (["--quiet"] if args.quiet else [])
    elif module is bench_train:
        argv += ["--repeat", rounds]
    return title, module, argv


def _check(args):
    bench_common.check_counts(args, ("rounds",))
    if args.out and os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a directory; give a file name such as {args.out}/report.md")


def run(args):
    _check(args)
    names = _parts(args)
    say = (lambda message: None) if args.quiet else bench_common.log
    start, load_before = time.time(), bench_machine.load_average()
    say("asking mxnet and torch about their builds")
    machine = bench_machine.stamp()
    parts = []
    for name in names:
        title, module, argv = part_plan(name, args)
        say(f"{title}: benchmark.py {module.__name__[len('bench_'):]} {' '.join(argv)}")
        tic = time.time()
        result = module.run(bench_common.section_args(module, argv))
        parts.append({"name": name, "title": title, "section": result["section"], "argv": argv,
                      "seconds": time.time() - tic, "result": result})
    machine["load_average"] = {"before": load_before, "after": bench_machine.load_average()}
    report = {"section": "report", "quick": args.quick, "command": bench_common.command_line(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "seconds": time.time() - start, "machine": machine, "parts": parts,
              "ratios": [dict(r, part=p["title"]) for p in parts for r in p["result"]["ratios"]]}
    report["markdown"] = markdown(report)
    if args.out:
        from gluonfuse.io import atomic_path

        with atomic_path(args.out) as tmp:
            with open(tmp, "w") as f:
                f.write(report["markdown"] + "\n")
    return report


# ---------------------------------------------------------------- rendering

def ratio_rows(ratios):
    """One table row per ratio: part, what is compared, median, per-round range, spread, rounds."""
    rows = []
    for r in ratios:
        if "skipped" in r:
            rows.append([r["part"], r["name"], f"skipped: {r['skipped']}", "", "", ""])
            continue
        spread = (r["max"] - r["min"]) / r["median"] if r["median"] else 0.0
        rows.append([r["part"], r["name"], f"{r['median']:.2f}", f"{r['min']:.2f}-{r['max']:.2f}",
                     f"{100 * spread:.0f}%", str(len(r["rounds"]))])
    return rows


def _load_text(load, cores):
    def fmt(value):
        return "unknown" if value is None else f"{value:.2f}"

    return (f"**Load average** (1 minute; {cores} visible cores): {fmt(load['before'])} before, "
            f"{fmt(load['after'])} after")


def markdown(report):
    m = report["machine"]
    quick = " (--quick: sizes too small to mean anything)" if report["quick"] else ""
    lines = ["# gluonfuse benchmark report" + quick,
             "",
             bench_machine.stamp_line(m),
             "",
             _load_text(m["load_average"], m["cores"]["visible"]),
             "",
             f"**Run:** `{report['command']}` on {report['date']}, {report['seconds']:.0f} s; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
             "",
             "Each ratio is A's speed over B's (above 1: A is faster), the median of the per-round ratios "
             "of interleaved rounds; the range is the lowest and highest round, the spread (max - min) / median.",
             "",
             bench_common.markdown_table(["part", "A / B", "median", "per-round min-max", "spread", "rounds"],
                                         ratio_rows(report["ratios"])),
             "",
             f"- {CPU_NOTE}"]
    for p in report["parts"]:
        lines += ["", f"## {p['title']} ({p['seconds']:.0f} s)", "",
                  f"`python tools/benchmark.py {p['section']} {' '.join(p['argv'])}`", "", p["result"]["markdown"]]
    return "\n".join(lines)


if __name__ == "__main__":
    bench_common.exec_section("report")
