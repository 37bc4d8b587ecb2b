"""Model views: the sub-networks a network declares, through one protocol every family implements.

Every registered network's class derives from :class:`Views` (the registry refuses one that does
not), and answers:

* ``output_names()``: the names of its outputs (the ``ensemble``'s 8 members), else one output;
* ``column_count()`` and ``column_view(c)``: FractalNet's columns, each a network that shares the
  net's Parameters (0 and a ValueError for every other network);
* ``branches()``: its removable branches (:class:`Branch`), and ``forward_without(F, x, removed)``:
  its forward pass with some of them deleted, as Veit et al. delete residual modules at test time;
* ``members()``: named single-path members, each a set of branches removed (fuse3, fuse6, ensemble);
* ``stochastic_blocks()``: the branches stochastic depth gates, with their survival probabilities;
* ``fp32_layers()``: the layers int8 quantization keeps in fp32 (drop-path masks and stochastic-depth
  gates: :data:`MASKS_IN_FP32`);
* ``path_lengths(removed=())``: the number of paths through its graph per length (a Counter), in the
  family's depth convention (:attr:`Views.PATH_UNIT`), the longest equal to ``gluonfuse summary``'s.

A network that overrides nothing has no sub-networks; :func:`get_views` gives any block's answers
(a block outside the registry, e.g. an imported symbol, has none). :class:`BranchView` is a network
with some branches removed that computes with the trained net's own Parameters.

:class:`StagedNet` is the one runner of networks built as stem -> stages of blocks that carry one or
two streams -> head (the deeply-fused nets, their ImageNet versions, pre-activation and wide
ResNets): the full forward pass, the lesioned one, the ensemble's fan-out and the path count all walk
the blocks through :meth:`StagedNet.run_blocks`. Its blocks (:class:`StagedBlock`) name their
removable branches and compute their forward pass and their paths with some of them removed.

Path polynomials are Counters ``{length: number of paths}`` with exact integer counts.
"""
import collections
import dataclasses
import warnings

from mxnet.gluon import nn


# ---------------------------------------------------------------- path polynomials

def one_path(length=0):
    return collections.Counter({length: 1})


def shift(poly, layers):
    """Every path of ``poly`` continued through ``layers`` more layers."""
    return collections.Counter({length + layers: n for length, n in poly.items()})


def plus(*polys):
    """The paths of a sum: the paths of each term."""
    total = collections.Counter()
    for p in polys:
        total.update(p)
    return total


# ---------------------------------------------------------------- branches

@dataclasses.dataclass(frozen=True, order=True)
class Branch:
    """A removable branch: ``name`` at block ``block`` (0-based, as in parameter names) of stage ``stage`` (1-based).

    ``kind``: ``residual`` (a residual branch; the shortcut stays), ``stream`` (one stream's residual
    in merge-and-run), ``path`` (one path of a deep-and-shallow fusion) or ``level`` (a RoR shortcut
    that spans a stage or the net; its term leaves the sum). ``position``: the block's place in depth
    order (1-based), where the branch joins. Two branches are equal when stage, block and name are.
    """

    stage: int
    block: int
    name: str
    kind: str = dataclasses.field(default="residual", compare=False)
    single: bool = dataclasses.field(default=False, compare=False)  # the block's only branch
    position: int = dataclasses.field(default=None, compare=False)
    label: str = dataclasses.field(default="", compare=False)

    def __post_init__(self):
        if not self.label:
            # parameter-name order: g2.b1.a; a block with one branch is named by the block, g2.b1
            where = f"g{self.stage}.b{self.block}"
            object.__setattr__(self, "label", where if self.single else f"{where}.{self.name}")


def removed_at(removed):
    """``{(stage, block): {names}}`` of a set of branches."""
    by_block = collections.defaultdict(set)
    for b in removed:
        by_block[(b.stage, b.block)].add(b.name)
    return by_block


def as_state(out):
    """A block's output as a tuple of streams."""
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# ---------------------------------------------------------------- the protocol

# What a family keeps in fp32 when ``gluonfuse quantize`` makes it int8 (:meth:`Views.fp32_layers`).
MASKS_IN_FP32 = (
    "constant", "*",
    "drop-path masks and stochastic-depth gates (FractalNet, RoR +SD): 0/1 tensors of 1..k elements "
    "where int8 saves nothing, and mxnet 1.9.1's quantized elemwise_mul fails on them ('data type do "
    "not match': a uint8 mask times an int8 one)")


class Views:
    """What a network declares about its sub-networks; the defaults declare none (see the module)."""

    PATH_UNIT = "stem convolution + convolutions on the path + Dense"

    def view_name(self):
        return self.spec.name

    def output_names(self):
        return ("output",)

    def column_count(self):
        """Columns that can be evaluated alone (FractalNet); 0 for a network without columns."""
        return 0

    def column_view(self, column):
        """Column ``column`` alone (1 = shallowest), a network sharing this net's Parameters."""
        raise ValueError(f"{self.view_name()} has no columns")

    def branches(self):
        """The removable branches, input to output."""
        return []

    def members(self):
        """``[(name, frozenset of removed Branches), ...]``: the single-path members."""
        return []

    def stochastic_blocks(self):
        """``[(Branch, survival), ...]``: the branches stochastic depth gates (survival < 1)."""
        return []

    def fp32_layers(self):
        """``[(kind, pattern, why), ...]``: the layers int8 quantization must keep in fp32.

        ``kind``: ``constant`` matches the nodes computed from constants only
        (:func:`gluonfuse.deploy.graph.constant_nodes`), ``op`` an operator name, ``layer`` a node
        name; ``pattern`` is a shell pattern. A row that matches nothing in a graph is ignored.
        """
        return []

    def path_lengths(self, removed=()):
        """Counter {length: paths} of the network with ``removed`` branches deleted."""
        raise NotImplementedError(f"{type(self).__name__} does not count its paths")

    def forward_without(self, F, x, removed=(), trace=None):
        """The forward pass with ``removed`` branches deleted; ``trace`` collects per-block states."""
        if removed:
            raise ValueError(f"{self.view_name()} has no removable branches")
        return self.hybrid_forward(F, x)


class _NoViews(Views):
    def view_name(self):
        return "this network"


_NO_VIEWS = _NoViews()


def get_views(net):
    """``net``'s answers to the protocol: a registered network's own, none for any other block."""
    return net if isinstance(net, Views) else _NO_VIEWS


def removable(net):
    """Every branch a view of ``net`` may remove: its branches and those its members leave out."""
    views = get_views(net)
    known = set(views.branches())
    for _, removed in views.members():
        known.update(removed)
    return known


# ---------------------------------------------------------------- stem -> stages -> head

class StagedBlock:
    """A block of a :class:`StagedNet`: the names of its removable branches (``BRANCHES``) and its
    forward pass and path polynomials with some removed. ``state`` is the tuple of streams."""

    BRANCHES = ()
    BRANCH_KIND = "residual"

    def forward_without(self, F, state, removed=()):
        raise NotImplementedError

    def paths(self, polys, removed=()):
        raise NotImplementedError


class StagedNet(Views):
    """stem -> stages of :class:`StagedBlock` carrying ``streams`` tensors -> head.

    A family sets ``streams`` and ``stages`` (the stage containers, in order) and overrides
    :meth:`enter` (the stem) and :meth:`leave` (the head) where it differs. The stem is one
    convolution on every path.
    """

    streams = 1

    def enter(self, F, x):
        return self.stem(x)

    def leave(self, F, state):
        return self.head(state[0])

    def blocks(self):
        """``[(stage, index, block), ...]`` input to output: stage 1-based, index 0-based."""
        return [(s, j, stage[j]) for s, stage in enumerate(self.stages, start=1) for j in range(len(stage))]

    def run_blocks(self, state, step, trace=None):
        """``state = step(stage, index, block, state)`` over every block, input to output."""
        for s, j, block in self.blocks():
            state = step(s, j, block, state)
            if trace is not None:
                trace.append(state)
        return state

    def forward_without(self, F, x, removed=(), trace=None):
        cut = removed_at(removed)

        def step(s, j, block, state):
            gone = cut.get((s, j))
            # an untouched block runs as itself (its own name scope: the exported graph is unchanged)
            return block.forward_without(F, state, gone) if gone else as_state(block(*state))

        return self.leave(F, self.run_blocks((self.enter(F, x),) * self.streams, step, trace))

    def hybrid_forward(self, F, x):
        return self.forward_without(F, x)

    def branches(self):
        return [Branch(s, j, name, kind=block.BRANCH_KIND, single=len(block.BRANCHES) == 1, position=pos)
                for pos, (s, j, block) in enumerate(self.blocks(), start=1) for name in block.BRANCHES]

    def path_lengths(self, removed=()):
        cut = removed_at(removed)
        state = self.run_blocks((one_path(1),) * self.streams,
                                lambda s, j, block, polys: block.paths(polys, cut.get((s, j), ())))
        return shift(plus(*state), 1)  # every stream feeds the Dense layer


# ---------------------------------------------------------------- a network with branches removed

class BranchView(nn.HybridBlock):
    """A network with some branches removed, computing with the network's own Parameters.

    The net is the view's only child, so ``view.collect_params()`` holds the very Parameter objects
    of the net (no copy). With nothing removed the view computes what the net computes, operation
    for operation. :meth:`trace` returns the state after every block (tests, debugging).
    """

    def __init__(self, net, removed=(), **kwargs):
        kwargs.setdefault("prefix", "view_")
        super().__init__(**kwargs)
        self.net = net  # registered child: shares the net's Parameters
        self.removed = frozenset(removed)
        views = get_views(net)
        unknown = sorted(b.label for b in self.removed - removable(net))
        if unknown:
            raise ValueError(f"{views.view_name()} has no removable branch {', '.join(unknown)}")
        if not any(views.path_lengths(self.removed).values()):
            raise ValueError("removing " + ", ".join(b.label for b in sorted(self.removed))
                             + " disconnects the network (a block is left with no path)")

    def forward(self, x, *args):
        with warnings.catch_warnings():
            # the graph leaves the removed branches' parameters unused, on purpose
            warnings.filterwarnings("ignore", message=r".*is not used by any computation")
            return super().forward(x, *args)

    def trace(self, x):
        """The state (a tuple of streams) after every block, computed imperatively."""
        import mxnet as mx

        states = []
        self.net.forward_without(mx.nd, x, self.removed, trace=states)
        return states

    def hybrid_forward(self, F, x):
        return self.net.forward_without(F, x, self.removed)


def hybridized(view):
    """``view`` hybridized (static memory); parameters of removed branches are unused on purpose."""
    view.hybridize(static_alloc=True, static_shape=True)
    return view
