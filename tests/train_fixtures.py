"""Shared fixtures of the train tests: a tiny generated dataset and one finished 2-epoch run.

Import the fixtures into a test module with ``from train_fixtures import *``.
"""
import glob
import os

import pytest

from conftest import run_gluonfuse

__all__ = ["pattern_data", "trained_run", "TRAIN_ARGS", "train_args", "only_run"]

# a tiny network on 2 CPU contexts: seconds per epoch
TRAIN_ARGS = ["--network", "cross", "--depth", "14", "--dataset", "patterns", "--epochs", "2",
              "--batch-size", "16", "--cpus", "2", "--seed", "0", "--log-interval", "4", "--quiet"]


def train_args(data_dir, out_dir, *extra):
    return ["train", *TRAIN_ARGS, "--data-dir", data_dir, "--out", out_dir, *extra]


def only_run(out_dir):
    runs = glob.glob(os.path.join(out_dir, "*"))
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="session")
def pattern_data(tmp_path_factory):
    """10 classes of 32x32 coloured stripe patterns: 160 training and 50 test images."""
    from gluonfuse.train.synthetic import write_pattern_dataset

    path = str(tmp_path_factory.mktemp("patterns"))
    write_pattern_dataset(path, classes=10, train_per_class=16, test_per_class=5, seed=0)
    return path


@pytest.fixture(scope="session")
def trained_run(pattern_data, tmp_path_factory):
    """A finished 2-epoch run of cross depth 14 on 2 CPU contexts (through the CLI)."""
    out = str(tmp_path_factory.mktemp("runs"))
    proc = run_gluonfuse(*train_args(pattern_data, out))
    assert proc.returncode == 0, proc.stderr
    return only_run(out), proc
