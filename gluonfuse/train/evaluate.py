"""Exact evaluation on a ``.rec``: loss, top-1 and top-5 error over exactly the records in the file.

Three entry points share one loop (:func:`evaluate`): the trainer's per-epoch test pass, a run
directory (:func:`evaluate_run`) and an exported symbol + params pair (:func:`evaluate_exported`).
The padded tail of the last batch is never counted (see :mod:`gluonfuse.train.metrics`).
"""
import os

from gluonfuse.errors import ArgumentError, DataError
from gluonfuse.train.metrics import Meter, as_outputs, sample_stats


def split(batch, contexts):
    """Data and label of ``batch`` split over ``contexts`` (uneven splits allowed, docs/mxnet-notes.md#split_and_load)."""
    from mxnet import gluon

    data = gluon.utils.split_and_load(batch.data[0], contexts, even_split=False)
    label = gluon.utils.split_and_load(batch.label[0], contexts, even_split=False)
    return data, label


def member_names(net, outputs=1):
    """The names of ``net``'s ``outputs`` outputs: its declared ones (the ensemble's members), else out<i>."""
    from gluonfuse.models.views import get_views

    names = get_views(net).output_names()
    return list(names) if len(names) == outputs else [f"out{i}" for i in range(outputs)]


def evaluate(net, data_iter, contexts, classes, expected=None, source="data", reduce=None):
    """Run ``net`` (predict mode) over one pass of ``data_iter``; returns Meter.result().

    ``expected``: the number of records the pass must count (DataError otherwise). ``reduce``: see
    :meth:`Meter.result` (a distributed job evaluates one part per worker and adds the totals; then
    ``expected`` is the whole file's count and ``data_iter`` may be None for an empty part).
    """
    meter = None
    for batch in data_iter or ():
        valid = batch.data[0].shape[0] - batch.pad
        data, label = split(batch, contexts)
        outs = [as_outputs(net(x)) for x in data]
        if meter is None:
            meter = Meter(classes, len(outs[0]), member_names(net, len(outs[0])))
        meter.add([sample_stats(o, y) for o, y in zip(outs, label)], valid)
        meter.flush(keep_last=1)
    if meter is None:
        if reduce is None:
            raise DataError(f"{source}: no records to evaluate")
        meter = Meter(classes, _outputs(net), member_names(net, _outputs(net)))
    result = meter.result(reduce)
    if expected is not None and result["count"] != expected:
        raise DataError(f"{source}: evaluated {result['count']} records, expected {expected}")
    return result


def _outputs(net):
    """How many outputs ``net`` has (for a worker whose part of the test set is empty)."""
    from gluonfuse.models.views import get_views

    return len(get_views(net).output_names())


def column_view(net, column):
    """Column ``column`` alone (1 = shallowest), sharing ``net``'s parameters, hybridized.

    ``--column`` and the trainer's deepest-column evaluation go through here only.
    """
    from gluonfuse.models.views import get_views

    views = get_views(net)
    columns = views.column_count()
    if not columns:
        raise ArgumentError(f"column needs a FractalNet; {views.view_name()} has no columns", "column")
    if not 1 <= column <= columns:
        raise ArgumentError(f"column must be between 1 and {columns} for this FractalNet, got {column}", "column")
    view = views.column_view(column)
    view.hybridize(static_alloc=True, static_shape=True)
    return view


def evaluate_run(run_dir, which="best", data=None, contexts=None, column=None, batch_size=None,
                 threads=2):
    """Evaluate a run's ``which`` weights on ``data`` (default: the run's test.rec)."""
    import mxnet as mx

    from gluonfuse.data.meta import stored_size
    from gluonfuse.train.data import count_records, record_iter
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    cfg = run.config
    contexts = contexts or [mx.cpu()]
    net = run.build_network(which, ctx=contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    if column is not None:
        net = column_view(net, column)
    data = data or os.path.join(cfg["data_dir"], "test.rec")
    it = record_iter(data, batch_size or cfg["test_batch_size"], cfg["input_shape"], cfg["mean"], cfg["std"],
                     threads=threads, stored_size=stored_size(run.dataset_meta))
    result = evaluate(net, it, contexts, cfg["classes"], expected=count_records(data), source=data)
    result.update(data=data, which=which, run=run_dir)
    return result


def evaluate_exported(symbol_file, params_file, data, mean=None, std=None, classes=None, input_shape=None,
                      contexts=None, batch_size=64, threads=2):
    """Evaluate an exported symbol + params on ``data`` (a .rec).

    Normalisation: the arguments, else the export's ``-meta.json`` (gluonfuse runs record it there),
    else the dataset's ``meta.json`` beside the ``.rec`` (and the dataset presets). Classes and input
    shape from the export's metadata when present.
    """
    import mxnet as mx

    from gluonfuse.export import load_exported
    from gluonfuse.io import read_json
    from gluonfuse.data.meta import read_meta, stored_size
    from gluonfuse.train.data import count_records, normalisation, record_iter

    contexts = contexts or [mx.cpu()]
    data_dir = os.path.dirname(os.path.abspath(data))
    meta = read_meta(data_dir) if os.path.isfile(os.path.join(data_dir, "meta.json")) else None
    export_meta_path = symbol_file.replace("-symbol.json", "-meta.json")
    export_meta = read_json(export_meta_path, "export metadata") if os.path.isfile(export_meta_path) else {}
    if (mean is None or std is None) and "mean" in export_meta and "std" in export_meta:
        mean, std = export_meta["mean"], export_meta["std"]  # the trainer records them in the export
    if mean is None or std is None:
        if meta is None:
            raise ArgumentError(f"no meta.json beside {data}: give mean and std (0..255 scale, RGB)", "mean", "std")
        mean, std = normalisation(meta.get("name", ""), meta, os.path.join(data_dir, "meta.json"))
    classes = classes or export_meta.get("classes") or (meta or {}).get("num_classes")
    if isinstance(classes, list):
        classes = len(classes)
    if not classes:
        raise ArgumentError(f"cannot tell the number of classes of {data} (no export metadata or meta.json says): "
                            "give classes", "classes")
    input_shape = input_shape or export_meta.get("input_shape") or (meta or {}).get("image_shape") or (3, 32, 32)
    net = load_exported(symbol_file, params_file, contexts)
    it = record_iter(data, batch_size, input_shape, mean, std, threads=threads, stored_size=stored_size(meta))
    result = evaluate(net, it, contexts, classes, expected=count_records(data), source=data)
    result.update(data=data, symbol=symbol_file, params=params_file)
    return result
