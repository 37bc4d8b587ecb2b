"""Regularisation options: label smoothing, mixup, cutmix, cutout, weight decay only on weights,
and gradient clipping.

All random draws come from NumPy's global generator, which every epoch reseeds from ``(seed,
epoch)`` (:func:`gluonfuse.train.checkpoint.seed_everything`), so a resumed run draws the same
mixing coefficients, partners and squares as an uninterrupted one. An option that is off draws
nothing, so a run without it is the run of today, bit for bit.

With mixup or cutmix the training loss is against the mixed (soft) targets, while the training
error of ``metrics.csv`` is counted against the *dominant* label of each sample (the one with the
larger share, the first image's when the shares are equal).
"""
import dataclasses

import numpy as np


def soft_targets(label, classes, smoothing=0.0):
    """One-hot rows of ``label`` (an NDArray of class indices) with ``smoothing`` spread evenly:
    ``(1 - smoothing) * onehot + smoothing / classes``."""
    import mxnet as mx

    onehot = mx.nd.one_hot(label.astype("int32"), classes, dtype="float32")
    return onehot * (1 - smoothing) + smoothing / classes if smoothing else onehot


def soft_cross_entropy_loss():
    """The training loss against soft targets (rows summing to 1), summed over a network's outputs
    (an ``ensemble`` trains on the sum of its members' losses); ``loss(outputs, targets)``."""
    import mxnet as mx

    soft_ce = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)

    def loss(outputs, targets):
        return sum(soft_ce(o, targets) for o in outputs)

    return loss


@dataclasses.dataclass(frozen=True)
class BatchRegularizer:
    """The batch transform of a run's regularisation options, applied to each device's part.

    ``mixup`` / ``cutmix``: the Beta(alpha, alpha) parameter (0: off). When both are on, each batch
    takes one of them with equal chance; ``mix_prob`` is the chance that a batch is mixed at all.
    ``cutout``: the side of the square erased (set to 0, the mean colour after normalisation) in
    every training image, placed uniformly where it fits whole. Returns ``(data, targets, label)``:
    soft ``targets`` for the loss and, for the training error, each sample's dominant label.
    """

    classes: int
    smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    cutout: int = 0

    @property
    def active(self):
        return bool(self.smoothing or self.mixup or self.cutmix or self.cutout)

    @property
    def soft(self):
        """Whether the loss takes soft targets (else the plain labels)."""
        return bool(self.smoothing or self.mixup or self.cutmix)

    def __call__(self, data, label):
        out = [self.part(x, y) for x, y in zip(data, label)]
        return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]

    def part(self, x, y):
        """One device's (data, targets, dominant label)."""
        if self.cutout:
            x = cutout(x, self.cutout)
        if not self.soft:
            return x, y, y
        kind, lam = self._draw_mix()
        if kind is None:
            return x, soft_targets(y, self.classes, self.smoothing), y
        order = np.random.permutation(x.shape[0])
        x, lam = (mix(x, order, lam) if kind == "mixup" else paste_box(x, order, lam))
        return x, mixed_targets(y, order, lam, self.classes, self.smoothing), dominant_label(y, order, lam)

    def _draw_mix(self):
        kinds = [k for k, a in (("mixup", self.mixup), ("cutmix", self.cutmix)) if a > 0]
        if not kinds or np.random.rand() >= self.mix_prob:
            return None, 1.0
        kind = kinds[np.random.randint(len(kinds))] if len(kinds) > 1 else kinds[0]
        alpha = self.mixup if kind == "mixup" else self.cutmix
        return kind, float(np.random.beta(alpha, alpha))


def _take(x, order):
    import mxnet as mx

    return mx.nd.take(x, mx.nd.array(order, ctx=x.context, dtype="int32"))


def mix(x, order, lam):
    """Mixup: ``lam * x + (1 - lam) * x[order]``; returns (data, lam)."""
    return lam * x + (1 - lam) * _take(x, order), lam


def box(height, width, lam):
    """A box covering about ``1 - lam`` of the image at a uniform centre, clipped to the image:
    (top, bottom, left, right)."""
    cut = np.sqrt(1 - lam)
    h, w = int(height * cut), int(width * cut)
    cy, cx = np.random.randint(height), np.random.randint(width)
    return max(cy - h // 2, 0), min(cy + h // 2, height), max(cx - w // 2, 0), min(cx + w // 2, width)


def paste_box(x, order, lam):
    """CutMix: a box of ``x[order]`` pasted over ``x``; returns (data, the area share kept from ``x``)."""
    top, bottom, left, right = box(x.shape[2], x.shape[3], lam)
    if bottom <= top or right <= left:
        return x, 1.0
    x = x.copy()
    x[:, :, top:bottom, left:right] = _take(x, order)[:, :, top:bottom, left:right]
    return x, 1 - (bottom - top) * (right - left) / (x.shape[2] * x.shape[3])


def mixed_targets(label, order, lam, classes, smoothing=0.0):
    """``lam`` of each sample's targets plus ``1 - lam`` of its partner's."""
    own = soft_targets(label, classes, smoothing)
    return lam * own + (1 - lam) * _take(own, order)


def dominant_label(label, order, lam):
    """The label with the larger share of each mixed sample (the sample's own when equal)."""
    return label if lam >= 0.5 else _take(label, order)


def cutout(x, size):
    """``x`` (N, C, H, W) with one ``size`` x ``size`` square per image set to 0 (the mean after
    normalisation), placed uniformly where it fits whole."""
    import mxnet as mx

    n, _, height, width = x.shape
    size_h, size_w = min(size, height), min(size, width)
    tops = np.random.randint(0, height - size_h + 1, size=n)
    lefts = np.random.randint(0, width - size_w + 1, size=n)
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    inside = ((rows >= tops[:, None, None]) & (rows < (tops + size_h)[:, None, None])
              & (cols >= lefts[:, None, None]) & (cols < (lefts + size_w)[:, None, None]))
    keep = mx.nd.array((~inside)[:, None, :, :].astype(np.float32), ctx=x.context, dtype=x.dtype)
    return mx.nd.broadcast_mul(x, keep)


# ---------------------------------------------------------------- weight decay and gradients

def exempt_from_weight_decay(net):
    """Weight decay only on convolution and Dense weights: ``wd_mult = 0`` for BatchNorm's gamma and
    beta and for biases. Returns the names exempted."""
    exempt = []
    for name, param in net.collect_params().items():
        if param.grad_req != "null" and name.rsplit("_", 1)[-1] in ("gamma", "beta", "bias"):
            param.wd_mult = 0.0
            exempt.append(name)
    return exempt


def clip_global_norm(params, max_norm, scale=1.0):
    """Scale every device's gradients of ``params`` so that the norm of the whole update gradient
    (``scale`` times the summed gradients, as the optimizer will apply them) is at most ``max_norm``.

    Called after the gradients are aggregated (every device holds the same sums), so the norm is
    measured on the first device's copies. Returns the norm before clipping.
    """
    import mxnet as mx

    grads = [p.list_grad() for p in params if p.grad_req != "null"]
    squares = [mx.nd.sum(mx.nd.square(g[0].astype("float32"))).as_in_context(grads[0][0].context) for g in grads]
    norm = float(mx.nd.sqrt(mx.nd.add_n(*squares)).asscalar()) * scale
    if norm > max_norm:
        factor = max_norm / norm
        for per_device in grads:
            for g in per_device:
                g *= factor
    return norm
