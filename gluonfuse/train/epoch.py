"""One epoch of a run: the training pass, the test passes and the lines they log.

:meth:`Training.run_epoch` is the whole epoch: reseed, train, gather the weights, test.
:class:`TrainingPass` feeds a run's batches to its :class:`~gluonfuse.train.step.Step`. Per batch:
the learning rate of this iteration is set, the labels are checked, the batch is split over the
devices, an optional transform rewrites it, the step runs, and the metrics are read one batch late
so the devices never wait for Python. After the pass, every :class:`Evaluator` (the network, plus e.g.
FractalNet's deepest column) is tested on the whole test set (:func:`evaluate_all`); an
:class:`EpochResult` carries all numbers to the recorders (:mod:`gluonfuse.train.records`) and to the
log lines below, which follow the authors' MXNet FeedForward format (their get_results.py parses it).
"""
import dataclasses
import functools
import time
from typing import Callable, Optional

from gluonfuse import faults
from gluonfuse.errors import DataError, NonFiniteLossError
from gluonfuse.train import dist
from gluonfuse.train.checkpoint import epoch_seed, seed_everything
from gluonfuse.train.evaluate import evaluate, member_names, split
from gluonfuse.train.metrics import Meter, sample_stats
from gluonfuse.train.step import average_running_stats, copy_parameters


@dataclasses.dataclass
class Training:
    """The parts of a run the epoch loop drives (:func:`gluonfuse.train.build.build_training` makes them)."""

    plan: object  # gluonfuse.train.plan.RunPlan
    team: object  # gluonfuse.train.dist.Team
    contexts: list
    net: object  # the trained network (checkpointed and exported)
    trainer: object
    schedule: Callable  # schedule(epoch, iteration) -> learning rate
    training_pass: "TrainingPass"
    evaluators: list  # tested after every epoch; the first is the network itself
    eval_net: object  # the network as evaluated: ``net`` itself, or a copy (see step.evaluation_copy)
    ema: object = None  # gluonfuse.train.ema.WeightAverage (``--ema``), evaluated as 'ema'

    @property
    def asynchronous(self):
        """dist_async: the servers run the optimizer and its schedule."""
        return self.team.asynchronous

    def run_epoch(self, epoch, log=None):
        """Train (0-based) ``epoch``, bring the weights together and test them; returns an EpochResult.

        ``log`` receives the per-worker lines of a distributed job.
        """
        plan, team = self.plan, self.team
        seed = epoch_seed(plan.config.seed, epoch)
        seed_everything(seed)  # a resumed run sees the same shuffling, crops and drop-path draws
        batches = plan.train_batches(seed, count_labels=team.distributed)
        # dist_async's schedule runs on the servers
        lr = None if self.asynchronous else functools.partial(self.schedule, epoch)
        train, seconds, _ = self.training_pass(epoch, batches, lr=lr)
        self.gather()
        if team.distributed and log is not None:
            self._log_worker(epoch, batches, log)
        tests = evaluate_all(self.evaluators, plan, self.contexts, team)
        return EpochResult(epoch, self.schedule(epoch, 0), train, tests, self.evaluators, seconds)

    def gather(self):
        """Bring the trained weights together before they are tested and saved: running statistics
        averaged over the devices and workers, dist_async's weights pulled from the servers, the
        evaluation copy refreshed."""
        average_running_stats(self.net)
        self.team.pull_weights(self.trainer)
        self.team.average_running_stats(self.net)
        if self.eval_net is not self.net:
            copy_parameters(self.net, self.eval_net, self.contexts[0])
        if self.ema is not None:
            self.ema.copy_to(self.ema.eval_net)

    def _log_worker(self, epoch, batches, log):
        begin, end = self.plan.train_part
        log(f"Epoch[{epoch}] rank {self.team.rank} read {batches.records} records of train.rec (records "
            f"{begin}..{end - 1}), per class {','.join(map(str, batches.label_counts))}")
        log(f"Epoch[{epoch}] rank {self.team.rank} parameters sha1 {dist.parameter_digest(self.net)}")


@dataclasses.dataclass
class PassLog:
    """Where a training pass reports: the authors' per-batch lines and a progress bar."""

    log: Optional[Callable] = None  # receives a batch line every ``interval`` batches
    interval: int = 50
    epochs: int = 0  # shown by the progress bar as 'epoch e/epochs'
    quiet: bool = True  # no progress bar


class TrainingPass:
    """Training passes of ``step`` over batches of a dataset with ``classes`` classes.

    ``transform(data, label) -> (data, targets, label)`` rewrites each batch (lists, one entry per
    device) before the step: the loss sees ``targets`` (e.g. mixup's soft ones), the training error
    ``label`` (e.g. the dominant one, see :mod:`gluonfuse.train.regularize`); ``reduce`` turns this process's metric totals into the job's (see
    :meth:`gluonfuse.train.metrics.Meter.result`); ``source`` names the data in errors;
    ``after_step()`` runs after every update (the weights' moving average).
    """

    def __init__(self, step, classes, report=None, transform=None, reduce=None, source="train.rec", after_step=None):
        self.step, self.classes = step, classes
        self.report = report or PassLog()
        self.transform, self.reduce, self.source = transform, reduce, source
        self.after_step = after_step
        self.on_iteration = None  # on_iteration(epoch, iteration, loss, lr), one batch late (TensorBoard)

    def __call__(self, epoch, batches, lr=None):
        """One pass over ``batches``; ``lr(iteration)`` sets each iteration's learning rate (None:
        leave the trainer's). Returns (metrics, seconds, images per second)."""
        meter, bar = None, _Progress(epoch, getattr(batches, "steps", None), self.report)
        try:
            rates = []
            for nbatch, batch in enumerate(batches):
                faults.point("batch", f"{self.source} epoch {epoch} batch {nbatch}")
                if lr is not None:
                    self._set_lr(lr(nbatch))
                rates = (rates + [self.step.trainer.learning_rate])[-2:]
                outs, label, valid = self._step(batch, nbatch)
                if meter is None:
                    meter = Meter(self.classes, len(outs[0]), member_names(self.step.net, len(outs[0])))
                meter.add([sample_stats(o, y) for o, y in zip(outs, label)], valid)
                last = self._read(meter.flush, epoch, nbatch, keep_last=1)
                bar.batch(valid, last, meter, self.classes > 5)
                if self.on_iteration is not None and last is not None:
                    self.on_iteration(epoch, nbatch - 1, last[0], rates[0])
            if meter is None:
                raise DataError(f"{self.source}: no training records")
            result = self._read(meter.result, epoch, bar.batches - 1, self.reduce)
        finally:
            bar.close()
        return result, bar.seconds(), bar.speed()

    def _step(self, batch, nbatch):
        label_max = float(batch.label[0].max().asscalar())
        if label_max >= self.classes or label_max < 0:
            raise DataError(f"{self.source}: a label {label_max:g} in batch {nbatch} is outside "
                            f"0..{self.classes - 1}")
        data, label = split(batch, self.step.contexts)
        targets = label
        if self.transform is not None:
            data, targets, label = self.transform(data, label)
        outs = self.step(data, targets, batch.data[0].shape[0])
        if self.after_step is not None:
            self.after_step()
        return outs, label, batch.data[0].shape[0] - batch.pad

    def _set_lr(self, value):
        trainer = self.step.trainer
        if trainer.learning_rate != value:
            trainer.set_learning_rate(value)

    @staticmethod
    def _read(read, epoch, nbatch, *args, **kwargs):
        try:
            return read(*args, **kwargs)
        except NonFiniteLossError:
            raise NonFiniteLossError(f"non-finite training loss in epoch {epoch + 1}, batch {nbatch}") from None


class _Progress:
    """A pass's clock, image count, batch lines and progress bar."""

    def __init__(self, epoch, total, report):
        from tqdm import tqdm

        self.epoch, self.report = epoch, report
        self.batches, self.images, self.tic = 0, 0, time.time()
        self.bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{report.epochs}", unit="batch", disable=report.quiet,
                        leave=False, dynamic_ncols=True)

    def batch(self, valid, last, meter, top5):
        """Count a batch; ``last``: the means of the newest batch read back (None before the first)."""
        self.batches += 1
        self.images += valid
        if last is not None:
            if self.report.log is not None and self.batches % self.report.interval == 0:
                self.report.log(batch_line(self.epoch, self.batches, self.speed(), last, meter.running(), top5))
            self.bar.set_postfix(loss=f"{last[0]:.3f}", acc=f"{100 * (1 - last[1]):.1f}%",
                                 img_s=f"{self.speed():.0f}", refresh=False)
        self.bar.update(1)

    def seconds(self):
        return time.time() - self.tic

    def speed(self):
        return self.images / max(self.seconds(), 1e-9)

    def close(self):
        self.bar.close()


def batch_line(epoch, nbatch, speed, last, running, top5):
    """The authors' per-batch log line: this batch's value (the epoch's running mean so far)."""
    line = (f"Epoch[{epoch}] Batch [{nbatch}]\tSpeed: {speed:.0f}\tloss: {last[0]:.4f}({running[0]:.4f})"
            f"\ttop1: {100 * (1 - last[1]):.4f}({100 * (1 - running[1]):.4f})")
    if top5:
        line += f"\ttop5: {100 * (1 - last[2]):.4f}({100 * (1 - running[2]):.4f})"
    return line


# ---------------------------------------------------------------- the test passes

@dataclasses.dataclass
class Evaluator:
    """A network tested on the whole test set after every epoch.

    The first evaluator of a run is the trained network (``metrics.csv``; an ensemble's members go
    to ``members.csv``); others are sub-networks with the same weights, each one ``members.csv``
    row as member ``member`` named ``name`` (FractalNet's deepest column: ``column3``).
    """

    name: str  # 'test' for the network itself; also the key of the job-wide reduction
    net: object
    member: Optional[int] = None
    label: str = ""  # how the epoch lines name it, e.g. 'column 3'


def evaluate_all(evaluators, plan, contexts, team):
    """``{evaluator name: Meter.result()}`` over the whole test set (each worker tests its part)."""
    facts = plan.facts
    return {ev.name: evaluate(ev.net, plan.test_batches(), contexts, facts.classes, expected=facts.test_records,
                              source=facts.test_rec, reduce=team.reduce_meter(ev.name))
            for ev in evaluators}


@dataclasses.dataclass
class EpochResult:
    """Everything one epoch measured: what the recorders write and the log lines show."""

    epoch: int  # 0-based: the epoch that just finished
    lr: float  # its learning rate (at its first iteration)
    train: dict  # Meter.result() of the training pass (the job's)
    tests: dict  # evaluator name -> Meter.result(); 'test' is the network's own
    evaluators: list
    seconds: float

    @property
    def done(self):
        """Finished epochs: the number metrics.csv and the checkpoints use."""
        return self.epoch + 1

    @property
    def test(self):
        return self.tests["test"]

    @property
    def speed(self):
        """The whole job's training images per second."""
        return self.train["count"] / max(self.seconds, 1e-9)

    def sub_networks(self):
        """``(evaluator, result)`` of each sub-network evaluated on its own (not the network)."""
        return [(ev, self.tests[ev.name]) for ev in self.evaluators if ev.member is not None]


def epoch_lines(result):
    """The authors' end-of-epoch log lines."""
    e, train, test = result.epoch, result.train, result.test
    lines = [f"Epoch[{e}] Train-cross-entropy={train['loss']:.6f}",
             f"Epoch[{e}] Train-accuracy={1 - train['error']:.6f}",
             f"Epoch[{e}] Time cost={result.seconds:.3f}",
             f"Epoch[{e}] Validation-cross-entropy={test['loss']:.6f}",
             f"Epoch[{e}] Validation-accuracy={1 - test['error']:.6f}"]
    if test["top5_error"] is not None:
        lines.append(f"Epoch[{e}] Validation-top_k_accuracy_5={1 - test['top5_error']:.6f}")
    lines += [f"Epoch[{e}] Validation-member-{m['name']}-accuracy={1 - m['error']:.6f}" for m in test["members"]]
    lines += [f"Epoch[{e}] Validation-{ev.label.replace(' ', '-')}-accuracy={1 - r['error']:.6f}"
              for ev, r in result.sub_networks()]
    if "ema" in result.tests:
        lines.append(f"Epoch[{e}] Validation-EMA-accuracy={1 - result.tests['ema']['error']:.6f}")
    return lines


def summary_line(result, epochs):
    """The epoch's line on the console."""
    train, test = result.train, result.test
    line = (f"epoch {result.done}/{epochs}  lr {result.lr:.4g}  train loss {train['loss']:.4f} "
            f"error {100 * train['error']:.2f}%  test loss {test['loss']:.4f} error {100 * test['error']:.2f}%")
    if test["top5_error"] is not None:
        line += f" top-5 {100 * test['top5_error']:.2f}%"
    if test["members"]:
        line += "  members " + " ".join(f"{m['name']}:{100 * m['error']:.1f}%" for m in test["members"])
    for ev, r in result.sub_networks():
        line += f"  {ev.label}: {100 * r['error']:.2f}%"
    if "ema" in result.tests:
        line += f"  EMA test error {100 * result.tests['ema']['error']:.2f}%"
    return line + f"  {result.speed:.0f} img/s"
