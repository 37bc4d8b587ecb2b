"""Learning-rate schedules: the recipes' piecewise constant one, and cosine, linear and one-cycle
decays with an optional linear warm-up (``--lr-schedule``, ``--warmup-epochs``).

The epoch loop asks a schedule for the rate of every iteration (``schedule(epoch, iteration)``), so
a schedule that changes within an epoch (a warm-up) needs no change to the loop; a schedule also
says how to run on dist_async's servers, which count updates instead (:meth:`StepSchedule.on_servers`).
"""
import dataclasses
import math
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


# ---------------------------------------------------------------- schedules set per iteration

SCHEDULES = ("step", "cosine", "linear", "onecycle")
# onecycle: the rate climbs from lr / ONECYCLE_DIV to lr over the first ONECYCLE_PEAK of the run,
# then falls linearly to 0 (the piecewise-linear form airbench and fastai's fit_one_cycle use)
ONECYCLE_PEAK = 0.3
ONECYCLE_DIV = 25.0


@dataclasses.dataclass(frozen=True)
class IterationSchedule:
    """A schedule that changes within an epoch: ``kind`` (step, cosine, linear, onecycle) after a
    linear warm-up of ``warmup_epochs`` from ``warmup_lr``.

    Every point is a fraction of the run, ``t = epoch + iteration / iterations`` (``iterations`` per
    epoch) over ``epochs``, so a shorter ``--epochs`` keeps the shape; the rate is a pure function of
    (epoch, iteration), so a resumed run sets exactly the rates of an uninterrupted one.
    ``step``: the recipe's ``lr * factor ** (steps done)`` after the warm-up. cosine and linear
    decay from ``lr`` to 0 over the epochs after the warm-up.
    """

    kind: str
    lr: float
    epochs: int
    iterations: int  # per epoch
    factor: float = 0.1
    steps: Tuple[int, ...] = ()
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0

    def __call__(self, epoch, iteration=0):
        t = epoch + iteration / self.iterations
        if t < self.warmup_epochs:
            return self.warmup_lr + (self.lr - self.warmup_lr) * t / self.warmup_epochs
        if self.kind == "step":
            return lr_at(epoch, self.lr, self.factor, self.steps)
        p = (t - self.warmup_epochs) / (self.epochs - self.warmup_epochs)  # 0 .. 1 after the warm-up
        if self.kind == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * p))
        if self.kind == "linear":
            return self.lr * (1 - p)
        if p < ONECYCLE_PEAK:
            start = self.lr / ONECYCLE_DIV
            return start + (self.lr - start) * p / ONECYCLE_PEAK
        return self.lr * (1 - p) / (1 - ONECYCLE_PEAK)

    def on_servers(self, updates_per_epoch):
        raise ValueError(f"the {self.kind} schedule with warm-up changes the lr every iteration, which "
                         "dist_async's servers cannot follow; use --kvstore dist_sync")


def make_schedule(kind, lr, epochs, iterations, factor=0.1, steps=(), warmup_epochs=0.0, warmup_lr=0.0):
    """The schedule object for these options: the recipe's :class:`StepSchedule` when nothing asks
    for more (today's behaviour, also on dist_async's servers), else an :class:`IterationSchedule`."""
    if kind not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {kind!r}; use one of {', '.join(SCHEDULES)}")
    if kind == "step" and not warmup_epochs:
        return StepSchedule(lr, factor, tuple(steps))
    return IterationSchedule(kind, lr, epochs, iterations, factor, tuple(steps), float(warmup_epochs), warmup_lr)
