"""Units shared by every family: convolution units, heads and the BatchNorm settings.

Every unit is created with its input channel count, so parameters have their full shapes before
any forward pass (parameter counts and summaries need no data) and names are fixed by the explicit
prefixes the families give (parameter names are API: saved weights must always load back).
"""
from mxnet.gluon import nn

# The authors' BatchNorm: momentum 0.9, eps 2e-5, learnable gamma and beta (SPEC 1.1).
BN_MOMENTUM = 0.9
BN_EPS = 2e-5


def batch_norm(in_channels, prefix="bn_"):
    return nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS, in_channels=in_channels, prefix=prefix)


class ConvUnit(nn.HybridBlock):
    """Conv (no bias) -> BatchNorm -> optional ReLU: the conv unit of SPEC 1.1.

    ``pad`` defaults to ``kernel // 2`` ("same" for odd kernels).
    """

    def __init__(self, in_channels, channels, kernel, stride=1, pad=None, relu=True, **kwargs):
        super().__init__(**kwargs)
        self.relu = relu
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, strides=stride,
                                  padding=kernel // 2 if pad is None else pad,
                                  use_bias=False, in_channels=in_channels, prefix="conv_")
            self.bn = batch_norm(channels)

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class BNReLU(nn.HybridBlock):
    """BatchNorm -> ReLU, the pre-activation of pre-activation networks."""

    def __init__(self, in_channels, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.bn = batch_norm(in_channels)

    def hybrid_forward(self, F, x):
        return F.relu(self.bn(x))


class ClassifierHead(nn.HybridBlock):
    """Global average pool -> flatten -> Dense(classes)."""

    def __init__(self, in_channels, classes, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.fc = nn.Dense(classes, in_units=in_channels, prefix="fc_")

    def hybrid_forward(self, F, x):
        # global_pool keeps the head independent of the input size and exports to ONNX
        x = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
        return self.fc(F.flatten(x))


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
