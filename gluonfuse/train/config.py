"""Training configuration: the recipes of docs/recipes.md, per-dataset defaults, and one resolved config.

A *recipe* is a row of data (optimizer, lr, schedule, epochs, batch, weight decay, augmentation); the
default, ``fusion``, is the authors' CIFAR/SVHN recipe of the deeply-fused nets (zlmzju/fusenet
``train_model.py``): NAG, momentum 0.9, weight decay 1e-4 on every parameter, lr 0.1 divided by 10 at
1/2, 3/4 and 7/8 of the epochs, batch 64, 400 epochs. The other families' recipes (``--recipe``) come
from the papers (docs/recipes.md#recipe-table). Every value can be overridden; :func:`resolve_config` merges recipe, dataset defaults
and the user's overrides into one :class:`TrainConfig`; ``config.json`` stores it together with what
the dataset decided (:mod:`gluonfuse.train.plan`).

``batch_size`` is the *global* batch: it is split across the devices (64 on ``--gpus 0,1`` is 32 per
GPU) and, in a distributed job, across the workers first (64 over 2 workers of 2 GPUs is 16 per GPU),
so the recipe means the same on any number of devices and machines (see :mod:`gluonfuse.train.dist`).
"""
import dataclasses
import os
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

from gluonfuse.errors import ArgumentError, DataError, did_you_mean
from gluonfuse.train import dist, precision
from gluonfuse.train.schedule import SCHEDULES, steps_from_fractions


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One family's published training recipe.

    ``lr_steps`` are fractions of the epochs (so a shortened run keeps the schedule's shape);
    at ``epochs`` they give the published epochs exactly. The columns after ``model_defaults`` are
    the training options beyond the papers: the published rows leave them off, and ``warmup`` is a
    fraction of the epochs too.
    """

    name: str
    source: str
    optimizer: str
    lr: float
    lr_factor: float
    lr_steps: Tuple[str, ...]
    epochs: int
    batch_size: int
    wd: float
    momentum: float = 0.9
    aug_type: int = 1
    # model arguments the recipe implies (only applied when the network accepts them)
    model_defaults: Tuple[Tuple[str, object], ...] = ()
    lr_schedule: str = "step"
    warmup: str = "0"
    label_smoothing: float = 0.0
    ema: float = 0.0
    cutout: int = 0

    def steps(self, epochs):
        return steps_from_fractions(self.lr_steps, epochs)

    def warmup_epochs(self, epochs):
        """The warm-up of a run of ``epochs``, in (possibly fractional) epochs."""
        return float(Fraction(self.warmup) * epochs)


RECIPES: Dict[str, Recipe] = {r.name: r for r in [
    Recipe("fusion", "docs/recipes.md#fusion, zlmzju/fusenet train_model.py", "nag", 0.1, 0.1, ("1/2", "3/4", "7/8"),
           400, 64, 1e-4),
    # the FractalNet paper names no weight decay (docs/recipes.md#fractal); lr / 10 each time the remaining epochs halve
    Recipe("fractal", "docs/recipes.md#fractal, Larsson et al. 2017", "sgd", 0.02, 0.1, ("1/2", "3/4", "7/8", "15/16"),
           400, 100, 0.0),
    Recipe("ror", "docs/recipes.md#ror, Zhang et al. 2016", "sgd", 0.1, 0.1, ("1/2", "3/4"), 500, 128, 1e-4),
    Recipe("preact", "docs/recipes.md#preact, He et al. 2016 (epochs 81, 122 of 164)", "nag", 0.1, 0.1,
           ("81/164", "122/164"), 164, 128, 1e-4),
    Recipe("wrn", "docs/recipes.md#wrn, Zagoruyko & Komodakis 2016", "nag", 0.1, 0.2, ("60/200", "120/200", "160/200"),
           200, 128, 5e-4),
    Recipe("wrn_svhn", "docs/recipes.md#wrn_svhn, WRN on SVHN", "nag", 0.01, 0.1, ("80/160", "120/160"), 160, 128, 5e-4,
           aug_type=0, model_defaults=(("dropout", 0.4),)),
    # not a paper's: chosen by measurement on digits at 5 and 10 epochs, 3 seeds (docs/recipes.md#fast);
    # the doubled lr needs the warm-up, and the cosine decay ends the run at lr 0 whatever --epochs is.
    # Cutout 8, mixup, EMA, batch 32 or 128 did not help at these budgets (same page)
    Recipe("fast", "docs/recipes.md#fast, measured on digits", "nag", 0.2, 0.1, (), 10, 64, 1e-4,
           lr_schedule="cosine", warmup="1/5", label_smoothing=0.1),
]}
DEFAULT_RECIPE = "fusion"
# the TrainConfig options whose defaults are Recipe columns (and nowhere else); lr_steps and
# warmup_epochs are resolved from the row's fractions against the run's epochs
RECIPE_OPTIONS = ("optimizer", "lr", "lr_factor", "lr_steps", "epochs", "batch_size", "wd", "momentum", "aug_type",
                  "lr_schedule", "warmup_epochs", "label_smoothing", "ema", "cutout")
FRACTION_OPTIONS = {"lr_steps": "lr_steps", "warmup_epochs": "warmup"}  # option -> its Recipe column

# Per-dataset departures from a recipe. SVHN: no augmentation (all recipes), 40 epochs for the
# fusion recipe (docs/recipes.md#dataset-departures). Digits must not be mirrored; the embedded `digits` set is a demo, so
# it defaults to a run of seconds rather than the 400 epochs of CIFAR.
DATASET_DEFAULTS = {
    "svhn": {"aug_type": 0},
    ("svhn", "fusion"): {"epochs": 40},
    "mnist": {"aug_type": 0},
    "digits": {"aug_type": 0, "epochs": 10},
}
KNOWN_DATASETS = ("cifar10", "cifar100", "svhn", "mnist", "digits", "imagenet", "folder")
OPTIMIZERS = ("nag", "sgd", "adam")
AUG_TYPES = (0, 1, 2)
# one machine: gradients aggregated on a device (device) or on the CPU (local); nccl for CUDA builds;
# several machines: MXNet's parameter server (gluonfuse launch), see gluonfuse.train.dist
KVSTORES = ("device", "local", "nccl") + dist.DIST_KVSTORES


def get_recipe(name):
    if name not in RECIPES:
        raise ArgumentError(f"unknown recipe {name!r}.{did_you_mean(name, RECIPES)} "
                            f"Known recipes: {', '.join(RECIPES)}", "recipe")
    return RECIPES[name]


@dataclasses.dataclass
class TrainConfig:
    """What the user decides about a run, every recipe value resolved (:func:`resolve_config`).

    Nothing here depends on the data: what the dataset decides (classes, mean/std, input shape, the
    network's final arguments) is :class:`gluonfuse.train.plan.DataFacts`, and ``config.json``
    stores both (:func:`gluonfuse.train.plan.run_record`). The recipe-backed fields have no default
    here: their defaults live in :data:`RECIPES` and :data:`DATASET_DEFAULTS` only. The exception is
    the recipe columns added later (``lr_schedule`` .. ``cutout``): their value below (off) is what a
    ``config.json`` written before they existed means, never a new run's default.
    """

    network: str
    model_kwargs: dict  # the network's arguments as given (the dataset decides classes)
    dataset: str
    data_dir: str
    recipe: str
    optimizer: str
    lr: float
    lr_factor: float
    lr_steps: List[int]
    epochs: int
    batch_size: int  # global: split across the workers and devices
    wd: float
    momentum: float
    aug_type: int
    test_batch_size: int
    seed: int
    # not part of any recipe: these are the only defaults of these options
    contexts: List[str] = dataclasses.field(default_factory=lambda: ["cpu(0)"])
    kvstore: str = "device"
    dtype: str = "float32"  # float16 (GPU) and bfloat16 (CPU) train through mxnet.contrib.amp
    keep_checkpoints: int = 3
    log_interval: int = 50
    preprocess_threads: int = 2
    out_dir: str = "runs"
    # training options beyond the published recipes; each default is off, i.e. the recipe as published
    lr_schedule: str = "step"  # step (the recipe's), cosine, linear, onecycle (train/schedule.py)
    warmup_epochs: float = 0.0  # linear warm-up from warmup_lr to lr over these epochs (config.json: also warmup_fraction)
    warmup_lr: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) parameters; 0 is off
    cutmix: float = 0.0
    mix_prob: float = 1.0
    cutout: int = 0  # side of the square erased per image; 0 is off
    no_wd_bn_bias: bool = False  # weight decay on conv and Dense weights only
    grad_clip: float = 0.0  # the largest global gradient norm; 0 is off
    ema: float = 0.0  # decay of the moving average of the weights (train/ema.py); 0 is off
    tensorboard: Optional[str] = None  # event files' directory; "" is RUN_DIR/tb, None is off
    histogram_every: int = 10  # epochs between TensorBoard's weight histograms

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, source="config.json"):
        """The configuration in a saved run's ``d``; keys that are not options (what the dataset
        decided, e.g. ``classes``) are left out. DataError when an option is missing."""
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise DataError(f"{source} lacks {', '.join(missing)}: not a configuration gluonfuse train wrote")
        return cls(**{f.name: d[f.name] for f in fields if f.name in d})

    def validate(self, workers=1):
        """Check every value (``workers``: of the distributed job, which shares the batch); returns self."""
        for name in ("epochs", "batch_size", "test_batch_size", "keep_checkpoints", "log_interval", "histogram_every"):
            _positive(name, getattr(self, name))
        _positive("lr", self.lr, float)
        if self.wd < 0:
            raise ArgumentError(f"wd must be >= 0, got {self.wd}", "wd")
        if not 0 <= self.momentum < 1:
            raise ArgumentError(f"momentum must be in [0, 1), got {self.momentum}", "momentum")
        if self.optimizer not in OPTIMIZERS:
            raise ArgumentError(f"unknown optimizer {self.optimizer!r}.{did_you_mean(self.optimizer, OPTIMIZERS)}"
                                f" Known: {', '.join(OPTIMIZERS)}", "optimizer")
        if self.aug_type not in AUG_TYPES:
            raise ArgumentError(f"aug_type must be 0 (none), 1 (pad-crop-mirror) or 2 (scale, aspect, "
                                f"colour, mirror, crop), got {self.aug_type!r}", "aug_type")
        if self.kvstore not in KVSTORES:
            raise ArgumentError(f"unknown kvstore {self.kvstore!r} (use {', '.join(KVSTORES)})."
                                f"{did_you_mean(self.kvstore, KVSTORES)}", "kvstore")
        precision.check_config(self.dtype, self.contexts, self.kvstore)
        bad = [s for s in self.lr_steps if not isinstance(s, int) or s <= 0]
        if bad or list(self.lr_steps) != sorted(set(self.lr_steps)):
            raise ArgumentError(f"lr_steps must be increasing positive epochs like 200,300,350, "
                                f"got {','.join(map(str, self.lr_steps))}", "lr_steps")
        self._validate_extras()
        if workers > 1 or dist.is_distributed(self.kvstore):
            dist.worker_batch(self.batch_size, workers, len(self.contexts))
        elif self.batch_size < len(self.contexts):
            raise ArgumentError(f"batch_size {self.batch_size} is smaller than the {len(self.contexts)} devices "
                                "it is split across (the batch size is global)", "batch_size")
        return self


    def _validate_extras(self):
        if self.lr_schedule not in SCHEDULES:
            raise ArgumentError(f"unknown lr_schedule {self.lr_schedule!r}.{did_you_mean(self.lr_schedule, SCHEDULES)}"
                                f" Known: {', '.join(SCHEDULES)}", "lr_schedule")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ArgumentError(f"warmup_epochs must be >= 0 and shorter than the run ({self.epochs} epochs), "
                                f"got {self.warmup_epochs:g}", "warmup_epochs")
        if self.warmup_lr < 0:
            raise ArgumentError(f"warmup_lr must be >= 0, got {self.warmup_lr:g}", "warmup_lr")
        if not 0 <= self.label_smoothing < 1:
            raise ArgumentError(f"label_smoothing must be in [0, 1), got {self.label_smoothing:g}", "label_smoothing")
        for name in ("mixup", "cutmix", "cutout", "grad_clip"):
            if getattr(self, name) < 0:
                raise ArgumentError(f"{name} must be >= 0 (0 is off), got {getattr(self, name):g}", name)
        if not 0 < self.mix_prob <= 1:
            raise ArgumentError(f"mix_prob must be in (0, 1], got {self.mix_prob:g}", "mix_prob")
        if not (self.ema == 0 or 0 < self.ema < 1):
            raise ArgumentError(f"ema must be a decay in (0, 1) like 0.999 (0 is off), got {self.ema:g}", "ema")
        asynchronous = self.kvstore == "dist_async"
        if asynchronous and (self.lr_schedule != "step" or self.warmup_epochs or self.grad_clip or self.ema):
            raise ArgumentError("dist_async runs the optimizer and its step schedule on the servers: lr_schedule "
                                "other than step, warmup_epochs, grad_clip and ema need dist_sync", "kvstore")
        if self.grad_clip and precision.uses_loss_scaling(self.dtype):
            raise ArgumentError("grad_clip cannot measure float16's scaled gradients; use float32 or bfloat16",
                                "grad_clip")


def _positive(name, value, kind=int):
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or value <= 0:
        raise ArgumentError(f"{name} must be a positive {'number' if kind is float else 'integer'}, got {value!r}",
                            name)


def parse_steps(text):
    """``"200,300,350"`` -> [200, 300, 350]; ValueError naming the bad part."""
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        return [int(s) for s in text]
    try:
        return [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise ArgumentError(f"lr_steps takes comma-separated epochs like 200,300,350, got {text!r}",
                            "lr_steps") from None


def recipe_defaults(recipe_name, dataset):
    """The recipe's values with the dataset's departures applied (a plain dict; ``lr_steps`` are
    resolved against the epochs by :func:`resolve_config`)."""
    r = get_recipe(recipe_name)
    values = {name: getattr(r, name) for name in RECIPE_OPTIONS if name not in FRACTION_OPTIONS}
    values.update(DATASET_DEFAULTS.get(dataset, {}))
    values.update(DATASET_DEFAULTS.get((dataset, recipe_name), {}))
    return values


def recipe_help(option):
    """The defaults of a recipe-backed ``option`` as ``--help`` shows them, generated from the rows:
    ``[fusion 0.1, fractal 0.02, ...]``, then the dataset departures (``; svhn with fusion 40``)."""
    column = FRACTION_OPTIONS.get(option, option)
    values = {name: getattr(r, column) for name, r in RECIPES.items()}
    if len(set(values.values())) == 1:
        text = f"{_help_value(values[DEFAULT_RECIPE])} in every recipe"
    else:
        text = ", ".join(f"{name} {_help_value(v)}" for name, v in values.items())
    departures = [f"{key if isinstance(key, str) else ' with '.join(key)} {_help_value(d[option])}"
                  for key, d in DATASET_DEFAULTS.items() if option in d]
    return f"[{text}{'; ' + ', '.join(departures) if departures else ''}]"


def _help_value(value):
    if isinstance(value, tuple):  # lr_steps: fractions of the epochs
        return " ".join(value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_default(option):
    """The default of a TrainConfig option that no recipe sets (``kvstore``, ``dtype``, ...)."""
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[option]
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        raise KeyError(f"{option} has no single default (a recipe or the run decides it)")
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def resolve_config(network, dataset, data_dir=None, recipe=None, model_kwargs=None,
                   overrides: Optional[dict] = None, contexts=None):
    """Merge recipe, dataset defaults and ``overrides`` (None values ignored) into a TrainConfig.

    ``contexts``: device names such as ``['gpu(0)', 'gpu(1)']`` (default: TrainConfig's, one CPU).

    Needs no data: what the dataset decides (classes, mean/std, input shape) is read when the run
    starts (:func:`gluonfuse.train.plan.read_facts`).
    """
    recipe = recipe or DEFAULT_RECIPE
    r = get_recipe(recipe)
    values = recipe_defaults(recipe, dataset)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if contexts is not None:
        overrides["contexts"] = contexts
    steps = parse_steps(overrides.pop("lr_steps", None))
    values.update(overrides)
    if steps is None:
        steps = r.steps(values["epochs"])
    values.setdefault("warmup_epochs", r.warmup_epochs(values["epochs"]))
    values.setdefault("test_batch_size", values["batch_size"])
    if values.get("seed") is None:
        # like the authors' time-based seed, repeated runs differ; the drawn seed is saved in
        # config.json, so --resume reproduces the run
        values["seed"] = int.from_bytes(os.urandom(4), "little") % (2 ** 31)
    if "contexts" in values:
        values["contexts"] = list(values["contexts"])
    cfg = TrainConfig(network=network, model_kwargs=dict(model_kwargs or {}), dataset=dataset,
                      data_dir=data_dir or f"data/{dataset}", recipe=recipe, lr_steps=steps, **values)
    return cfg.validate()


def device_names(gpus=None, cpus=None):
    """``--gpus 0,1`` -> ['gpu(0)', 'gpu(1)']; ``--cpus N`` -> ['cpu(0)', ..., 'cpu(N-1)'].

    N CPU contexts share the same cores; they exist to run the multi-device path (batch split,
    kvstore aggregation) without GPUs. Default: one CPU context.
    """
    if gpus not in (None, "") and cpus not in (None, 0):
        raise ArgumentError("give either gpus or cpus, not both", "gpus", "cpus")
    if gpus not in (None, ""):
        try:
            ids = [int(g) for g in str(gpus).split(",") if g.strip()]
        except ValueError:
            raise ArgumentError(f"gpus takes comma-separated GPU numbers like 0,1, got {gpus!r}", "gpus") from None
        if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
            raise ArgumentError(f"gpus takes distinct GPU numbers like 0,1, got {gpus!r}", "gpus")
        return [f"gpu({i})" for i in ids]
    n = 1 if cpus in (None, 0) else cpus
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ArgumentError(f"cpus must be a positive number of CPU contexts, got {cpus!r}", "cpus")
    return [f"cpu({i})" for i in range(n)]


def make_contexts(names):
    """MXNet contexts for ``names``; a clear ValueError when GPUs are asked of a CPU-only build."""
    import mxnet as mx

    contexts = []
    for name in names:
        kind, _, rest = name.partition("(")
        index = int(rest.rstrip(")") or 0)
        if kind == "gpu":
            available = mx.context.num_gpus()
            if available == 0:
                raise ArgumentError(f"gpus: {name} is asked for, but this mxnet build sees no GPU (a CPU-only "
                                    "build or no visible device); use cpus N to run on N CPU contexts", "gpus", "cpus")
            if index >= available:
                raise ArgumentError(f"gpus: {name} is asked for, but only {available} GPU(s) are visible "
                                    f"(0..{available - 1})", "gpus")
            contexts.append(mx.gpu(index))
        elif kind == "cpu":
            contexts.append(mx.cpu(index))
        else:
            raise ValueError(f"unknown device {name!r}; expected cpu(N) or gpu(N)")
    return contexts
