"""Deeply-fused nets (the fusenet family) for CIFAR-size input, and their ImageNet versions.

Papers: Wang et al., "Deeply-Fused Nets" (arXiv 1605.07716); Zhao et al., "On the Connection of Deep
Fusion to Ensembling" (arXiv 1611.07718, IJCAI 2018 "Deep Convolutional Neural Networks with
Merge-and-Run Mappings"). Original code: zlmzju/fusenet (MXNet symbol API, Python 2).

Networks (docs/networks.md#fusion-blocks): ``plain``, ``resnet``, ``cross`` (DFN-MR, merge-and-run), ``half`` (DFN-IL),
``side`` (DFN-IL without identity), ``fuse3``/``fuse6`` (deep-and-shallow fusion) and ``ensemble``
(the 8 weight-sharing single-path members of ``fuse3``).

``depth`` is the depth of the corresponding *plain* network, as in the authors' code: each block adds
``b`` conv layers to that count (plain 1, resnet 2, cross/half/side 4, fuse3/fuse6 ``(depth-2)//k``),
and blocks are dealt to the stages by :func:`blocks_per_stage`. The longest path of cross/half/side
is therefore ``2 + 2 * sum(blocks)``: DFN-MR1 (cross 110) is 56 layers deep.

Deviations from the authors' code: none in structure or parameter count (checked against the
anchors by the tests). The code is one net class with blocks named in a table, instead of a
subclass per network, and Python 3 integer division is explicit.
"""
import dataclasses
import itertools

from mxnet.gluon import nn

from gluonfuse.models.blocks import Chain, ClassifierHead, ConvUnit, relu
from gluonfuse.models.registry import register_family, register_preset
from gluonfuse.models.rules import check_positive_int
from gluonfuse.models.views import Branch, StagedBlock, StagedNet, plus, shift

# conv layers one block adds to the plain-network depth count
BLOCK_DEPTH = {"plain": 1, "resnet": 2, "cross": 4, "half": 4, "side": 4}
# layers one block adds to the longest path
PATH_DEPTH = {"plain": 1, "resnet": 2, "cross": 2, "half": 2, "side": 2}
# number of deep-and-shallow fusions in the whole net
FUSIONS = {"fuse3": 3, "fuse6": 6, "ensemble": 3}
NETWORKS = tuple(BLOCK_DEPTH) + tuple(FUSIONS)


def blocks_per_stage(depth, b):
    """The authors' rule: deal ``depth - 2`` plain layers into 3 stages of ``b``-layer blocks.

    Integer division; remainders go to later stages (cross 56 -> [4, 4, 5]).
    """
    exclude = 2
    blocks = []
    for i in range(3):
        n = (depth - exclude) // (b * (3 - i))
        exclude += n * b
        blocks.append(n)
    return blocks


def block_depth(network, depth):
    """``b`` for ``network`` at ``depth``: fixed per network, or ``(depth-2)//k`` for fusions."""
    if network in FUSIONS:
        return (depth - 2) // FUSIONS[network]
    return BLOCK_DEPTH[network]


def _valid(network, depth):
    b = block_depth(network, depth)
    return b >= 1 and min(blocks_per_stage(depth, b)) >= 1



@dataclasses.dataclass(frozen=True)
class FusionSpec:
    """A CIFAR-size deeply-fused net: network, plain-equivalent depth, widen factor, classes."""

    network: str
    depth: int = 26  # small enough to build in a blink; the papers use 56..110
    widen_factor: int = 1
    classes: int = 10

    def __post_init__(self):
        if self.network not in NETWORKS:
            raise ValueError(f"unknown fusion network {self.network!r}; known: {', '.join(NETWORKS)}")
        check_positive_int("depth", self.depth)
        check_positive_int("widen_factor", self.widen_factor)
        check_positive_int("classes", self.classes)
        if not _valid(self.network, self.depth):
            smallest = next(d for d in range(1, 1000) if _valid(self.network, d))
            b = block_depth(self.network, self.depth)
            why = (f"gives block depth (depth - 2) // {FUSIONS.get(self.network)} = {b}, below 1" if b < 1 else
                   f"leaves a stage with no blocks (blocks per stage {blocks_per_stage(self.depth, b)})")
            raise ValueError(
                f"depth {self.depth} of {self.network!r} {why}; "
                f"the smallest valid depth is {smallest}, e.g. {smallest}, {smallest + 12}, 56 or 110"
            )

    @property
    def b(self):
        return block_depth(self.network, self.depth)

    @property
    def blocks(self):
        return blocks_per_stage(self.depth, self.b)

    @property
    def widths(self):
        return [16 * self.widen_factor * 2 ** i for i in range(3)]

    @property
    def name(self):
        return f"{self.network}_d{self.depth}_w{self.widen_factor}"

    input_shape = (3, 32, 32)

    def longest_path(self):
        per_block = self.b if self.network in FUSIONS else PATH_DEPTH[self.network]
        return 2 + per_block * sum(self.blocks)

    def kwargs(self):
        return {"depth": self.depth, "widen_factor": self.widen_factor, "classes": self.classes}

    def describe(self):
        return {"network": self.network, "blocks_per_stage": self.blocks, "block_depth": self.b,
                "widths": self.widths, "longest_path": self.longest_path()}


# ---------------------------------------------------------------- units (docs/networks.md#fusion-units)

def one(kin, kout, relu=True, prefix=""):
    """One 3x3 conv unit; stride 2 exactly when the width changes."""
    return ConvUnit(kin, kout, 3, stride=2 if kin != kout else 1, relu=relu, prefix=prefix)


def two(kin, kout, prefix):
    """conv-BN-ReLU-conv-BN: ``one`` with ReLU, then ``one(kout, kout)`` without."""
    seq = nn.HybridSequential(prefix=prefix)
    with seq.name_scope():
        seq.add(one(kin, kout, prefix="u1_"), one(kout, kout, relu=False, prefix="u2_"))
    return seq


def zero(kin, kout, prefix):
    """The shortcut: identity (None) when widths agree, else 1x1 conv stride 2 + BN, no ReLU."""
    if kin == kout:
        return None
    return ConvUnit(kin, kout, 1, stride=2, relu=False, prefix=prefix)


# ---------------------------------------------------------------- blocks (docs/networks.md#fusion-blocks)

class PlainBlock(StagedBlock, nn.HybridBlock):
    def __init__(self, kin, kout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = one(kin, kout, prefix="u1_")

    def paths(self, polys, removed=()):
        return (shift(polys[0], 1),)

    def hybrid_forward(self, F, x):
        return self.body(x)


# Blocks with removable branches (``BRANCHES``) compute through ``forward_without(F, state, removed)``:
# ``state`` is the tuple of stream tensors (two for cross, one otherwise) and ``removed`` names the
# branches deleted for a lesion study (gluonfuse.models.views). With nothing removed it is the block's
# own forward pass, so the block and its lesioned versions share one definition; ``paths`` counts the
# same block's paths (a 1x1 projection shortcut is one layer, an identity none).

def _sum(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _short(short, x):
    return short(x) if short is not None else x


def _layers(part):
    """Conv layers on a path through ``part``: none for an identity (None), one per unit."""
    if part is None:
        return 0
    return len(part) if isinstance(part, nn.HybridSequential) else 1


def _conv_first(x, branch):
    """``branch + x`` (just ``x`` when the branch was removed): a convolution branch as the LEFT operand.

    The sum is the same either way (addition commutes exactly in floating point), but mxnet 1.9.1's
    MKLDNN conv+sum fusion must swap the operands of ``x + conv(...)`` when ``x`` does not lie on
    the convolution's own input path, and that swap corrupts the graph's shape bookkeeping:
    ``HybridBlock.optimize_for(x, backend='MKLDNN')`` then fails ("Shape inconsistent, Provided =
    [32,16,1,1], inferred shape=(32,16,3,3)" on cross 56; half fails the same way). The smallest
    failing graph is ``v + BN(conv(y))`` with ``v`` a second input; ``BN(conv(y)) + v`` fuses.
    tests/test_deploy.py checks that cross and half fuse.
    """
    return x if branch is None else branch + x


class ResidualBlock(StagedBlock, nn.HybridBlock):
    """resnet: ReLU(zero(x) + two(x)); removing ``residual`` leaves ReLU(zero(x))."""

    BRANCHES = ("residual",)

    def __init__(self, kin, kout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.short = zero(kin, kout, "short_")
            self.two = two(kin, kout, "a_")

    def forward_without(self, F, state, removed=()):
        (x,) = state
        y = _short(self.short, x)
        if "residual" not in removed:
            y = y + self.two(x)
        return (relu(F, y),)

    def paths(self, polys, removed=()):
        (p,) = polys
        terms = [shift(p, _layers(self.short))]
        if "residual" not in removed:
            terms.append(shift(p, _layers(self.two)))
        return (plus(*terms),)

    def hybrid_forward(self, F, x):
        return self.forward_without(F, (x,))[0]


class InceptionLikeBlock(StagedBlock, nn.HybridBlock):
    """half (DFN-IL): ReLU(two_a(x) + two_b(x) + zero(x)); side drops the identity term.

    Branches ``a`` and ``b`` (``two_a``, ``two_b``) can be removed; side must keep one of them.
    """

    BRANCHES = ("a", "b")

    def __init__(self, kin, kout, identity=True, **kwargs):
        super().__init__(**kwargs)
        self.identity = identity
        with self.name_scope():
            self.short = zero(kin, kout, "short_") if identity else None
            self.two_a = two(kin, kout, "a_")
            self.two_b = two(kin, kout, "b_")

    def forward_without(self, F, state, removed=()):
        (x,) = state
        terms = [getattr(self, f"two_{s}")(x) for s in self.BRANCHES if s not in removed]
        if not terms and not self.identity:
            raise ValueError("a side block needs one of its two branches")
        if self.identity:
            # shortcut + (two_a + two_b): the same sum, bit for bit, as (two_a + two_b) + shortcut
            # (addition commutes exactly), written so that MKLDNN fuses it (see _conv_first)
            terms = [_short(self.short, x)] + ([_sum(terms)] if terms else [])
        return (relu(F, _sum(terms)),)

    def paths(self, polys, removed=()):
        (p,) = polys
        terms = [shift(p, _layers(getattr(self, f"two_{s}"))) for s in self.BRANCHES if s not in removed]
        if self.identity:
            terms.append(shift(p, _layers(self.short)))
        return (plus(*terms),)

    def hybrid_forward(self, F, x):
        return self.forward_without(F, (x,))[0]


class MergeRunBlock(StagedBlock, nn.HybridBlock):
    """cross (DFN-MR): two streams; m = mean of their shortcuts, each stream adds its own residual.

    The last block of the net (``last=True``) emits one tensor, ReLU(m + da + db). Removing branch
    ``a`` deletes the residual da of stream a (a' = ReLU(m)); the merge m reads only the inputs.
    """

    BRANCHES = ("a", "b")
    BRANCH_KIND = "stream"

    def __init__(self, kin, kout, last=False, **kwargs):
        super().__init__(**kwargs)
        self.last = last
        with self.name_scope():
            # separate projections per stream at transitions
            self.short_a = zero(kin, kout, "short_a_")
            self.short_b = zero(kin, kout, "short_b_")
            self.two_a = two(kin, kout, "a_")
            self.two_b = two(kin, kout, "b_")

    def forward_without(self, F, state, removed=()):
        a, b = state
        m = 0.5 * (_short(self.short_a, a) + _short(self.short_b, b))
        da = None if "a" in removed else self.two_a(a)
        db = None if "b" in removed else self.two_b(b)
        if self.last:
            # db + (da + m): bit for bit the authors' m + da + db (addition commutes exactly)
            return (relu(F, _conv_first(_conv_first(m, da), db)),)
        return relu(F, _conv_first(m, da)), relu(F, _conv_first(m, db))

    def paths(self, polys, removed=()):
        # the two streams count as separate inputs (the first block reads the stem output twice)
        pa, pb = polys
        m = plus(shift(pa, _layers(self.short_a)), shift(pb, _layers(self.short_b)))
        da = shift(pa, _layers(self.two_a)) if "a" not in removed else {}
        db = shift(pb, _layers(self.two_b)) if "b" not in removed else {}
        if self.last:
            return (plus(m, da, db),)
        return plus(m, da), plus(m, db)

    def hybrid_forward(self, F, a, b):
        out = self.forward_without(F, (a, b))
        return out[0] if self.last else out


class DeepShallowBlock(StagedBlock, nn.HybridBlock):
    """fuse3/fuse6: ReLU(left(x) + right(x)).

    right: ``b`` conv units, the last without ReLU (the first maps kin -> kout).
    left: one 3x3 conv unit without ReLU when ``left_conv`` (first block of g1, every width change),
    identity otherwise. Either path can be removed, not both.
    """

    BRANCHES = ("left", "right")
    BRANCH_KIND = "path"

    def __init__(self, kin, kout, b, left_conv, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.left = one(kin, kout, relu=False, prefix="left_") if left_conv else None
            self.right = nn.HybridSequential(prefix="right_")
            with self.right.name_scope():
                for i in range(b):
                    self.right.add(one(kin if i == 0 else kout, kout, relu=i < b - 1, prefix=f"u{i + 1}_"))

    def path(self, F, x, side):
        """One path alone: ``side`` is 'left' or 'right' (used by the ensemble view)."""
        if side == "right":
            return self.right(x)
        return self.left(x) if self.left is not None else x

    def forward_without(self, F, state, removed=()):
        (x,) = state
        terms = [self.path(F, x, side) for side in self.BRANCHES if side not in removed]
        if not terms:
            raise ValueError("a deep-and-shallow block needs its left or its right path")
        return (relu(F, _sum(terms)),)

    def paths(self, polys, removed=()):
        (p,) = polys
        return (plus(*[shift(p, _layers(getattr(self, side))) for side in self.BRANCHES if side not in removed]),)

    def hybrid_forward(self, F, x):
        return self.forward_without(F, (x,))[0]


# ---------------------------------------------------------------- the network

def _make_block(spec, stage, j, kin, kout):
    net, prefix = spec.network, f"b{j}_"
    if net == "plain":
        return PlainBlock(kin, kout, prefix=prefix)
    if net == "resnet":
        return ResidualBlock(kin, kout, prefix=prefix)
    if net in ("half", "side"):
        return InceptionLikeBlock(kin, kout, identity=net == "half", prefix=prefix)
    if net == "cross":
        last = stage == 2 and j == spec.blocks[2] - 1
        return MergeRunBlock(kin, kout, last=last, prefix=prefix)
    left_conv = (stage == 0 and j == 0) or kin != kout
    return DeepShallowBlock(kin, kout, spec.b, left_conv, prefix=prefix)


class FusionNet(StagedNet, nn.HybridBlock):
    """A CIFAR deeply-fused net: stem -> stages g1, g2, g3 -> pool -> Dense.

    The stem already outputs 16w channels, so g1 never projects; g2 and g3 halve the resolution in
    their first block. ``cross`` runs two streams from the stem output to the last block of g3.
    Its views (:mod:`gluonfuse.models.views`): every block's branches; fuse3 and fuse6 also name
    their single-path members (one path of every deep-and-shallow block).
    """

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("prefix", f"{spec.network}_")
        super().__init__(**kwargs)
        self.spec = spec
        self.streams = 2 if spec.network == "cross" else 1
        w = spec.widths
        with self.name_scope():
            self.stem = ConvUnit(3, w[0], 3, prefix="stem_")
            kin = w[0]
            for s, (n, kout) in enumerate(zip(spec.blocks, w)):
                stage = Chain(prefix=f"g{s + 1}_")
                with stage.name_scope():
                    for j in range(n):
                        stage.add(_make_block(spec, s, j, kin, kout))
                        kin = kout
                # registered by attribute, not kept in a bare list (docs/mxnet-notes.md#unregistered-child-blocks)
                setattr(self, f"g{s + 1}", stage)
            self.head = ClassifierHead(w[2], spec.classes, prefix="head_")

    @property
    def stages(self):
        return [self.g1, self.g2, self.g3]

    def members(self):
        """fuse3/fuse6: one member per choice of path in every block, named by 'L'/'R' per block."""
        if self.spec.network not in FUSIONS:
            return []
        blocks = self.blocks()
        return [("".join(letters), frozenset(Branch(s, j, "right" if c == "L" else "left", kind="path")
                                             for (s, j, _), c in zip(blocks, letters)))
                for letters in itertools.product("LR", repeat=len(blocks))]


class EnsembleNet(FusionNet):
    """The fusion-to-ensemble view of fuse3: its 8 single-path members, sharing every weight.

    Member ``m`` takes, in stage s, the left (one conv) path when letter s of ``MEMBERS[m]`` is 'L'
    and the right (deep) path when it is 'R'; the block's ReLU stays after the chosen path. Stem,
    per-stage paths and Dense are shared, so the parameters (and their structured names) are
    exactly fuse3's: ``load_parameters`` of a trained fuse3 gives its members. Returns a tuple of 8
    outputs in ``MEMBERS`` order. The authors never released this network's training code.
    """

    MEMBERS = tuple(a + b + c for a in "LR" for b in "LR" for c in "LR")

    def member_depths(self):
        """Longest path of each member: stem + chosen paths + Dense."""
        return [2 + sum(1 if side == "L" else self.spec.b for side in m) for m in self.MEMBERS]

    def output_names(self):
        return self.MEMBERS

    def branches(self):
        # its own forward pass is the fan-out of the members, not the fused sum: no branch of it is
        # removable; a member's removal set (members()) applies to the fuse3 forward it shares
        return []

    def hybrid_forward(self, F, x):
        def fan_out(s, j, block, outs):  # fuse3's rule puts exactly one block in every stage
            return tuple(relu(F, block.path(F, o, side)) for o in outs for side in ("left", "right"))

        return tuple(self.head(o) for o in self.run_blocks((self.stem(x),), fan_out))


# ---------------------------------------------------------------- ImageNet versions (docs/networks.md#imagenet-variants)

@dataclasses.dataclass(frozen=True)
class ImageNetFusionSpec:
    """An ImageNet deeply-fused net: ``resnet`` or ``cross`` with bottleneck units per stage."""

    network: str
    units: tuple = (2, 4, 22, 4)
    classes: int = 1000

    input_shape = (3, 224, 224)
    widths = (256, 512, 1024, 2048)

    def __post_init__(self):
        if self.network not in ("resnet", "cross"):
            raise ValueError(f"ImageNet fusion networks are 'resnet' and 'cross', not {self.network!r}")
        units = tuple(self.units) if isinstance(self.units, (list, tuple)) else None
        if units is None or len(units) != 4 or any(
                isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
            raise ValueError(f"units must be 4 positive integers (units per stage), got {self.units!r}")
        object.__setattr__(self, "units", units)
        check_positive_int("classes", self.classes)

    @property
    def depth(self):
        # 3 convs per bottleneck unit, plus the stem conv and the Dense
        return 2 + 3 * sum(self.units)

    @property
    def name(self):
        tag = "dfn_mr" if self.network == "cross" else "resnet"
        return f"{tag}{self.depth}_imagenet"

    def kwargs(self):
        return {"units": list(self.units), "classes": self.classes}

    def describe(self):
        return {"network": self.network, "units_per_stage": list(self.units),
                "widths": list(self.widths), "longest_path": self.depth,
                "streams": 2 if self.network == "cross" else 1}


def bottleneck(kin, kout, stride, prefix):
    """conv1x1 (kout/4) -BN-ReLU- conv3x3 (kout/4, stride) -BN-ReLU- conv1x1 (kout) -BN."""
    mid = kout // 4
    seq = nn.HybridSequential(prefix=prefix)
    with seq.name_scope():
        seq.add(ConvUnit(kin, mid, 1, prefix="u1_"),
                ConvUnit(mid, mid, 3, stride=stride, prefix="u2_"),
                ConvUnit(mid, kout, 1, relu=False, prefix="u3_"))
    return seq


class ImageNetUnit(StagedBlock, nn.HybridBlock):
    """The first unit of a stage has no shortcut: ReLU(bottleneck(x)).

    Later units: resnet ReLU(x + bottleneck(x)); cross m = (a + b) / 2, a' = ReLU(bottleneck_a(a) + m),
    b' = ReLU(bottleneck_b(b) + m).

    Removable branches: the residual of a later unit (resnet: ReLU(x), which is x, as its input is a
    ReLU output; cross: stream a's or b's bottleneck, a' = ReLU(m)). A first unit's bottleneck is the
    only path of its stream, so it has none.
    """

    def __init__(self, kin, kout, stride, first, streams, **kwargs):
        super().__init__(**kwargs)
        self.first, self.streams = first, streams
        self.BRANCHES = () if first else (("residual",) if streams == 1 else ("a", "b"))
        self.BRANCH_KIND = "stream" if streams == 2 else "residual"
        with self.name_scope():
            self.body_a = bottleneck(kin, kout, stride, "a_")
            self.body_b = bottleneck(kin, kout, stride, "b_") if streams == 2 else None

    def forward_without(self, F, state, removed=()):
        if self.streams == 1:
            (a,) = state
            if self.first:
                return (relu(F, self.body_a(a)),)
            return (relu(F, a) if "residual" in removed else relu(F, a + self.body_a(a)),)
        a, b = state
        if self.first:
            return relu(F, self.body_a(a)), relu(F, self.body_b(b))
        m = 0.5 * (a + b)
        out_a = relu(F, m) if "a" in removed else relu(F, self.body_a(a) + m)
        return out_a, relu(F, m) if "b" in removed else relu(F, self.body_b(b) + m)

    def paths(self, polys, removed=()):
        deep = [shift(p, 3) for p in polys]  # the bottleneck's three convolutions
        if self.first:
            return tuple(deep)
        if self.streams == 1:
            return (plus(polys[0], *([] if "residual" in removed else deep)),)
        m = plus(*polys)
        return tuple(plus(m, *([] if name in removed else [d])) for name, d in zip(self.BRANCHES, deep))

    def hybrid_forward(self, F, a, b=None):
        out = self.forward_without(F, (a,) if self.streams == 1 else (a, b))
        return out[0] if self.streams == 1 else out


class ImageNetFusionNet(StagedNet, nn.HybridBlock):
    """ResNet-98 / DFN-MR-50 for 224x224 input.

    Stem conv 7x7/2 (bare, as in the authors' code) -> max-pool 3x3/2; four stages of bottleneck units (256..2048 channels, strides
    1, 2, 2, 2); DFN-MR concatenates its two streams (4096 channels) before the pool and Dense.
    """

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("prefix", "dfn_mr_imagenet_" if spec.network == "cross" else "resnet_imagenet_")
        super().__init__(**kwargs)
        self.spec = spec
        self.streams = streams = 2 if spec.network == "cross" else 1
        with self.name_scope():
            # the authors' stem is a bare convolution, no BN or ReLU (their code; the anchors in docs/anchors.md count it so)
            self.stem = nn.Conv2D(64, 7, strides=2, padding=3, use_bias=False, in_channels=3, prefix="stem_conv_")
            kin = 64
            for s, (n, kout) in enumerate(zip(spec.units, spec.widths)):
                stage = Chain(prefix=f"g{s + 1}_")
                with stage.name_scope():
                    for j in range(n):
                        stride = (1 if s == 0 else 2) if j == 0 else 1
                        stage.add(ImageNetUnit(kin, kout, stride, j == 0, streams, prefix=f"b{j}_"))
                        kin = kout
                setattr(self, f"g{s + 1}", stage)
            self.head = ClassifierHead(kin * streams, spec.classes, prefix="head_")

    @property
    def stages(self):
        return [self.g1, self.g2, self.g3, self.g4]

    def enter(self, F, x):
        return F.Pooling(self.stem(x), kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")

    def leave(self, F, state):
        return self.head(F.concat(*state, dim=1) if len(state) == 2 else state[0])


# ---------------------------------------------------------------- registry rows

_DESCRIPTIONS = {
    "plain": "plain conv net of the fusion papers (depth = conv layers)",
    "resnet": "post-activation ResNet as the fusion papers build it",
    "cross": "DFN-MR: two streams, merge-and-run after every block",
    "half": "DFN-IL: two residual branches plus identity, summed",
    "side": "DFN-IL without the identity: two branches summed",
    "fuse3": "deep-and-shallow fusion, 3 fusions (one per stage)",
    "fuse6": "deep-and-shallow fusion, 6 fusions (two per stage)",
    "ensemble": "fuse3's 8 weight-sharing single-path members (returns 8 outputs)",
}
# docs/anchors.md#anchor-table: trainable parameters for these arguments (10 classes unless given)
_ANCHORS = {
    "plain": [({"depth": 56}, 853_018)],
    "resnet": [({"depth": 56}, 855_770), ({"depth": 110}, 1_730_714)],
    "cross": [({"depth": 110}, 1_710_426), ({"depth": 110, "classes": 100}, 1_716_276),
              ({"depth": 62, "widen_factor": 4}, 14_851_402), ({"depth": 98, "widen_factor": 4}, 24_151_882),
              ({"depth": 26}, 349_402)],
    "half": [({"depth": 110}, 1_707_674)],
    "side": [({"depth": 110}, 1_704_922)],
    "fuse3": [({"depth": 110}, 1_753_530)],
    "fuse6": [({"depth": 110}, 1_753_530)],
    "ensemble": [({"depth": 110}, 1_753_530)],
}
for _net in NETWORKS:
    register_family(_net, FusionSpec, EnsembleNet if _net == "ensemble" else FusionNet,
                    _DESCRIPTIONS[_net], anchors=_ANCHORS[_net], network=_net)

register_family("resnet_imagenet", ImageNetFusionSpec, ImageNetFusionNet,
                "ImageNet post-activation bottleneck ResNet (224x224)", heavy=True, network="resnet")
register_family("cross_imagenet", ImageNetFusionSpec, ImageNetFusionNet,
                "ImageNet DFN-MR, two bottleneck streams (224x224)", heavy=True,
                network="cross", units=(1, 2, 11, 2))

register_preset("dfn_mr1", "cross", "DFN-MR1: cross 110, widen 1 (longest path 56)", depth=110,
                widen_factor=1, anchors={10: 1_710_426, 100: 1_716_276})
register_preset("dfn_mr2", "cross", "DFN-MR2: cross 62, widen 4 (longest path 32)", depth=62,
                widen_factor=4, anchors={10: 14_851_402})
# The authors' README says 24.8M; no block split reproduces it, and their code gives 24,151,882
# for depth 98 / widen 4 (docs/anchors.md#dfn-mr3): we follow the code.
register_preset("dfn_mr3", "cross", "DFN-MR3: cross 98, widen 4 (longest path 50)", depth=98,
                widen_factor=4, anchors={10: 24_151_882})
register_preset("dfn_mr50_imagenet", "cross_imagenet", "DFN-MR-50 for ImageNet, 46.4M parameters",
                heavy=True, units=(1, 2, 11, 2), classes=1000, anchors={1000: 46_395_048})
register_preset("resnet98_imagenet", "resnet_imagenet", "ResNet-98 for ImageNet, 45.0M parameters",
                heavy=True, units=(2, 4, 22, 4), classes=1000, anchors={1000: 45_047_464})
