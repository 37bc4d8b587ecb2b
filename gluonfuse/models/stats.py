"""Counting: trainable parameters, multiply-adds and a per-stage breakdown of any network."""
import numpy as np


def _trainable(params):
    # docs/anchors.md#counting-rule: weights, BN gamma/beta, Dense weight+bias; not BN running mean/var
    return [p for p in params.values() if p.grad_req != "null"]


def count_params(net, input_shape=None):
    """Trainable parameters of ``net`` (conv and Dense weights, biases, BN gamma and beta).

    Every family builds with known input channels, so no forward pass is needed; a network with
    deferred shapes is traced symbolically at ``input_shape`` (C, H, W).
    """
    params = _trainable(net.collect_params())
    if all(p.shape and all(d > 0 for d in p.shape) for p in params):
        return int(sum(int(np.prod(p.shape)) for p in params))
    if input_shape is None:
        input_shape = net.spec.input_shape
    arg_shapes, _ = _symbol_shapes(net, input_shape)
    names = {p.name for p in params}
    return int(sum(int(np.prod(s)) for n, s in arg_shapes.items() if n in names))


def symbol_of(net):
    """``net`` applied to a symbolic ``data``: one symbol, grouped when the net has several outputs."""
    import mxnet as mx

    out = net(mx.sym.var("data"))
    return mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out


def _symbol_shapes(net, input_shape, sym=None):
    sym = symbol_of(net) if sym is None else sym
    arg, _, aux = sym.infer_shape(data=(1,) + tuple(input_shape))
    return dict(zip(sym.list_arguments(), arg)), dict(zip(sym.list_auxiliary_states(), aux))


def multiply_adds(net, input_shape=None, by_prefix=None):
    """Multiply-adds of one image through ``net`` (convolutions and Dense layers).

    Returns the total, or with ``by_prefix`` (a list of name prefixes) a dict prefix -> count, each
    operator counted under the longest prefix its name starts with.
    """
    import json

    input_shape = tuple(input_shape or net.spec.input_shape)
    sym = symbol_of(net)
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1,) + input_shape)
    shape_of = dict(zip(internals.list_outputs(), out_shapes))
    nodes = json.loads(sym.tojson())["nodes"]
    totals = {p: 0 for p in (by_prefix or [])}
    total = 0
    for node in nodes:
        op = node["op"]
        if op not in ("Convolution", "FullyConnected"):
            continue
        out = shape_of[node["name"] + "_output"]
        weight = shape_of[nodes[node["inputs"][1][0]]["name"]]
        # weight (out, in/groups, kh, kw) or (out, in): each output element costs prod(weight[1:])
        macs = int(np.prod(out[1:])) * int(np.prod(weight[1:]))
        total += macs
        if by_prefix:
            match = max((p for p in by_prefix if node["name"].startswith(p)), key=len, default=None)
            if match is not None:
                totals[match] += macs
    return totals if by_prefix else total


def summarize(net):
    """A dict describing ``net``: spec, parameters, multiply-adds, per-stage breakdown."""
    spec = net.spec
    stages = []
    prefixes = [child.prefix for child in net._children.values()]
    macs = multiply_adds(net, by_prefix=prefixes)
    for name, child in net._children.items():
        stages.append({"name": name, "params": count_params(child) if _trainable(child.collect_params()) else 0,
                       "multiply_adds": macs[child.prefix]})
    info = {"name": spec.name, "classes": spec.classes, "input_shape": list(spec.input_shape)}
    info.update(spec.describe())
    info["params"] = count_params(net)
    info["multiply_adds"] = sum(macs.values())
    info["stages"] = stages
    return info
