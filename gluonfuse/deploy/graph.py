"""The inference graph that fusion and quantization work on, and the graph facts they need.

``inference_graph(net)`` traces a network into MXNet symbol JSON with every operator named once
(:func:`gluonfuse.export.unique_node_names`: quantization thresholds and exclusions are keyed by node
name, and the ensemble's shared paths would otherwise repeat names) and applies
:func:`guard_shared_convolutions`, a rewrite that changes no number but steers mxnet 1.9.1's MKLDNN
partitioner around one of its bugs.

MKLDNN partitioner bugs met on gluonfuse's networks (mxnet 1.9.1; details in the tests):

* conv+sum: ``v + BN(conv(y))`` with ``v`` off the convolution's input path breaks the *shape-aware*
  partition (``HybridBlock.optimize_for``): "Shape inconsistent". cross and half are written with the
  convolution branch on the left (:func:`gluonfuse.models.fusion._conv_first`); graphs exported
  before that change still have it, so fusion here uses ``Symbol.get_backend_symbol``, which does
  not track shapes and partitions them correctly.
* conv+BN with a shared conv output: a bare convolution (no BatchNorm of its own) whose output feeds
  a BatchNorm *and* another node (pre-activation nets: the stem feeds the first block's BN and its
  identity shortcut) is fused with that BatchNorm anyway; the other consumer then reads the
  normalised tensor (fp32: "Gradient function not returning enough gradient (6 vs. 2)"; int8:
  "idx_g.input_nodes().size() == in_shapes->size() (2 vs. 6)"). The guard puts a no-op ``Reshape``
  between such a convolution and its BatchNorm, so the partitioner leaves the pair apart. (A
  ``_copy`` does not help: MKLDNN's identity pass removes it first.)
"""
import json

# operators whose output does not depend on their input's values
CONSTANT_SOURCES = ("ones_like", "zeros_like")


def inference_graph(net):
    """``net``'s symbol JSON (text): unique node names, shared convolutions guarded."""
    from gluonfuse.export import unique_node_names
    from gluonfuse.models.stats import symbol_of

    return guard_shared_convolutions(unique_node_names(symbol_of(net).tojson()))


def symbol_block(graph_text, params):
    """A ``SymbolBlock`` running ``graph_text`` with ``params`` (a ParameterDict, shared, not copied)."""
    import warnings

    import mxnet as mx

    sym = mx.sym.load_json(graph_text)
    with warnings.catch_warnings():
        # mxnet cannot infer the input's dtype before the first call; float32 is meant
        warnings.filterwarnings("ignore", message="Cannot decide type")
        return mx.gluon.SymbolBlock(sym, [mx.sym.var("data")], params=params)


def consumers_of(nodes):
    """``{node index: [(consumer index, input slot)]}`` of a graph's node list."""
    found = {}
    for i, node in enumerate(nodes):
        for slot, entry in enumerate(node["inputs"]):
            found.setdefault(entry[0], []).append((i, slot))
    return found


def guard_shared_convolutions(graph_text):
    """Insert ``Reshape(shape=(0, 0, 0, 0))`` between a convolution and its BatchNorm when the
    convolution's output has other consumers too (see the module notes). Returns the JSON text.
    """
    graph = json.loads(graph_text)
    nodes = graph["nodes"]
    consumers = consumers_of(nodes)
    guarded = {}  # conv index -> [(consumer index, slot)] of its BatchNorm consumers
    for i, node in enumerate(nodes):
        users = consumers.get(i, [])
        if node["op"] == "Convolution" and len(users) > 1:
            norms = [(c, slot) for c, slot in users if nodes[c]["op"] == "BatchNorm" and slot == 0]
            if norms:
                guarded[i] = norms
    if not guarded:
        return graph_text
    order, new_index, redirect = [], {}, {}
    for i, node in enumerate(nodes):
        new_index[i] = len(order)
        order.append(node)
        if i in guarded:
            # already in new numbering, unlike the original nodes' inputs (remapped below)
            order.append({"op": "Reshape", "name": f"{node['name']}_guard",
                          "attrs": {"shape": "(0, 0, 0, 0)"}, "inputs": [[new_index[i], 0, 0]]})
            for user in guarded[i]:
                redirect[user] = len(order) - 1
    for i, node in enumerate(nodes):
        node["inputs"] = [[redirect.get((i, slot), new_index[src]), out, ver]
                          for slot, (src, out, ver) in enumerate(node["inputs"])]
    graph["heads"] = [[new_index[h[0]], h[1], h[2]] for h in graph["heads"]]
    return dump_graph(graph, order)


def dump_graph(graph, nodes):
    """The JSON text of ``graph`` with its node list replaced by ``nodes`` (inputs and heads already
    numbered in that list): the argument nodes recomputed, the row pointers left to mxnet."""
    graph["nodes"] = nodes
    graph["arg_nodes"] = [k for k, node in enumerate(nodes) if node["op"] == "null"]
    graph.pop("node_row_ptr", None)  # recomputed by mxnet on load
    return json.dumps(graph, indent=1, sort_keys=True) + "\n"


def constant_nodes(graph_text):
    """Names of the operator nodes whose values do not depend on the input data.

    In gluonfuse's networks these are the drop-path masks and stochastic-depth gates: they start from
    ``ones_like`` (see gluonfuse.models.blocks) and are combined with scalar arithmetic, ``Dropout``,
    comparisons, products and concatenation, all on 1..k-element tensors.
    """
    nodes = json.loads(graph_text)["nodes"]
    constant = set()
    for i, node in enumerate(nodes):
        if node["op"] == "null":
            continue
        sources = [entry[0] for entry in node["inputs"]]
        if node["op"] in CONSTANT_SOURCES or (sources and all(s in constant for s in sources)):
            constant.add(i)
    return [nodes[i]["name"] for i in sorted(constant)]


def node_ops(graph_text):
    """``{node name: operator}`` for every operator node."""
    return {n["name"]: n["op"] for n in json.loads(graph_text)["nodes"] if n["op"] != "null"}


def quantized_nodes(graph_text):
    """How many nodes of a graph compute in int8 (quantized operators and quantized MKLDNN subgraphs)."""
    count = 0
    for node in json.loads(graph_text)["nodes"]:
        attrs = node.get("attrs", {})
        if node["op"].startswith("_contrib_quantized") or (
                node["op"].startswith("_sg_mkldnn") and attrs.get("quantized") == "true"):
            count += 1
    return count
