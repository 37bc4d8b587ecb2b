"""Argument checks shared by the family specs: depth rules with the nearest valid depths, numbers in range.

Every check raises ``ValueError`` saying what was wrong and what would be right, so
``gluonfuse train --network wrn --depth 30`` answers "nearest valid depths: 28 and 34".
"""
import numbers


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_rate(name, value, allow_one=False):
    """A probability in [0, 1) (or [0, 1] with ``allow_one``)."""
    top = "1]" if allow_one else "1)"
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        0 <= value <= 1 if allow_one else 0 <= value < 1)
    if not ok:
        raise ValueError(f"{name} must be a number in [0, {top}, got {value!r}")
    return float(value)


def depth_from_rule(family, depth, step, offset, unit="blocks per stage"):
    """``n`` for ``depth = step * n + offset`` (n >= 1), or ValueError naming the nearest valid depths.

    ``depth_from_rule('wrn', 30, 6, 4)`` -> "... nearest valid depths: 28 and 34".
    """
    check_positive_int("depth", depth)
    n, rest = divmod(depth - offset, step)
    if rest == 0 and n >= 1:
        return n
    below = offset + step * n if n >= 1 else None
    above = offset + step * max(n + 1, 1)
    near = f"{below} and {above}" if below is not None else f"{above} (the smallest)"
    raise ValueError(
        f"depth {depth} does not fit {family}'s rule depth = {step}n + {offset} (n {unit}, n >= 1); "
        f"nearest valid depths: {near}"
    )
