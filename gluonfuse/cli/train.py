"""Commands to train, evaluate and use networks: train, eval, predict."""
import functools
import json
import os

import click

from gluonfuse.cli.common import model_options
from gluonfuse.errors import ArgumentError
from gluonfuse.train.config import DEFAULT_RECIPE, OPTIMIZERS, RECIPES, option_default, recipe_help
from gluonfuse.train.schedule import SCHEDULES


def speaks_flags(fn):
    """Run a command's body so that library errors name this command's flags instead of arguments.

    The library's argument names are the click parameter names (``batch_size`` is ``--batch-size``,
    ``preprocess_threads`` is ``--threads``); the devices are ``gpus``/``cpus``. The exit code stays 2.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArgumentError as exc:
            ctx = click.get_current_context(silent=True)
            if ctx is None:
                raise
            flags = {p.name: p.opts[0] for p in ctx.command.params if p.opts and p.opts[0].startswith("--")}
            raise ValueError(exc.with_flags(flags)) from None

    return wrapper


def device_options(fn):
    """--gpus / --cpus, passed on as ``devices`` (a list of context names)."""

    @click.option("--gpus", default=None, metavar="IDS", help="GPUs to use, e.g. 0,1 (needs a CUDA build of mxnet).")
    @click.option("--cpus", type=int, default=None, metavar="N",
                  help="Use N CPU contexts (they share the cores; for testing the multi-device path). "
                       "Default: one CPU.")
    @functools.wraps(fn)
    def wrapper(*args, gpus, cpus, **kwargs):
        from gluonfuse.train.config import device_names

        devices = None if gpus is None and cpus is None else device_names(gpus, cpus)
        return fn(*args, devices=devices, **kwargs)

    return wrapper


def _floats(text, name):
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise ValueError(f"{name} takes three comma-separated numbers (R,G,B on the 0..255 scale), got {text!r}")
    return values


@click.command("train")
@speaks_flags
@model_options(network_required=False)
@click.option("--dataset", default=None,
              help="cifar10 (default), cifar100, svhn, mnist, digits, folder (a prepared folder dataset), ...: "
                   "picks the dataset defaults and the default --data-dir data/DATASET.")
@click.option("--data-dir", default=None, help="Prepared dataset directory (default data/DATASET). "
                                               "'digits' is prepared there on the fly when missing.")
@click.option("--recipe", default=None,
              help=f"Training recipe: {', '.join(RECIPES)} (default {DEFAULT_RECIPE}, docs/recipes.md). The defaults "
                   "of the options below are the recipe's, per --recipe in [brackets], then per --dataset.")
@click.option("--epochs", type=int, default=None, help=f"Epochs {recipe_help('epochs')}.")
@click.option("--batch-size", type=int, default=None,
              help="GLOBAL batch size, split across the workers of a distributed job and then across the "
                   f"devices {recipe_help('batch_size')}.")
@click.option("--test-batch-size", type=int, default=None, help="Evaluation batch size (default: --batch-size).")
@click.option("--lr", type=float, default=None, help=f"Initial learning rate {recipe_help('lr')}.")
@click.option("--lr-factor", type=float, default=None,
              help=f"Multiply the lr by this at each step {recipe_help('lr_factor')}.")
@click.option("--lr-steps", default=None, metavar="E1,E2,..",
              help=f"Epochs after which the lr drops; by default these fractions of --epochs "
                   f"{recipe_help('lr_steps')}.")
@click.option("--wd", type=float, default=None, help=f"Weight decay on every parameter {recipe_help('wd')}.")
@click.option("--momentum", type=float, default=None, help=f"Momentum {recipe_help('momentum')}.")
@click.option("--optimizer", default=None, help=f"{', '.join(OPTIMIZERS)} {recipe_help('optimizer')}.")
@click.option("--seed", type=int, default=None,
              help="Random seed (default: a fresh one per run, saved in config.json; give one to repeat a run).")
@click.option("--aug-type", type=int, default=None,
              help="0 none, 1 pad-4 crop + mirror, 2 scale/aspect/colour + crop (ImageNet) "
                   f"{recipe_help('aug_type')}.")
@click.option("--lr-schedule", default=None, metavar="|".join(SCHEDULES),
              help="step: the recipe's drops at --lr-steps; cosine and linear: from --lr down to 0; onecycle: "
                   "up from lr/25 over the first 30% of the run, then linearly to 0. Set every iteration "
                   f"{recipe_help('lr_schedule')}.")
@click.option("--warmup-epochs", type=float, default=None, metavar="E",
              help="Raise the lr linearly from --warmup-lr to --lr over the first E epochs, every iteration; by "
                   f"default this fraction of --epochs {recipe_help('warmup_epochs')}.")
@click.option("--warmup-lr", type=float, default=None, help=f"Where the warm-up starts (default {option_default('warmup_lr'):g}).")
@click.option("--label-smoothing", type=float, default=None, metavar="EPS",
              help=f"Train against (1-EPS) one-hot + EPS/classes targets; 0 is off {recipe_help('label_smoothing')}.")
@click.option("--mixup", type=float, default=None, metavar="ALPHA",
              help="Mix pairs of images with Beta(ALPHA, ALPHA) weights (default 0: off). The train error is "
                   "counted against each mixed image's dominant label.")
@click.option("--cutmix", type=float, default=None, metavar="ALPHA",
              help="Paste a box of another image, area from Beta(ALPHA, ALPHA) (default 0: off); with --mixup "
                   "too, each batch takes one of the two.")
@click.option("--mix-prob", type=float, default=None,
              help=f"Chance that a batch is mixed by --mixup/--cutmix (default {option_default('mix_prob'):g}).")
@click.option("--cutout", type=int, default=None, metavar="SIZE",
              help="Erase one SIZE x SIZE square per training image to the mean colour; 0 is off "
                   f"{recipe_help('cutout')}.")
@click.option("--no-wd-bn-bias", is_flag=True, default=None,
              help="Weight decay only on convolution and Dense weights, not on BatchNorm gamma/beta or biases.")
@click.option("--grad-clip", type=float, default=None, metavar="NORM",
              help="Clip the global gradient norm to NORM (default 0: off).")
@click.option("--ema", type=float, default=None, metavar="DECAY",
              help="Keep a moving average of the weights and BatchNorm statistics with this decay in (0, 1), "
                   "e.g. 0.999; tested every epoch beside the weights (metrics.csv ema_* columns), checkpointed, "
                   f"and exported as 'last' when it tests better (export meta: weights ema); 0 is off {recipe_help('ema')}.")
@click.option("--tensorboard", is_flag=False, flag_value="", default=None, metavar="[DIR]",
              help="Write TensorBoard event files to DIR (default RUN_DIR/tb): loss and lr per iteration, errors, "
                   "top-5 and images/s per epoch, the graph, weight histograms (needs gluonfuse[tensorboard]).")
@click.option("--histogram-every", type=int, default=None, metavar="K",
              help=f"Weight histograms every K epochs (default {option_default('histogram_every')}).")
@device_options
@click.option("--kvstore", default=None,
              help=f"Gradient aggregation: device, local or nccl on one machine; dist_sync, dist_device_sync or "
                   f"dist_async for a job started by 'gluonfuse launch' (default {option_default('kvstore')}).")
@click.option("--dtype", default=None,
              help="float32, or float16 on GPUs or bfloat16 on CPUs with native bfloat16: mixed precision "
                   f"through mxnet.contrib.amp; exports stay float32 (default {option_default('dtype')}).")
@click.option("--out", "out_dir", default=None,
              help=f"Where run directories are created (default {option_default('out_dir')}/).")
@click.option("--keep-checkpoints", type=int, default=None,
              help=f"Epoch checkpoints kept besides best (default {option_default('keep_checkpoints')}).")
@click.option("--threads", "preprocess_threads", type=int, default=None,
              help=f"Decoding threads of the input pipeline (default {option_default('preprocess_threads')}).")
@click.option("--log-interval", type=int, default=None,
              help=f"Log a batch line every N batches (default {option_default('log_interval')}).")
@click.option("--resume", default=None, metavar="RUN_DIR",
              help="Continue RUN_DIR from its newest intact checkpoint (damaged ones are named and skipped); "
                   "a run whose process died is taken over, a live one refused. Only --epochs, "
                   "--gpus/--cpus and --quiet apply.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; log lines only.")
def train_cmd(network, model_kwargs, devices, resume, quiet, **options):
    """Train a network on a prepared dataset; write a run directory under runs/.

    Defaults come from the recipe (--recipe; the default, fusion, is the authors' recipe, docs/recipes.md
    1.6) and the dataset: each option lists its default per recipe. --batch-size is the global
    batch: with --gpus 0,1 each GPU gets half. Example:

    \b
      gluonfuse train --network cross --depth 14 --dataset digits --epochs 5 --cpus 2

    Distributed (MXNet's parameter server), every worker running the same command; rank 0 writes
    the run directory under --out, which all workers must see:

    \b
      gluonfuse launch -n 2 -- gluonfuse train --network cross --depth 14 --dataset digits --kvstore dist_sync
    """
    if os.environ.get("DMLC_ROLE") in ("server", "scheduler"):
        # mxnet's own ssh/mpi launcher runs this command as servers and scheduler too: importing
        # mxnet with DMLC_ROLE set serves the job and exits
        import mxnet  # noqa: F401
        return
    if os.environ.get("DMLC_ROLE") != "worker":
        return _train(network, model_kwargs, devices, resume, quiet, options)
    # a worker of a distributed job must never exit normally after a failure: ps-lite's finalize
    # barrier would wait forever for the other workers, and the launcher could not see the failure
    from gluonfuse.cli import run_guarded
    from gluonfuse.train.dist import run_worker

    run_worker(run_guarded, _train, network, model_kwargs, devices, resume, quiet, options)


def _check_arg_keys(model_kwargs):
    """ValueError when an ``--arg KEY=VALUE`` names one of train's own options (e.g. ``dataset``)."""
    network_args = ("depth", "widen_factor", "classes", "extra")  # --depth etc. are network arguments
    flags = {p.name: p.opts[0] for p in train_cmd.params if p.opts and p.name not in network_args}
    for key in sorted(model_kwargs):
        if key in flags:
            raise ValueError(f"--arg cannot set {key!r}; use {flags[key]}")


@speaks_flags  # also inside a distributed worker, whose errors end it in run_worker
def _train(network, model_kwargs, devices, resume, quiet, options):
    """``options``: train's other options by argument name (None when not given)."""
    from gluonfuse.train.config import resolve_config
    from gluonfuse.train.session import train

    _check_arg_keys(model_kwargs)
    if resume:
        given = [name for name, value in dict(options, network=network, **model_kwargs).items()
                 if value is not None and name != "epochs"]
        if given:
            raise ValueError(f"--resume continues a run with its saved configuration; only --epochs, "
                             f"--gpus/--cpus and --quiet may change (got {', '.join(sorted(given))})")
        result = train(resume=resume, quiet=quiet, echo=click.echo,
                       overrides={"epochs": options["epochs"], "contexts": devices})
    else:
        if not network:
            raise click.UsageError("Missing option '--network' (or give --resume RUN_DIR).")
        options = dict(options)
        dataset = options.pop("dataset") or "cifar10"
        conf = resolve_config(network, dataset, data_dir=options.pop("data_dir"), recipe=options.pop("recipe"),
                              model_kwargs=model_kwargs, overrides=dict(options, contexts=devices))
        result = train(conf, quiet=quiet, echo=click.echo)
    last = result["last"]
    if last:
        click.echo(f"Test error {100 * float(last['test_error']):.2f}% after {last['epoch']} epochs "
                   f"(best {100 * result['best_test_error']:.2f}% at epoch {result['best_epoch']}); "
                   f"run directory {result['run_dir']}")


def _print_result(res, as_json):
    from gluonfuse.deploy.infer import DESCRIPTION

    if as_json:
        click.echo(json.dumps(res, indent=2, sort_keys=True))
        return
    line = f"top-1 error {100 * res['error']:.2f}%"
    if res["top5_error"] is not None:
        line += f", top-5 error {100 * res['top5_error']:.2f}%"
    else:
        line += " (top-5 not defined for 5 classes or fewer)"
    ran = f" ({DESCRIPTION[res['path']]})" if "path" in res else ""
    click.echo(f"{line}, loss {res['loss']:.4f} on {res['count']} images of {res['data']}{ran}")
    for m in res["members"]:
        five = f", top-5 {100 * m['top5_error']:.2f}%" if m["top5_error"] is not None else ""
        click.echo(f"  member {m['name']}: top-1 error {100 * m['error']:.2f}%{five}, loss {m['loss']:.4f}")


def fuse_option(fn):
    """--no-fuse, passed on as ``fuse`` (True by default)."""
    return click.option("--no-fuse", "no_fuse", is_flag=True,
                        help="Run the plain fp32 graph, not the MKLDNN-fused one. By default CPU contexts run the "
                             "fused graph (BatchNorm folded into the convolutions, ReLU and sums fused) after a "
                             "one-batch check that it agrees with the plain one; when the check or the fusion "
                             "fails, or mxnet has no MKLDNN, the plain graph runs with a one-line notice on "
                             "stderr. GPU contexts always run the plain graph.")(fn)


def _notice(line):
    click.echo(line, err=True)


@click.command("eval")
@speaks_flags
@click.argument("run_dir", required=False)
@click.option("--symbol", "symbol_file", default=None,
              help="An exported -symbol.json (instead of RUN_DIR); an int8 one written by 'gluonfuse quantize' "
                   "is recognised as such.")
@click.option("--params", "params_file", default=None, help="The matching .params file.")
@click.option("--data", default=None, help="A .rec file (default with RUN_DIR: the run's test.rec).")
@click.option("--which", default="best", show_default=True, help="best, last or an epoch number (RUN_DIR).")
@click.option("--column", type=int, default=None, help="FractalNet: evaluate this column alone (1 = shallowest).")
@click.option("--batch-size", type=int, default=None, help="Evaluation batch size.")
@click.option("--mean", default=None, metavar="R,G,B", help="With --symbol: normalisation mean if the .rec has no meta.json.")
@click.option("--std", default=None, metavar="R,G,B", help="With --symbol: normalisation std.")
@click.option("--int8", is_flag=True,
              help="Evaluate RUN_DIR's int8 model (RUN_DIR/export/<which>-int8-*, written by 'gluonfuse quantize "
                   "RUN_DIR'); CPU with MKLDNN only, never with --no-fuse.")
@fuse_option
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_cmd(run_dir, symbol_file, params_file, data, which, column, batch_size, mean, std, int8, no_fuse,
             devices, as_json):
    """Exact top-1/top-5 error and loss of a trained network on a .rec.

    Every record is counted once (the padded tail of the last batch is not). Use a run directory
    (RUN_DIR, its test set by default) or an exported pair: --symbol F --params F --data PATH.rec.
    For ensemble, each member is reported too. The result says which graph ran: MKLDNN-fused fp32,
    plain fp32 or int8 ("path" in --json).
    """
    from gluonfuse.deploy.infer import evaluate
    from gluonfuse.train.config import make_contexts

    contexts = make_contexts(devices) if devices else None
    res = evaluate(run_dir, symbol_file, params_file, data, which, column, batch_size, _floats(mean, "--mean"),
                   _floats(std, "--std"), contexts, int8, not no_fuse, _notice)
    _print_result(res, as_json)


@click.command("predict")
@speaks_flags
@click.argument("run_dir")
@click.argument("images", nargs=-1, required=True)
@click.option("--which", default="best", show_default=True, help="best, last or an epoch number.")
@click.option("--top-k", type=int, default=5, show_default=True, help="How many classes to show.")
@click.option("--int8", is_flag=True,
              help="Use RUN_DIR's int8 model (RUN_DIR/export/<which>-int8-*, written by 'gluonfuse quantize "
                   "RUN_DIR'); CPU with MKLDNN only, never with --no-fuse.")
@fuse_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def predict_cmd(run_dir, images, which, top_k, int8, no_fuse, as_json):
    """Classify image files with a trained run: top-k class names with probabilities.

    Images of any size and any format OpenCV reads are resized to the network's input and
    normalised as in training. Runs on one CPU context.
    """
    from gluonfuse.deploy.infer import predict

    results = predict(run_dir, images, which, top_k, int8, not no_fuse, _notice)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        click.echo(f"{r['image']}: " + ", ".join(f"{name} {p:.3f}" for name, p in r["top"]))


COMMANDS = [train_cmd, eval_cmd, predict_cmd]
