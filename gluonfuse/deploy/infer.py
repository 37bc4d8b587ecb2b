"""Which graph ``gluonfuse eval``, ``predict`` and ``analyze`` run: MKLDNN-fused fp32, plain fp32 or int8.

* fp32 on CPU contexts, with an mxnet that has MKLDNN: the fused graph (:func:`gluonfuse.deploy.fuse.fuse`),
  used only after a check on one batch that its outputs agree with the plain network's; when the
  check or the subgraph pass fails, the plain network and a one-line notice. Without MKLDNN: the
  plain network and a one-line notice. ``--no-fuse``: the plain network, silently.
* fp32 on GPU contexts: the plain network (MKLDNN is a CPU backend).
* int8 (a pair written by ``gluonfuse quantize``): its graph is fused by construction, so it refuses
  ``--no-fuse``; it runs on CPUs with MKLDNN only.
"""
import dataclasses
import json
import os
import warnings

PLAIN, FUSED, INT8 = "plain", "fused", "int8"
DESCRIPTION = {PLAIN: "plain fp32", FUSED: "MKLDNN-fused fp32", INT8: "int8"}


@dataclasses.dataclass
class Path:
    """The block to run and which path it is (PLAIN, FUSED or INT8); ``note``: why not fused."""

    block: object
    name: str
    note: str = ""

    def describe(self):
        return DESCRIPTION[self.name]


def on_gpu(contexts):
    return any(c.device_type == "gpu" for c in contexts or [])


def fp32_path(net, sample, contexts=None, fuse=True, notice=None):
    """The fused graph of ``net`` when it agrees with ``net`` on ``sample``, else ``net`` itself.

    ``notice(line)`` is told, in one line, why fusion that was not turned off did not happen.
    """
    from gluonfuse.deploy.fuse import fuse as fuse_net

    if not fuse or on_gpu(contexts):
        return Path(net, PLAIN)
    with warnings.catch_warnings():
        # tracing an imported SymbolBlock: mxnet cannot infer the input's dtype before a call; float32 is meant
        warnings.filterwarnings("ignore", message="Cannot decide type")
        result = fuse_net(net, sample)
    if result.fused:
        return Path(result.block, FUSED)
    if notice:
        notice(f"Note: running the plain fp32 graph, not the MKLDNN-fused one: {result.reason} "
               "(--no-fuse skips the attempt)")
    return Path(net, PLAIN, result.reason)


def once(echo):
    """``echo`` for each distinct line only (analyze checks fusion once per component)."""
    seen = set()

    def notice(line):
        if line not in seen:
            seen.add(line)
            echo(line)

    return notice


def is_int8(symbol_file):
    """True when an exported graph computes in int8: quantized nodes in it, or its ``-meta.json`` says so."""
    from gluonfuse.deploy.graph import quantized_nodes
    from gluonfuse.train.evaluate import export_meta_path

    meta_path = export_meta_path(symbol_file)
    if meta_path and os.path.isfile(meta_path):
        with open(meta_path) as f:
            if "int8" in str(json.load(f).get("format", "")):
                return True
    if not os.path.isfile(symbol_file):
        return False  # loading it reports the missing file
    with open(symbol_file) as f:
        return quantized_nodes(f.read()) > 0


def check_int8(given, contexts=None, fuse=True):
    """Refuse what an int8 model cannot do: ``--no-fuse`` and GPUs (ValueError, exit 2), an mxnet
    without MKLDNN (BackendError, exit 1). ``given``: how the model was named, for the message."""
    from gluonfuse.deploy.fuse import require_mkldnn

    if not fuse:
        raise ValueError(f"{given} is an int8 model, whose graph is always fused: drop --no-fuse")
    if on_gpu(contexts):
        raise ValueError(f"{given} is an int8 model, which runs on CPUs only: drop --gpus")
    require_mkldnn("an int8 model")


def int8_pair(run_dir, which="best"):
    """``(symbol, params)`` of the int8 model ``gluonfuse quantize`` wrote for a run's ``which`` weights;
    ValueError naming the command to run when there is none (its meta file marks a complete set)."""
    from gluonfuse.deploy.quantize import int8_name, int8_paths

    paths = int8_paths(os.path.join(run_dir, "export"), int8_name(which))
    if not all(os.path.isfile(p) for p in paths.values()):
        option = "" if which == "best" else f" --which {which}"
        raise ValueError(f"{run_dir} has no int8 model of its {which!r} weights ({paths['symbol']} and its "
                         f"-meta.json): run 'gluonfuse quantize {run_dir}{option}' first")
    return paths["symbol"], paths["params"]


def int8_graph(symbol_file, contexts=None, fuse=True, asked=False):
    """True for an int8 exported graph (after :func:`check_int8`'s refusals), False for an fp32 one.

    Checked before the pair is loaded. ``asked``: the user said ``--int8``, so an fp32 graph is an
    error (exit 2).
    """
    if is_int8(symbol_file):
        check_int8(symbol_file, contexts, fuse)
        return True
    if asked:
        raise ValueError(f"--int8: {symbol_file} is not an int8 model (no quantized nodes, no int8 -meta.json); "
                         "give the -int8- pair 'gluonfuse quantize' writes, or drop --int8")
    return False
