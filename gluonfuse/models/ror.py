"""Residual networks of residual networks, RoR-3 (docs/networks.md#ror), with optional stochastic depth.

Paper: Zhang, Sun, Han, Yuan, Guo, Liu, "Residual Networks of Residual Networks: Multilevel Residual
Networks" (arXiv 1608.02908, IEEE TCSVT 2017). Code consulted for the facts: titu1994/Residual-of-
Residual-Networks (Keras); the authors released none.

Three shortcut levels over three stages of residual blocks:

* root: stem output -> end of stage 3 (1x1 conv, 64k channels, stride 4);
* mid, one per stage: stage input -> stage output (1x1 conv, 16k / 32k / 64k channels, strides 1/2/2);
* final: the ordinary residual blocks. The last block of every stage adds the mid shortcut (and in
  stage 3 the root shortcut) to its own sum.

``ror3`` is RoR-3 on the original (post-activation) ResNet: stem conv3x3 16-BN-ReLU; blocks
conv-BN-ReLU-conv-BN + shortcut (1x1 conv + BN at a transition), ReLU after the add (the last block of
a stage: after adding mid and root too); root and mid shortcuts are 1x1 conv + BN; depth L has
(L - 8) / 6 blocks per stage (``ror3_56``, ``ror3_110``, ``ror3_164``).
``ror3_wrn`` is Pre-RoR-3 on wide ResNets (RoR-3-WRN-d-k): bare stem conv3x3 16, pre-activation basic
blocks (as ``wrn``), bare 1x1 conv shortcuts, no ReLU after adds, BN-ReLU before the pool; depth d has
(d - 4) / 6 blocks per stage (``ror3_wrn40_2``, ``ror3_wrn40_4``, ``ror3_wrn58_4``; k = 1 is Pre-RoR-3).

Stochastic depth (``stochastic_depth`` = p, the drop probability of the last block; 0 = off, the paper's
"+SD" uses 0.5) acts on the final-level residual branches only, shortcuts of every level stay:
block i of L (in order through the net) survives with probability 1 - p * i / (L - 1), from 1.0 for the
first to 1 - p for the last; in training a dropped block passes only its shortcut terms, at inference
its residual is scaled by its survival probability. The gates are made by ``F.Dropout`` on ones (see
:mod:`gluonfuse.models.blocks`), so they are drawn afresh on every training pass of a hybridized net
and are exact constants at inference and in the exported graph (no random operators).
``RoRNet(spec, return_gates=True)`` also returns the gates used by the pass (tests, analysis).

Deviations: none in structure or parameter count (the anchors of docs/anchors.md are checked by the tests). The
paper prints 13.3M for RoR-3-WRN58-4; the layout counts 13,645,530 (docs/anchors.md#ror-3-wrn58-4). Where a pre-activation
block projects, its shortcut takes the pre-activated input as in WRN (the count is the same either
way). Survival falls linearly from exactly 1.0 at the first block (Huang et al. start at 1 - p / L).
"""
import dataclasses

from mxnet.gluon import nn

from gluonfuse.models.blocks import BNReLU, ClassifierHead, ConvUnit, PreActBlock, conv3x3, live_ones
from gluonfuse.models.blocks import projection, relu, scale, survival_gate
from gluonfuse.models.fusion import ResidualBlock
from gluonfuse.models.registry import register_family, register_preset
from gluonfuse.models.rules import check_positive_int, check_rate, depth_from_rule
from gluonfuse.models.views import MASKS_IN_FP32, Branch, Views, one_path, plus, removed_at, shift

# depth = 6n + OFFSET: the post-activation count adds stem, Dense and the root + mid shortcut convs
DEPTH_OFFSET = {"ror3": 8, "ror3_wrn": 4}


@dataclasses.dataclass(frozen=True)
class RoRSpec:
    """RoR-3: ``network`` 'ror3' (post-activation, widen 1) or 'ror3_wrn' (pre-activation, widen k)."""

    network: str
    depth: int = 56
    widen_factor: int = 1
    stochastic_depth: float = 0.0  # drop probability of the last final-level block; 0.5 for "+SD"
    classes: int = 10

    input_shape = (3, 32, 32)

    def __post_init__(self):
        if self.network not in DEPTH_OFFSET:
            raise ValueError(f"unknown RoR network {self.network!r}; known: {', '.join(DEPTH_OFFSET)}")
        depth_from_rule(self.network, self.depth, 6, DEPTH_OFFSET[self.network])
        check_positive_int("widen_factor", self.widen_factor)
        if self.network == "ror3" and self.widen_factor != 1:
            raise ValueError("ror3 is the post-activation RoR of the original ResNet (widen_factor 1); "
                             f"for widen_factor {self.widen_factor} use ror3_wrn")
        object.__setattr__(self, "stochastic_depth", check_rate("stochastic_depth", self.stochastic_depth))
        check_positive_int("classes", self.classes)

    @property
    def preact(self):
        return self.network == "ror3_wrn"

    @property
    def blocks(self):
        return (self.depth - DEPTH_OFFSET[self.network]) // 6

    @property
    def widths(self):
        return tuple(16 * self.widen_factor * 2 ** i for i in range(3))

    @property
    def name(self):
        return f"ror3_d{self.depth}" if self.network == "ror3" else f"ror3_wrn_d{self.depth}_w{self.widen_factor}"

    def survivals(self):
        """Survival probability of every final-level block, in order through the net."""
        total = 3 * self.blocks
        return [1.0 - self.stochastic_depth * i / (total - 1) for i in range(total)]

    def kwargs(self):
        kw = {"depth": self.depth, "stochastic_depth": self.stochastic_depth, "classes": self.classes}
        if self.network == "ror3_wrn":
            kw["widen_factor"] = self.widen_factor
        return kw

    def describe(self):
        return {"network": self.network, "blocks_per_stage": [self.blocks] * 3, "widths": list(self.widths),
                "shortcut_levels": 3, "stochastic_depth": self.stochastic_depth,
                "longest_path": 2 + 6 * self.blocks}


class PostActBlock(ResidualBlock):
    """The fusion papers' post-activation residual block, split into (shortcut, residual) for RoR."""

    def parts(self, F, x, residual=True):
        """``(shortcut, residual)``; the residual is None when ``residual`` is False."""
        return (self.short(x) if self.short is not None else x), self.two(x) if residual else None


def _shortcut(preact, kin, kout, stride, prefix):
    """A level shortcut: 1x1 conv + BN (post-activation) or a bare 1x1 conv (pre-activation)."""
    if preact:
        return projection(kin, kout, stride, prefix=prefix)
    return ConvUnit(kin, kout, 1, stride=stride, relu=False, prefix=prefix)


class RoRStage(nn.HybridBlock):
    """One stage: a mid-level shortcut ``mid_`` over blocks ``b0_`` .. ``b{n-1}_``.

    ``survivals`` has one survival probability per block (1.0: never dropped, no gate built).
    """

    def __init__(self, kin, kout, stride, survivals, preact, **kwargs):
        super().__init__(**kwargs)
        self.preact = preact
        self.survivals = list(survivals)
        with self.name_scope():
            self.mid = _shortcut(preact, kin, kout, stride, "mid_")
            for j in range(len(self.survivals)):
                if preact:
                    block = PreActBlock(kin, kout, stride if j == 0 else 1, prefix=f"b{j}_")
                else:
                    # the post-activation block strides (and projects) exactly when the width changes
                    block = PostActBlock(kin, kout, prefix=f"b{j}_")
                setattr(self, f"b{j}", block)
                kin = kout

    def run(self, F, x, *root, cut=None, trace=None):
        """The stage's output and the stochastic-depth gates it drew; ``root`` is added at the end.

        ``cut`` maps a block index to the names of its removed branches: ``residual`` (the block
        passes its shortcut alone), ``mid`` at the last block (the mid shortcut's term leaves the sum).
        A remaining residual keeps its gate: at inference it is scaled by its survival probability.
        ``trace`` collects the state after every block.
        """
        cut = cut or {}
        last = len(self.survivals) - 1
        mid = () if "mid" in cut.get(last, ()) else (self.mid(x),)
        gates = []
        for j, survival in enumerate(self.survivals):
            short, residual = getattr(self, f"b{j}").parts(F, x, residual="residual" not in cut.get(j, ()))
            if residual is not None and survival < 1:
                gate = survival_gate(F, live_ones(F, x), survival)
                residual = scale(F, residual, gate)
                gates.append(gate)
            y = short if residual is None else short + residual
            if j == last and (mid or root):
                y = F.add_n(y, *mid, *root)
            x = y if self.preact else relu(F, y)
            if trace is not None:
                trace.append((x,))
        return x, gates

    def paths(self, poly, cut=None, root=None):
        """The paths out of the stage of every path in ``poly`` (``root``: the root shortcut's, or None)."""
        cut = cut or {}
        out = poly
        for j in range(len(self.survivals)):
            (out,) = getattr(self, f"b{j}").paths((out,), cut.get(j, ()))
        terms = [out] + ([] if "mid" in cut.get(len(self.survivals) - 1, ()) else [shift(poly, 1)])
        return plus(*terms, *([root] if root is not None else []))

    def hybrid_forward(self, F, x, *root):
        return self.run(F, x, *root)[0]


class RoRNet(Views, nn.HybridBlock):
    """RoR-3: stem -> stages g1, g2, g3 with mid shortcuts -> + root shortcut -> head.

    ``return_gates=True`` returns ``(logits, gates)``, the stochastic-depth gates of the pass in
    :meth:`RoRSpec.survivals` order (blocks with survival 1.0 have none; see :meth:`gated_blocks`).

    Its views (:mod:`gluonfuse.models.views`): every level is removable. A final-level block's
    residual (``g2.b3``; the block passes its shortcut), a stage's mid shortcut (``g2.mid``) and
    the root shortcut (``root``); a removed shortcut's term leaves the sum of its stage's last block.
    """

    def __init__(self, spec, return_gates=False, **kwargs):
        kwargs.setdefault("prefix", f"{spec.network}_")
        super().__init__(**kwargs)
        self.spec = spec
        self.return_gates = return_gates
        survivals = spec.survivals()
        n = spec.blocks
        with self.name_scope():
            if spec.preact:
                self.stem = conv3x3(3, 16, 1, prefix="stem_conv_")
            else:
                self.stem = ConvUnit(3, 16, 3, prefix="stem_")
            self.root = _shortcut(spec.preact, 16, spec.widths[2], 4, "root_")
            kin = 16
            for s, kout in enumerate(spec.widths):
                stage = RoRStage(kin, kout, 1 if s == 0 else 2, survivals[s * n:(s + 1) * n], spec.preact,
                                 prefix=f"g{s + 1}_")
                setattr(self, f"g{s + 1}", stage)
                kin = kout
            self.post = BNReLU(kin, prefix="post_") if spec.preact else None
            self.head = ClassifierHead(kin, spec.classes, prefix="head_")

    def gated_blocks(self):
        """``[(stage, block, survival), ...]`` for the gates :meth:`hybrid_forward` returns."""
        n = self.spec.blocks
        return [(i // n + 1, i % n, p) for i, p in enumerate(self.spec.survivals()) if p < 1]

    @property
    def stages(self):
        return [self.g1, self.g2, self.g3]

    def _branch(self, s, j, name="residual"):
        n = self.spec.blocks
        label = {"mid": f"g{s}.mid", "root": "root"}.get(name, "")
        return Branch(s, j, name, kind="residual" if name == "residual" else "level", single=True,
                      position=(s - 1) * n + j + 1, label=label)

    def branches(self):
        last = self.spec.blocks - 1
        out = []
        for s in (1, 2, 3):
            out += [self._branch(s, j) for j in range(last + 1)] + [self._branch(s, last, "mid")]
        return out + [self._branch(3, last, "root")]

    def stochastic_blocks(self):
        return [(self._branch(s, j), p) for s, j, p in self.gated_blocks()]

    def fp32_layers(self):
        return [MASKS_IN_FP32]  # the stochastic-depth gates

    def _run(self, F, x, removed=(), trace=None):
        cut = removed_at(removed)
        x = self.stem(x)
        root = () if "root" in cut.get((3, self.spec.blocks - 1), ()) else (self.root(x),)
        gates = []
        for s, stage in enumerate(self.stages, start=1):
            stage_cut = {j: names for (t, j), names in cut.items() if t == s}
            x, stage_gates = stage.run(F, x, *(root if s == 3 else ()), cut=stage_cut, trace=trace)
            gates += stage_gates
        if self.post is not None:
            x = self.post(x)
        return self.head(x), gates

    def forward_without(self, F, x, removed=(), trace=None):
        return self._run(F, x, removed, trace)[0]

    def hybrid_forward(self, F, x):
        out, gates = self._run(F, x)
        if self.return_gates and gates:
            return out, F.concat(*gates, dim=0)
        return out

    def path_lengths(self, removed=()):
        cut = removed_at(removed)
        stem = one_path(1)
        root = None if "root" in cut.get((3, self.spec.blocks - 1), ()) else shift(stem, 1)
        poly = stem
        for s, stage in enumerate(self.stages, start=1):
            poly = stage.paths(poly, {j: names for (t, j), names in cut.items() if t == s},
                               root if s == 3 else None)
        return shift(poly, 1)


register_family("ror3", RoRSpec, RoRNet, "RoR-3 on the post-activation ResNet (depth 6n+8)",
                anchors=[({"depth": 56}, 762_746), ({"depth": 110}, 1_637_690), ({"depth": 164}, 2_512_634)],
                network="ror3")
register_family("ror3_wrn", RoRSpec, RoRNet, "Pre-RoR-3 on wide ResNets, RoR-3-WRN-d-k (depth 6N+4)",
                anchors=[({"depth": 40, "widen_factor": 2}, 2_256_346),
                         ({"depth": 58, "widen_factor": 4}, 13_645_530)],
                network="ror3_wrn", depth=40, widen_factor=2)  # defaults: RoR-3-WRN40-2

register_preset("ror3_56", "ror3", "RoR-3-56 (8 blocks per stage)", depth=56, anchors={10: 762_746})
register_preset("ror3_110", "ror3", "RoR-3-110 (17 blocks per stage)", depth=110, anchors={10: 1_637_690})
register_preset("ror3_164", "ror3", "RoR-3-164 (26 blocks per stage)", depth=164, anchors={10: 2_512_634})
register_preset("ror3_wrn40_2", "ror3_wrn", "RoR-3-WRN40-2", depth=40, widen_factor=2,
                anchors={10: 2_256_346})
# no paper states a count for RoR-3-WRN40-4; docs/anchors.md#computed-counts gives the computed one
register_preset("ror3_wrn40_4", "ror3_wrn", "RoR-3-WRN40-4", depth=40, widen_factor=4)
register_preset("ror3_wrn58_4", "ror3_wrn", "RoR-3-WRN58-4 (13.6M; the paper prints 13.3M)", depth=58,
                widen_factor=4, anchors={10: 13_645_530})
