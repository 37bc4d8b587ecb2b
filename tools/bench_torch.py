"""The CIFAR fusion networks written in PyTorch, for the benchmark's PyTorch rows.

Built from a gluonfuse ``FusionSpec`` (blocks per stage, widths), unit for unit as docs/networks.md#deeply-fused-nets describes, so
the architecture and the trainable-parameter count are the same as gluonfuse's (tests check it).
BatchNorm momentum 0.1 in PyTorch's convention is mxnet's 0.9. Only the benchmark uses this module;
it needs ``torch`` (the ``bench`` extra).
"""
import torch
import torch.nn.functional as F
from torch import nn

from bench_common import TORCH_NETWORKS as NETWORKS


def conv_unit(kin, kout, kernel, stride, relu):
    layers = [nn.Conv2d(kin, kout, kernel, stride=stride, padding=kernel // 2, bias=False),
              nn.BatchNorm2d(kout, eps=2e-5, momentum=0.1)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def one(kin, kout, relu=True):
    return conv_unit(kin, kout, 3, 2 if kin != kout else 1, relu)


def two(kin, kout):
    return nn.Sequential(one(kin, kout), one(kout, kout, relu=False))


def zero(kin, kout):
    return nn.Identity() if kin == kout else conv_unit(kin, kout, 1, 2, relu=False)


class Plain(nn.Module):
    def __init__(self, kin, kout):
        super().__init__()
        self.body = one(kin, kout)

    def forward(self, x):
        return self.body(x)


class Residual(nn.Module):
    def __init__(self, kin, kout):
        super().__init__()
        self.short, self.two = zero(kin, kout), two(kin, kout)

    def forward(self, x):
        return F.relu(self.short(x) + self.two(x), inplace=True)


class InceptionLike(nn.Module):
    def __init__(self, kin, kout, identity):
        super().__init__()
        self.short = zero(kin, kout) if identity else None
        self.two_a, self.two_b = two(kin, kout), two(kin, kout)

    def forward(self, x):
        y = self.two_a(x) + self.two_b(x)
        if self.short is not None:
            y = y + self.short(x)
        return F.relu(y, inplace=True)


class MergeRun(nn.Module):
    def __init__(self, kin, kout, last):
        super().__init__()
        self.last = last
        self.short_a, self.short_b = zero(kin, kout), zero(kin, kout)
        self.two_a, self.two_b = two(kin, kout), two(kin, kout)

    def forward(self, state):
        a, b = state
        m = 0.5 * (self.short_a(a) + self.short_b(b))
        da, db = self.two_a(a), self.two_b(b)
        if self.last:
            return F.relu(m + da + db, inplace=True)
        return F.relu(m + da, inplace=True), F.relu(m + db, inplace=True)


def _block(spec, stage, j, kin, kout):
    if spec.network == "plain":
        return Plain(kin, kout)
    if spec.network == "resnet":
        return Residual(kin, kout)
    if spec.network in ("half", "side"):
        return InceptionLike(kin, kout, identity=spec.network == "half")
    return MergeRun(kin, kout, last=stage == 2 and j == spec.blocks[2] - 1)


class FusionNet(nn.Module):
    """stem -> g1, g2, g3 -> global average pool -> Linear; ``cross`` carries two streams."""

    def __init__(self, spec):
        super().__init__()
        if getattr(spec, "network", None) not in NETWORKS or not hasattr(spec, "blocks"):
            raise ValueError(f"no PyTorch version of {spec.name!r}; written: CIFAR {', '.join(NETWORKS)}")
        self.two_streams = spec.network == "cross"
        w = spec.widths
        self.stem = conv_unit(3, w[0], 3, 1, relu=True)
        blocks, kin = [], w[0]
        for s, (n, kout) in enumerate(zip(spec.blocks, w)):
            for j in range(n):
                blocks.append(_block(spec, s, j, kin, kout))
                kin = kout
        self.blocks = nn.Sequential(*blocks)  # a MergeRun block passes the (a, b) pair along
        self.fc = nn.Linear(w[2], spec.classes)
        for m in self.modules():
            # docs/recipes.md#initialisation: Xavier gaussian 'in' magnitude 2 (= He normal) for convs, Xavier uniform for the Dense
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks((x, x) if self.two_streams else x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
