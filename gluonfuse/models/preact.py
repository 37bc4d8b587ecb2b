"""Pre-activation ResNets and wide ResNets for CIFAR-size input (docs/networks.md#pre-activation-resnets, #wide-resnets).

Papers: He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks" (ECCV 2016, arXiv
1603.05027), original code KaimingHe/resnet-1k-layers (Torch); Zagoruyko, Komodakis, "Wide Residual
Networks" (BMVC 2016, arXiv 1605.07146), original code szagoruyko/wide-residual-networks (Torch).

Networks:

* ``preresnet``: stem conv3x3 16; three stages of 16/32/64 channels (strides 1/2/2) of basic blocks
  BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut, depth 6n + 2 (``preresnet110``: n = 18); with
  ``bottleneck=True`` blocks BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride here), BN-ReLU-conv1x1 with stage
  outputs 64/128/256 and bottleneck width out/4, depth 9n + 2 (``preresnet164``: n = 18,
  ``preresnet1001``: n = 111). Head BN-ReLU-global average pool-Dense.
* ``wrn`` (WRN-d-k): the basic pre-activation net with widths 16k/32k/64k (the stem stays 16), depth
  6N + 4, optional Dropout between the two convolutions (after the second BN-ReLU).

A shortcut projects (1x1 conv, stride s, no BN) exactly when the width or the resolution changes, and
then takes the pre-activated input, computed once for both paths; no ReLU follows the add.

Deviations: none in structure or parameter count (the anchors of docs/anchors.md are checked by the tests).
He's CIFAR code builds only bottleneck nets (9n + 2); the basic 6n + 2 nets follow the paper's
ResNet-110, built the same way. ``depth`` for ``wrn`` is the WRN paper's count (6N + 4), for
``preresnet`` the ResNet paper's (6n + 2 or 9n + 2); both are refused with the nearest valid depths
when they do not fit.
"""
import dataclasses

from mxnet.gluon import nn

from gluonfuse.models.blocks import BNReLU, ClassifierHead, PreActBlock, PreActResidual, batch_norm, conv3x3
from gluonfuse.models.blocks import projection, relu
from gluonfuse.models.registry import register_family, register_preset
from gluonfuse.models.rules import check_positive_int, check_rate, depth_from_rule
from gluonfuse.models.views import StagedNet

STEM_WIDTH = 16  # not widened in WRN (docs/networks.md#wide-resnets)


@dataclasses.dataclass(frozen=True)
class PreResNetSpec:
    """A pre-activation ResNet: ``depth`` 6n + 2 (basic) or 9n + 2 (``bottleneck=True``)."""

    depth: int = 110
    bottleneck: bool = False
    classes: int = 10

    input_shape = (3, 32, 32)
    family = "preresnet"
    dropout = 0.0

    def __post_init__(self):
        if not isinstance(self.bottleneck, bool):
            raise ValueError(f"bottleneck must be True or False, got {self.bottleneck!r}")
        depth_from_rule("preresnet (bottleneck)" if self.bottleneck else "preresnet (basic)",
                        self.depth, 9 if self.bottleneck else 6, 2)
        check_positive_int("classes", self.classes)

    @property
    def blocks(self):
        return (self.depth - 2) // (9 if self.bottleneck else 6)

    @property
    def widths(self):
        return (64, 128, 256) if self.bottleneck else (16, 32, 64)

    @property
    def name(self):
        return f"preresnet{'_bottleneck' if self.bottleneck else ''}_d{self.depth}"

    def kwargs(self):
        return {"depth": self.depth, "bottleneck": self.bottleneck, "classes": self.classes}

    def describe(self):
        return {"block": "bottleneck" if self.bottleneck else "basic", "blocks_per_stage": [self.blocks] * 3,
                "widths": list(self.widths), "longest_path": self.depth}


@dataclasses.dataclass(frozen=True)
class WideResNetSpec:
    """WRN-d-k: ``depth`` 6N + 4, ``widen_factor`` k, optional ``dropout`` between the two convolutions."""

    depth: int = 16
    widen_factor: int = 4
    dropout: float = 0.0  # the paper's best CIFAR runs use 0.3, SVHN 0.4
    classes: int = 10

    input_shape = (3, 32, 32)
    family = "wrn"
    bottleneck = False

    def __post_init__(self):
        depth_from_rule("wrn", self.depth, 6, 4)
        check_positive_int("widen_factor", self.widen_factor)
        object.__setattr__(self, "dropout", check_rate("dropout", self.dropout))
        check_positive_int("classes", self.classes)

    @property
    def blocks(self):
        return (self.depth - 4) // 6

    @property
    def widths(self):
        return tuple(16 * self.widen_factor * 2 ** i for i in range(3))

    @property
    def name(self):
        return f"wrn_d{self.depth}_w{self.widen_factor}"

    def kwargs(self):
        return {"depth": self.depth, "widen_factor": self.widen_factor, "dropout": self.dropout,
                "classes": self.classes}

    def describe(self):
        return {"block": "basic", "blocks_per_stage": [self.blocks] * 3, "widths": list(self.widths),
                "dropout": self.dropout, "longest_path": 2 + 6 * self.blocks}


class PreActBottleneck(PreActResidual):
    """BN-ReLU-conv1x1 (out/4), BN-ReLU-conv3x3 (out/4, stride), BN-ReLU-conv1x1 (out) + shortcut.

    Same conventions as :class:`~gluonfuse.models.blocks.PreActBlock`: a projecting shortcut (1x1
    conv, stride) takes the pre-activated input; no ReLU after the add.
    """

    def __init__(self, in_channels, channels, stride=1, **kwargs):
        super().__init__(**kwargs)
        mid = channels // 4
        with self.name_scope():
            self.bn1 = batch_norm(in_channels, prefix="bn1_")
            self.conv1 = nn.Conv2D(mid, 1, use_bias=False, in_channels=in_channels, prefix="conv1_")
            self.bn2 = batch_norm(mid, prefix="bn2_")
            self.conv2 = conv3x3(mid, mid, stride, prefix="conv2_")
            self.bn3 = batch_norm(mid, prefix="bn3_")
            self.conv3 = nn.Conv2D(channels, 1, use_bias=False, in_channels=mid, prefix="conv3_")
            self.proj = (projection(in_channels, channels, stride)
                         if in_channels != channels or stride != 1 else None)

    LAYERS = 3

    def residual(self, F, pre):
        y = self.conv1(pre)
        y = self.conv2(relu(F, self.bn2(y)))
        return self.conv3(relu(F, self.bn3(y)))


class PreActResNet(StagedNet, nn.HybridBlock):
    """Stem conv3x3 16 -> stages g1, g2, g3 (strides 1, 2, 2) -> BN-ReLU -> pool -> Dense.

    Builds ``preresnet`` and ``wrn`` from their specs (``blocks`` per stage, stage ``widths``,
    ``bottleneck``, ``dropout``). Every block's residual is a removable branch (a lesion leaves its
    shortcut: the identity, or the projection of the pre-activated input at a width change).
    """

    def __init__(self, spec, **kwargs):
        kwargs.setdefault("prefix", f"{spec.family}_")
        super().__init__(**kwargs)
        self.spec = spec
        with self.name_scope():
            self.stem = conv3x3(3, STEM_WIDTH, 1, prefix="stem_conv_")
            kin = STEM_WIDTH
            for s, kout in enumerate(spec.widths):
                stage = nn.HybridSequential(prefix=f"g{s + 1}_")
                with stage.name_scope():
                    for j in range(spec.blocks):
                        stride = 2 if s > 0 and j == 0 else 1
                        if spec.bottleneck:
                            stage.add(PreActBottleneck(kin, kout, stride, prefix=f"b{j}_"))
                        else:
                            stage.add(PreActBlock(kin, kout, stride, dropout=spec.dropout, prefix=f"b{j}_"))
                        kin = kout
                setattr(self, f"g{s + 1}", stage)
            self.post = BNReLU(kin, prefix="post_")
            self.head = ClassifierHead(kin, spec.classes, prefix="head_")

    @property
    def stages(self):
        return [self.g1, self.g2, self.g3]

    def leave(self, F, state):
        return self.head(self.post(state[0]))


register_family("preresnet", PreResNetSpec, PreActResNet,
                "pre-activation ResNet, basic (6n+2) or bottleneck (9n+2) blocks",
                anchors=[({"depth": 110}, 1_730_522), ({"depth": 164, "bottleneck": True}, 1_703_258)])
register_family("wrn", WideResNetSpec, PreActResNet, "wide ResNet WRN-d-k (depth 6N+4, widen k)",
                anchors=[({"depth": 16, "widen_factor": 4}, 2_748_890),
                         ({"depth": 28, "widen_factor": 10}, 36_479_194),
                         ({"depth": 40, "widen_factor": 4}, 8_949_210)])

register_preset("preresnet110", "preresnet", "pre-activation ResNet-110, basic blocks (n = 18)",
                depth=110, bottleneck=False, anchors={10: 1_730_522})
register_preset("preresnet164", "preresnet", "pre-activation ResNet-164, bottleneck blocks (n = 18)",
                depth=164, bottleneck=True, anchors={10: 1_703_258})
# no paper states a count for ResNet-1001; docs/anchors.md#computed-counts gives the computed one
register_preset("preresnet1001", "preresnet", "pre-activation ResNet-1001, bottleneck blocks (n = 111)",
                heavy=True, depth=1001, bottleneck=True)
register_preset("wrn16_4", "wrn", "WRN-16-4", depth=16, widen_factor=4, anchors={10: 2_748_890})
register_preset("wrn28_10", "wrn", "WRN-28-10 (36.5M)", heavy=True, depth=28, widen_factor=10,
                anchors={10: 36_479_194})
register_preset("wrn40_4", "wrn", "WRN-40-4", depth=40, widen_factor=4, anchors={10: 8_949_210})
