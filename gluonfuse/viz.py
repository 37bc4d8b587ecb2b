"""Architecture graphs of any registered network, drawn from its traced symbol.

The graph comes from ``net(mx.sym.var('data'))``, so every network (any family, any arguments) is
drawn the same way, driven only by the operators and the name prefixes its blocks give them
(``cross_g2_b0_a_u1_conv_fwd``: stage ``g2``, block ``b0``, stream ``a``). Two styles:

* ``paper``: the drawings of the fusion papers. Only convolutions and Dense layers are boxes
  (BatchNorm, ReLU, pooling, flatten are hidden: a hidden operator's consumers are wired to its
  visible ancestors), coloured by stage; sums are small "+" circles (chained sums of one fusion are
  one circle); means -- ``0.5 * (a + b)`` of merge-and-run, FractalNet's mean join, a sum divided
  by its (drop-path) count -- are "mean" circles; left/right stream tags on two-stream networks;
  bottom to top.
* ``full``: every operator with its output shape (batch dimension dropped).

Drawing writes Graphviz DOT text (always kept beside the picture as ``.gv``) and runs the ``dot``
program; it never opens a viewer. The authors' tool (zlmzju/fusenet ``visualize_net.py``) drew the
same kind of graph from MXNet's ``plot_network``; this module only shares its idea and defaults
(bottom to top, ``<network>_d<depth>.png``).
"""
import dataclasses
import html
import os
import re
import shutil
import subprocess

from gluonfuse.errors import GluonfuseError
from gluonfuse.io import atomic_path

STYLES = ("paper", "full")
FORMATS = ("png", "svg", "pdf", "gv")

VISIBLE_OPS = {"Convolution": "conv", "Deconvolution": "conv", "FullyConnected": "fc",
               "Concat": "concat", "concat": "concat"}
SUM_OPS = {"elemwise_add", "_plus", "_Plus", "_add", "broadcast_add", "broadcast_plus", "add_n",
           "ElementWiseSum"}
# operators whose output does not depend on their input's values: a drop-path mask made as
# Dropout(ones_like(x)) or drawn at random carries no data, so it adds no edges or "+" nodes
SHAPE_ONLY_OPS = {"ones_like", "zeros_like", "shape_array", "size_array", "_ones", "_zeros", "_full",
                  "_arange", "_eye"}
SHAPE_ONLY_PREFIXES = ("_random_", "random_", "_sample_", "sample_")
DIVIDE_OPS = {"broadcast_div", "elemwise_div", "_div"}

# stage tokens in block prefixes: g1, g2 (the fusion family), stage1, ...
STAGE_RE = re.compile(r"^(g|stage)(\d+)$")
SIDE_TOKENS = {"a": "left", "b": "right", "left": "left", "right": "right"}
KIND_TOKENS = {"short": "shortcut", "root": "root shortcut", "mid": "mid shortcut"}
COLUMN_RE = re.compile(r"^(?:c|col|column)(\d+)$")
NUMBERED_RE = re.compile(r"^[a-z]+(\d+)$")

# node kinds drawn as coloured boxes (and so listed in the legend)
COLOURED = ("conv", "fc", "concat", "op")
# ColorBrewer Set2 for numbered stages (as the authors' drawings), fixed colours for the rest
STAGE_COLOURS = ("#66c2a5", "#fc8d62", "#8da0cb", "#e78ac3", "#ffd92f", "#e5c494", "#b3b3b3",
                 "#8dd3c7")
GROUP_COLOURS = {"stem": "#f6ae2d", "head": "#a6d854", "": "#eeeeee"}
OTHER_COLOURS = ("#bebada", "#fdb462", "#80b1d3", "#fccde5", "#ccebc5", "#bc80bd")


class DotNotFoundError(GluonfuseError):
    """The Graphviz ``dot`` program is missing; the ``.gv`` source was written anyway."""


# ---------------------------------------------------------------- the traced operator graph

@dataclasses.dataclass
class Op:
    """One operator of the traced symbol (parameters and auxiliary states are left out)."""

    index: int
    op: str  # "null" for the data input
    name: str
    attrs: dict
    inputs: list  # indices of the operators feeding it, in argument order
    shape: tuple = ()  # first output's shape, batch dimension dropped
    carries_data: bool = True  # False for masks and constants that do not depend on the input values


def _shape_only(op):
    return op in SHAPE_ONLY_OPS or op.startswith(SHAPE_ONLY_PREFIXES)


def trace(net, input_shape=None):
    """``(operators, outputs)`` of ``net`` applied to a symbolic ``data`` of shape (C, H, W).

    Operators are identified by position, not name: a block called twice (the ensemble's shared
    head) gives two operators with one name. ``outputs`` are the positions of the net's outputs.
    """
    import json

    from gluonfuse.models.stats import symbol_of

    input_shape = tuple(input_shape or net.spec.input_shape)
    sym = symbol_of(net)
    nodes = json.loads(sym.tojson())["nodes"]
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=(1,) + input_shape)
    shapes = _shapes_per_node(nodes, internals.list_outputs(), out_shapes)
    ops = []
    by_index = {}
    for i, node in enumerate(nodes):
        if node["op"] == "null" and node["name"] != "data":
            continue  # a parameter or auxiliary state
        inputs = [src for src, _, _ in node["inputs"] if src in by_index]
        op = Op(len(ops), node["op"], node["name"], dict(node.get("attrs", {})),
                [by_index[src] for src in inputs], tuple(shapes[i][1:]) if shapes[i] else ())
        if op.op != "null":
            op.carries_data = not _shape_only(op.op) and any(ops[j].carries_data for j in op.inputs)
        by_index[i] = op.index
        ops.append(op)
    heads = json.loads(sym.tojson())["heads"]
    return ops, [by_index[h[0]] for h in heads if h[0] in by_index]


def _shapes_per_node(nodes, output_names, out_shapes):
    """First output shape of every JSON node (internals list one or more outputs per node, in order)."""
    if len(output_names) == len(nodes):
        return list(out_shapes)
    shapes, k = [], 0
    for i, node in enumerate(nodes):
        shapes.append(out_shapes[k] if k < len(out_shapes) else ())
        k += 1
        nxt = nodes[i + 1]["name"] if i + 1 < len(nodes) else None
        # extra outputs of a multi-output operator: name_output1, name_mean, ...
        while k < len(output_names) and output_names[k].startswith(node["name"] + "_") and not (
                nxt and (output_names[k] == nxt or output_names[k].startswith(nxt + "_output"))):
            k += 1
    return shapes


# ---------------------------------------------------------------- names -> stage and path

def _tokens(name, prefix):
    rest = name[len(prefix):] if prefix and name.startswith(prefix) else name
    return [t for t in rest.split("_") if t]


def name_parts(name, prefix, children=()):
    """``(group, tag)`` of an operator name: its stage (``g2``, ``stem``, ``head``...) and path.

    ``children`` are the prefixes of the net's top-level blocks (without the net's prefix); a name
    under no stage token belongs to the top-level block it starts with, or to the net itself
    (group ``""``).
    """
    tokens = _tokens(name, prefix)
    group, start = "", 0
    for i, tok in enumerate(tokens):
        if STAGE_RE.match(tok):
            group, start = tok, i + 1
            break
    else:
        rest = "_".join(tokens) + "_"
        for child in sorted(children, key=len, reverse=True):
            if child and rest.startswith(child + "_"):
                # a bare layer as a top-level block ('stem_conv_') still belongs to 'stem'
                group, start = child.split("_")[0], len(_tokens(child, ""))
                break
    side, kinds = None, []
    for i, tok in enumerate(tokens):
        if tok in SIDE_TOKENS and side is None and i >= start:
            side = SIDE_TOKENS[tok]
        elif tok in KIND_TOKENS and KIND_TOKENS[tok] not in kinds:
            kinds.append(KIND_TOKENS[tok])
        elif COLUMN_RE.match(tok) and not kinds:
            kinds.append("column " + COLUMN_RE.match(tok).group(1))
    return group, " ".join(([side] if side else []) + kinds)


# ---------------------------------------------------------------- graphs

@dataclasses.dataclass
class Node:
    key: str
    kind: str  # input, conv, fc, concat, sum, mean (paper) or op (full)
    label: str
    group: str = ""
    tag: str = ""
    detail: str = ""  # a second, smaller line (full style: the operator's name)


@dataclasses.dataclass
class Graph:
    title: str
    nodes: list
    edges: list  # (source key, target key), parallel edges allowed (a sum of x with itself)
    groups: list  # stage groups in order of appearance


def _dims(shape):
    return "x".join(str(d) for d in shape)


def _pair(text):
    vals = [int(v) for v in re.findall(r"\d+", text or "")]
    return vals or [1]


def _conv_label(attrs):
    kernel = _pair(attrs.get("kernel"))
    stride = max(_pair(attrs.get("stride")))
    label = f"{_dims(kernel)} conv, {attrs.get('num_filter', '?')}"
    groups = int(attrs.get("num_group", 1))
    if groups > 1:
        label += f", {groups} groups"
    return label + (f", /{stride}" if stride > 1 else "")


def _paper_label(op):
    if op.op == "null":
        return "input " + _dims(op.shape)
    if op.op in ("Convolution", "Deconvolution"):
        return _conv_label(op.attrs)
    if op.op == "FullyConnected":
        return f"fc {op.attrs.get('num_hidden', '?')}"
    return op.op.lower()


def _full_label(op):
    a = op.attrs
    if op.op in ("Convolution", "Deconvolution"):
        return f"{op.op} {_conv_label(a).replace(' conv', '')}"
    if op.op == "FullyConnected":
        return f"FullyConnected {a.get('num_hidden', '?')}"
    if op.op == "Pooling":
        if a.get("global_pool") == "True":
            return f"Pooling {a.get('pool_type', 'max')} global"
        return f"Pooling {a.get('pool_type', 'max')} {_dims(_pair(a.get('kernel')))}, /{max(_pair(a.get('stride')))}"
    if op.op == "mean" and "axis" in a:
        return f"mean over axes {a['axis']}"
    if "scalar" in a:
        return f"{op.op} {a['scalar']}"
    if op.op == "Dropout":
        return f"Dropout {a.get('p', '')}"
    if op.op == "null":
        return "data"
    return op.op


def _meta(net):
    prefix = getattr(net, "prefix", "")
    children = []
    for child in getattr(net, "_children", {}).values():
        rel = child.prefix[len(prefix):] if child.prefix.startswith(prefix) else child.prefix
        children.append(rel.strip("_"))
    return prefix, tuple(children)


def _ordered_groups(nodes):
    groups = []
    for n in nodes:
        if n.group not in groups:
            groups.append(n.group)
    return groups


def full_graph(net, title="", input_shape=None):
    """Every operator of ``net`` with its output shape; edges follow the data."""
    prefix, children = _meta(net)
    ops, _ = trace(net, input_shape)
    nodes, edges = [], []
    for op in ops:
        group, tag = name_parts(op.name, prefix, children) if op.op != "null" else ("", "")
        label = _full_label(op) + ("\n" + _dims(op.shape) if op.shape else "")
        short = op.name[len(prefix):] if op.op != "null" and op.name.startswith(prefix) else op.name
        nodes.append(Node(f"n{op.index}", "input" if op.op == "null" else "op", label, group, tag, short))
        edges.extend((f"n{src}", f"n{op.index}") for src in op.inputs)
    return Graph(title, nodes, edges, _ordered_groups(n for n in nodes if n.kind in COLOURED))


def _fusions(ops):
    """Sum and mean nodes of the paper style: ``{index: (kind, operand indices)}`` plus absorbed ones.

    A sum consumed only by another sum is folded into it (``a + b + x`` is one "+"); a sum consumed
    only by a scale of ``1/k`` (``0.5 * (a + b)``), a division by ``k`` or by its drop-path count, or
    ``mean(stack(...))`` becomes a mean over its operands.
    """
    uses = [0] * len(ops)
    for op in ops:
        for src in op.inputs:
            uses[src] += 1
    fusion, absorbed = {}, set()
    for op in ops:
        if not op.carries_data:
            continue
        if op.op in SUM_OPS:
            operands = []
            for src in op.inputs:
                if src in fusion and fusion[src][0] == "sum" and uses[src] == 1:
                    operands.extend(fusion[src][1])
                    absorbed.add(src)
                else:
                    operands.append(src)
            fusion[op.index] = ("sum", operands)
            continue
        if not op.inputs:
            continue
        src = op.inputs[0]
        if op.op == "mean" and ops[src].op == "stack" and uses[src] == 1:
            fusion[op.index] = ("mean", list(ops[src].inputs))
            absorbed.add(src)
            continue
        if src not in fusion or fusion[src][0] != "sum" or uses[src] != 1:
            continue
        k = len(fusion[src][1])
        scalar = float(op.attrs.get("scalar", "nan"))
        if (op.op == "_mul_scalar" and abs(scalar * k - 1) < 1e-6) or (
                op.op == "_div_scalar" and abs(scalar - k) < 1e-6) or op.op in DIVIDE_OPS:
            fusion[op.index] = ("mean", fusion[src][1])
            absorbed.add(src)
    return fusion, absorbed


def paper_graph(net, title="", input_shape=None):
    """Convolutions, Dense layers, sums and means of ``net``, the rest collapsed away."""
    prefix, children = _meta(net)
    ops, outputs = trace(net, input_shape)
    fusion, absorbed = _fusions(ops)

    def kind_of(op):
        if op.op == "null":
            return "input"
        if op.index in absorbed or not op.carries_data:
            return None
        if op.index in fusion:
            return fusion[op.index][0]
        return VISIBLE_OPS.get(op.op)

    kinds = [kind_of(op) for op in ops]
    # the visible operators each operator's value comes from (itself when visible)
    reps = []
    for op, kind in zip(ops, kinds):
        if kind is not None:
            reps.append([op.index])
        elif not op.carries_data:
            reps.append([])
        else:
            seen = []
            for src in op.inputs:
                seen.extend(r for r in reps[src] if r not in seen)
            reps.append(seen)

    nodes, edges = [], []
    for op, kind in zip(ops, kinds):
        if kind is None:
            continue
        group, tag = name_parts(op.name, prefix, children) if op.op != "null" else ("", "")
        if kind in ("sum", "mean"):
            label = "+" if kind == "sum" else "mean"
            operands = fusion[op.index][1]
        else:
            label, operands = _paper_label(op), op.inputs
        nodes.append(Node(f"n{op.index}", kind, label, group, tag))
        mine = []
        for src in operands:
            for r in reps[src]:
                # a fusion keeps one edge per operand (0.5 * (x + x) shows two), others one per source
                if kind in ("sum", "mean", "concat") or r not in mine:
                    mine.append(r)
                    edges.append((f"n{r}", f"n{op.index}"))
    _drop_one_sided_tags(nodes)
    _tag_outputs(net, nodes, [reps[i] for i in outputs])
    return Graph(title, nodes, edges, _ordered_groups(n for n in nodes if n.kind in COLOURED))


def _drop_one_sided_tags(nodes):
    """'left'/'right' mean something only when both streams exist (not for resnet's lone 'a')."""
    sides = {n.tag.split()[0] for n in nodes if n.tag.split()[:1] in (["left"], ["right"])}
    if len(sides) < 2:
        for n in nodes:
            n.tag = " ".join(w for w in n.tag.split() if w not in ("left", "right"))


def _tag_outputs(net, nodes, output_reps):
    """Name the outputs of a multi-output net (the ensemble's members) on their last boxes."""
    if len(output_reps) < 2:
        return
    from gluonfuse.models.views import get_views

    members = get_views(net).output_names()
    names = [f"member {m}" for m in members] if len(members) == len(output_reps) else [
        f"output {k + 1}" for k in range(len(output_reps))]
    by_key = {n.key: n for n in nodes}
    for name, reps in zip(names, output_reps):
        for r in reps:
            node = by_key[f"n{r}"]
            node.tag = f"{node.tag}, {name}" if node.tag else name


def build_graph(net, style="paper", title="", input_shape=None):
    """The graph of ``net`` in ``style`` ('paper' or 'full')."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")
    make = paper_graph if style == "paper" else full_graph
    return make(net, title=title, input_shape=input_shape)


# ---------------------------------------------------------------- DOT text

def group_colours(groups):
    """Numbered groups (g1, stage2, FractalNet's b3) take Set2 by number, stem and head fixed colours."""
    colours, others = {}, iter(OTHER_COLOURS)
    for g in groups:
        if g in colours:
            continue
        m = NUMBERED_RE.match(g)
        if m:
            colours[g] = STAGE_COLOURS[(int(m.group(1)) - 1) % len(STAGE_COLOURS)]
        elif g in GROUP_COLOURS:
            colours[g] = GROUP_COLOURS[g]
        else:
            colours[g] = next(others, "#dddddd")
    return colours


def _attrs(**kw):
    parts = []
    for k, v in kw.items():
        if isinstance(v, str) and v.startswith("<") and v.endswith(">"):
            parts.append(f"{k}={v}")  # an HTML-like label
        else:
            parts.append(f"{k}={_quote(v)}")
    return "[" + ", ".join(parts) + "]"


def _quote(value):
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _html_label(main, small):
    lines = "<BR/>".join(html.escape(line) for line in main.split("\n"))
    if small:
        lines += f'<BR/><FONT POINT-SIZE="8" COLOR="#333333">{html.escape(small)}</FONT>'
    return f"<{lines}>"


def _legend(graph, colours):
    cells = "".join(f'<TD BGCOLOR="{colours[g]}">{html.escape(g or "other")}</TD>' for g in graph.groups)
    keys = f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3"><TR>{cells}</TR></TABLE>'
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2"><TR><TD><B>{html.escape(graph.title)}</B>'
            f'</TD></TR><TR><TD>{keys}</TD></TR></TABLE>>')


def to_dot(graph, rankdir="BT"):
    """Graphviz DOT text of ``graph``: bottom to top, boxes coloured by stage, a legend on top."""
    colours = group_colours(graph.groups + [n.group for n in graph.nodes])
    paper = any(n.kind in ("conv", "fc") for n in graph.nodes)
    out = ["digraph gluonfuse {",
           f"  graph {_attrs(rankdir=rankdir, nodesep='0.2', ranksep='0.25', labelloc='t', fontname='Helvetica', label=_legend(graph, colours))};",
           f"  node {_attrs(shape='box', style='filled,rounded', fontname='Helvetica', fontsize='11' if paper else '10', height='0.3', margin='0.1,0.04', penwidth='0.6')};",
           f"  edge {_attrs(arrowsize='0.5', penwidth='0.7', color='#555555')};"]
    for n in graph.nodes:
        if n.kind == "input":
            attrs = dict(shape="plaintext", style="", label=n.label)
        elif n.kind in ("sum", "mean"):
            attrs = dict(shape="circle", style="filled", fillcolor="white", fixedsize="true",
                         width="0.3" if n.kind == "sum" else "0.45",
                         fontsize="14" if n.kind == "sum" else "9", label=n.label)
        else:
            attrs = dict(fillcolor=colours[n.group], label=_html_label(n.label, n.detail or n.tag))
        attrs["tooltip"] = n.detail or n.label
        out.append(f"  {n.key} {_attrs(**attrs)};")
    for src, dst in graph.edges:
        out.append(f"  {src} -> {dst};")
    out.append("}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- files

def output_paths(out, fmt=None):
    """``(format, picture path, source path)`` from ``--out`` and ``--format``.

    The format comes from ``fmt``, else from the suffix of ``out``, else PNG; a suffix that
    contradicts ``fmt`` is an error. The ``.gv`` source sits beside the picture.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    root, ext = os.path.splitext(out)
    suffix = ext[1:].lower()
    if suffix and suffix not in FORMATS:
        if fmt is None:
            raise ValueError(f"cannot draw {out!r}: unknown format {suffix!r}; choose a file ending in "
                             + ", ".join("." + f for f in FORMATS) + " or pass --format")
        root, suffix = out, ""  # a dotted name such as 'net.v2': keep it, add the suffix
    if fmt and suffix and suffix != fmt:
        raise ValueError(f"--out {out!r} ends in .{suffix} but --format is {fmt!r}; make them agree")
    fmt = fmt or suffix or "png"
    picture = f"{root}.{fmt}"
    return fmt, picture, f"{root}.gv"


def render(dot_text, out, fmt=None):
    """Write the DOT source beside ``out`` and draw it with Graphviz ``dot``; returns the paths.

    Headless: no viewer is opened. Without ``dot`` the source is still written, then
    :class:`DotNotFoundError` says how to install Graphviz.
    """
    fmt, picture, source = output_paths(out, fmt)
    with atomic_path(source) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(dot_text)
    paths = {"source": source}
    if fmt == "gv":
        return paths
    dot = shutil.which("dot")
    if dot is None:
        raise DotNotFoundError(
            f"the Graphviz 'dot' program is not installed, so {picture} was not drawn; its source is "
            f"in {source}. Install Graphviz (apt-get install graphviz, or conda install graphviz) and "
            f"rerun, or draw it yourself: dot -T{fmt} {source} -o {picture}")
    with atomic_path(picture) as tmp:
        proc = subprocess.run([dot, f"-T{fmt}", source, "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise GluonfuseError(f"dot failed to draw {picture} from {source}: {proc.stderr.strip()}")
    paths["picture"] = picture
    return paths


def default_filename(network, spec, fmt="png", preset=False):
    """The authors' naming: ``<network>_d<depth>.<fmt>`` (``_w<k>`` when widened)."""
    stem = network
    depth = getattr(spec, "depth", None)
    if not preset and isinstance(depth, int):
        stem += f"_d{depth}"
        widen = getattr(spec, "widen_factor", 1)
        if widen != 1:
            stem += f"_w{widen}"
    return f"{stem}.{fmt}"


def graph_title(network, spec, params):
    words = [network]
    for attr, tag in (("depth", "depth"), ("widen_factor", "widen")):
        value = getattr(spec, attr, None)
        if isinstance(value, int):
            words.append(f"{tag} {value}")
    return ", ".join(words) + f" ({params:,} parameters)"


def draw(network, out=None, style="paper", fmt=None, **model_kwargs):
    """Draw registered ``network`` (built with ``model_kwargs``) to ``out``; returns the paths.

    ``out`` defaults to ``<network>_d<depth>.<fmt>`` in the current directory.
    """
    from gluonfuse.models import count_params, get_entry, get_model

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")
    net = get_model(network, **model_kwargs)
    if out is None:
        if fmt is not None and fmt not in FORMATS:
            output_paths("x", fmt)  # raises with the list of formats
        out = default_filename(network, net.spec, fmt or "png", preset=get_entry(network).kind == "preset")
    graph = build_graph(net, style, title=graph_title(network, net.spec, count_params(net)))
    paths = render(to_dot(graph), out, fmt)
    paths["nodes"] = len(graph.nodes)
    return paths
