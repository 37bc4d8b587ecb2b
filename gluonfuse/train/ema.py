"""An exponential moving average of a network's weights (``--ema DECAY``), kept beside the training.

After every update ``average = decay * average + (1 - decay) * weights``, for every parameter:
the trained weights and the BatchNorm running statistics (those of the first device, which hold its
share of each batch; the epoch-end average over devices is not folded in). The first update starts
the average at the weights of that step. The average lives on the first device, is evaluated every
epoch through its own copy of the network, and is saved under the structured parameter names of
``net.save_parameters``, so the file loads into the network like any ``.params`` file.
"""


class WeightAverage:
    """The moving average of ``net``'s parameters with ``decay`` in (0, 1), on ``ctx``."""

    def __init__(self, net, decay, ctx):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay:g}")
        self.net, self.decay, self.ctx = net, decay, ctx
        self.average = None  # name -> NDArray, from the first update (shapes are known only then)

    def _params(self):
        return self.net._collect_params_with_prefix()

    def update(self):
        """Fold the current weights in (call after each optimizer update)."""
        params = self._params()
        if self.average is None:
            self.average = {name: p.data(self.ctx).copy() for name, p in params.items()}
            return
        for name, avg in self.average.items():
            avg *= self.decay
            avg += (1 - self.decay) * params[name].data(self.ctx)

    def copy_to(self, target):
        """``target`` (the same architecture) := the average, on each of its devices."""
        params = target._collect_params_with_prefix()
        for name, avg in self.average.items():
            params[name].set_data(avg)

    def save(self, path):
        """The average as a ``.params`` file (nothing to save before the first update)."""
        import mxnet as mx

        mx.nd.save(path, self.average or {})

    def load(self, path):
        import mxnet as mx

        loaded = mx.nd.load(path)
        self.average = {name: a.as_in_context(self.ctx) for name, a in loaded.items()} or None
