"""The learning-rate schedule: piecewise constant, multiplied by a factor at given epochs.

The epoch loop asks a schedule for the rate of every iteration (``schedule(epoch, iteration)``), so
a schedule that changes within an epoch (a warm-up) needs no change to the loop; a schedule also
says how to run on dist_async's servers, which count updates instead (:meth:`StepSchedule.on_servers`).
"""
import dataclasses
from fractions import Fraction
from typing import Tuple


def steps_from_fractions(fractions, epochs):
    """Epoch indices where the lr drops: ``floor(f * epochs)``, duplicates and 0 removed.

    ``("1/2", "3/4", "7/8")`` at 400 epochs gives [200, 300, 350] as the authors' code does.
    """
    steps = sorted({int(Fraction(f) * epochs) for f in fractions})
    return [s for s in steps if 0 < s < epochs] if epochs > 1 else []


def lr_at(epoch, lr, factor, steps):
    """The learning rate of (0-based) ``epoch``: ``lr * factor ** (number of steps <= epoch)``.

    Matches the authors' MultiFactorScheduler at epoch granularity: a step s applies once s epochs
    are complete.
    """
    return lr * factor ** sum(1 for s in steps if s <= epoch)


@dataclasses.dataclass(frozen=True)
class StepSchedule:
    """``lr``, multiplied by ``factor`` once each of ``steps`` (epochs) is complete; constant within an epoch."""

    lr: float
    factor: float
    steps: Tuple[int, ...]

    def __call__(self, epoch, iteration=0):
        """The rate of ``iteration`` (0-based, within the epoch) of (0-based) ``epoch``."""
        return lr_at(epoch, self.lr, self.factor, self.steps)

    def on_servers(self, updates_per_epoch):
        """The same schedule counted in updates, as MXNet's servers run it (None: a constant rate)."""
        import mxnet as mx

        if not self.steps:
            return None
        # an update of epoch e is number e * U + 1 .. (e + 1) * U on every server key; the scheduler
        # decays once the count exceeds a step
        return mx.lr_scheduler.MultiFactorScheduler(step=[s * updates_per_epoch for s in self.steps],
                                                    factor=self.factor, base_lr=self.lr)
