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
    from gluonfuse.export import export_meta_path

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


def int8_pair(run_dir, which="best", fuse=True):
    """``(symbol, params)`` of the int8 model ``gluonfuse quantize`` wrote for a run's ``which`` weights;
    ValueError naming the command to run when there is none (its meta file marks a complete set), and
    for ``fuse=False`` (``--no-fuse``) before looking for it."""
    from gluonfuse.deploy.quantize import int8_name, int8_paths
    from gluonfuse.train.rundir import load_run

    if not fuse:
        raise ValueError("--int8 runs an int8 graph, which is always fused: drop --no-fuse, or drop --int8 to run "
                         "the plain fp32 graph")
    load_run(run_dir)  # not a run directory: that error first
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


def evaluate(run_dir=None, symbol_file=None, params_file=None, data=None, which="best", column=None,
             batch_size=None, mean=None, std=None, contexts=None, int8=False, fuse=True, notice=None):
    """``gluonfuse eval``: Meter.result() of a run's ``which`` weights (``run_dir``; ``int8``: its int8
    model) or of an exported pair (``symbol_file``/``params_file``; fp32 or int8, told apart by
    :func:`int8_graph`) on ``data`` (a .rec; default the run's test set), on the graph
    :func:`fp32_path` chooses (int8: the int8 graph). The result's ``path`` names the graph that ran.
    ``mean``/``std``: an exported pair's normalisation when neither its meta nor the dataset's says.
    """
    from gluonfuse.train.evaluate import exported_evaluation, run_evaluation
    from gluonfuse.train.rundir import load_run

    if run_dir and (symbol_file or params_file):
        raise ValueError("give RUN_DIR or --symbol/--params, not both")
    if int8 and run_dir:
        if column is not None:
            raise ValueError("--column evaluates one fp32 column; the int8 model is the whole network: drop one")
        symbol_file, params_file = int8_pair(run_dir, which, fuse)
        data = data or os.path.join(load_run(run_dir).config["data_dir"], "test.rec")
        run_dir = None
    if run_dir:
        ev = run_evaluation(run_dir, which, data, contexts, column, batch_size)
        quantized = False
    elif symbol_file and params_file and data:
        if column is not None:
            raise ValueError("--column needs a RUN_DIR (an exported symbol has its columns fixed)")
        quantized = int8_graph(symbol_file, contexts, fuse, asked=int8)  # refusals before loading
        ev = exported_evaluation(symbol_file, params_file, data, mean, std, contexts, batch_size or 64)
    else:
        raise ValueError("give a RUN_DIR, or --symbol F --params F --data PATH.rec")
    if quantized:
        path = Path(ev.net, INT8)
    else:
        path = fp32_path(ev.net, ev.sample() if fuse else None, ev.contexts, fuse, notice)
    return dict(ev.run(path.block), path=path.name)


def predict(run_dir, images, which="best", top_k=5, int8=False, fuse=True, notice=None):
    """``gluonfuse predict``: :func:`gluonfuse.train.predict.predict_run` on the graph :func:`fp32_path`
    chooses for the images, or on the run's int8 model (``int8``; its refusals come before any work)."""
    from gluonfuse.train.predict import predict_run

    if not int8:
        def prepare(net, batch):
            return fp32_path(net, batch, fuse=fuse, notice=notice).block
    else:
        from gluonfuse.export import load_exported

        symbol_file, params_file = int8_pair(run_dir, which, fuse)
        check_int8(symbol_file)
        block = load_exported(symbol_file, params_file)
        block.hybridize(static_alloc=True, static_shape=True)

        def prepare(net, batch):
            return block
    return predict_run(run_dir, list(images), which=which, top_k=top_k, prepare=prepare)
