"""The trainer: any number of devices and machines, resumable, exact metrics.

Each step goes through :class:`gluonfuse.train.step.Step`. Metrics are computed on the devices and
read back one batch late, so the devices never wait for Python. With a ``dist_*`` kvstore this
process is one worker of a job on MXNet's parameter server: it reads its part of the data and the
job's numbers are added over the workers (:mod:`gluonfuse.train.dist`). ``--dtype
float16|bfloat16`` trains in mixed precision (:mod:`gluonfuse.train.precision`).
"""
import logging
import os
import signal
import threading
import time

from gluonfuse.errors import DataError, NonFiniteLossError
from gluonfuse.io import write_json
from gluonfuse.train import config as cfgmod
from gluonfuse.train import dist, precision
from gluonfuse.train.checkpoint import CheckpointStore, epoch_seed, seed_everything
from gluonfuse.train.evaluate import column_view, evaluate, has_columns, member_names, split
from gluonfuse.train.metrics import Meter, fmt_error, sample_stats
from gluonfuse.train.plan import plan_run, read_facts, run_record
from gluonfuse.train.rundir import (MEMBER_COLUMNS, METRIC_COLUMNS, create_run_dir, load_run, read_csv_rows,
                                    run_base_name, write_csv_rows, write_status)
from gluonfuse.train.schedule import lr_at
from gluonfuse.train.step import (Step, average_running_stats, copy_parameters, evaluation_copy, initialize,
                                  make_trainer, schedule_on_servers)


# ---------------------------------------------------------------- the run

class _Console:
    def __init__(self, run_dir, echo, quiet, log_name="log.txt"):
        self.echo, self.quiet = echo, quiet
        self.log = logging.getLogger(f"gluonfuse.run.{os.path.abspath(run_dir)}")
        self.log.setLevel(logging.INFO)
        self.log.propagate = False
        for h in list(self.log.handlers):
            self.log.removeHandler(h)
        self.handler = logging.FileHandler(os.path.join(run_dir, log_name))
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
    from gluonfuse.io import saved_figure

    epochs = [r["epoch"] for r in rows]
    with saved_figure(os.path.join(run_dir, "curves.png"), ncols=2, figsize=(10, 4)) as (fig, (ax1, ax2)):
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

    With a ``dist_*`` kvstore the process must be a worker of a job (``gluonfuse launch``); every
    worker calls this with the same arguments. A caller must then leave with ``os._exit`` when this
    raises (:func:`gluonfuse.train.dist.leave`): a normal exit waits forever for dead peers.
    """
    if (config is None) == (resume is None):
        raise ValueError("give a configuration or --resume RUN_DIR, not both")
    if resume is not None:
        run = load_run(resume)
        config = cfgmod.TrainConfig.from_dict(run.config)
        for key, value in (overrides or {}).items():
            if value is not None:
                setattr(config, key, value)
    workers = dist.job_size(config.kvstore)
    config.validate(workers)
    precision.check_support(config.dtype)
    contexts = cfgmod.make_contexts(config.contexts)
    team = _join(config)
    if resume is None:
        # without --seed every worker drew its own seed (resolve_config); the job trains, and
        # config.json records, rank 0's, so all ranks shuffle alike and --resume reproduces each
        config.seed = team.broadcast_int("seed", config.seed)
    # one worker prepares an embedded dataset on the fly; the others wait and then read it
    if team.lead:
        facts = read_facts(config, echo=echo)
    team.barrier()
    if not team.lead:
        facts = read_facts(config, echo=lambda *args, **kwargs: None)
    plan = plan_run(config, facts, team.size, team.rank, len(contexts))
    if resume is not None:
        run_dir = resume
    else:
        base = run_base_name(config.network, facts.spec, config.dataset)
        number = int(create_run_dir(config.out_dir, base).rsplit("_", 1)[1]) if team.lead else 0
        # rank 0 picked the directory; the others learn its number (the name is the same everywhere)
        run_dir = os.path.join(config.out_dir, f"{base}_{team.broadcast_int('run_dir', number)}")
        os.makedirs(run_dir, exist_ok=True)
    if team.lead:
        write_json(os.path.join(run_dir, "config.json"), run_record(config, facts, workers))
        write_json(os.path.join(run_dir, "dataset_meta.json"), facts.meta)

    if team.lead:
        console = _Console(run_dir, echo, quiet)
    else:
        console = _Console(run_dir, lambda *args, **kwargs: None, True, log_name=f"worker-{team.rank}.log")
    try:
        with _stop_signals(team, run_dir, console):
            result = _run(plan, run_dir, contexts, console, resume is not None, team)
            team.close()  # a failed worker leaves with os._exit instead (gluonfuse.train.dist.leave)
            return result
    finally:
        console.close()


def _join(config):
    """This process's :class:`~gluonfuse.train.dist.Team`: the job's kvstore connects to the scheduler here."""
    if not dist.is_distributed(config.kvstore):
        return dist.Team()
    import mxnet as mx

    return dist.Team(mx.kv.create(config.kvstore))


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


class _stop_signals:
    """How SIGTERM (and in a job SIGINT) stop the run: an exception on one machine, an immediate exit
    in a distributed job (a worker may be blocked in a kvstore call), both recorded in status.json."""

    def __init__(self, team, run_dir, console):
        self.team, self.run_dir, self.console = team, run_dir, console
        self.previous = self.guard = None

    def _record(self, signum):
        message = "terminated by SIGTERM" if signum == signal.SIGTERM else "interrupted (Ctrl-C)"
        self.console.file(f"stopped: {message}")
        if self.team.lead:
            write_status(self.run_dir, state="failed", message=message)

    def __enter__(self):
        if self.team.distributed:
            self.guard = dist.HardExit(self._record).__enter__()
        else:
            self.previous = _catch_sigterm()
        return self

    def __exit__(self, *exc):
        if self.guard is not None:
            self.guard.__exit__(*exc)
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


def _server_schedule(config, updates_per_epoch):
    """dist_async: the lr schedule as an update-count scheduler, which travels to the servers."""
    import mxnet as mx

    if not config.lr_steps:
        return None
    # an update of epoch e is number e * U + 1 .. (e + 1) * U on every server key; the scheduler
    # decays once the count exceeds a step
    return mx.lr_scheduler.MultiFactorScheduler(step=[s * updates_per_epoch for s in config.lr_steps],
                                                factor=config.lr_factor, base_lr=config.lr)


def _run(plan, run_dir, contexts, console, resuming, team):
    from gluonfuse.models import get_model

    config, facts, quiet = plan.config, plan.facts, console.quiet
    train_rec, n_test = facts.train_rec, facts.test_records
    workers, rank, steps = plan.workers, plan.rank, plan.steps
    train_part, test_part, batch_size = plan.train_part, plan.test_part, plan.batch_size
    asynchronous = team.asynchronous
    store = CheckpointStore(run_dir, keep=config.keep_checkpoints)
    latest = store.latest() if resuming else None
    start = latest[0] if latest is not None else 0

    precision.activate(config.dtype)  # before the network is built
    seed_everything(config.seed)
    net = get_model(config.network, **facts.model_kwargs)
    initialize(net, contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    # dist_sync: the servers only add gradients and every worker runs the optimizer (so its state
    # can be checkpointed); float16's loss scaler needs the update on the workers too
    on_kvstore = True if asynchronous else (False if team.distributed or precision.uses_loss_scaling(config.dtype)
                                            else None)
    trainer = make_trainer(net, config.optimizer, config.lr, config.wd, config.momentum, team.kv or config.kvstore,
                           update_on_kvstore=on_kvstore)
    if asynchronous:
        schedule_on_servers(trainer, _server_schedule(config, workers * steps), start * workers * steps)
    precision.init_trainer(trainer, config.dtype)
    step = Step(net, trainer, contexts, num_workers=workers)
    eval_net = evaluation_copy(config.network, facts.model_kwargs, contexts) if on_kvstore is False else net
    # FractalNet: the deepest column alone is evaluated too (SPEC 2), with the same weights
    deepest = net.spec.columns if has_columns(net) and net.spec.columns > 1 else None
    deepest_net = column_view(eval_net, deepest) if deepest else None

    best = {"epoch": None, "test_error": None}
    if latest is not None:
        info = store.load(start, net, trainer, contexts, states=not asynchronous)
        best = info.get("best", best)
        console.both(f"Resumed {run_dir} after epoch {start} of {config.epochs}")
        if asynchronous:
            console.file("dist_async keeps the optimizer state on the servers, where it cannot be saved: "
                         "the momentum restarts from zero")
    rows = [r for r in read_csv_rows(os.path.join(run_dir, "metrics.csv")) if int(r["epoch"]) <= start]
    member_rows = [r for r in read_csv_rows(os.path.join(run_dir, "members.csv")) if int(r["epoch"]) <= start]

    if not resuming:
        record = run_record(config, facts, workers)
        console.echo("Configuration: " + ", ".join(f"{k}={v}" for k, v in record.items()))
        console.both(f"Run directory: {run_dir}")
        console.file(f"start with arguments {record}")  # the authors' first log line
    if team.distributed:
        console.file(f"worker rank {rank} of {workers} (pid {os.getpid()}, kvstore {config.kvstore}): train.rec "
                     f"records {train_part[0]}..{train_part[1] - 1} and test.rec records {test_part[0]}.."
                     f"{test_part[1] - 1}; {batch_size} of the global batch {config.batch_size} per step, "
                     f"{steps} steps per epoch")
    if team.lead:
        write_status(run_dir, state="running", epoch=start, epochs=config.epochs, best_epoch=best["epoch"],
                     best_test_error=best["test_error"], message="")

    try:
        for epoch in range(start, config.epochs):
            lr = lr_at(epoch, config.lr, config.lr_factor, config.lr_steps)
            if not asynchronous:  # dist_async's schedule runs on the servers
                trainer.set_learning_rate(lr)
            seed = epoch_seed(config.seed, epoch)
            seed_everything(seed)
            batches = plan.train_batches(seed, count_labels=team.distributed)
            train_m, seconds, _ = train_epoch(epoch, batches, step, config, facts.classes, console.file, steps, quiet,
                                              train_rec, reduce=team.reduce_meter("train"))
            speed = train_m["count"] / max(seconds, 1e-9)  # the whole job's images per second
            average_running_stats(net)
            team.pull_weights(trainer)
            team.average_running_stats(net)
            if team.distributed:
                console.file(f"Epoch[{epoch}] rank {rank} read {batches.records} records of train.rec (records "
                             f"{train_part[0]}..{train_part[1] - 1}), per class "
                             f"{','.join(map(str, batches.label_counts))}")
                console.file(f"Epoch[{epoch}] rank {rank} parameters sha1 {dist.parameter_digest(net)}")
            if eval_net is not net:
                copy_parameters(net, eval_net, contexts[0])
            test_m = evaluate(eval_net, plan.test_batches(), contexts, facts.classes,
                              expected=n_test, source=facts.test_rec, reduce=team.reduce_meter("test"))
            column = None
            if deepest:
                column = evaluate(deepest_net, plan.test_batches(), contexts, facts.classes,
                                  expected=n_test, reduce=team.reduce_meter("column"))
                column["column"] = deepest
            _epoch_log(console.file, epoch, train_m, test_m, seconds, test_m["members"], column)
            done = epoch + 1
            if team.lead:
                best = _record_epoch(run_dir, config, store, net, trainer, rows, member_rows, best, done, lr, train_m,
                                     test_m, column, deepest, speed, seconds, states=not asynchronous)
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
        if team.lead:
            write_status(run_dir, state="failed", message=msg)
        console.file(msg)
        raise NonFiniteLossError(msg) from None
    except BaseException as exc:
        message = (str(exc) if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
                   if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        if team.lead:
            write_status(run_dir, state="failed", message=message[:500])
        console.file(f"stopped: {message}")
        raise

    if not team.lead:  # rank 0 keeps the records and exports
        console.file("finished")
        return {"run_dir": run_dir, "best_epoch": None, "best_test_error": None, "last": {}, "export": None}
    last = rows[-1] if rows else {}
    paths = export_run(run_dir, config, facts)
    write_status(run_dir, state="finished", epoch=config.epochs, best_epoch=best["epoch"],
                 best_test_error=best["test_error"], message="finished")
    console.both(f"Finished: best test error {100 * (best['test_error'] or 0):.2f}% at epoch {best['epoch']}; "
                 f"exported to {os.path.join(run_dir, 'export')}")
    return {"run_dir": run_dir, "best_epoch": best["epoch"], "best_test_error": best["test_error"],
            "last": last, "export": paths}


def _record_epoch(run_dir, config, store, net, trainer, rows, member_rows, best, done, lr, train_m, test_m, column,
                  deepest, speed, seconds, states=True):
    """Write epoch ``done``'s metrics, checkpoints, status and curves; returns the best epoch so far."""
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
    store.save(done, net, trainer, {"best": best, "lr": lr, "test": test_m}, states=states)
    write_status(run_dir, state="running", epoch=done, best_epoch=best["epoch"],
                 best_test_error=best["test_error"])
    _plot(run_dir, rows)
    return best


def train_epoch(epoch, it, step, config, classes, log, batches, quiet=True, source="train.rec", limit=None, reduce=None):
    """One pass of ``it`` through ``step``; returns (train metrics, seconds, images per second).

    ``log`` receives the authors' per-batch lines every ``config.log_interval`` batches; ``limit``
    stops after that many batches (benchmarks); ``reduce`` turns this process's metric totals into
    the job's (see :meth:`gluonfuse.train.metrics.Meter.result`).
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
            if label_max >= classes or label_max < 0:
                raise DataError(f"{source}: a label {label_max:g} in batch {nbatch} is outside 0..{classes - 1}")
            data, label = split(batch, step.contexts)
            outs = step(data, label, batch.data[0].shape[0])
            if meter is None:
                meter = Meter(classes, len(outs[0]), member_names(step.net, len(outs[0])))
            meter.add([sample_stats(o, y) for o, y in zip(outs, label)], valid)
            try:
                last = meter.flush(keep_last=1)  # reads the previous batch: the devices stay busy
            except NonFiniteLossError:
                raise NonFiniteLossError(f"non-finite training loss in epoch {epoch + 1}, batch {nbatch}") from None
            nbatch += 1
            images += valid
            if last is not None and nbatch % config.log_interval == 0:
                speed = images / max(time.time() - tic, 1e-9)
                log(batch_line(epoch, nbatch, speed, last, meter.running(), classes > 5))
            if last is not None:
                bar.set_postfix(loss=f"{last[0]:.3f}", acc=f"{100 * (1 - last[1]):.1f}%",
                                img_s=f"{images / max(time.time() - tic, 1e-9):.0f}", refresh=False)
            bar.update(1)
            if limit is not None and nbatch >= limit:
                break
        if meter is None:
            raise DataError(f"{source}: no training records")
        try:
            result = meter.result(reduce)
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


def export_run(run_dir, config, facts):
    """Export the run's best and last weights into ``RUN/export`` (symbol, params, metadata)."""
    import mxnet as mx

    from gluonfuse.export import export_model

    run = load_run(run_dir)
    extra = {"mean": list(facts.mean), "std": list(facts.std), "dataset": config.dataset,
             "class_names": facts.meta.get("classes"), "run": os.path.basename(os.path.abspath(run_dir))}
    if config.dtype != "float32":
        extra["trained_dtype"] = config.dtype  # the export itself is float32
    paths = {}
    for which in ("best", "last"):
        net = run.build_network(which, ctx=mx.cpu())
        paths[which] = export_model(net, os.path.join(run_dir, "export"), name=which, input_shape=list(facts.input_shape),
                                    extra=extra)
        if config.dtype != "float32":
            precision.check_float32_export(paths[which]["symbol"], paths[which]["params"])
    return paths
