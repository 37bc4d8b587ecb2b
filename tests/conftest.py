"""Shared test helpers: running the CLI in-process and as a real subprocess."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cli():
    """Invoke the click CLI in-process: ``cli('summary', '--network', 'cross')`` -> click Result."""
    from click.testing import CliRunner

    from gluonfuse.cli import main

    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


def run_gluonfuse(*args, timeout=600, env=None, **kwargs):
    """Run ``python -m gluonfuse ARGS`` as a user would; returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gluonfuse", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=full_env, **kwargs)


def process_gone(pid):
    """True when no process ``pid`` exists (any more)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
