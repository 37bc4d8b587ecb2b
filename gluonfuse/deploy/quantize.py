"""Calibrated int8 quantization with mxnet's MKLDNN backend, written as a plain-MXNet symbol/params pair.

:func:`quantize_run` (a run directory) and :func:`quantize_exported` (an exported symbol/params pair)
share one path (:func:`quantize_job`):

1. the fp32 inference graph (:func:`gluonfuse.deploy.graph.inference_graph`);
2. calibration on ``calib_images`` images of the training set, read with the run's normalisation and
   no augmentation, shuffled with a fixed seed (:class:`CalibrationIter`);
3. ``mxnet.contrib.quantization.quantize_net_v2`` with the layers the network declares
   (:meth:`gluonfuse.models.views.Views.fp32_layers`: drop-path masks, stochastic-depth gates) and
   the user's ``--exclude`` patterns kept in fp32;
4. top-1/top-5 error of the fp32 and the int8 network on the test set
   (:func:`gluonfuse.train.evaluate.evaluate`) and their speed, measured side by side
   (:func:`gluonfuse.deploy.speed.images_per_second`; fp32 plain, fp32 MKLDNN-fused and int8);
5. ``<name>-int8-symbol.json``, ``<name>-int8-0000.params`` and ``<name>-int8-meta.json``, staged under
   temporary names and renamed when all three are complete (the meta file last).

The pair loads with ``mx.gluon.SymbolBlock.imports(symbol, ['data'], params)``; it runs on CPUs only.
"""
import dataclasses
import fnmatch
import os
import shutil
import tempfile

import mxnet as mx
import numpy as np

from gluonfuse import __version__
from gluonfuse.errors import DataError, GluonfuseError, did_you_mean

CALIB_MODES = ("naive", "entropy")
CALIB_SEED = 0  # the calibration images are the first N of the training set shuffled with this seed
SPEED_ROUNDS = 5

class QuantizeError(GluonfuseError):
    """mxnet could not quantize or calibrate the graph; the message names the layer and its operator."""


def automatic_exclusions(graph_text, declared):
    """``[(layer, operator, why)]`` for the nodes of ``graph_text`` that ``declared`` keeps in fp32: a
    network's :meth:`gluonfuse.models.views.Views.fp32_layers` rows."""
    from gluonfuse.deploy.graph import constant_nodes, node_ops

    ops = node_ops(graph_text)
    constant = set(constant_nodes(graph_text))
    found = []
    for kind, pattern, why in declared:
        for name, op in ops.items():
            subject = {"constant": name if name in constant else None, "op": op, "layer": name}[kind]
            if subject is not None and fnmatch.fnmatchcase(subject, pattern):
                found.append((name, op, why))
    return found


def user_exclusions(graph_text, patterns):
    """``[(layer, operator, why)]`` for the ``--exclude`` patterns; ValueError for one matching nothing."""
    from gluonfuse.deploy.graph import node_ops

    ops = node_ops(graph_text)
    found = []
    for pattern in patterns:
        names = [n for n in ops if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise ValueError(f"--exclude {pattern!r} matches no layer of the network.{did_you_mean(pattern, ops)} "
                             "Layers are node names of the exported symbol, e.g. "
                             f"{next(iter(ops))!r}; shell patterns (*, ?) match several")
        found += [(n, ops[n], f"--exclude {pattern}") for n in names]
    return found


def calibration_batch(images, largest=64):
    """A batch size dividing ``images`` (so every calibration image counts once), at most ``largest``;
    ``min(images, largest)`` when no divisor of at least 16 exists (the last batch then repeats images)."""
    divisors = [d for d in range(16, min(images, largest) + 1) if images % d == 0]
    return divisors[-1] if divisors else min(images, largest)


class CalibrationIter(mx.io.DataIter):
    """Exactly ``count`` images of a ``.rec`` as an ``mx.io.DataIter`` (data only, no label).

    ``make_iter()`` returns a fresh batch iterator (gluonfuse.train.data.record_iter). A short last
    batch is filled up with its own images repeated; MXNet's round-batch padding is never used.
    """

    def __init__(self, make_iter, count, batch_size, input_shape, source):
        super().__init__(batch_size)
        self.make_iter, self.count, self.source = make_iter, count, source
        self.provide_data = [mx.io.DataDesc("data", (batch_size,) + tuple(input_shape))]
        self.provide_label = []
        self.seen, self.it = 0, None

    def reset(self):
        self.seen, self.it = 0, None

    def next(self):
        if self.seen >= self.count:
            raise StopIteration
        self.it = self.it or self.make_iter()
        try:
            batch = next(self.it)
        except StopIteration:
            raise DataError(f"{self.source}: only {self.seen} images, {self.count} needed for calibration") from None
        take = min(batch.data[0].shape[0] - batch.pad, self.count - self.seen)
        data = mx.nd.take(batch.data[0], mx.nd.array(np.arange(self.batch_size) % take))
        self.seen += take
        return mx.io.DataBatch([data], pad=0)


@dataclasses.dataclass
class Job:
    """One network to quantize, from a run directory or an exported pair."""

    net: object  # the fp32 network, initialised and hybridized
    name: str  # output files are <name>-int8-*
    out_dir: str
    input_shape: tuple
    mean: list
    std: list
    calib_rec: str  # calibration images (a training set)
    test_rec: str  # where the fp32 and int8 errors are measured
    batch_size: int  # evaluation and timing batch
    source: dict  # what was quantized, for the meta file
    model: dict = dataclasses.field(default_factory=dict)  # network and model_kwargs when known
    stored_size: int = None  # side of the stored images when it differs from the input
    views: object = None  # the registered network ``net`` was exported from, when known (its fp32 layers)


def quantize_network(net, calib, images, calib_mode="naive", exclude=(), graph=None, views=None):
    """``(int8 SymbolBlock, excluded)`` for ``net`` (initialised), calibrated on ``images`` images of
    ``calib`` (an ``mx.io.DataIter`` yielding input batches named 'data').

    ``excluded`` lists ``(layer, operator, why)`` for every layer kept in fp32: those the network
    declares (``fp32_layers()`` of its views; ``views``: the registered network an imported ``net``
    was exported from; for a graph of unknown origin, its constant masks) plus the ``exclude``
    patterns. ``graph``: ``net``'s inference graph when already traced. Scalar multiplications are
    folded into a copy of the weights first (:mod:`gluonfuse.deploy.scales`): mxnet has no int8
    kernel for them, and each would take the graph out of int8 and back.
    """
    from gluonfuse.deploy.fuse import require_mkldnn
    from gluonfuse.deploy.graph import inference_graph
    from gluonfuse.deploy.scales import folded_block
    from gluonfuse.models.views import MASKS_IN_FP32, Views

    if calib_mode not in CALIB_MODES:
        raise ValueError(f"--calib-mode must be one of {', '.join(CALIB_MODES)}, not {calib_mode!r}")
    require_mkldnn("int8 quantization")
    graph = graph or inference_graph(net)
    origin = views or net
    # A graph of unknown origin (an export without its metadata) gets the one rule that is safe for any
    # graph: nodes computed only from constants (masks, gates) stay fp32, where int8 saves nothing.
    declared = origin.fp32_layers() if isinstance(origin, Views) else [MASKS_IN_FP32]
    excluded = automatic_exclusions(graph, declared) + user_exclusions(graph, exclude)
    fp32, _, _ = folded_block(net, graph)  # no _mul_scalar left where it can be folded: it has no int8 kernel
    qnet = _quantize(fp32, calib, calib_mode, sorted({name for name, _, _ in excluded}), images, graph)
    return qnet, excluded


def quantize_job(job, calib_images=1000, calib_mode="naive", exclude=(), echo=print):
    """Calibrate, quantize, measure and write ``job``'s int8 pair; returns the meta dict (with paths)."""
    from gluonfuse.deploy.fuse import require_mkldnn
    from gluonfuse.deploy.graph import inference_graph
    from gluonfuse.train.data import count_records

    if calib_images < 1:
        raise ValueError(f"--calib-images must be at least 1, got {calib_images}")
    require_mkldnn("int8 quantization")
    available = count_records(job.calib_rec)
    if calib_images > available:
        raise ValueError(f"--calib-images {calib_images} is more than the {available} images of {job.calib_rec}; "
                         f"give --calib-images {available} or fewer")
    graph = inference_graph(job.net)
    user_exclusions(graph, exclude)  # a pattern that matches nothing is an error before any work
    batch = calibration_batch(calib_images)
    echo(f"Calibrating on {calib_images} images of {job.calib_rec} ({calib_mode}) ...")
    calib = CalibrationIter(lambda: _records(job, job.calib_rec, batch, shuffle=True), calib_images, batch,
                            job.input_shape, job.calib_rec)
    qnet, excluded = quantize_network(job.net, calib, calib_images, calib_mode, exclude, graph, job.views)
    echo(f"Measuring fp32 and int8 on {job.test_rec} ({len(excluded)} layers kept in fp32) ...")
    meta = _meta(job, calib_images, calib_mode, batch, excluded, qnet)
    meta["accuracy"] = _accuracy(job, {"fp32": job.net, "int8": qnet})
    meta["speed"] = _speed(job, graph, qnet)
    meta.update(write_int8(qnet, job.out_dir, job.name, meta))
    return meta


def _records(job, rec, batch_size, shuffle=False):
    from gluonfuse.train.data import record_iter

    return record_iter(rec, batch_size, job.input_shape, job.mean, job.std, aug_type=0, shuffle=shuffle,
                       seed=CALIB_SEED, stored_size=job.stored_size)


def _quantize(fp32, calib, calib_mode, excluded, images, graph):
    """``quantize_net_v2`` of ``fp32`` (a SymbolBlock of ``graph``), run once; QuantizeError on failure."""
    import warnings

    from mxnet.contrib.quantization import quantize_net_v2

    fp32.hybridize(static_alloc=True, static_shape=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mxnet warns about input types it cannot infer before a call
            qnet = quantize_net_v2(fp32, quantized_dtype="auto", exclude_layers=list(excluded), calib_data=calib,
                                   calib_mode=calib_mode, num_calib_examples=images, ctx=mx.cpu())
            qnet.hybridize(static_alloc=True, static_shape=True)
            with mx.autograd.predict_mode():
                qnet(mx.nd.zeros(calib.provide_data[0].shape))
    except mx.base.MXNetError as exc:
        raise QuantizeError(_explain(exc, graph)) from None
    return qnet


def _explain(exc, graph):
    """One line naming the layer (and operator) mxnet failed on, and how to keep it in fp32."""
    import re

    from gluonfuse.deploy.fuse import first_line
    from gluonfuse.deploy.graph import node_ops

    ops = node_ops(graph)
    named = [n for n in re.findall(r"operator ([\w.-]+)", str(exc)) if n in ops]
    if not named:
        return f"mxnet cannot quantize this network: {first_line(exc)}"
    layer = named[-1]
    return (f"cannot quantize layer {layer} (operator {ops[layer]}): {first_line(exc)}; keep it in fp32 "
            f"with --exclude {layer}")


def _meta(job, calib_images, calib_mode, batch, excluded, qnet):
    from gluonfuse.deploy.graph import quantized_nodes

    return {
        "format": "gluonfuse int8 (mxnet MKLDNN quantization)",
        "name": f"{job.name}-int8", "source": job.source, **job.model,
        "input_name": "data", "input_shape": list(job.input_shape), "mean": list(job.mean), "std": list(job.std),
        "calibration": {"mode": calib_mode, "images": calib_images, "data": job.calib_rec,
                        "shuffle_seed": CALIB_SEED, "batch_size": batch},
        "excluded": [{"layer": name, "operator": op, "why": why} for name, op, why in excluded],
        "int8_nodes": quantized_nodes(qnet._cached_graph[1].tojson()),
        "versions": {"gluonfuse": __version__, "mxnet": mx.__version__, "numpy": np.__version__},
    }


def _accuracy(job, nets):
    """Top-1/top-5 error and loss of each of ``nets`` on ``job.test_rec`` (every record once)."""
    from gluonfuse.train.data import count_records
    from gluonfuse.train.evaluate import evaluate, output_width

    expected = count_records(job.test_rec)
    result = {"data": job.test_rec, "images": expected}
    for key, net in nets.items():
        res = evaluate(net, _records(job, job.test_rec, job.batch_size), [mx.cpu()], output_width(net, job.input_shape),
                       expected=expected, source=job.test_rec)
        result[key] = {"top1_error": res["error"], "top5_error": res["top5_error"], "loss": res["loss"]}
    result["top1_change_points"] = 100 * (result["int8"]["top1_error"] - result["fp32"]["top1_error"])
    return result


def _speed(job, graph, qnet):
    """Images per second of fp32 plain, fp32 fused (when it fuses) and int8, side by side."""
    from gluonfuse.deploy.fuse import fuse
    from gluonfuse.deploy.speed import images_per_second

    sample = mx.nd.array(np.random.RandomState(0).normal(0, 1, (2,) + tuple(job.input_shape)))
    fused = fuse(job.net, sample, graph)
    blocks = {"fp32": job.net, "int8": qnet}
    if fused.fused:
        blocks["fp32_fused"] = fused.block
    rates = images_per_second(blocks, job.input_shape, job.batch_size, rounds=SPEED_ROUNDS)
    return {"batch_size": job.batch_size, "rounds": SPEED_ROUNDS,
            "fp32_images_per_sec": rates["fp32"], "int8_images_per_sec": rates["int8"],
            "fp32_fused_images_per_sec": rates.get("fp32_fused"), "fp32_fused_note": fused.reason,
            "int8_speedup": rates["int8"] / rates["fp32"]}


def int8_name(which):
    """The name of a run's int8 files for its ``which`` weights: best, last or epoch-NNNN."""
    if which in ("best", "last"):
        return which
    if not str(which).isdigit():
        raise ValueError(f"--which must be best, last or an epoch number, got {which!r}")
    return f"epoch-{int(which):04d}"


def int8_paths(out_dir, name):
    """The three files of ``name``'s int8 model in ``out_dir``."""
    base = os.path.join(out_dir, f"{name}-int8")
    return {"symbol": f"{base}-symbol.json", "params": f"{base}-0000.params", "meta": f"{base}-meta.json"}


def write_int8(qnet, out_dir, name, meta):
    """Write the int8 pair and its meta file; returns their paths.

    The pair is exported into a staging directory and renamed into place; the meta file, written last,
    marks a complete set (an older one is removed first).
    """
    from gluonfuse.io import write_json

    paths = int8_paths(out_dir, name)
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-int8-", dir=out_dir)
    try:
        qnet.export(os.path.join(staging, f"{name}-int8"), epoch=0)
        if os.path.exists(paths["meta"]):
            os.remove(paths["meta"])
        for key in ("symbol", "params"):
            os.replace(os.path.join(staging, os.path.basename(paths[key])), paths[key])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = {"symbol": os.path.basename(paths["symbol"]), "params": os.path.basename(paths["params"])}
    write_json(paths["meta"], dict(meta, files=files))
    return {"paths": paths}


def run_job(run_dir, which="best", out=None):
    """The :class:`Job` for a run directory's ``which`` checkpoint ('best', 'last' or an epoch)."""
    from gluonfuse.data.meta import stored_size
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    cfg = run.config
    params = run.params_path(which)  # DataError when the run has no such checkpoint
    net = run.build_network(which)
    net.hybridize(static_alloc=True, static_shape=True)
    name = int8_name(which)
    data_dir = cfg["data_dir"]
    return Job(net=net, name=name, out_dir=out or os.path.join(run_dir, "export"),
               input_shape=tuple(cfg["input_shape"]), mean=cfg["mean"], std=cfg["std"],
               calib_rec=os.path.join(data_dir, "train.rec"), test_rec=os.path.join(data_dir, "test.rec"),
               batch_size=cfg["test_batch_size"], source={"run": run_dir, "which": str(which), "params": params},
               model={"network": cfg["network"], "model_kwargs": cfg["model_kwargs"]},
               stored_size=stored_size(run.dataset_meta))


def exported_job(symbol_file, params_file, data, out=None, batch_size=64):
    """The :class:`Job` for an exported pair, calibrated on ``data`` (a .rec).

    Normalisation and input shape as ``gluonfuse eval`` reads the pair
    (:func:`gluonfuse.train.evaluate.exported_inputs`). The errors are measured on ``test.rec``
    beside ``data`` when ``data`` is a ``train.rec``, else on ``data`` itself.
    """
    from gluonfuse.export import load_exported
    from gluonfuse.train.evaluate import exported_inputs

    facts = exported_inputs(symbol_file, data)
    net = load_exported(symbol_file, params_file)
    sibling = os.path.join(os.path.dirname(os.path.abspath(data)), "test.rec")
    test_rec = sibling if os.path.basename(data) == "train.rec" and os.path.isfile(sibling) else data
    net.hybridize(static_alloc=True, static_shape=True)
    base = os.path.basename(symbol_file)
    export = facts["export"]
    return Job(net=net, name=base[:-len("-symbol.json")] if base.endswith("-symbol.json") else base,
               out_dir=out or os.path.dirname(os.path.abspath(symbol_file)), input_shape=facts["input_shape"],
               mean=facts["mean"], std=facts["std"], calib_rec=data, test_rec=test_rec, batch_size=batch_size,
               source={"symbol": symbol_file, "params": params_file},
               model={k: export[k] for k in ("network", "model_kwargs") if k in export},
               stored_size=facts["stored_size"], views=_registered(export))


def _registered(export):
    """The registered network an export's metadata names (uninitialised: only its views are asked), else
    None (a graph of unknown origin: :func:`quantize_network` keeps only its constant masks in fp32)."""
    from gluonfuse.models import get_model, list_models

    if export.get("network") not in list_models():
        return None
    return get_model(export["network"], **export.get("model_kwargs", {}))
