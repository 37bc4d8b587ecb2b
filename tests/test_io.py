"""gluonfuse.io: the shared figure-saving helper (atomic, headless, always closes the figure)."""
import os
import subprocess
import sys

import pytest

from conftest import REPO
from gluonfuse import io as gio


def _open_figures():
    import matplotlib.pyplot as plt

    return set(plt.get_fignums())


def test_saved_figure_writes_atomically_and_closes(tmp_path):
    out = tmp_path / "sub" / "fig.png"
    before = _open_figures()
    with gio.saved_figure(str(out), ncols=2, figsize=(4, 3)) as (fig, axes):
        assert len(axes) == 2 and fig.get_size_inches().tolist() == [4, 3]
        axes[0].plot([1, 2], [3, 4])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _open_figures() == before
    assert os.listdir(out.parent) == ["fig.png"]  # no temporary file left beside it


def test_saved_figure_closes_when_saving_fails(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    out = tmp_path / "fig.svg"
    before = _open_figures()
    with pytest.raises(OSError, match="disk full"):
        with gio.saved_figure(str(out)) as (fig, ax):
            ax.plot([1, 2], [3, 4])
    assert _open_figures() == before
    assert os.listdir(tmp_path) == []  # neither the figure nor a temporary file


def test_saved_figure_closes_when_the_block_fails(tmp_path):
    out = tmp_path / "fig.pdf"
    before = _open_figures()
    with pytest.raises(RuntimeError, match="drawing failed"):
        with gio.saved_figure(str(out)):
            raise RuntimeError("drawing failed")
    assert _open_figures() == before
    assert not out.exists()


def test_saved_figure_rejects_a_bad_suffix_before_drawing(tmp_path):
    before = _open_figures()
    with pytest.raises(ValueError, match=r"choose a file ending in \.png, \.svg, \.pdf"):
        with gio.saved_figure(str(tmp_path / "fig.bmp")):
            pytest.fail("the block must not run")
    assert _open_figures() == before
    assert gio.plot_format("x/Fig.SVG") == "svg"


def test_results_and_analyze_share_the_helper():
    from gluonfuse import results

    assert results.saved_figure is gio.saved_figure
    pytest.importorskip("mxnet")
    from gluonfuse.analysis import report

    assert report.saved_figure is gio.saved_figure


def test_importing_io_does_not_load_matplotlib():
    code = "import sys, gluonfuse.io; print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
