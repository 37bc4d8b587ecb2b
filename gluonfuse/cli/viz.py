"""Commands to see and compare: show (architecture graphs) and results (repeated runs)."""
import click

from gluonfuse.cli.common import model_options
from gluonfuse.errors import DataError

COMMANDS = []


@click.command()
@model_options
@click.option("--style", type=click.Choice(["paper", "full"]), default="paper", show_default=True,
              help="paper: convolutions and Dense layers, sums and means, coloured by stage; "
                   "full: every operator with its output shape.")
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf", "gv"]), default=None,
              help="Picture format [default: from --out's suffix, else png]; gv writes only the Graphviz source.")
@click.option("-o", "--out", default=None, metavar="FILE",
              help="Output file [default: <network>_d<depth>.<format> in the current directory].")
def show(network, model_kwargs, style, fmt, out):
    """Draw a network's architecture graph (bottom to top) with Graphviz.

    The graph is traced from the network itself, so every registered network and configuration
    can be drawn. The Graphviz source (.gv) is always written beside the picture; no viewer is
    opened. Without the 'dot' program the source is written, the command says how to install
    Graphviz, and exits with status 1.

    \b
    Examples:
      gluonfuse show --network half                      # half_d26.png
      gluonfuse show --network cross --depth 56 --format svg
      gluonfuse show --network dfn_mr1 --style full --out dfn_mr1_ops.pdf
    """
    from gluonfuse.viz import draw

    paths = draw(network, out=out, style=style, fmt=fmt, **model_kwargs)
    if "picture" in paths:
        click.echo(f"Wrote {paths['picture']} ({paths['nodes']} nodes; Graphviz source {paths['source']})")
    else:
        click.echo(f"Wrote {paths['source']} ({paths['nodes']} nodes)")


COMMANDS.append(show)


@click.command()
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--by", default="network,depth,widen,dataset", show_default=True,
              help="Comma-separated grouping keys: network, depth, widen, dataset, or any key of "
                   "config.json or its model_kwargs (e.g. lr, aug_type).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "markdown"]), default="table",
              show_default=True, help="Output format (csv: numbers in percent, one column each).")
@click.option("--plot", default=None, metavar="FILE",
              help="Also draw test error per epoch per group (median run, band from best to worst "
                   "run) to FILE (.png, .svg or .pdf).")
@click.option("--tensorboard", "tensorboard_dir", default=None, metavar="OUT",
              help="Also write each finished run's metrics.csv as TensorBoard scalars into OUT/<run> "
                   "(needs the extra gluonfuse[tensorboard]).")
def results(runs_dir, by, fmt, plot, tensorboard_dir):
    """Compare finished runs: final errors as median (mean ± std, best), in percent.

    Every run directory under RUNS_DIR (as written by 'gluonfuse train') is read; finished runs
    are grouped by --by. The median run is the run with the median final test error (with an even
    number of runs the worse of the two middle ones, as the authors' get_results.py); its training
    error is the training median. Runs trained with --ema add a column: the moving average's final
    test error, with the same statistics. Unfinished, failed and corrupt runs are listed on stderr
    and skipped.

    \b
    Examples:
      gluonfuse results runs/
      gluonfuse results runs/ --by network,dataset --format markdown --plot curves.png
      gluonfuse results runs/ --by label_smoothing,mixup --tensorboard tb/
    """
    from gluonfuse import results as res
    from gluonfuse.io import plot_format

    if plot:
        plot_format(plot)  # a bad name fails before any work
    finished, skipped = res.scan_runs(runs_dir)
    warning = res.format_skipped(skipped)
    if not finished:
        click.echo(warning, err=True, nl=False)
        raise DataError(f"no finished runs under {runs_dir} ({len(skipped)} skipped, listed above)")
    by = res.split_by(by)
    groups = res.group_runs(finished, by)  # validates by against these runs' configurations
    click.echo(res.format_groups(groups, by, fmt), nl=False)
    if warning:
        click.echo("\n" + warning, err=True, nl=False)
    if plot:
        res.plot_groups(groups, by, plot)
        click.echo(f"Wrote {plot}", err=True)
    if tensorboard_dir:
        from gluonfuse.train.tensorboard import export_runs

        written = export_runs(finished, tensorboard_dir)
        click.echo(f"Wrote TensorBoard event files of {len(written)} runs under {tensorboard_dir}", err=True)


COMMANDS.append(results)
