"""The learning-rate schedule: piecewise constant, multiplied by a factor at given epochs."""
from fractions import Fraction


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
