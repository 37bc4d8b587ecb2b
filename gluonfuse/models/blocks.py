"""Units shared by every family: convolution units, heads and the BatchNorm settings.

Every unit is created with its input channel count, so parameters have their full shapes before
any forward pass (parameter counts and summaries need no data) and names are fixed by the explicit
prefixes the families give (parameter names are API: saved weights must always load back).
"""
from mxnet.gluon import nn

from gluonfuse.models.views import StagedBlock, plus, shift

# The authors' BatchNorm: momentum 0.9, eps 2e-5, learnable gamma and beta (docs/networks.md#fusion-units).
BN_MOMENTUM = 0.9
BN_EPS = 2e-5


def relu(F, x):
    """ReLU as ``Activation(act_type='relu')``, not ``F.relu``.

    Both compute max(x, 0), but only Activation has an MKLDNN kernel: the ``relu`` operator makes
    mxnet reorder every tensor from MKLDNN's blocked layout to the plain one and back (113 reorders in
    one forward pass of resnet 56, 3 with Activation), which costs about a third of the CPU speed
    (measured with tools/benchmark.py models).
    """
    return F.Activation(x, act_type="relu")


def batch_norm(in_channels, prefix="bn_"):
    return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS, in_channels=in_channels, prefix=prefix)


class ConvUnit(nn.HybridBlock):
    """Conv (no bias) -> [Dropout] -> BatchNorm -> optional ReLU: the conv unit of docs/networks.md#fusion-units.

    ``pad`` defaults to ``kernel // 2`` ("same" for odd kernels). ``dropout`` > 0 puts Dropout between
    the conv and the BatchNorm, FractalNet's order (docs/networks.md#fractalnet); it is the identity at inference.
    """

    def __init__(self, in_channels, channels, kernel, stride=1, pad=None, relu=True, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.relu = relu
        self.dropout = dropout
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, strides=stride,
                                  padding=kernel // 2 if pad is None else pad,
                                  use_bias=False, in_channels=in_channels, prefix="conv_")
            self.bn = batch_norm(channels)

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        if self.dropout:
            x = F.Dropout(x, p=self.dropout)
        x = self.bn(x)
        return relu(F, x) if self.relu else x


class BNReLU(nn.HybridBlock):
    """BatchNorm -> ReLU, the pre-activation of pre-activation networks."""

    def __init__(self, in_channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.bn = batch_norm(in_channels)

    def hybrid_forward(self, F, x):
        return relu(F, self.bn(x))


class ClassifierHead(nn.HybridBlock):
    """Global average pool -> Dense(classes).

    The pool is a mean over height and width rather than ``Pooling(global_pool=True)``: both work
    for any input size and export to ONNX, but on mxnet 1.9.1's MKLDNN CPU build the pooling
    backward hands the last stage a gradient in a layout that makes each BatchNorm backward there
    about 80x slower (resnet 56 trains about 1.5x faster with the mean; ``tools/benchmark.py models``).
    """

    def __init__(self, in_channels, classes, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.fc = nn.Dense(classes, in_units=in_channels, prefix="fc_")

    def hybrid_forward(self, F, x):
        return self.fc(F.flatten(F.mean(x, axis=(2, 3), keepdims=True)))


class Chain(nn.HybridBlock):
    """Blocks applied in order, passing multi-stream state along.

    Unlike ``HybridSequential`` it carries tuples: a block that returns ``(a, b)`` is called as
    ``next(a, b)``, so two-stream blocks (merge-and-run) chain like single-stream ones.
    """

    def add(self, block):
        self.register_child(block)
        return block

    def __len__(self):
        return len(self._children)

    def __getitem__(self, i):
        return list(self._children.values())[i]

    def hybrid_forward(self, F, *state):
        for block in self._children.values():
            state = block(*state)
            if not isinstance(state, (tuple, list)):
                state = (state,)
        return state[0] if len(state) == 1 else tuple(state)


class PreActResidual(StagedBlock, nn.HybridBlock):
    """A pre-activation residual block: shortcut + residual, no ReLU after the add (docs/networks.md#pre-activation-resnets).

    The shortcut is the identity, or a 1x1 conv (stride, no BN) when the width or the resolution
    changes; a projecting shortcut takes the pre-activated input, computed once for both paths.
    :meth:`parts` returns ``(shortcut, residual)`` for nets that add more terms (RoR) or gate the
    residual (stochastic depth); removing the residual (Veit et al.'s lesion) leaves the shortcut,
    a projection with its pre-activation. A subclass builds ``bn1`` and ``proj`` and computes
    :meth:`residual` from the pre-activated input; ``LAYERS`` convolutions are on its path.
    """

    BRANCHES = ("residual",)
    LAYERS = 2

    def residual(self, F, pre):
        raise NotImplementedError

    def parts(self, F, x, residual=True):
        """``(shortcut, residual)``; the residual is None when ``residual`` is False."""
        pre = relu(F, self.bn1(x)) if residual or self.proj is not None else None
        short = self.proj(pre) if self.proj is not None else x
        return short, self.residual(F, pre) if residual else None

    def forward_without(self, F, state, removed=()):
        short, residual = self.parts(F, state[0], residual="residual" not in removed)
        return (short if residual is None else short + residual,)

    def paths(self, polys, removed=()):
        (p,) = polys
        short = shift(p, 1 if self.proj is not None else 0)
        return (short if "residual" in removed else plus(short, shift(p, self.LAYERS)),)

    def hybrid_forward(self, F, x):
        return self.forward_without(F, (x,))[0]


class PreActBlock(PreActResidual):
    """Pre-activation basic block (He et al. 2016; WRN): BN-ReLU-conv3x3-BN-ReLU-[Dropout]-conv3x3 + shortcut."""

    def __init__(self, in_channels, channels, stride=1, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dropout = dropout
        with self.name_scope():
            self.bn1 = batch_norm(in_channels, prefix="bn1_")
            self.conv1 = conv3x3(in_channels, channels, stride, prefix="conv1_")
            self.bn2 = batch_norm(channels, prefix="bn2_")
            self.conv2 = conv3x3(channels, channels, 1, prefix="conv2_")
            self.proj = (projection(in_channels, channels, stride)
                         if in_channels != channels or stride != 1 else None)

    def residual(self, F, pre):
        y = relu(F, self.bn2(self.conv1(pre)))
        if self.dropout:
            y = F.Dropout(y, p=self.dropout)
        return self.conv2(y)


def conv3x3(in_channels, channels, stride, prefix):
    return nn.Conv2D(channels, 3, strides=stride, padding=1, use_bias=False, in_channels=in_channels,
                     prefix=prefix)


def projection(in_channels, channels, stride, prefix="proj_"):
    """A bare 1x1 conv shortcut (pre-activation nets: no BN of its own)."""
    return nn.Conv2D(channels, 1, strides=stride, use_bias=False, in_channels=in_channels, prefix=prefix)


# ---------------------------------------------------------------- stochastic layers (docs/mxnet-notes.md#randomness-under-hybridize)
#
# Inside a hybridized block, Python randomness and `autograd.is_training()` branches freeze at the first
# trace. Every random decision below is therefore made by `F.Dropout` on a tensor of ones: Dropout
# draws a fresh mask on every training pass of the cached graph and is the identity at inference (it
# exports as a `Dropout` node that inference skips). No `F.random.*` operator is used, so an exported
# graph holds no random operators at all, and at inference every mask below is an exact constant.
# Decisions are made once per forward pass (one mini-batch), as in the authors' Caffe join layer.

def live_ones(F, x, n=1):
    """Ones of shape ``(n,)`` on ``x``'s device and dtype, with no gradient to ``x``."""
    one = F.ones_like(F.slice_axis(F.reshape(x, shape=(-1,)), axis=0, begin=0, end=1))
    return one if n == 1 else F.repeat(one, repeats=n)


def keep_mask(F, ones, drop):
    """Elementwise 0/1: 0 with probability ``drop`` in training; exactly 1 at inference."""
    if drop <= 0:
        return ones
    return F.Dropout(ones, p=drop) > 0


def training_flag(F, one):
    """Exactly 1 in training and exactly 0 at inference.

    Dropout(1, p=0.5) is 0 or 2 in training (both exact in floating point) and 1 at inference.
    """
    return F.abs(F.Dropout(one, p=0.5) - 1) > 0.5


def train_event(F, one, prob):
    """1 with probability ``prob`` in training, exactly 0 at inference."""
    if prob <= 0:
        return F.zeros_like(one)
    if prob >= 1:
        return training_flag(F, one)  # Dropout(p=1) would divide by zero
    return 1 - keep_mask(F, one, prob)


def uniform_one_hot(F, one, k):
    """``k`` tensors of shape (1,), exactly one of them 1, chosen uniformly at random in training.

    Sequential draws: item i is taken with probability 1/(k-i) if none before it was. At inference
    every draw is 1, so the result is the constant [1, 0, ..., 0] (callers gate it off there).
    """
    picks, none_yet = [], one
    for i in range(k - 1):
        take = keep_mask(F, one, 1.0 - 1.0 / (k - i))
        picks.append(take * none_yet)
        none_yet = none_yet * (1 - take)
    picks.append(none_yet)
    return picks


def survival_gate(F, one, survival):
    """Stochastic depth's residual gate: Bernoulli(survival) in training, ``survival`` at inference."""
    flag = training_flag(F, one)
    return flag * keep_mask(F, one, 1.0 - survival) + (1 - flag) * survival


def scale(F, x, factor):
    """``x`` times a (1,)-shaped ``factor``, broadcast over an NCHW tensor."""
    return F.broadcast_mul(x, F.reshape(factor, shape=(1, 1, 1, 1)))


class MeanJoin(nn.HybridBlock):
    """Element-wise mean of its inputs (FractalNet's join at inference)."""

    def hybrid_forward(self, F, *xs):
        return F.add_n(*xs) / len(xs) if len(xs) > 1 else xs[0]


class DropPathJoin(nn.HybridBlock):
    """FractalNet's join with drop-path: the mean of the inputs that survive (docs/networks.md#drop-path).

    ``forward(ctrl, *xs)`` -> ``(mean, mask)``. ``ctrl`` has shape (k+1,): a global flag (1 in a
    global-drop-path pass, always 0 at inference) and, per input, 1 if it comes from the column
    chosen for the whole net. In a global pass a join holding the chosen column keeps only it. Every
    other join drops each input with probability ``drop_prob`` (local drop-path); if all drop, one is
    revived at random. A join off the chosen path of a global pass also uses local masks: its output
    is discarded downstream, and feeding the BatchNorms behind it real features (not zeros) keeps
    their running statistics sound. ``mask`` is the 0/1 keep mask of the inputs; at inference it is
    all ones and the output is exactly ``add_n(xs) / k``, the plain :class:`MeanJoin`.
    """

    def __init__(self, drop_prob, **kwargs):
        super().__init__(**kwargs)
        self.drop_prob = drop_prob

    def hybrid_forward(self, F, ctrl, *xs):
        k = len(xs)
        flag = F.slice_axis(ctrl, axis=0, begin=0, end=1)
        chosen = F.slice_axis(ctrl, axis=0, begin=1, end=None)
        ones = F.ones_like(chosen)
        local = keep_mask(F, ones, self.drop_prob)
        none_kept = F.sum(local, axis=0, keepdims=True) < 0.5  # (a reduction ONNX export supports)
        revive = F.concat(*uniform_one_hot(F, F.slice_axis(ones, axis=0, begin=0, end=1), k), dim=0)
        local = local + F.broadcast_mul(none_kept, revive)
        on_path = F.broadcast_mul(flag, F.sum(chosen, axis=0, keepdims=True))
        mask = F.broadcast_mul(on_path, chosen) + F.broadcast_mul(1 - on_path, local)
        kept = F.maximum(F.sum(mask, axis=0, keepdims=True), 1)
        weights = [F.slice_axis(mask, axis=0, begin=i, end=i + 1) for i in range(k)]
        total = F.add_n(*[scale(F, x, w) for x, w in zip(xs, weights)])
        return F.broadcast_div(total, F.reshape(kept, shape=(1, 1, 1, 1))), mask
