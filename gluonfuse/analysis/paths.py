"""Path lengths of a network or of one of its components, from the network's own count.

A path picks one term of every sum on its way from the input to the output: shortcut or branch,
left or right, a column at a join, a stream of merge-and-run (the two streams count as separate
inputs of each block; the first block reads the stem output twice), a RoR level shortcut. Every
family counts its paths itself (``path_lengths`` of :mod:`gluonfuse.models.views`), by dynamic
programming over its blocks, in its own depth convention (``PATH_UNIT``), so the longest path is
the network's ``longest_path`` in ``gluonfuse summary``: the fusion nets, their ImageNet versions,
pre-activation and wide ResNets and RoR count the stem convolution, every convolution on the path (a
1x1 projection or level shortcut counts as one) and the Dense layer; FractalNet counts convolutions
only (FractalNet-20's deepest path is 20). A resnet of n blocks has 2^n paths; with identity
shortcuts only, C(n, k) of them take k residual branches.
"""
from gluonfuse.models.views import get_views


def path_distribution(net, removed=()):
    """``[(length, paths), ...]`` of ``net`` with ``removed`` branches deleted, shortest first."""
    return sorted(get_views(net).path_lengths(removed).items())


def depth_and_count(net, removed=()):
    """``(longest path, number of paths)``; ``(0, 0)`` when ``removed`` disconnects the network."""
    poly = {length: n for length, n in get_views(net).path_lengths(removed).items() if n}
    return (max(poly), sum(poly.values())) if poly else (0, 0)


def connected(net, removed):
    """True when some path survives the removal of ``removed``."""
    return depth_and_count(net, removed)[1] > 0


def path_unit(net):
    """What a path's length counts, in ``net``'s convention."""
    return get_views(net).PATH_UNIT
