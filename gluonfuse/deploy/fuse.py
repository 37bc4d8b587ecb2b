"""MKLDNN-fused fp32 inference, used only after a one-batch check that it computes what the plain
network computes.

MXNet's MKLDNN backend folds BatchNorm into the preceding convolution and fuses the ReLU and the
residual sum into it (``_sg_mkldnn_conv`` nodes). :func:`fuse` folds a network's scalar
multiplications into its weights (:mod:`gluonfuse.deploy.scales`; cross's merges), then
partitions its inference graph (:func:`gluonfuse.deploy.graph.inference_graph`) with
``Symbol.get_backend_symbol('MKLDNN')``, runs the fused graph and the plain network on the same
batch, and returns the fused one only when their outputs agree; otherwise the plain network with a
one-line reason.
"""
import dataclasses

import numpy as np

from gluonfuse.errors import GluonfuseError

# fused and plain outputs agree when max |fused - plain| <= ATOL + RTOL * max |plain|: folding BN into
# the weights reorders float32 arithmetic (measured differences: up to 1.5e-7 on outputs of about 0.4)
AGREE_ATOL, AGREE_RTOL = 1e-5, 1e-4


class BackendError(GluonfuseError):
    """The mxnet build lacks what a command needs (MKLDNN for fusion and int8)."""


def mkldnn_available():
    """True when this mxnet build has the MKLDNN (oneDNN) backend."""
    from mxnet.runtime import Features

    return Features().is_enabled("MKLDNN")


def require_mkldnn(what):
    """BackendError (exit code 1) naming ``what`` when mxnet has no MKLDNN."""
    if not mkldnn_available():
        raise BackendError(f"{what} needs an mxnet build with MKLDNN (oneDNN), and this one has none "
                           "(mxnet.runtime.Features()); install the CPU wheel 'mxnet==1.9.1'")


@dataclasses.dataclass
class Fused:
    """What :func:`fuse` returns: the block to run and why it is (not) the fused graph."""

    block: object
    fused: bool
    reason: str = ""  # why the plain network is returned ('' when fused)
    max_diff: float = None  # fused vs plain on the check batch
    subgraphs: int = 0  # fused MKLDNN nodes


def outputs(block, x):
    """``block(x)`` in predict mode, as a list of numpy arrays."""
    import mxnet as mx

    with mx.autograd.predict_mode():
        out = block(x)
    return [o.asnumpy() for o in (out if isinstance(out, (list, tuple)) else [out])]


def agreement(reference, candidate):
    """``(max |difference|, within tolerance)`` of two output lists (see AGREE_ATOL/RTOL)."""
    if len(reference) != len(candidate) or any(a.shape != b.shape for a, b in zip(reference, candidate)):
        return float("inf"), False
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(reference, candidate))
    scale = max(float(np.max(np.abs(a))) for a in reference)
    return diff, bool(np.isfinite(diff) and diff <= AGREE_ATOL + AGREE_RTOL * scale)


def first_line(exc):
    """The informative line of an MXNet error (its message starts with a traceback header)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Error" in ln and not ln.startswith("Traceback")]
    text = (useful or lines or [type(exc).__name__])[-1]
    return text.replace("MXNetError: ", "")


def fuse(net, x, graph_text=None):
    """The MKLDNN-fused version of ``net`` (initialised) if it agrees with ``net`` on batch ``x``.

    ``graph_text``: ``net``'s inference graph when already traced. Never raises for a failed
    partition: the result's ``reason`` says why ``net`` itself is returned.
    """
    import mxnet as mx

    from gluonfuse.deploy.graph import inference_graph, symbol_block
    from gluonfuse.deploy.scales import folded_block

    if not mkldnn_available():
        return Fused(net, False, "this mxnet build has no MKLDNN")
    plain = outputs(net, x)
    try:
        # scalar multiplications folded into the weights first: they would leave MKLDNN's layout
        folded, graph_text, _ = folded_block(net, graph_text or inference_graph(net))
        sym = mx.sym.load_json(graph_text).get_backend_symbol("MKLDNN")
        subgraphs = sum(1 for node in sym.get_internals() if node.name.startswith("sg_mkldnn"))
        if not subgraphs:
            return Fused(net, False, "MKLDNN found nothing to fuse")
        block = symbol_block(sym.tojson(), folded.collect_params())
        block.hybridize(static_alloc=True, static_shape=True)
        fused = outputs(block, x)
    except mx.base.MXNetError as exc:
        return Fused(net, False, f"the MKLDNN partition failed: {first_line(exc)}")
    diff, ok = agreement(plain, fused)
    if not ok:
        return Fused(net, False, f"the fused graph's outputs differ from the plain ones by {diff:.3g}", diff)
    return Fused(block, True, "", diff, subgraphs)
