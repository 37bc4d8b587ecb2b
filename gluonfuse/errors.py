"""Errors gluonfuse raises on purpose, and the exit codes the CLI maps them to.

Library code raises ``ValueError`` for bad arguments (a depth that leaves a stage empty, an unknown
network, ...) and :class:`DataError` for bad input files; the CLI turns the first into exit code 2 and
the second into exit code 1, each as one line on stderr. An :class:`ArgumentError` (a ValueError)
names the arguments it is about, so that a command can show its own flag for each.
"""
import re


class GluonfuseError(Exception):
    """Base class of the errors gluonfuse raises deliberately."""

    exit_code = 1


class DataError(GluonfuseError):
    """An input file is missing, truncated or corrupt; the message names the file and the place."""


class ArgumentError(ValueError):
    """A bad argument; ``names`` are the argument names the message uses as words (``batch_size``).

    Library messages speak of arguments; a command line speaks of its flags (:meth:`with_flags`).
    """

    def __init__(self, message, *names):
        super().__init__(message)
        self.names = names

    def with_flags(self, flags):
        """The message with every mention of a named argument spelled as ``flags[name]`` when given."""
        text = str(self)
        for name in self.names:
            if name in flags:
                text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lambda m: flags[name], text)
        return text


class NonFiniteLossError(GluonfuseError):
    """Training produced a NaN or infinite loss."""


def did_you_mean(name, choices, n=3):
    """A ' did you mean ...?' suffix for ``name`` among ``choices`` ('' when nothing is close)."""
    import difflib

    close = difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"
