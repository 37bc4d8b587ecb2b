"""The im2rec command line (``tools/im2rec`` and ``gluonfuse im2rec``): MXNet's flags over our functions.

Usage is MXNet's: ``im2rec PREFIX ROOT --list [list options]`` makes ``PREFIX*.lst`` from the images
under ROOT; ``im2rec PREFIX ROOT [pack options]`` packs every ``PREFIX*.lst`` into ``.rec`` + ``.idx``.
Differences, all additive: flags may come in any order (``--exts .jpg .png`` no longer swallows the
positional arguments), the class map is written to ``PREFIX_classes.txt``, ``--stratified`` splits every
class in the same proportions, the output does not depend on ``--num-thread``, a bad image is skipped and
named (``--strict`` makes it an error), outputs appear only when complete, and the run ends with a summary.
"""
import argparse
import os
import re

from gluonfuse.data.lists import DEFAULT_EXTS, make_lists, normalize_exts
from gluonfuse.data.pack import EncodeOptions, pack_list

_EXT_TOKEN = re.compile(r"^\.[A-Za-z0-9]+(,\.?[A-Za-z0-9]+)*$")
_EXTS_FLAGS = ("--ex", "--ext", "--exts")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    def add_usage(self, usage, actions, groups, prefix=None):  # "Usage:" like every other command
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line through the CLI's error policy instead of usage + exit
        raise ValueError(f"im2rec: {message} (see --help)")


def _gather_exts(argv):
    """Rewrite ``--exts .jpg .png`` into ``--exts=.jpg,.png`` so it cannot swallow positionals.

    The first value is always taken; later ones only while they look like extensions (``.png``).
    """
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":
            out.extend(argv[i:])
            break
        flag, eq, value = tok.partition("=")
        if flag in _EXTS_FLAGS:
            values = [value] if eq else []
            i += 1
            if not eq and i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            while i < len(argv) and _EXT_TOKEN.match(argv[i]):
                values.append(argv[i])
                i += 1
            out.append("--exts=" + ",".join(values))
            continue
        out.append(tok)
        i += 1
    return out


def build_parser():
    p = _Parser(prog="im2rec", formatter_class=_Formatter,
                description="Create an image list (--list) or pack the images of PREFIX*.lst into "
                            "RecordIO (.rec + .idx). MXNet im2rec's flags and file formats; flags may "
                            "come in any order.")
    p.add_argument("prefix", help="prefix of the input/output .lst, .rec and .idx files")
    p.add_argument("root", help="folder that holds the images")
    g = p.add_argument_group("Options for creating image lists")
    g.add_argument("--list", action="store_true",
                   help="make image list(s) by walking ROOT, written to PREFIX.lst (or "
                        "PREFIX_train.lst, PREFIX_test.lst, PREFIX_val.lst); without it, pack PREFIX*.lst")
    g.add_argument("--exts", default=",".join(DEFAULT_EXTS), type=normalize_exts_arg,
                   help="image extensions to list: '--exts .jpg .png' or '--exts .jpg,.png'")
    g.add_argument("--chunks", type=int, default=1, help="number of chunks")
    g.add_argument("--train-ratio", type=float, default=1.0, help="fraction of images for training")
    g.add_argument("--test-ratio", type=float, default=0.0, help="fraction of images for testing")
    g.add_argument("--recursive", action="store_true",
                   help="walk sub-folders and give each folder of images its own label (the map is "
                        "written to PREFIX_classes.txt); otherwise list ROOT only, all with label 0")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep the walk order instead of shuffling (seed --seed)")
    g.add_argument("--stratified", action="store_true",
                   help="split every class separately, in the --train-ratio/--test-ratio proportions")
    g.add_argument("--seed", type=int, default=100, help="shuffle seed (MXNet's im2rec uses 100)")
    g = p.add_argument_group("Options for creating the database")
    g.add_argument("--pass-through", action="store_true",
                   help="pack the image files as they are (they are still checked to decode)")
    g.add_argument("--resize", type=int, default=0,
                   help="scale the shorter edge to this size; 0 keeps the original size")
    g.add_argument("--center-crop", action="store_true", help="crop the centre square first")
    g.add_argument("--quality", type=int, default=95,
                   help="JPEG quality 1-100, or PNG compression 0-9 with --encoding .png")
    g.add_argument("--num-thread", type=int, default=1,
                   help="encoding threads; the output is the same for every value")
    g.add_argument("--color", type=int, default=1,
                   help="1: colour (transparency dropped), 0: greyscale, -1: unchanged (with alpha)")
    g.add_argument("--encoding", default=".jpg", help="image encoding: .jpg or .png")
    g.add_argument("--pack-label", action="store_true",
                   help="pack all the labels of a multi-label list into the record")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable or corrupt image instead of skipping it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def normalize_exts_arg(value):
    try:
        return normalize_exts([value])
    except ValueError as exc:  # argparse shows an ArgumentTypeError's own text, replaces a ValueError's
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv):
    return build_parser().parse_args(_gather_exts(list(argv)))


def find_lists(prefix):
    """The ``.lst`` files im2rec packs for ``prefix``: ``PREFIX*.lst`` (every .lst when it is a folder)."""
    prefix = os.path.abspath(prefix)
    folder = prefix if os.path.isdir(prefix) else os.path.dirname(prefix)
    if not os.path.isdir(folder):
        raise ValueError(f"folder {folder!r} of prefix {prefix!r} does not exist")
    found = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.endswith(".lst") and os.path.join(folder, f).startswith(prefix)
                   and os.path.isfile(os.path.join(folder, f)))
    if not found:
        raise ValueError(f"no list file matches {prefix}*.lst; make one first with --list")
    return found


def run(args, echo=print):
    """Do what the parsed ``args`` ask; returns the list paths (list mode) or PackSummary objects."""
    if args.list:
        written, map_path, items, classes = make_lists(
            args.prefix, args.root, recursive=args.recursive, exts=args.exts,
            train_ratio=args.train_ratio, test_ratio=args.test_ratio, chunks=args.chunks,
            shuffle=args.shuffle, stratified=args.stratified, seed=args.seed)
        echo(f"listed {len(items)} images" + (f" in {len(classes)} classes" if classes else ""))
        for path in written:
            with open(path) as f:
                echo(f"  {path}: {sum(1 for _ in f)} images")
        if map_path:
            echo(f"  class map: {map_path}")
        return written
    if args.num_thread < 1:
        raise ValueError(f"--num-thread must be at least 1, got {args.num_thread}")
    opts = EncodeOptions(resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                         encoding=args.encoding, color=args.color, pass_through=args.pass_through,
                         pack_label=args.pack_label)
    if not os.path.isdir(args.root):
        raise ValueError(f"image root {args.root!r} is not a folder")
    summaries = []
    for lst in find_lists(args.prefix):
        summary = pack_list(lst, args.root, opts=opts, num_thread=args.num_thread, strict=args.strict,
                            progress=not args.quiet)
        for line in summary.lines():
            echo(line)
        summaries.append(summary)
    return summaries


def main(argv):
    """Entry point shared by ``tools/im2rec`` and ``gluonfuse im2rec``."""
    run(parse_args(argv))
    return 0
