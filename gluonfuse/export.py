"""Export networks for deployment: MXNet symbol + params with a metadata sidecar, and ONNX.

``export_model`` writes ``<name>-symbol.json`` and ``<name>-<epoch>.params`` (what plain MXNet loads
with ``gluon.SymbolBlock.imports``, no gluonfuse needed) and ``<name>-meta.json`` describing them.
``export_onnx`` converts through ``mxnet.onnx`` and checks the ONNX model against onnxruntime on a random
batch; a difference beyond tolerance is an error. Files appear only when complete.
"""
import contextlib
import json
import os
import shutil
import tempfile
import warnings

import numpy as np

from gluonfuse import __version__, faults
from gluonfuse.errors import GluonfuseError
from gluonfuse.io import atomic_path, write_json

# ONNX check: |onnx - mxnet| <= ATOL + RTOL * |mxnet| elementwise (float32 arithmetic, reordered sums)
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-3
# the newest ONNX opset mxnet 1.9.1's converters are written for (see _mxnet_onnx_opset)
MXNET_ONNX_OPSET = 13


def unique_node_names(symbol_json_text):
    """Rename repeated operator nodes ``x`` to ``x``, ``x_1``, ``x_2``... (parameters keep their names).

    Gluon names a layer's node ``<prefix>fwd`` however often the layer is called, so a block that is
    applied to several inputs (the ensemble's shared paths, weight-shared joins) yields a graph with
    repeated names; ONNX and graph drawings need every operator named once.
    """
    graph = json.loads(symbol_json_text)
    seen = {}
    for node in graph["nodes"]:
        if node["op"] == "null":
            continue
        n = seen.get(node["name"], 0)
        seen[node["name"]] = n + 1
        if n:
            node["name"] = f"{node['name']}_{n}"
    return json.dumps(graph, indent=1, sort_keys=True) + "\n"


def _input_shape(net, input_shape):
    return tuple(input_shape or net.spec.input_shape)


def _forward(net, batch):
    import mxnet as mx

    out = net(mx.nd.array(batch))
    return [o.asnumpy() for o in out] if isinstance(out, (list, tuple)) else [out.asnumpy()]


def metadata(net, input_shape=None, extra=None):
    """The sidecar describing an exported network (enough to rebuild it with gluonfuse)."""
    import mxnet as mx

    spec = net.spec
    meta = {
        "name": spec.name,
        "network": getattr(net, "family", None),
        "model_kwargs": spec.kwargs(),
        "classes": spec.classes,
        "input_shape": list(_input_shape(net, input_shape)),
        "input_name": "data",
        "outputs": len(_forward(net, np.zeros((1,) + _input_shape(net, input_shape), "float32"))),
        "versions": {"gluonfuse": __version__, "mxnet": mx.__version__, "numpy": np.__version__},
    }
    meta.update(extra or {})
    return meta


def export_model(net, out_dir, name=None, epoch=0, input_shape=None, extra=None):
    """Write ``<name>-symbol.json``, ``<name>-%04d.params`` and ``<name>-meta.json`` into ``out_dir``.

    ``net`` must be initialised; it is hybridized and traced once at ``input_shape`` (default: the
    spec's). ``extra`` entries (e.g. normalisation mean/std) are added to the metadata. Returns a
    dict with the three paths. The pair is staged and renamed into place; the meta file, removed
    first and written last, marks a complete set.
    """
    import mxnet as mx

    name = name or net.spec.name
    shape = _input_shape(net, input_shape)
    os.makedirs(out_dir, exist_ok=True)
    net.hybridize()
    with mx.autograd.predict_mode():
        net(mx.nd.zeros((1,) + shape))  # trace the graph that export() writes
    meta = metadata(net, shape, extra)
    paths = {"symbol": os.path.join(out_dir, f"{name}-symbol.json"),
             "params": os.path.join(out_dir, f"{name}-{epoch:04d}.params"),
             "meta": os.path.join(out_dir, f"{name}-meta.json")}
    staging = tempfile.mkdtemp(prefix=f".{name}-export-", dir=out_dir)
    try:
        net.export(os.path.join(staging, name), epoch=epoch)
        staged_symbol = os.path.join(staging, os.path.basename(paths["symbol"]))
        with open(staged_symbol) as f:
            text = unique_node_names(f.read())
        with open(staged_symbol, "w") as f:
            f.write(text)
        if os.path.exists(paths["meta"]):
            os.remove(paths["meta"])  # written last: a pair without it was interrupted while being replaced
        for key in ("symbol", "params"):
            faults.point("write", paths[key])
            os.replace(os.path.join(staging, os.path.basename(paths[key])), paths[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(paths["meta"], meta)
    return paths


def export_meta_path(symbol_file):
    """The ``-meta.json`` beside an exported ``-symbol.json`` ('' for a file not named so)."""
    suffix = "-symbol.json"
    return symbol_file[:-len(suffix)] + "-meta.json" if symbol_file.endswith(suffix) else ""


def load_exported(symbol_file, params_file, ctx=None):
    """Load an exported pair with plain MXNet (``SymbolBlock.imports``), as a deployment would."""
    import mxnet as mx

    from gluonfuse.errors import DataError

    for path in (symbol_file, params_file):
        if not os.path.isfile(path):
            raise DataError(f"exported file not found: {path}")
    try:
        with warnings.catch_warnings():
            # mxnet warns that it cannot infer the input's dtype before the first call; float32 is meant
            warnings.filterwarnings("ignore", message="Cannot decide type")
            return mx.gluon.SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx or mx.cpu())
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load {symbol_file} with {params_file}: {first}") from None


def convert_to_onnx(symbol_file, params_file, input_shape, out_path):
    """Convert an exported symbol/params pair to ONNX opset ``MXNET_ONNX_OPSET`` with a dynamic batch.

    ``input_shape`` includes the batch dimension. Writes ``out_path`` directly (no check); see
    ``export_onnx`` for the checked, atomic export of a network.
    """
    import mxnet as mx

    sym = mx.sym.load(symbol_file)
    params = {k.split(":", 1)[1]: v for k, v in mx.nd.load(params_file).items()}
    with _mxnet_onnx_opset(MXNET_ONNX_OPSET):
        mx.onnx.export_model(sym, params, in_shapes=[tuple(input_shape)], in_types=[np.float32],
                             onnx_file_path=out_path, dynamic=True,
                             dynamic_input_shapes=[(None,) + tuple(input_shape[1:])])
    return out_path


def export_onnx(net, out_path, input_shape=None, batch=2, seed=0):
    """Export ``net`` to ONNX (dynamic batch) and check it against onnxruntime.

    Returns ``{"path": ..., "max_abs_diff": ...}``. Raises ``GluonfuseError`` when the ONNX model's outputs
    differ from MXNet's beyond tolerance, and ``ValueError`` when onnx/onnxruntime are missing.
    """
    import mxnet as mx

    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install 'gluonfuse[onnx]'") from None

    shape = _input_shape(net, input_shape)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".onnx-export-", dir=os.path.dirname(os.path.abspath(out_path)))
    try:
        paths = export_model(net, staging, name="model", input_shape=shape)
        with atomic_path(out_path) as tmp:
            convert_to_onnx(paths["symbol"], paths["params"], (batch,) + shape, tmp)
            x = np.random.RandomState(seed).uniform(-1, 1, (batch,) + shape).astype("float32")
            with mx.autograd.predict_mode():
                expected = _forward(net, x)
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: mxnet.onnx keeps weights as graph inputs
            session = ort.InferenceSession(tmp, options, providers=["CPUExecutionProvider"])
            got = session.run(None, {session.get_inputs()[0].name: x})
            if len(got) != len(expected):
                raise GluonfuseError(f"ONNX model has {len(got)} outputs, MXNet {len(expected)}")
            diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected))
            bad = [not np.allclose(g, e, atol=ONNX_ATOL, rtol=ONNX_RTOL) for g, e in zip(got, expected)]
            if any(bad):
                raise GluonfuseError(f"ONNX check failed: onnxruntime differs from MXNet by up to {diff:.3g} "
                                   f"(tolerance atol {ONNX_ATOL}, rtol {ONNX_RTOL}); no file written")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"path": out_path, "max_abs_diff": diff, "opset": MXNET_ONNX_OPSET}


@contextlib.contextmanager
def _mxnet_onnx_opset(version):
    """Make ``mxnet.onnx`` convert for, check against and declare ONNX opset ``version``.

    mxnet 1.9.1's exporter always targets ``onnx.defs.onnx_opset_version()``, the newest opset the
    installed onnx knows (23 for onnx 1.18), but its converters stop at opset 13: their nodes (e.g.
    ReduceMean with ``axes`` as an attribute, which opset 18 made an input) fail that opset's checker,
    and a file declaring 23 would claim semantics its nodes do not follow. The exporter reads the
    version from ``onnx.defs`` and checks with ``onnx.checker.DEFAULT_CONTEXT``; both are set for the
    duration of the export and restored afterwards.
    """
    import onnx.checker
    import onnx.defs

    newest = onnx.defs.onnx_opset_version
    context = onnx.checker.DEFAULT_CONTEXT
    saved = dict(context.opset_imports)
    onnx.defs.onnx_opset_version = lambda: min(version, newest())
    context.opset_imports = {"": min(version, newest())}
    try:
        yield
    finally:
        onnx.defs.onnx_opset_version = newest
        context.opset_imports = saved


def symbol_json(name, **kwargs):
    """Network ``name``'s graph as MXNet symbol JSON (no weights): what ``symbols/`` holds.

    Built from a fresh network, because operator names count up with every trace of one instance.
    """
    from gluonfuse.models import get_model
    from gluonfuse.models.stats import symbol_of

    return unique_node_names(symbol_of(get_model(name, **kwargs)).tojson())
