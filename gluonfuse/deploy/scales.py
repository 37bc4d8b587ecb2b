"""Fold scalar multiplications into the weights around them, for int8 inference.

mxnet 1.9.1 has no int8 kernel for ``_mul_scalar``: an int8 graph leaves int8 before each one (a
dequantize, the fp32 product, a quantize again). cross (DFN-MR) has one per block, its merge
``m = 0.5 * (a + b)``, so its int8 graph changed precision 27 times (cross 56) and ran well short of
resnet's int8 speed-up. :func:`fold_scalars` rewrites an inference graph and its parameters so that
it computes the same outputs without those multiplications.

The idea: every tensor ``t`` of the graph may be carried as ``s(t) * t`` for a positive factor
``s(t)`` of our choosing, as long as each operator still computes its (scaled) output from its
(scaled) inputs:

* linear, positively homogeneous operators (ReLU, max/average pooling, mean, additions,
  concatenation, reshapes, dropout at inference, a kept scalar multiplication) need the same
  factor on their inputs and their output;
* a convolution or fully connected layer whose parameters it uses alone takes any factor on its
  input and gives any on its output (its weight is multiplied by ``s(out) / s(in)``, its bias by
  ``s(out)``); a BatchNorm with its own ``gamma``/``beta`` (and ``fix_gamma`` off) takes an input
  at factor 1 and gives any output factor (``gamma`` and ``beta`` times ``s(out)``);
* a removed ``x * c`` needs ``s(x) = c * s(x * c)``: its consumers then read ``x`` directly;
* every other operator, the graph's input and its outputs stay at factor 1.

The constraints are equalities between ratios of factors, solved with a union-find that keeps each
tensor's factor relative to its component's root; a multiplication whose removal contradicts the
rest is kept. For cross, each stage's stream tensors form one component whose factor doubles at
each merge (powers of two: the rescaled float32 weights are exact, and the outputs agree with the
original graph to rounding). The int8 graph then stays int8 through the whole stage: the merge
becomes a quantized ``elemwise_add``.
"""
import dataclasses
import json
import math

from gluonfuse.deploy.graph import CONSTANT_SOURCES, consumers_of, dump_graph

# operators that commute with multiplying every input by one positive factor (same factor out)
HOMOGENEOUS = {"relu", "Flatten", "flatten", "Reshape", "reshape", "Dropout", "_copy", "identity",
               "elemwise_add", "_plus", "_Plus", "broadcast_add", "add_n", "ElementWiseSum", "Concat", "concat",
               "mean", "sum", "_mul_scalar", "_div_scalar"}
POOLING_TYPES = ("max", "avg", "sum")
LINEAR_LAYERS = ("Convolution", "FullyConnected")  # inputs: data, weight, optional bias
BATCH_NORM_SCALED = (1, 2)  # gamma, beta inputs of BatchNorm
ONE = "one"  # the factor-1 anchor of the union-find
TOLERANCE = 1e-9  # relative: two ratios of factors are the same


@dataclasses.dataclass
class Folded:
    """What :func:`fold_scalars` returns: the rewritten graph, the parameters it changed and how many
    scalar multiplications it removed."""

    graph: str
    params: dict  # name -> rescaled numpy array (only the changed parameters)
    removed: int = 0


class _Factors:
    """Union-find over tensors; ``ratio[t]`` is s(t) / s(root of t)."""

    def __init__(self):
        self.parent, self.ratio = {}, {}

    def find(self, t):
        self.parent.setdefault(t, t)
        self.ratio.setdefault(t, 1.0)
        path = []
        while self.parent[t] != t:
            path.append(t)
            t = self.parent[t]
        for u in reversed(path):  # nearest the root first: its parent's ratio is already to the root
            if self.parent[u] != t:
                self.ratio[u] *= self.ratio[self.parent[u]]
                self.parent[u] = t
        return t

    def relate(self, a, b, r, commit=True):
        """Require s(a) = r * s(b); False (and no change) when that contradicts what is known."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return math.isclose(self.ratio[a], r * self.ratio[b], rel_tol=TOLERANCE)
        if commit:
            if ra == ONE:  # keep the anchor a root
                ra, rb, a, b, r = rb, ra, b, a, 1.0 / r
            # s(ra) = s(a) / ratio[a] = r * s(b) / ratio[a] = r * ratio[b] * s(rb) / ratio[a]
            self.parent[ra] = rb
            self.ratio[ra] = r * self.ratio[b] / self.ratio[a]
        return True

    def factor(self, t):
        """s(t), taking every root at factor 1 (a component without the anchor is free)."""
        self.find(t)
        return self.ratio[t]


def _scalar(node):
    """The factor a ``_mul_scalar``/``_div_scalar`` node multiplies by (nan when not a positive number)."""
    try:
        value = float(node.get("attrs", {}).get("scalar", "nan"))
    except ValueError:
        return math.nan
    if not value > 0:
        return math.nan
    return value if node["op"] == "_mul_scalar" else 1.0 / value


def fold_scalars(graph_text, params):
    """Remove the positive ``_mul_scalar``/``_div_scalar`` nodes of an inference graph by rescaling
    weights (module notes). ``params``: name -> numpy array of the graph's parameters (auxiliary
    states included). Returns a :class:`Folded`; ``removed`` 0 leaves the graph text unchanged."""
    graph = json.loads(graph_text)
    nodes = graph["nodes"]
    consumers = consumers_of(nodes)
    factors = _Factors()
    factors.find(ONE)
    absorbers, scalars = [], []

    def own(node, slots):
        """True when the parameters at ``slots`` are variables this node alone reads."""
        entries = [node["inputs"][s] for s in slots if s < len(node["inputs"])]
        return all(nodes[e[0]]["op"] == "null" and len(consumers[e[0]]) == 1 and nodes[e[0]]["name"] in params
                   for e in entries)

    def pin(entry):
        factors.relate((entry[0], entry[1]), ONE, 1.0)

    for i, node in enumerate(nodes):
        op, attrs, inputs = node["op"], node.get("attrs", {}), node["inputs"]
        out = (i, 0)
        if op == "null":
            if node["name"] not in params:  # the data input
                pin((i, 0))
            continue
        if op in LINEAR_LAYERS and own(node, range(1, len(inputs))):
            absorbers.append(i)  # any factor in, any out
            factors.find((inputs[0][0], inputs[0][1]))
            factors.find(out)
        elif op == "BatchNorm" and attrs.get("fix_gamma", "True").lower() == "false" and own(node, BATCH_NORM_SCALED):
            absorbers.append(i)
            pin(inputs[0])
            factors.find(out)
        elif op in CONSTANT_SOURCES:  # the output does not depend on the input's values
            pin(out)
        elif op in HOMOGENEOUS or (op == "Activation" and attrs.get("act_type") == "relu") or (
                op == "Pooling" and attrs.get("pool_type", "max") in POOLING_TYPES):
            if op in ("_mul_scalar", "_div_scalar") and _scalar(node) > 0:
                scalars.append(i)
                continue
            for entry in inputs:
                if nodes[entry[0]]["op"] == "null" and nodes[entry[0]]["name"] in params:
                    pin(entry)  # a learned tensor added in: left alone, so the rest stays at factor 1
                if not factors.relate((entry[0], entry[1]), out, 1.0):
                    return Folded(graph_text, {})
        else:
            for entry in inputs:
                pin(entry)
            pin(out)
    for h in graph["heads"]:
        pin(h)
    for node in nodes:  # second outputs (BatchNorm's statistics, Dropout's mask): left alone
        for src, index, _ in node["inputs"]:
            if index > 0:
                pin((src, index))
    removed = []
    for i in scalars:
        x, y = (nodes[i]["inputs"][0][0], nodes[i]["inputs"][0][1]), (i, 0)
        if factors.relate(x, y, _scalar(nodes[i])):
            removed.append(i)
        elif not factors.relate(x, y, 1.0):
            return Folded(graph_text, {})
    if not removed:
        return Folded(graph_text, {})
    changed = _rescaled(nodes, absorbers, factors, params)  # before _without renumbers the nodes
    return Folded(_without(graph, set(removed)), changed, len(removed))


def _rescaled(nodes, absorbers, factors, params):
    changed = {}
    for i in absorbers:
        node, inputs = nodes[i], nodes[i]["inputs"]
        s_out = factors.factor((i, 0))
        name = lambda slot: nodes[inputs[slot][0]]["name"]  # noqa: E731
        if node["op"] == "BatchNorm":
            scale = {name(slot): s_out for slot in BATCH_NORM_SCALED}
        else:
            s_in = factors.factor((inputs[0][0], inputs[0][1]))
            scale = {name(1): s_out / s_in}
            if len(inputs) > 2:
                scale[name(2)] = s_out
        for key, f in scale.items():
            if f != 1.0:
                changed[key] = (params[key] * f).astype(params[key].dtype)
    return changed


def _without(graph, removed):
    """The graph JSON text with the nodes in ``removed`` (one-input nodes) bypassed and dropped."""
    nodes = graph["nodes"]

    def source(entry):
        while entry[0] in removed:
            entry = nodes[entry[0]]["inputs"][0]
        return entry

    new_index, order = {}, []
    for i, node in enumerate(nodes):
        if i not in removed:
            new_index[i] = len(order)
            order.append(node)
    for node in order:
        node["inputs"] = [[new_index[s], o, v] for s, o, v in map(source, node["inputs"])]
    graph["heads"] = [[new_index[s], o, v] for s, o, v in map(source, graph["heads"])]
    return dump_graph(graph, order)


def folded_block(net, graph_text):
    """``(SymbolBlock, graph, removed)``: ``graph_text`` (``net``'s inference graph) with its scalar
    multiplications folded (``graph``: the folded JSON text), on its own copy of ``net``'s parameters
    (``net`` is unchanged); ``net``'s graph on ``net``'s own parameters when there is nothing to fold."""
    import mxnet as mx

    from gluonfuse.deploy.graph import symbol_block

    params = net.collect_params()
    folded = fold_scalars(graph_text, {name: p.data().asnumpy() for name, p in params.items()})
    if not folded.removed:
        return symbol_block(graph_text, params), graph_text, 0
    block = symbol_block(folded.graph, None)
    values = {name: mx.nd.array(folded.params[name]) if name in folded.params else p.data()
              for name, p in params.items()}
    contexts = next(iter(params.values())).list_ctx()  # eval on several contexts runs the block on each
    block.collect_params().load_dict(values, ctx=contexts, ignore_extra=True)
    return block, folded.graph, folded.removed
