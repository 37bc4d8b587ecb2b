"""The ``gluonfuse`` command: a click group of thin commands over library functions.

Each sub-module defines commands and lists them in ``COMMANDS``; mxnet is imported inside the
commands, so ``gluonfuse --help`` answers at once. Every command shares one error policy
(:func:`run_guarded`): a bad argument is one line on stderr and exit code 2, a bad input file or an
I/O failure one line and exit code 1, never a traceback unless ``GLUONFUSE_DEBUG=1`` is set.
"""
import importlib
import os
import sys

import click

from gluonfuse import __version__
from gluonfuse.errors import GluonfuseError

# One module per area; each exposes COMMANDS, a list of click commands.
_COMMAND_MODULES = ["models", "data", "train", "viz", "launch", "analyze", "deploy"]


class _GuardedGroup(click.Group):
    def invoke(self, ctx):
        return run_guarded(super().invoke, ctx)


def run_guarded(fn, *args, **kwargs):
    """Call ``fn``; map gluonfuse's errors to one stderr line and an exit code."""
    try:
        return fn(*args, **kwargs)
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the single place that turns exceptions into messages
        if os.environ.get("GLUONFUSE_DEBUG"):
            raise
        if isinstance(exc, GluonfuseError):
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, ValueError):
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        if isinstance(exc, OSError):
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        click.echo(
            f"Error (internal): {type(exc).__name__}: {exc}\n"
            "This is a bug in gluonfuse; rerun with GLUONFUSE_DEBUG=1 for the traceback.",
            err=True,
        )
        sys.exit(1)


@click.group(cls=_GuardedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gluonfuse")
def main():
    """gluonfuse: build, train, compare, export and draw deeply-fused networks and their
    relatives (FractalNet, RoR, pre-activation and wide ResNets) with MXNet Gluon."""


for _name in _COMMAND_MODULES:
    for _cmd in importlib.import_module(f"gluonfuse.cli.{_name}").COMMANDS:
        main.add_command(_cmd)
