"""Commands about networks: list, summary, export."""
import json
import os

import click

from gluonfuse.cli.common import model_options


@click.command("list")
@click.argument("pattern", default="*")
@click.option("--kind", type=click.Choice(["family", "preset"]), default=None,
              help="Only families (take arguments) or only presets (named configurations).")
def list_cmd(pattern, kind):
    """List networks and presets, one line each.

    PATTERN is shell-style, e.g. 'dfn*' (default: all).
    """
    from gluonfuse.models.registry import get_entry, list_models

    names = list_models(pattern, kind=kind)
    if not names:
        raise ValueError(f"no network matches {pattern!r}; run 'gluonfuse list' to see them all")
    width = max(len(n) for n in names)
    for name in names:
        entry = get_entry(name)
        tag = "family" if entry.kind == "family" else f"preset of {entry.family}"
        click.echo(f"{name:<{width}}  {tag:<24}  {entry.description}")


def _build(network, model_kwargs):
    from gluonfuse.models import get_model

    return get_model(network, **model_kwargs)


def _format_summary(info):
    lines = [f"{info['name']}  ({info['network']}, {info['classes']} classes, input "
             f"{'x'.join(map(str, info['input_shape']))})"]
    skip = {"name", "network", "classes", "input_shape", "params", "multiply_adds", "stages"}
    for key, value in info.items():
        if key not in skip:
            lines.append(f"  {key.replace('_', ' ')}: {value}")
    lines.append(f"  trainable parameters: {info['params']:,}")
    lines.append(f"  multiply-adds per image: {info['multiply_adds']:,}")
    lines.append("  per stage:")
    lines.append(f"    {'stage':<8} {'params':>14} {'multiply-adds':>16}")
    for row in info["stages"]:
        lines.append(f"    {row['name']:<8} {row['params']:>14,} {row['multiply_adds']:>16,}")
    return "\n".join(lines)


@click.command("summary")
@model_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def summary_cmd(network, model_kwargs, as_json):
    """Describe a network: blocks, depth, parameters, multiply-adds.

    Prints blocks per stage, the longest path, trainable parameters, multiply-adds for one image and
    a per-stage breakdown.

    Example: gluonfuse summary --network cross --depth 110 --widen-factor 4 --classes 100
    """
    from gluonfuse.models.stats import summarize

    info = summarize(_build(network, model_kwargs))
    info["network"] = info.get("network") or network
    click.echo(json.dumps(info, indent=2) if as_json else _format_summary(info))


@click.command("export")
@model_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write into (created if missing).")
@click.option("--format", "fmt", type=click.Choice(["mxnet", "onnx"]), default="mxnet", show_default=True,
              help="mxnet: <name>-symbol.json + <name>-0000.params + <name>-meta.json; onnx: <name>.onnx, "
                   "checked against onnxruntime.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False), default=None,
              help="Trained parameters (save_parameters format) to export; default: fresh Xavier weights.")
@click.option("--name", default=None, help="File name stem (default: the network's canonical name).")
def export_cmd(network, model_kwargs, out_dir, fmt, params_file, name):
    """Export a network as MXNet symbol + params, or ONNX.

    The MXNet pair loads with plain MXNet (gluon.SymbolBlock.imports), without gluonfuse.

    Example: gluonfuse export --network cross --depth 110 --out exported/
    """
    import mxnet as mx

    from gluonfuse.errors import DataError
    from gluonfuse.export import export_model, export_onnx

    net = _build(network, model_kwargs)
    if params_file:
        if not os.path.isfile(params_file):
            raise DataError(f"parameter file not found: {params_file}")
        try:
            net.load_parameters(params_file, ctx=mx.cpu())
        except (AssertionError, mx.base.MXNetError) as exc:
            msg = str(exc).strip().splitlines()[0]
            raise DataError(f"{params_file} does not fit {net.spec.name}: {msg}") from None
    else:
        net.initialize(mx.init.Xavier(magnitude=2), ctx=mx.cpu())
    name = name or net.spec.name
    if fmt == "onnx":
        result = export_onnx(net, os.path.join(out_dir, f"{name}.onnx"))
        click.echo(f"wrote {result['path']}")
        click.echo(f"onnxruntime check passed: largest difference from MXNet {result['max_abs_diff']:.3g}")
    else:
        for path in export_model(net, out_dir, name=name).values():
            click.echo(f"wrote {path}")


COMMANDS = [list_cmd, summary_cmd, export_cmd]
