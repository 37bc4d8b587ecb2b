"""A training run from start to finish: :func:`train`.

A session joins its job (a single process, or one worker of a distributed job, see
:mod:`gluonfuse.train.dist`), reads the dataset into the run's plan (:mod:`gluonfuse.train.plan`),
creates or reopens the run directory, logs to the console and ``log.txt``, builds the network and
trainer (:mod:`gluonfuse.train.build`), runs the epochs (:mod:`gluonfuse.train.epoch`), hands each
epoch's result to the recorders (:mod:`gluonfuse.train.records`) and exports the best and last
weights. SIGTERM (and in a job SIGINT), Ctrl-C, errors and a non-finite loss are recorded in
``status.json`` before the run stops. Only rank 0 writes the run directory; rank r > 0 logs to
``worker-<r>.log``.
"""
import contextlib
import dataclasses
import logging
import os
import signal
import threading

from gluonfuse.errors import ArgumentError, DataError, NonFiniteLossError
from gluonfuse.io import write_json
from gluonfuse.train import dist, liveness, precision
from gluonfuse.train.build import build_training
from gluonfuse.train.checkpoint import CheckpointStore
from gluonfuse.train.config import TrainConfig, make_contexts
from gluonfuse.train.epoch import PassLog, epoch_lines, summary_line
from gluonfuse.train.plan import plan_run, read_facts, run_record
from gluonfuse.train.records import MetricsFile, make_recorders, update_best
from gluonfuse.train.rundir import create_run_dir, load_run, run_base_name, write_status


def train(config=None, resume=None, quiet=False, echo=print, overrides=None):
    """Train ``config`` into a new run directory, or continue the run at ``resume``.

    ``overrides`` (resume only): ``epochs`` and ``contexts`` may change on resume. Returns a dict
    with the run directory, best and last test numbers. Raises NonFiniteLossError (the run is
    marked failed; the last good checkpoint stays) and the usual ValueError/DataError.

    With a ``dist_*`` kvstore the process must be a worker of a job (``gluonfuse launch``); every
    worker calls this with the same arguments. A caller must then leave with ``os._exit`` when this
    raises (:func:`gluonfuse.train.dist.leave`): a normal exit waits forever for dead peers.
    """
    config = _starting_config(config, resume, overrides)
    if resume is not None:
        _check_not_running(resume, echo)
    config.validate(dist.job_size(config.kvstore))
    precision.check_support(config.dtype)
    contexts = make_contexts(config.contexts)
    team = join_team(config.kvstore)
    if resume is None:
        # without --seed every worker drew its own seed (resolve_config); the job trains, and
        # config.json records, rank 0's, so all ranks shuffle alike and --resume reproduces each
        config.seed = team.broadcast_int("seed", config.seed)
    plan = plan_run(config, _read_facts(config, team, echo), team.size, team.rank, len(contexts))
    run_dir = _open_run_dir(plan, team, resume)
    console = Console.of_worker(run_dir, team, echo, quiet)
    try:
        with _stop_signals(team, run_dir, console):
            result = Session(plan, team, contexts, run_dir, console, resuming=resume is not None).run()
            team.close()  # a failed worker leaves with os._exit instead (gluonfuse.train.dist.leave)
            return result
    finally:
        console.close()


def _starting_config(config, resume, overrides):
    if (config is None) == (resume is None):
        raise ArgumentError("give config or resume (a run directory), exactly one of them", "resume")
    if resume is None:
        return config
    stored = load_run(resume).config
    config = TrainConfig.from_dict(stored, source=os.path.join(resume, "config.json"))
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(config, key, value)
    # a warm-up keeps its fraction of the run when --epochs changes, as cosine, linear and onecycle
    # do (config.json before warmup_fraction: the stored epochs give it)
    if config.epochs != stored["epochs"]:
        config.warmup_epochs = stored.get("warmup_fraction", config.warmup_epochs / stored["epochs"]) * config.epochs
    return config


def _check_not_running(run_dir, echo):
    """Refuse to resume a run whose process is alive; say so when taking over one that died.

    Every worker of a distributed job checks before it joins the job, so before rank 0 records
    itself as the run's new process."""
    status = load_run(run_dir).status
    state = liveness.state_of(status)
    if state == "running" and "pid" in status:
        raise DataError(f"{run_dir} is being trained by process {status['pid']} on {status.get('host')}; "
                        "stop it first (or wait for it to finish) before --resume")
    if state in ("died", "stale"):
        echo(f"{run_dir}: the run's process {liveness.describe(status, state)}; taking the run over")


def join_team(kvstore):
    """This process's :class:`~gluonfuse.train.dist.Team`: the job's kvstore connects to the scheduler here."""
    if not dist.is_distributed(kvstore):
        return dist.Team()
    import mxnet as mx

    return dist.Team(mx.kv.create(kvstore))


def _read_facts(config, team, echo):
    # one worker prepares an embedded dataset on the fly; the others wait and then read it
    if team.lead:
        facts = read_facts(config, echo=echo)
    team.barrier()
    if not team.lead:
        facts = read_facts(config, echo=lambda *args, **kwargs: None)
    return facts


def _open_run_dir(plan, team, resume):
    """The run directory (rank 0 creates a new one and tells the others its number); rank 0 writes
    config.json and dataset_meta.json into it."""
    config, facts = plan.config, plan.facts
    if resume is not None:
        run_dir = resume
    else:
        base = run_base_name(config.network, facts.spec, config.dataset)
        number = int(create_run_dir(config.out_dir, base).rsplit("_", 1)[1]) if team.lead else 0
        # rank 0 picked the directory; the others learn its number (the name is the same everywhere)
        run_dir = os.path.join(config.out_dir, f"{base}_{team.broadcast_int('run_dir', number)}")
        os.makedirs(run_dir, exist_ok=True)
    if team.lead:
        write_json(os.path.join(run_dir, "config.json"), run_record(config, facts, plan.workers))
        write_json(os.path.join(run_dir, "dataset_meta.json"), facts.meta)
    return run_dir


@dataclasses.dataclass
class Session:
    """One worker's run in its run directory: the epochs from the last checkpoint on, recorded."""

    plan: object  # gluonfuse.train.plan.RunPlan
    team: dist.Team
    contexts: list
    run_dir: str
    console: "Console"
    resuming: bool = False

    def run(self):
        """Build, resume, train every remaining epoch, export; returns train()'s result."""
        config = self.plan.config
        store = CheckpointStore(self.run_dir, keep=config.keep_checkpoints)
        latest = self._newest_intact(store) if self.resuming else None
        start = latest[0] if latest is not None else 0
        training = build_training(self.plan, self.team, self.contexts, start,
                                  PassLog(self.console.file, config.log_interval, config.epochs, self.console.quiet))
        best = self._resume(store, training, latest)
        self._announce(start, best)
        recorders = make_recorders(self.run_dir, store, training, start) if self.team.lead else []
        try:
            with self._heartbeat():
                best = self._epochs(training, start, best, recorders)
        except NonFiniteLossError as exc:
            raise self._failed(f"{exc}; training stopped. {_last_good(store)}") from None
        except BaseException as exc:
            self._stopped(exc)
            raise
        return self._finish(best, recorders)

    def _epochs(self, training, start, best, recorders):
        """Train epochs ``start``.. to the end, each recorded; returns the best epoch."""
        config = self.plan.config
        for epoch in range(start, config.epochs):
            result = training.run_epoch(epoch, log=self.console.file)
            for line in epoch_lines(result):
                self.console.file(line)
            best = update_best(best, result)
            for recorder in recorders:
                recorder.record(result, best)
            self.console.echo(summary_line(result, config.epochs))
        return best

    def _heartbeat(self):
        """Rank 0 renews status.json's heartbeat while the epochs run (gluonfuse.train.liveness)."""
        if not self.team.lead:
            return contextlib.nullcontext()
        return liveness.Heartbeat(lambda **fields: write_status(self.run_dir, **fields))

    def _newest_intact(self, store):
        """The newest checkpoint that verifies, naming each damaged one skipped (and a damaged best)."""
        latest, problems = store.newest_intact()
        fallback = f"resuming from epoch {latest[0]}" if latest else "starting again from epoch 0"
        for problem in problems:
            self.console.both(f"{problem}; {fallback}")
        best_problem = store.verify("best") if os.path.isfile(os.path.join(store.dir, "best.json")) else None
        if best_problem:
            self.console.both(f"{best_problem}: the best checkpoint is kept as it is (not exported, not "
                              "used by eval) until a later epoch beats it")
        return latest

    def _resume(self, store, training, latest):
        """Load the latest checkpoint (when resuming); returns the best epoch so far."""
        best = {"epoch": None, "test_error": None}
        if latest is None:
            return best
        info = store.load(latest[0], training.net, training.trainer, self.contexts, states=not training.asynchronous)
        if training.ema is not None and store.extra_path(latest[0], "ema"):
            training.ema.load(store.extra_path(latest[0], "ema"))
        self.console.both(f"Resumed {self.run_dir} after epoch {latest[0]} of {self.plan.config.epochs}")
        if training.asynchronous:
            self.console.file("dist_async keeps the optimizer state on the servers, where it cannot be saved: "
                              "the momentum restarts from zero")
        return info.get("best", best)

    def _announce(self, start, best):
        plan, team, console = self.plan, self.team, self.console
        if not self.resuming:
            record = run_record(plan.config, plan.facts, plan.workers)
            console.echo("Configuration: " + ", ".join(f"{k}={v}" for k, v in record.items()))
            console.both(f"Run directory: {self.run_dir}")
            console.file(f"start with arguments {record}")  # the authors' first log line
        if team.distributed:
            (train0, train1), (test0, test1) = plan.train_part, plan.test_part
            console.file(f"worker rank {team.rank} of {team.size} (pid {os.getpid()}, kvstore {plan.config.kvstore}): "
                         f"train.rec records {train0}..{train1 - 1} and test.rec records {test0}..{test1 - 1}; "
                         f"{plan.batch_size} of the global batch {plan.config.batch_size} per step, "
                         f"{plan.steps} steps per epoch")
        if team.lead:
            write_status(self.run_dir, state="running", epoch=start, epochs=plan.config.epochs,
                         best_epoch=best["epoch"], best_test_error=best["test_error"], message="",
                         **liveness.owner())

    def _failed(self, message):
        """The run stops on a non-finite loss: recorded, and the error to raise."""
        if self.team.lead:
            write_status(self.run_dir, state="failed", message=message)
        self.console.file(message)
        return NonFiniteLossError(message)

    def _stopped(self, exc):
        message = (str(exc) if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
                   if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}")
        if self.team.lead:
            write_status(self.run_dir, state="failed", message=message[:500])
        self.console.file(f"stopped: {message}")

    def _finish(self, best, recorders):
        """Export (rank 0) and mark the run finished; train()'s result."""
        run_dir = self.run_dir
        if not self.team.lead:  # rank 0 keeps the records and exports
            self.console.file("finished")
            return {"run_dir": run_dir, "best_epoch": None, "best_test_error": None, "last": {}, "export": None}
        rows = next(r for r in recorders if isinstance(r, MetricsFile)).rows
        paths = export_run(run_dir, self.plan.config, self.plan.facts, notice=self.console.both)
        write_status(run_dir, state="finished", epoch=self.plan.config.epochs, best_epoch=best["epoch"],
                     best_test_error=best["test_error"], message="finished")
        self.console.both(f"Finished: best test error {100 * (best['test_error'] or 0):.2f}% at epoch "
                          f"{best['epoch']}; exported to {os.path.join(run_dir, 'export')}")
        return {"run_dir": run_dir, "best_epoch": best["epoch"], "best_test_error": best["test_error"],
                "last": rows[-1] if rows else {}, "export": paths}


def _last_good(store):
    last = store.latest()
    where = f"epoch {last[0]}" if last else "none yet"
    return (f"The last good checkpoint ({where}) is intact in {store.dir}. Lower the learning rate or check the "
            "data, then start again (or resume).")


def export_run(run_dir, config, facts, notice=print):
    """Export the run's best and last weights into ``RUN/export`` (symbol, params, metadata).

    A damaged best checkpoint is not exported (``notice`` says which file); the last one is."""
    import mxnet as mx

    from gluonfuse.export import export_model

    run = load_run(run_dir)
    extra = {"mean": list(facts.mean), "std": list(facts.std), "dataset": config.dataset,
             "class_names": facts.meta.get("classes"), "run": os.path.basename(os.path.abspath(run_dir))}
    if config.dtype != "float32":
        extra["trained_dtype"] = config.dtype  # the export itself is float32
    paths = {}
    for which in ("best", "last"):
        try:
            net = run.build_network(which, ctx=mx.cpu())
        except DataError as exc:
            if which != "best":
                raise
            notice(f"{exc}; the best weights are not exported")
            continue
        weights = "raw"
        if which == "last" and _ema_is_better(run):
            net.load_parameters(CheckpointStore(run_dir).extra_path(run.final["epoch"], "ema"), ctx=mx.cpu())
            weights = "ema"
        paths[which] = export_model(net, os.path.join(run_dir, "export"), name=which,
                                    input_shape=list(facts.input_shape), extra=dict(extra, weights=weights))
        if config.dtype != "float32":
            precision.check_float32_export(paths[which]["symbol"], paths[which]["params"])
    return paths


def _ema_is_better(run):
    """Whether the last epoch's moving average (``--ema``) tested better than the raw weights."""
    ema = run.final.get("ema_test_error") if run.metrics else None
    return ema not in (None, "") and float(ema) < float(run.final["test_error"])


# ---------------------------------------------------------------- console and signals

class Console:
    """The run's messages: ``file`` to its log file, ``both`` to the log file and ``echo``."""

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

    @classmethod
    def of_worker(cls, run_dir, team, echo, quiet):
        """Rank 0 logs to log.txt and ``echo``; rank r > 0 only to worker-<r>.log."""
        if team.lead:
            return cls(run_dir, echo, quiet)
        return cls(run_dir, lambda *args, **kwargs: None, True, log_name=f"worker-{team.rank}.log")

    def file(self, msg):
        self.log.info(msg)

    def both(self, msg):
        self.log.info(msg)
        self.echo(msg)

    def close(self):
        self.log.removeHandler(self.handler)
        self.handler.close()


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
