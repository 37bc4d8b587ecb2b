"""Exact evaluation on a ``.rec``: loss, top-1 and top-5 error over exactly the records in the file.

Three entry points share one loop (:func:`evaluate`): the trainer's per-epoch test pass, a run
directory (:func:`evaluate_run`) and an exported symbol + params pair, fp32 or int8
(:func:`evaluate_exported`). The last two go through an :class:`Evaluation` (the network and how it
reads its ``.rec``), which ``gluonfuse eval`` also runs with the graph :mod:`gluonfuse.deploy.infer`
picks (MKLDNN-fused fp32, plain fp32 or int8). The padded tail of the last batch is never counted
(see :mod:`gluonfuse.train.metrics`).
"""
import dataclasses
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


@dataclasses.dataclass
class Evaluation:
    """A network and the ``.rec`` it is evaluated on, read as the network was trained.

    :func:`run_evaluation` (a run directory) and :func:`exported_evaluation` (an exported pair) make
    one; :meth:`run` evaluates it, or another block that computes the same function (the fused graph
    of :mod:`gluonfuse.deploy.infer`). ``info`` goes into the result (which weights, which files).
    """

    net: object
    data: str
    input_shape: tuple
    mean: list
    std: list
    classes: int
    batch_size: int
    contexts: list
    stored_size: int = None
    info: dict = dataclasses.field(default_factory=dict)

    def records(self, batch_size=None, threads=2):
        """A fresh pass over ``data`` (no augmentation)."""
        from gluonfuse.train.data import record_iter

        return record_iter(self.data, batch_size or self.batch_size, self.input_shape, self.mean, self.std,
                           threads=threads, stored_size=self.stored_size)

    def sample(self, images=2):
        """The first ``images`` images of ``data``, normalised (a batch to check a fused graph on)."""
        batch = next(iter(self.records(batch_size=images, threads=1)))
        return batch.data[0].as_in_context(self.contexts[0])

    def run(self, block=None, threads=2):
        """Meter.result() of ``block`` (default: the network) over every record of ``data``."""
        from gluonfuse.train.data import count_records

        result = evaluate(block or self.net, self.records(threads=threads), self.contexts, self.classes,
                          expected=count_records(self.data), source=self.data)
        # a stand-in block (a fused graph) declares no member names: the network's own name its outputs
        for member, name in zip(result["members"], member_names(self.net, len(result["members"]))):
            member["name"] = name
        result.update(data=self.data, **self.info)
        return result


def run_evaluation(run_dir, which="best", data=None, contexts=None, column=None, batch_size=None):
    """The :class:`Evaluation` of a run's ``which`` weights on ``data`` (default: the run's test.rec)."""
    import mxnet as mx

    from gluonfuse.data.meta import stored_size
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    cfg = run.config
    contexts = contexts or [mx.cpu()]
    net = run.build_network(which, ctx=contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    if column is not None:
        net = column_view(net, column)
    return Evaluation(net, data or os.path.join(cfg["data_dir"], "test.rec"), tuple(cfg["input_shape"]), cfg["mean"],
                      cfg["std"], cfg["classes"], batch_size or cfg["test_batch_size"], contexts,
                      stored_size(run.dataset_meta), {"which": which, "run": run_dir})


def evaluate_run(run_dir, which="best", data=None, contexts=None, column=None, batch_size=None,
                 threads=2):
    """Evaluate a run's ``which`` weights on ``data`` (default: the run's test.rec)."""
    return run_evaluation(run_dir, which, data, contexts, column, batch_size).run(threads=threads)


def exported_inputs(symbol_file, data, mean=None, std=None):
    """How an exported network reads ``data`` (a .rec): ``{mean, std, input_shape, classes, stored_size,
    export}`` (``export``: the ``-meta.json`` beside the symbol, ``{}`` when there is none).

    Normalisation: ``mean``/``std`` when given, else the export's ``-meta.json`` (gluonfuse records it
    there, for fp32 and int8 exports alike), else the dataset's ``meta.json`` beside ``data`` (and the
    dataset presets). Input shape and classes: the export's metadata, else the dataset's (classes may
    be None).
    """
    from gluonfuse.data.meta import read_meta, stored_size
    from gluonfuse.export import export_meta_path
    from gluonfuse.io import read_json
    from gluonfuse.train.data import normalisation

    if not os.path.isfile(data):
        raise DataError(f"record file not found: {data}")
    meta_path = export_meta_path(symbol_file)
    export = read_json(meta_path, "export metadata") if meta_path and os.path.isfile(meta_path) else {}
    data_dir = os.path.dirname(os.path.abspath(data))
    dataset = read_meta(data_dir) if os.path.isfile(os.path.join(data_dir, "meta.json")) else {}
    if (mean is None or std is None) and "mean" in export and "std" in export:
        mean, std = export["mean"], export["std"]
    if mean is None or std is None:
        if not dataset:
            raise ArgumentError(f"cannot tell the normalisation of {symbol_file}: no mean/std in a -meta.json beside "
                                f"it and no meta.json beside {data}; give mean and std (0..255 scale, RGB)",
                                "mean", "std")
        mean, std = normalisation(dataset.get("name", ""), dataset, os.path.join(data_dir, "meta.json"))
    input_shape = export.get("input_shape") or dataset.get("image_shape")
    if not input_shape:
        raise ValueError(f"cannot tell the input shape: no -meta.json beside {symbol_file} and no meta.json "
                         f"beside {data}")
    classes = export.get("classes") or dataset.get("num_classes")
    return {"mean": list(mean), "std": list(std), "input_shape": tuple(input_shape),
            "classes": len(classes) if isinstance(classes, list) else classes,
            "stored_size": stored_size(dataset), "export": export}


def output_width(net, input_shape, ctx=None):
    """The width of ``net``'s (first) output for one input: its number of classes."""
    import mxnet as mx

    from gluonfuse.train.metrics import as_outputs

    with mx.autograd.predict_mode():
        return as_outputs(net(mx.nd.zeros((1,) + tuple(input_shape), ctx=ctx or mx.cpu())))[0].shape[-1]


def exported_evaluation(symbol_file, params_file, data, mean=None, std=None, contexts=None, batch_size=64):
    """The :class:`Evaluation` of an exported symbol + params pair (fp32 or int8) on ``data`` (a .rec);
    normalisation, input shape and classes as :func:`exported_inputs` finds them."""
    import mxnet as mx

    from gluonfuse.export import load_exported

    facts = exported_inputs(symbol_file, data, mean, std)
    contexts = contexts or [mx.cpu()]
    net = load_exported(symbol_file, params_file, contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    classes = facts["classes"] or output_width(net, facts["input_shape"], contexts[0])
    return Evaluation(net, data, facts["input_shape"], facts["mean"], facts["std"], classes, batch_size, contexts,
                      facts["stored_size"], {"symbol": symbol_file, "params": params_file})


def evaluate_exported(symbol_file, params_file, data, mean=None, std=None, contexts=None, batch_size=64,
                      threads=2):
    """Evaluate an exported symbol + params on ``data`` (a .rec); see :func:`exported_evaluation`."""
    return exported_evaluation(symbol_file, params_file, data, mean, std, contexts, batch_size).run(threads=threads)
