"""The fusion-to-ensemble analysis of a trained run: gluonfuse analyze."""
import click

from gluonfuse.cli.train import device_options, fuse_option, speaks_flags

COMMANDS = []


@click.command()
@speaks_flags
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--which", default="best", show_default=True, help="Weights: best, last or an epoch number.")
@click.option("--data", default=None, metavar="PATH.rec",
              help="Evaluate on this .rec [default: the run's test.rec, from config.json's data_dir].")
@device_options
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size [default: the run's].")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown", "json"]), default="table",
              show_default=True, help="Output on stdout (csv: the components only, numbers in percent).")
@click.option("--plot", default=None, metavar="FILE",
              help="Draw component accuracy against depth (or the lesion curves) and the path-length "
                   "distribution to FILE (.png, .svg or .pdf).")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Also write DIR/analysis.json, components.csv, path_lengths.csv and analysis.png "
                   "(unless --plot names another file).")
@click.option("--max-lesions", type=int, default=0, show_default=True, metavar="K",
              help="Lesion studies: also remove k = 1..K branches at random (--draws sets per k).")
@click.option("--draws", type=int, default=3, show_default=True, help="Random sets drawn per k.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random lesions.")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr.")
@fuse_option
def analyze(run_dir, which, data, devices, batch_size, fmt, plot, out_dir, max_lesions, draws, seed, quiet, no_fuse):
    """Evaluate every component of a trained network's ensemble view on the test set.

    Components are sub-networks of the trained net with its very weights (nothing is retrained;
    BatchNorm keeps its trained running statistics):

    \b
    fuse3, fuse6, ensemble    the single-path members (fuse3: LLL .. RRR; L = shallow, R = deep path)
    fractalnet                every column alone
    resnet, cross, half, side the lesion study: each removable branch removed alone, and with
    preresnet, wrn            --max-lesions K, k = 1..K branches removed at random. A branch is a
    resnet_imagenet           residual (its shortcut stays), one stream's residual (cross,
    cross_imagenet            cross_imagenet: da or db), one of half/side's two branches, or a RoR
    ror3, ror3_wrn            mid or root shortcut (its term leaves the sum)

    Networks without any (plain, a single FractalNet column) are refused (exit status 2).

    On CPU contexts each component runs as its MKLDNN-fused fp32 graph when that agrees with its
    plain graph on the first images of the test set, else as the plain graph after a one-line
    notice (--no-fuse: the plain graphs only); "path" in each row of --format json says which.

    The table gives each component's depth (longest path), number of paths, error and loss, and
    says whether the deepest component is the strongest; then the distribution of path lengths.

    \b
    Examples:
      gluonfuse analyze runs/fuse3_d110_w1_cifar10_1 --plot fuse3.png
      gluonfuse analyze runs/cross_d110_w1_cifar10_1 --max-lesions 10 --gpus 0 --out analysis/
    """
    from gluonfuse import analysis as lib
    from gluonfuse.io import plot_format
    from gluonfuse.train.config import make_contexts

    if plot:
        plot_format(plot)  # a bad name fails before any work
    contexts = make_contexts(devices) if devices else None

    def progress(i, n, row):
        if not quiet:
            click.echo(f"[{i}/{n}] {row['name']}: error {100 * row['error']:.2f}% ({row['seconds']:.1f} s)", err=True)

    analysis = lib.analyze_run(run_dir, which=which, data=data, contexts=contexts, batch_size=batch_size,
                               max_lesions=max_lesions, draws=draws, seed=seed, progress=progress,
                               prepare=None if no_fuse else _prepare(contexts))
    click.echo(lib.format_analysis(analysis, fmt), nl=False)
    if out_dir:
        paths = lib.write_outputs(analysis, out_dir, plot)
        click.echo(f"Wrote {paths['json']}, {paths['components']}, {paths['path_lengths']} and {paths['plot']}",
                   err=True)
    elif plot:
        lib.plot_analysis(analysis, plot)
        click.echo(f"Wrote {plot}", err=True)


def _prepare(contexts):
    """Each component as the graph to run: fused when it agrees with the plain one (a fallback's reason
    is said once, however many components share it)."""
    from gluonfuse.deploy.infer import fp32_path, once

    notice = once(lambda line: click.echo(line, err=True))

    def prepare(block, batch):
        path = fp32_path(block, batch, contexts, notice=notice)
        return path.block, path.name

    return prepare


COMMANDS.append(analyze)
