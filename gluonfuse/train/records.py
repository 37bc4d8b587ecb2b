"""What a run writes after every epoch: one small recorder per file (rank 0 only).

Each recorder has ``record(result, best)`` for an :class:`~gluonfuse.train.epoch.EpochResult` and
the best epoch so far (``{"epoch", "test_error"}``, see :func:`update_best`). They run in the order
of :func:`make_recorders`: the CSV rows first, then the checkpoint (whose ``.json`` commits the
epoch, :mod:`gluonfuse.train.checkpoint`), the status and the curves. A resumed run keeps only the
rows of the epochs its checkpoint holds. Another output (a TensorBoard log) is one more recorder.
"""
import os

from gluonfuse.train.metrics import fmt_error
from gluonfuse.train.rundir import EMA_COLUMNS, MEMBER_COLUMNS, METRIC_COLUMNS, read_csv_rows, write_csv_rows, write_status


def update_best(best, result):
    """The best epoch after ``result``: the one with the lowest test error so far."""
    if best["test_error"] is None or result.test["error"] < best["test_error"]:
        return {"epoch": result.done, "test_error": result.test["error"]}
    return best


class _CsvFile:
    """A per-epoch CSV of the run directory, rewritten whole after every epoch."""

    columns = ()

    def __init__(self, run_dir, name, start):
        self.path = os.path.join(run_dir, name)
        self.rows = [r for r in read_csv_rows(self.path) if int(r["epoch"]) <= start]

    def write(self):
        write_csv_rows(self.path, self.columns, self.rows)


class MetricsFile(_CsvFile):
    """metrics.csv: the epoch's learning rate, training and test numbers and speed (and, with
    ``ema``, the moving average's test numbers in three more columns)."""

    def __init__(self, run_dir, start, ema=False):
        super().__init__(run_dir, "metrics.csv", start)
        self.columns = METRIC_COLUMNS + (EMA_COLUMNS if ema else [])

    def record(self, result, best):
        train, test = result.train, result.test
        self.rows.append({"epoch": result.done, "lr": f"{result.lr:.6g}", "train_loss": f"{train['loss']:.6f}",
                          "train_error": fmt_error(train["error"]), "train_top5_error": fmt_error(train["top5_error"]),
                          "test_loss": f"{test['loss']:.6f}", "test_error": fmt_error(test["error"]),
                          "test_top5_error": fmt_error(test["top5_error"]), "images_per_sec": f"{result.speed:.1f}",
                          "seconds": f"{result.seconds:.2f}"})
        if "ema" in result.tests:
            ema = result.tests["ema"]
            self.rows[-1].update(ema_test_loss=f"{ema['loss']:.6f}", ema_test_error=fmt_error(ema["error"]),
                                 ema_test_top5_error=fmt_error(ema["top5_error"]))
        self.write()


class MembersFile(_CsvFile):
    """members.csv: the test numbers of an ensemble's members and of sub-networks tested alone."""

    columns = MEMBER_COLUMNS

    def __init__(self, run_dir, start):
        super().__init__(run_dir, "members.csv", start)

    def record(self, result, best):
        parts = list(enumerate(result.test["members"]))
        parts += [(ev.member, dict(r, name=ev.name)) for ev, r in result.sub_networks()]
        for index, m in parts:
            self.rows.append({"epoch": result.done, "member": index, "name": m["name"],
                              "test_loss": f"{m['loss']:.6f}", "test_error": fmt_error(m["error"]),
                              "test_top5_error": fmt_error(m["top5_error"])})
        if self.rows:
            self.write()


class Checkpoints:
    """checkpoints/: every epoch (the last ``keep``) and the best one, with the optimizer state unless
    it cannot be read (``states=False``: dist_async keeps it on the servers)."""

    def __init__(self, store, net, trainer, states=True, ema=None):
        self.store, self.net, self.trainer, self.states, self.ema = store, net, trainer, states, ema

    def record(self, result, best):
        if best["epoch"] == result.done:  # a new best
            self.store.save_best(result.done, self.net, {"test": result.test})
        extras = {"ema": self.ema.save} if self.ema is not None else {}
        self.store.save(result.done, self.net, self.trainer, {"best": best, "lr": result.lr, "test": result.test},
                        states=self.states, extras=extras)


class StatusFile:
    """status.json: running, the finished epochs and the best so far."""

    def __init__(self, run_dir):
        self.run_dir = run_dir

    def record(self, result, best):
        write_status(self.run_dir, state="running", epoch=result.done, best_epoch=best["epoch"],
                     best_test_error=best["test_error"])


class Curves:
    """curves.png: loss and error per epoch, from metrics.csv's rows."""

    def __init__(self, run_dir, metrics):
        self.run_dir, self.metrics = run_dir, metrics

    def record(self, result, best):
        from gluonfuse.io import saved_figure

        rows = self.metrics.rows
        epochs = [int(r["epoch"]) for r in rows]  # read back as text after a resume
        with saved_figure(os.path.join(self.run_dir, "curves.png"), ncols=2, figsize=(10, 4)) as (fig, (ax1, ax2)):
            for key, label in (("train_loss", "train"), ("test_loss", "test")):
                ax1.plot(epochs, [float(r[key]) for r in rows], label=label)
            for key, label in (("train_error", "train"), ("test_error", "test")):
                ax2.plot(epochs, [100 * float(r[key]) for r in rows], label=label)
            ax1.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
            ax2.set(xlabel="epoch", ylabel="top-1 error (%)", title="error")
            for ax in (ax1, ax2):
                ax.grid(alpha=0.3)
                ax.legend()
            fig.suptitle(os.path.basename(os.path.abspath(self.run_dir)))


class TensorBoard:
    """TensorBoard event files (``--tensorboard``): per epoch here, per iteration through the training
    pass's ``on_iteration``."""

    def __init__(self, run_dir, training):
        from gluonfuse.train.tensorboard import TensorBoardLog

        config = training.plan.config
        self.log = TensorBoardLog(config.tensorboard or os.path.join(run_dir, "tb"), config.histogram_every)
        self.net, steps = training.net, training.plan.steps
        training.training_pass.on_iteration = lambda epoch, i, loss, lr: self.log.iteration(epoch * steps + i, loss, lr)

    def record(self, result, best):
        self.log.record(result, best, net=self.net)


def make_recorders(run_dir, store, training, start):
    """The recorders of a run resumed after epoch ``start`` (0: a new run), in the order they write."""
    metrics = MetricsFile(run_dir, start, ema=training.ema is not None)
    recorders = [metrics, MembersFile(run_dir, start),
                 Checkpoints(store, training.net, training.trainer, states=not training.asynchronous, ema=training.ema),
                 StatusFile(run_dir), Curves(run_dir, metrics)]
    if training.plan.config.tensorboard is not None:
        recorders.append(TensorBoard(run_dir, training))
    return recorders
