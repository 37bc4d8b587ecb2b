"""Commands about data: ``im2rec`` and ``data prepare | fetch | verify | stats``.

Thin shells over :mod:`gluonfuse.data`; nothing heavy is imported until a command runs.
"""
import json
import os

import click


@click.command("im2rec", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def im2rec(argv):
    """Make image lists and pack images into RecordIO with MXNet im2rec's flags: PREFIX ROOT
    [--list ...] (same as tools/im2rec; 'gluonfuse im2rec --help' lists every flag)."""
    from gluonfuse.data.im2rec import main

    main(list(argv))


@click.group("data")
def data():
    """Prepare, download, verify and inspect datasets in RecordIO form."""


@data.command("prepare")
@click.argument("name")
@click.option("--src", help="the dataset as downloaded: the CIFAR .tar.gz (or its folder), the folder "
                            "of SVHN .mat or MNIST idx files, an image-folder tree; digits needs none")
@click.option("--out", help="output folder  [default: data/NAME]")
@click.option("--coarse", is_flag=True, help="cifar100: the 20 coarse labels instead of the 100 fine")
@click.option("--with-extra", is_flag=True, help="svhn: add extra_32x32.mat to the training split")
@click.option("--train-ratio", type=float, default=0.8, show_default=True,
              help="folder: fraction of every class that goes to train (the rest is test)")
@click.option("--size", type=int, default=0,
              help="folder: crop the centre square and scale it to SIZE x SIZE (0 keeps the size)")
@click.option("--num-thread", type=int, default=0, help="encoding threads (0: every core)")
@click.option("--strict", is_flag=True, help="folder: stop at a corrupt image instead of skipping it")
@click.option("--overwrite", is_flag=True, help="replace a dataset already prepared in --out")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--class-names", "class_names", default=None, metavar="FILE",
              help="class names, one per line in label order, for meta.json (and so predict, exports and "
                   "analyze's tables); e.g. for MNIST's idx files, which carry only numbers")
def prepare_cmd(name, src, out, coarse, with_extra, train_ratio, size, num_thread, strict, overwrite,
                quiet, class_names):
    """Convert dataset NAME (cifar10, cifar100, svhn, mnist, folder, digits) into train/test .rec,
    .idx and .lst files plus meta.json in --out."""
    from gluonfuse.data.meta import read_class_names, set_class_names
    from gluonfuse.data.prepare import prepare

    names = read_class_names(class_names) if class_names else None  # a bad file fails before any work
    out = out or os.path.join("data", name)
    prepare(name, src=src, out=out, coarse=coarse, with_extra=with_extra, train_ratio=train_ratio,
            size=size, num_thread=num_thread or None, strict=strict, overwrite=overwrite,
            progress=not quiet, echo=click.echo)
    if names is not None:
        set_class_names(out, names, source=class_names)
        click.echo(f"class names from {class_names} written to {os.path.join(out, 'meta.json')}")


@data.command("fetch")
@click.argument("name")
@click.option("--out", help="output folder  [default: data/NAME]")
@click.option("--download-dir", default=os.path.join("data", "downloads"), show_default=True,
              help="where the archives are kept (a partial download here is resumed)")
@click.option("--base-url", help="download from this URL instead of the official site (also "
                                 "GLUONFUSE_DATA_URL); it must serve the official file names")
@click.option("--md5", "md5s", multiple=True, metavar="FILE=MD5",
              help="expect this checksum for FILE instead of the published one (repeatable)")
@click.option("--with-extra", is_flag=True, help="svhn: also download extra_32x32.mat and train on it")
@click.option("--coarse", is_flag=True, help="cifar100: the 20 coarse labels")
@click.option("--num-thread", type=int, default=0, help="encoding threads (0: every core)")
@click.option("--overwrite", is_flag=True, help="replace a dataset already prepared in --out")
@click.option("--quiet", is_flag=True, help="no progress bars")
def fetch_cmd(name, out, download_dir, base_url, md5s, with_extra, coarse, num_thread, overwrite,
              quiet):
    """Download NAME (cifar10, cifar100, svhn) with checksum checks and resume, then prepare it."""
    from gluonfuse.data.fetch import fetch

    checksums = {}
    for spec in md5s:
        fname, eq, digest = spec.partition("=")
        if not eq or len(digest) != 32:
            raise ValueError(f"--md5 expects FILE=MD5 (32 hex digits), got {spec!r}")
        checksums[fname] = digest.lower()
    fetch(name, out=out, download_dir=download_dir, base_url=base_url, checksums=checksums,
          with_extra=with_extra, coarse=coarse, num_thread=num_thread or None, overwrite=overwrite,
          progress=not quiet, echo=click.echo)


@data.command("verify")
@click.argument("path")
@click.option("--idx", help="the .idx file  [default: PATH with .idx]")
@click.option("--meta", help="folder holding meta.json  [default: the folder of PATH, if it has one]")
@click.option("--num-classes", type=int, help="check labels against this many classes")
@click.option("--num-thread", type=int, default=0, help="decoding threads (0: every core)")
def verify_cmd(path, idx, meta, num_classes, num_thread):
    """Check PATH.rec (or every .rec of a prepared dataset folder): each record decodes, labels are
    in range, the .idx agrees, counts agree with meta.json. Exit code 1 on any fault."""
    from gluonfuse.data.check import verify
    from gluonfuse.data.meta import read_meta
    from gluonfuse.errors import DataError

    if os.path.isdir(path):
        read_meta(path)  # a folder must be a finished prepare
        recs = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".rec"))
        if not recs:
            raise DataError(f"{path} holds no .rec files")
        if idx:
            raise ValueError("--idx names one file; give a .rec path, not a folder, with it")
    else:
        recs = [path]
    faulty = []
    for rec in recs:
        try:
            verify(rec, idx_path=idx, meta_dir=meta, num_classes=num_classes,
                   num_thread=num_thread or None, echo=click.echo)
        except DataError as exc:
            faulty.append(str(exc))
    if len(faulty) == 1:
        raise DataError(faulty[0])
    if faulty:
        raise DataError(f"{len(faulty)} of {len(recs)} files are faulty; first: {faulty[0]}")


@data.command("stats")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="print the statistics as JSON")
@click.option("--num-thread", type=int, default=0, help="decoding threads (0: every core)")
def stats_cmd(path, as_json, num_thread):
    """Per-channel mean/std (RGB, 0..255) and the class histogram of PATH.rec."""
    from gluonfuse.data.check import stats

    s = stats(path, num_thread=num_thread or None)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    click.echo(f"{s['file']}: {s['count']} images")
    click.echo("  mean (R, G, B): " + ", ".join(f"{x:.3f}" for x in s["mean"]))
    click.echo("  std  (R, G, B): " + ", ".join(f"{x:.3f}" for x in s["std"]))
    click.echo("  sizes: " + ", ".join(f"{k} ({v})" for k, v in list(s["sizes"].items())[:5]))
    click.echo("  class histogram:")
    top = max(s["histogram"].values(), default=1)
    for label, count in s["histogram"].items():
        click.echo(f"    {label:>6} {count:8d} {'#' * max(1, round(30 * count / top))}")


COMMANDS = [im2rec, data]
