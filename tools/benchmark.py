#!/usr/bin/env python
"""gluonfuse benchmarks, one section per area, run from a checkout without installing anything.

    python tools/benchmark.py report --out report.md                   # the standard set, one table
    python tools/benchmark.py models --network resnet --depth 56      # vs gluoncv and PyTorch
    python tools/benchmark.py models --network cross --depth 110 --against resnet:110
    python tools/benchmark.py models --threads-check                  # mxnet's default threads vs gluonfuse's
    python tools/benchmark.py infer                                    # fp32, fused, int8 vs PyTorch, batch 1 and 256
    python tools/benchmark.py data --images 1000                      # im2rec vs mxnet's im2rec.py
    python tools/benchmark.py train --repeat 3                        # pipeline vs bare step vs Module
    python tools/benchmark.py dist                                    # 2 loopback workers vs 1 process
    python tools/benchmark.py SECTION --help

A section is a module ``tools/bench_<section>.py`` with a docstring (its help), ``add_arguments(parser)``
and ``run(args)``, which returns its figures with their Markdown rendering (bench_common explains the
result); add it to ``SECTIONS``. This file prints the Markdown, or the JSON with ``--json``. Sections
import mxnet inside ``run``, never at the top: this file imports gluonfuse first, and gluonfuse sizes
mxnet's OpenMP pool to every core only if it is imported before mxnet (docs/mxnet-notes.md#openmp-threads). The contenders of a
section take turns (interleaved rounds, median of the per-round ratios), because the machine is shared
and its speed drifts; ``models`` runs each in its own process.
"""
import argparse
import importlib
import json
import os
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
for _path in (REPO, TOOLS):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench_common  # noqa: E402

# What the user set, before gluonfuse fills in its default: the report says who chose the thread count.
bench_common.USER_THREAD_ENV.update({k: os.environ.get(k) for k in bench_common.THREAD_VARS})

import gluonfuse  # noqa: E402,F401  sizes mxnet's OpenMP pool; must come before any mxnet import

# section name -> module in tools/
SECTIONS = {
    "report": "bench_report",  # the standard set of the sections below, one table with the machine
    "models": "bench_models",  # a network's training and inference speed vs gluoncv, PyTorch, another net
    "infer": "bench_infer",    # fp32 plain / fused / int8 inference vs PyTorch eager / channels_last / int8
    "data": "bench_data",      # im2rec vs mxnet's im2rec.py; the trainer's input pipeline reading speed
    "train": "bench_train",    # whole pipeline vs bare step vs the authors' Module.fit
    "dist": "bench_dist",      # loopback dist_sync job (2 workers) vs one process
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="benchmark.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="section", metavar="SECTION", required=True)
    for name, module_name in SECTIONS.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or "").strip()
        section = sub.add_parser(name, help=doc.split("\n")[0], description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(section)
        section.add_argument("--json", nargs="?", const="-", metavar="FILE",
                             help="write the results as JSON to FILE; without FILE, print them instead of "
                                  "the Markdown")
        section.set_defaults(module=module)
    return parser


def parse_args(argv):
    """The parsed arguments of ``benchmark.py SECTION ...`` (``args.module`` is the section's module)."""
    return build_parser().parse_args(argv)


def run_section(args):
    """Run the section; print its Markdown (or JSON) and write ``--json FILE``. Returns the result."""
    result = args.module.run(args)
    if args.json == "-":
        print(json.dumps(result, indent=2, sort_keys=True))
        return result
    print(result["markdown"])
    if args.json:
        from gluonfuse.io import write_json

        write_json(args.json, result)
    return result


def main(argv=None):
    from gluonfuse.cli import run_guarded

    import bench_models

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [bench_models.SERVE_CONTENDER]:  # internal: one contender of `models` in its own process
        return bench_models.worker_main(json.loads(argv[1]))
    args = parse_args(argv)
    # bad arguments: one line and exit 2; no traceback unless GLUONFUSE_DEBUG=1
    run_guarded(run_section, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
