"""The trainer: one machine, any number of devices, resumable, exact metrics.

Per step the global batch is split across the devices (``split_and_load``, uneven splits allowed),
each device runs the hybridized network (static memory) under ``autograd.record``, and
``gluon.Trainer`` aggregates the gradients through the kvstore (``--kvstore``) and applies the
optimizer. Metrics are computed on the devices and read back one batch late, so the devices never
wait for Python. Multi-output networks (``ensemble``) train on the sum of their members' losses.

Initialisation (SPEC 1.6): Dense weights Xavier(uniform, 'in', 1), every other weight
Xavier(gaussian, 'in', 2), BatchNorm gamma 1 and beta 0, biases 0. Weight decay applies to every
trainable parameter (weights, biases, gamma, beta), as in the authors' ``Nesterov`` optimizer.
"""
import dataclasses
import logging
import math
import os
import signal
import threading
import time

from gluonfuse.errors import DataError, NonFiniteLossError
from gluonfuse.io import write_json
from gluonfuse.train import config as cfgmod
from gluonfuse.train.checkpoint import CheckpointStore, epoch_seed, seed_everything
from gluonfuse.train.data import count_records, ensure_dataset, normalisation, read_dataset_meta, record_iter
from gluonfuse.train.evaluate import column_view, evaluate, has_columns, member_names, split
from gluonfuse.train.metrics import Meter, as_outputs, fmt_error, sample_stats
from gluonfuse.train.rundir import (MEMBER_COLUMNS, METRIC_COLUMNS, create_run_dir, load_run, read_csv_rows,
                                    run_base_name, write_csv_rows, write_status)
from gluonfuse.train.schedule import lr_at


# ---------------------------------------------------------------- building blocks (shared with tools/)

def initialize(net, contexts):
    """SPEC 1.6's mixed Xavier initialisation on ``contexts``."""
    import mxnet as mx
    from mxnet.gluon import nn

    def dense_uniform(block):
        if isinstance(block, nn.Dense):
            block.weight.init = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1)

    net.apply(dense_uniform)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2), ctx=contexts)
    return net


def make_trainer(net, optimizer, lr, wd, momentum, kvstore):
    import mxnet as mx

    params = {"learning_rate": lr, "wd": wd}
    if optimizer in ("nag", "sgd"):
        params["momentum"] = momentum
    return mx.gluon.Trainer(net.collect_params(), optimizer, params, kvstore=mx.kv.create(kvstore))


def average_running_stats(net):
    """Average the BatchNorm running statistics over the devices and give every device the mean.

    Each device updates its own running mean/var from its share of the batch; the kvstore only
    aggregates gradients. Like MXNet's Module (which averages auxiliary states when it hands out
    parameters), the trainer averages them before evaluating and checkpointing, so a checkpoint
    evaluates the same on one device as on many.
    """
    for p in net.collect_params().values():
        if p.grad_req == "null" and len(p.list_ctx()) > 1:
            arrays = p.list_data()
            mean = sum(a.as_in_context(arrays[0].context) for a in arrays) / len(arrays)
            for a in arrays:  # in place: Parameter.set_data would re-initialise the kvstore
                mean.copyto(a)


class Step:
    """One training step over a global batch: forward/backward on every device, then the update.

    Returns the per-device outputs (lists, one entry per network output) for the metrics.
    """

    def __init__(self, net, trainer, contexts):
        import mxnet as mx

        self.net, self.trainer, self.contexts = net, trainer, contexts
        self.loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()
        self.autograd = mx.autograd

    def __call__(self, data, label, batch_size):
        with self.autograd.record():
            outs = [as_outputs(self.net(x)) for x in data]
            # multi-output networks train on the sum of their members' losses
            losses = [sum(self.loss(o, y) for o in out) for out, y in zip(outs, label)]
        self.autograd.backward(losses)
        self.trainer.step(batch_size)
        return outs


# ---------------------------------------------------------------- configuration against the data

def prepare(config, echo=print):
    """Fill the dataset-dependent fields of ``config`` (classes, mean/std, input shape) and check it.

    Returns ``(config, meta, spec)``. Raises ValueError for a network or class count that does not
    fit the data, DataError for a missing or broken dataset directory.
    """
    from gluonfuse.models import get_entry

    ensure_dataset(config.dataset, config.data_dir, echo=echo)
    meta = read_dataset_meta(config.data_dir)
    classes = int(meta["num_classes"])
    asked = config.model_kwargs.get("classes")
    if asked is not None and asked != classes:
        raise ValueError(f"--classes {asked} does not match the dataset: {config.data_dir}/meta.json has "
                         f"{classes} classes")
    entry = get_entry(config.network)
    kwargs = dict(config.model_kwargs, classes=classes)
    # recipe-implied model arguments (wrn_svhn's dropout) where the network takes them
    fields = {f.name for f in dataclasses.fields(entry.spec_cls)}
    for key, value in cfgmod.get_recipe(config.recipe).model_defaults:
        if key in fields and key not in kwargs:
            kwargs[key] = value
    spec = entry.make_spec(**kwargs)
    if spec.classes != classes:
        raise ValueError(f"network {config.network!r} has {spec.classes} classes; the dataset has {classes}")
    config.model_kwargs = spec.kwargs()
    config.classes = classes
    config.mean, config.std = normalisation(config.dataset, meta, os.path.join(config.data_dir, "meta.json"))
    config.input_shape = list(spec.input_shape)
    return config, meta, spec


# ---------------------------------------------------------------- the run

class _Console:
    def __init__(self, run_dir, echo, quiet):
        self.echo, self.quiet = echo, quiet
        self.log = logging.getLogger(f"gluonfuse.run.{os.path.abspath(run_dir)}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        for h in list(self.log.handlers):
            self.log.removeHandler(h)
        self.handler = logging.FileHandler(os.path.join(run_dir, "log.txt"))
        self.handler.setFormatter(logging.Formatter("%(asctime)-15s %(message)s"))
        self.log.addHandler(self.handler)

    def file(self, msg):
        self.log.info(msg)

    def both(self, msg):
        self.log.info(msg)
        self.echo(msg)

    def close(self):
        self.log.removeHandler(self.handler)
        self.handler.close()


def _plot(run_dir, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gluonfuse.io import atomic_path

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("test_loss", "test")):
        ax1.plot(epochs, [float(r[key]) for r in rows], label=label)
    for key, label in (("train_error", "train"), ("test_error", "test")):
        ax2.plot(epochs, [100 * float(r[key]) for r in rows], label=label)
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="top-1 error (%)", title="error")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(os.path.basename(os.path.abspath(run_dir)))
    fig.tight_layout()
    with atomic_path(os.path.join(run_dir, "curves.png")) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _epoch_log(log, epoch, train, test, seconds, members, column):
    # the authors' (MXNet FeedForward) end-of-epoch lines; their get_results.py parses them
    log(f"Epoch[{epoch}] Train-cross-entropy={train['loss']:.6f}")
    log(f"Epoch[{epoch}] Train-accuracy={1 - train['error']:.6f}")
    log(f"Epoch[{epoch}] Time cost={seconds:.3f}")
    log(f"Epoch[{epoch}] Validation-cross-entropy={test['loss']:.6f}")
    log(f"Epoch[{epoch}] Validation-accuracy={1 - test['error']:.6f}")
    if test["top5_error"] is not None:
        log(f"Epoch[{epoch}] Validation-top_k_accuracy_5={1 - test['top5_error']:.6f}")
    for m in members:
        log(f"Epoch[{epoch}] Validation-member-{m['name']}-accuracy={1 - m['error']:.6f}")
    if column is not None:
        log(f"Epoch[{epoch}] Validation-column-{column['column']}-accuracy={1 - column['error']:.6f}")


def train(config=None, resume=None, quiet=False, echo=print, overrides=None):
    """Train ``config`` into a new run directory, or continue the run at ``resume``.

    ``overrides`` (resume only): ``epochs`` and ``contexts`` may change on resume. Returns a dict
    with the run directory, best and last test numbers. Raises NonFiniteLossError (the run is
    marked failed; the last good checkpoint stays) and the usual ValueError/DataError.
    """
    if (config is None) == (resume is None):
        raise ValueError("give a configuration or --resume RUN_DIR, not both")
    if resume is not None:
        run = load_run(resume)
        config = cfgmod.TrainConfig.from_dict(run.config)
        for key, value in (overrides or {}).items():
            if value is not None:
                setattr(config, key, value)
        config.validate()
        run_dir = resume
        contexts = cfgmod.make_contexts(config.contexts)
        config, meta, spec = prepare(config, echo=echo)
    else:
        contexts = cfgmod.make_contexts(config.contexts)
        config, meta, spec = prepare(config, echo=echo)
        run_dir = create_run_dir(config.out_dir, run_base_name(config.network, spec, config.dataset))
    write_json(os.path.join(run_dir, "config.json"), config.to_dict())
    write_json(os.path.join(run_dir, "dataset_meta.json"), meta)

    console = _Console(run_dir, echo, quiet)
    previous = _catch_sigterm()
    try:
        return _run(config, run_dir, contexts, meta, console, resume is not None, quiet)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        console.close()


class Terminated(SystemExit):
    """SIGTERM arrived (e.g. a launcher tearing a job down): the run is marked failed, then exits."""

    def __str__(self):
        return "terminated by SIGTERM"


def _catch_sigterm():
    """Turn SIGTERM into :class:`Terminated` so status.json records it; returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum, frame):
        raise Terminated(128 + signum)

    return signal.signal(signal.SIGTERM, on_term)


def _run(config, run_dir, contexts, meta, console, resuming, quiet):
    from gluonfuse.models import get_model

    train_rec = os.path.join(config.data_dir, "train.rec")
    test_rec = os.path.join(config.data_dir, "test.rec")
    n_train, n_test = count_records(train_rec), count_records(test_rec)
    stored = min(meta["image_shape"][1:]) if meta.get("image_shape") else None

    seed_everything(config.seed)
    net = get_model(config.network, **config.model_kwargs)
    initialize(net, contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = make_trainer(net, config.optimizer, config.lr, config.wd, config.momentum, config.kvstore)
    step = Step(net, trainer, contexts)
    store = CheckpointStore(run_dir, keep=config.keep_checkpoints)
    # FractalNet: the deepest column alone is evaluated too (SPEC 2), with the same weights
    deepest = net.spec.columns if has_columns(net) and net.spec.columns > 1 else None
    deepest_net = column_view(net, deepest) if deepest else None

    start, best = 0, {"epoch": None, "test_error": None}
    latest = store.latest() if resuming else None
    if latest is not None:
        start = latest[0]
        info = store.load(start, net, trainer, contexts)
        best = info.get("best", best)
        console.both(f"Resumed {run_dir} after epoch {start} of {config.epochs}")
    rows = [r for r in read_csv_rows(os.path.join(run_dir, "metrics.csv")) if int(r["epoch"]) <= start]
    member_rows = [r for r in read_csv_rows(os.path.join(run_dir, "members.csv")) if int(r["epoch"]) <= start]

    if not resuming:
        console.echo("Configuration: " + ", ".join(f"{k}={v}" for k, v in config.to_dict().items()))
        console.both(f"Run directory: {run_dir}")
        console.file(f"start with arguments {config.to_dict()}")  # the authors' first log line
    write_status(run_dir, state="running", epoch=start, epochs=config.epochs, best_epoch=best["epoch"],
                 best_test_error=best["test_error"], message="")

    batches = math.ceil(n_train / config.batch_size)
    try:
        for epoch in range(start, config.epochs):
            lr = lr_at(epoch, config.lr, config.lr_factor, config.lr_steps)
            trainer.set_learning_rate(lr)
            seed = epoch_seed(config.seed, epoch)
            seed_everything(seed)
            it = record_iter(train_rec, config.batch_size, config.input_shape, config.mean, config.std,
                             aug_type=config.aug_type, shuffle=True, seed=seed,
                             threads=config.preprocess_threads, stored_size=stored)
            train_m, seconds, speed = train_epoch(epoch, it, step, config, console.file, batches, quiet, train_rec)
            average_running_stats(net)
            test_it = record_iter(test_rec, config.test_batch_size, config.input_shape, config.mean, config.std,
                                  threads=config.preprocess_threads, stored_size=stored)
            test_m = evaluate(net, test_it, contexts, config.classes, expected=n_test, source=test_rec)
            column = None
            if deepest:
                col_it = record_iter(test_rec, config.test_batch_size, config.input_shape, config.mean,
                                     config.std, threads=config.preprocess_threads, stored_size=stored)
                column = evaluate(deepest_net, col_it, contexts, config.classes, expected=n_test)
                column["column"] = deepest
            _epoch_log(console.file, epoch, train_m, test_m, seconds, test_m["members"], column)
            done = epoch + 1
            rows.append({"epoch": done, "lr": f"{lr:.6g}", "train_loss": f"{train_m['loss']:.6f}",
                         "train_error": fmt_error(train_m["error"]),
                         "train_top5_error": fmt_error(train_m["top5_error"]),
                         "test_loss": f"{test_m['loss']:.6f}", "test_error": fmt_error(test_m["error"]),
                         "test_top5_error": fmt_error(test_m["top5_error"]),
                         "images_per_sec": f"{speed:.1f}", "seconds": f"{seconds:.2f}"})
            parts = list(enumerate(test_m["members"]))
            if column is not None:
                parts.append((deepest, dict(column, name=f"column{deepest}")))
            for i, m in parts:
                member_rows.append({"epoch": done, "member": i, "name": m["name"], "test_loss": f"{m['loss']:.6f}",
                                    "test_error": fmt_error(m["error"]), "test_top5_error": fmt_error(m["top5_error"])})
            write_csv_rows(os.path.join(run_dir, "metrics.csv"), METRIC_COLUMNS, rows)
            if member_rows:
                write_csv_rows(os.path.join(run_dir, "members.csv"), MEMBER_COLUMNS, member_rows)
            if best["test_error"] is None or test_m["error"] < best["test_error"]:
                best = {"epoch": done, "test_error": test_m["error"]}
                store.save_best(done, net, {"test": test_m})
            store.save(done, net, trainer, {"best": best, "lr": lr, "test": test_m})
            write_status(run_dir, state="running", epoch=done, best_epoch=best["epoch"],
                         best_test_error=best["test_error"])
            _plot(run_dir, rows)
            summary = (f"epoch {done}/{config.epochs}  lr {lr:.4g}  train loss {train_m['loss']:.4f} "
                       f"error {100 * train_m['error']:.2f}%  test loss {test_m['loss']:.4f} "
                       f"error {100 * test_m['error']:.2f}%")
            if test_m["top5_error"] is not None:
                summary += f" top-5 {100 * test_m['top5_error']:.2f}%"
            if test_m["members"]:
                summary += "  members " + " ".join(f"{m['name']}:{100 * m['error']:.1f}%" for m in test_m["members"])
            if column is not None:
                summary += f"  column {deepest}: {100 * column['error']:.2f}%"
            console.echo(summary + f"  {speed:.0f} img/s")
    except NonFiniteLossError as exc:
        last = store.latest()
        where = f"epoch {last[0]}" if last else "none yet"
        msg = (f"{exc}; training stopped. The last good checkpoint ({where}) is intact in "
               f"{store.dir}. Lower --lr or check the data, then start again (or --resume).")
        write_status(run_dir, state="failed", message=msg)
        console.file(msg)
        raise NonFiniteLossError(msg) from None
    except BaseException as exc:
        message = (str(exc) if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
                   if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        write_status(run_dir, state="failed", message=message[:500])
        console.file(f"stopped: {message}")
        raise

    paths = export_run(run_dir, config, meta)
    last = rows[-1] if rows else {}
    write_status(run_dir, state="finished", epoch=config.epochs, best_epoch=best["epoch"],
                 best_test_error=best["test_error"], message="finished")
    console.both(f"Finished: best test error {100 * (best['test_error'] or 0):.2f}% at epoch {best['epoch']}; "
                 f"exported to {os.path.join(run_dir, 'export')}")
    return {"run_dir": run_dir, "best_epoch": best["epoch"], "best_test_error": best["test_error"],
            "last": last, "export": paths}


def train_epoch(epoch, it, step, config, log, batches, quiet=True, source="train.rec", limit=None):
    """One pass of ``it`` through ``step``; returns (train metrics, seconds, images per second).

    ``log`` receives the authors' per-batch lines every ``config.log_interval`` batches; ``limit``
    stops after that many batches (benchmarks).
    """
    from tqdm import tqdm

    meter = None
    images, tic = 0, time.time()
    bar = tqdm(total=batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=quiet,
               leave=False, dynamic_ncols=True)
    nbatch = 0
    try:
        for batch in it:
            valid = batch.data[0].shape[0] - batch.pad
            label_max = float(batch.label[0].max().asscalar())
            if label_max >= config.classes or label_max < 0:
                raise DataError(f"{source}: a label {label_max:g} in batch {nbatch} is outside 0..{config.classes - 1}")
            data, label = split(batch, step.contexts)
            outs = step(data, label, batch.data[0].shape[0])
            if meter is None:
                meter = Meter(config.classes, len(outs[0]), member_names(step.net, len(outs[0])))
            meter.add([sample_stats(o, y) for o, y in zip(outs, label)], valid)
            try:
                last = meter.flush(keep_last=1)  # reads the previous batch: the devices stay busy
            except NonFiniteLossError:
                raise NonFiniteLossError(f"non-finite training loss in epoch {epoch + 1}, batch {nbatch}") from None
            nbatch += 1
            images += valid
            if last is not None and nbatch % config.log_interval == 0:
                speed = images / max(time.time() - tic, 1e-9)
                log(batch_line(epoch, nbatch, speed, last, meter.running(), config.classes > 5))
            if last is not None:
                bar.set_postfix(loss=f"{last[0]:.3f}", acc=f"{100 * (1 - last[1]):.1f}%",
                                img_s=f"{images / max(time.time() - tic, 1e-9):.0f}", refresh=False)
            bar.update(1)
            if limit is not None and nbatch >= limit:
                break
        if meter is None:
            raise DataError(f"{source}: no training records")
        try:
            result = meter.result()
        except NonFiniteLossError:
            raise NonFiniteLossError(f"non-finite training loss in epoch {epoch + 1}, batch {nbatch - 1}") from None
    finally:
        bar.close()
    seconds = time.time() - tic
    return result, seconds, images / max(seconds, 1e-9)


def batch_line(epoch, nbatch, speed, last, running, top5):
    """The authors' per-batch log line: this batch's value (the epoch's running mean so far)."""
    line = (f"Epoch[{epoch}] Batch [{nbatch}]\tSpeed: {speed:.0f}\tloss: {last[0]:.4f}({running[0]:.4f})"
            f"\ttop1: {100 * (1 - last[1]):.4f}({100 * (1 - running[1]):.4f})")
    if top5:
        line += f"\ttop5: {100 * (1 - last[2]):.4f}({100 * (1 - running[2]):.4f})"
    return line


def export_run(run_dir, config, meta):
    """Export the run's best and last weights into ``RUN/export`` (symbol, params, metadata)."""
    import mxnet as mx

    from gluonfuse.export import export_model

    run = load_run(run_dir)
    extra = {"mean": config.mean, "std": config.std, "dataset": config.dataset,
             "class_names": meta.get("classes"), "run": os.path.basename(os.path.abspath(run_dir))}
    paths = {}
    for which in ("best", "last"):
        net = run.build_network(which, ctx=mx.cpu())
        paths[which] = export_model(net, os.path.join(run_dir, "export"), name=which, input_shape=config.input_shape,
                                    extra=extra)
    return paths
