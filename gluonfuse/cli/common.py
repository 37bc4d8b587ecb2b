"""Options shared by every command that builds a network (summary, export, show, train, ...)."""
import ast
import functools

import click


def parse_arg(text):
    """``KEY=VALUE`` -> (key, value); the value is a Python literal when it parses as one."""
    if "=" not in text:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--arg")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key, value


def model_options(fn=None, *, network_required=True):
    """Add --network/--depth/--widen-factor/--classes/--arg and pass ``network, model_kwargs``.

    ``@model_options(network_required=False)`` for commands that can take the network from elsewhere
    (``train --resume``).
    """
    if fn is None:
        return functools.partial(model_options, network_required=network_required)

    @click.option("--network", "-n", required=network_required, metavar="NAME",
                  help="A network family or preset (see 'gluonfuse list').")
    @click.option("--depth", "-d", type=int, default=None,
                  help="Depth (for fusion nets: of the corresponding plain net). Family default if omitted.")
    @click.option("--widen-factor", "-w", type=int, default=None, help="Width multiplier (family default 1).")
    @click.option("--classes", type=int, default=None, help="Number of classes (family default).")
    @click.option("--arg", "extra", multiple=True, metavar="KEY=VALUE",
                  help="Any other network argument, e.g. --arg columns=4 (repeatable).")
    @functools.wraps(fn)
    def wrapper(*args, network, depth, widen_factor, classes, extra, **kwargs):
        model_kwargs = dict(parse_arg(e) for e in extra)
        for key, value in (("depth", depth), ("widen_factor", widen_factor), ("classes", classes)):
            if value is not None:
                model_kwargs[key] = value
        return fn(*args, network=network, model_kwargs=model_kwargs, **kwargs)

    return wrapper
