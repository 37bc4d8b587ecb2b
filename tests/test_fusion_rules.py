"""The authors' depth rule and parameter counts, checked against an independent closed form.

The oracle below counts parameters from blocks-per-stage with arithmetic only (no MXNet), so a
structural mistake in a block (a missing BN, a projection in the wrong place) shows as a mismatch
somewhere in the sweep.
"""
import itertools

import pytest

from gluonfuse.models import count_params, get_model
from gluonfuse.models.fusion import blocks_per_stage


def unit(k, cin, cout):  # conv without bias + BN gamma/beta
    return k * k * cin * cout + 2 * cout


def oracle_blocks(network, depth):
    b = {"plain": 1, "resnet": 2, "cross": 4, "half": 4, "side": 4}.get(network)
    if b is None:
        b = (depth - 2) // {"fuse3": 3, "fuse6": 6, "ensemble": 3}[network]
    exclude, blocks = 2, []
    for i in range(3):
        n = (depth - exclude) // (b * (3 - i))
        exclude += n * b
        blocks.append(n)
    return b, blocks


def oracle_params(network, depth, w, classes):
    b, blocks = oracle_blocks(network, depth)
    widths = [16 * w, 32 * w, 64 * w]
    total = unit(3, 3, widths[0]) + widths[2] * classes + classes
    for s, n in enumerate(blocks):
        for j in range(n):
            kout = widths[s]
            kin = widths[s - 1] if (j == 0 and s > 0) else kout
            two = unit(3, kin, kout) + unit(3, kout, kout)
            zero = unit(1, kin, kout) if kin != kout else 0
            if network == "plain":
                total += unit(3, kin, kout)
            elif network == "resnet":
                total += two + zero
            elif network == "half":
                total += 2 * two + zero
            elif network == "side":
                total += 2 * two
            elif network == "cross":
                total += 2 * two + 2 * zero
            else:  # fuse3 / fuse6 / ensemble
                left = unit(3, kin, kout) if (s == 0 and j == 0) or kin != kout else 0
                total += left + unit(3, kin, kout) + (b - 1) * unit(3, kout, kout)
    return total


@pytest.mark.parametrize("network,depth,expected", [
    ("cross", 56, [4, 4, 5]), ("cross", 62, [5, 5, 5]), ("cross", 110, [9, 9, 9]),
    ("resnet", 56, [9, 9, 9]), ("plain", 56, [18, 18, 18]), ("fuse3", 110, [1, 1, 1]),
    ("fuse6", 110, [2, 2, 2]),
])
def test_blocks_per_stage_examples_from_spec(network, depth, expected):
    assert get_model(network, depth=depth).spec.blocks == expected


@pytest.mark.parametrize("depth,longest", [(110, 56), (62, 32), (26, 14)])
def test_longest_path_of_cross(depth, longest):
    assert get_model("cross", depth=depth).spec.longest_path() == longest


SWEEP = [(net, depth, w, classes)
         for net in ("plain", "resnet", "cross", "half", "side", "fuse3", "fuse6", "ensemble")
         for depth, w, classes in itertools.product((14, 20, 33, 56, 77, 110), (1, 2), (10, 100))]


@pytest.mark.parametrize("network,depth,widen,classes", SWEEP)
def test_sweep_counts_follow_the_block_rule(network, depth, widen, classes):
    net = get_model(network, depth=depth, widen_factor=widen, classes=classes)
    assert net.spec.blocks == oracle_blocks(network, depth)[1]
    assert count_params(net) == oracle_params(network, depth, widen, classes)


def test_every_depth_at_or_above_the_smallest_is_valid():
    for depth in range(14, 200):
        assert min(blocks_per_stage(depth, 4)) >= 1
        get_model("cross", depth=depth)
