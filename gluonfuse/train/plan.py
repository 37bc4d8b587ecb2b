"""What a run takes from its dataset and its job: :class:`DataFacts` and :class:`RunPlan`.

A :class:`~gluonfuse.train.config.TrainConfig` holds what the user chose. When a run starts, the
dataset directory decides the rest (:func:`read_facts`): the classes, the normalisation, the
network's final arguments and input shape, the stored image size and the record counts. The job
then decides this worker's share (:func:`plan_run`): its records per step, its part of each
``.rec`` and the steps of an epoch, the same on every worker (:mod:`gluonfuse.train.dist`).
Both are frozen: nothing overwrites them later. ``config.json`` stores the configuration with the
derived values (:func:`run_record`), as it always has, so tools that read ``classes``, ``mean``,
``std`` or ``input_shape`` from it keep working.
"""
import dataclasses
import os
from typing import Optional, Tuple

from gluonfuse.data.meta import meta_path, read_meta, stored_size
from gluonfuse.errors import ArgumentError, DataError
from gluonfuse.train import dist
from gluonfuse.train.config import TrainConfig, get_recipe
from gluonfuse.train.data import count_records, ensure_dataset, normalisation, record_iter


@dataclasses.dataclass(frozen=True)
class DataFacts:
    """What the dataset directory decides for a run."""

    meta: dict  # the dataset's meta.json
    spec: object  # the network's spec, built with the dataset's classes
    model_kwargs: dict  # the network's final arguments: get_model(network, **model_kwargs)
    classes: int
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    input_shape: Tuple[int, ...]
    stored_size: Optional[int]  # side of the stored images (record_iter resizes when it differs)
    train_rec: str
    test_rec: str
    train_records: int
    test_records: int


def read_facts(config: TrainConfig, echo=print):
    """Read ``config``'s dataset (prepared on the fly for ``digits``) and fit the network to it.

    ValueError for a network or class count that does not fit the data, DataError for a missing
    or broken dataset directory.
    """
    ensure_dataset(config.dataset, config.data_dir, echo=echo)
    meta = read_meta(config.data_dir)
    classes = int(meta["num_classes"])
    spec = _network_spec(config, classes)
    mean, std = normalisation(config.dataset, meta, meta_path(config.data_dir))
    train_rec, test_rec = (os.path.join(config.data_dir, f"{split}.rec") for split in ("train", "test"))
    return DataFacts(meta=meta, spec=spec, model_kwargs=spec.kwargs(), classes=classes, mean=tuple(mean),
                     std=tuple(std), input_shape=tuple(spec.input_shape), stored_size=stored_size(meta),
                     train_rec=train_rec, test_rec=test_rec, train_records=count_records(train_rec),
                     test_records=count_records(test_rec))


def _network_spec(config, classes):
    from gluonfuse.models import get_entry

    asked = config.model_kwargs.get("classes")
    if asked is not None and asked != classes:
        raise ArgumentError(f"classes {asked} does not match the dataset: {config.data_dir}/meta.json has "
                            f"{classes} classes", "classes")
    entry = get_entry(config.network)
    kwargs = dict(config.model_kwargs, classes=classes)
    # recipe-implied model arguments (wrn_svhn's dropout) where the network takes them
    fields = {f.name for f in dataclasses.fields(entry.spec_cls)}
    for key, value in get_recipe(config.recipe).model_defaults:
        if key in fields and key not in kwargs:
            kwargs[key] = value
    spec = entry.make_spec(**kwargs)
    if spec.classes != classes:
        raise ValueError(f"network {config.network!r} has {spec.classes} classes; the dataset has {classes}")
    return spec


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """This worker's share of a run (one process: rank 0 of 1, the whole data)."""

    config: TrainConfig
    facts: DataFacts
    workers: int
    rank: int
    batch_size: int  # records per step on this worker (of the global config.batch_size)
    test_batch_size: int
    steps: int  # steps per epoch, the same on every worker
    train_part: Tuple[int, int]  # records [begin, end) of train.rec this worker reads
    test_part: Tuple[int, int]

    def train_batches(self, seed, count_labels=False):
        """This worker's epoch of exactly ``steps`` shuffled, augmented batches (``seed``: the epoch's)."""
        c = self.config
        return dist.ShardBatches(lambda: self._part(self.facts.train_rec, self.train_part, self.batch_size,
                                                    aug_type=c.aug_type, shuffle=True, seed=seed),
                                 self.steps, self.facts.classes if count_labels else 0)

    def test_batches(self):
        """One pass over this worker's part of test.rec (None when the part is empty)."""
        return self._part(self.facts.test_rec, self.test_part, self.test_batch_size)

    def _part(self, rec, part, batch_size, **kwargs):
        if part[0] >= part[1]:
            return None
        f = self.facts
        return record_iter(rec, batch_size, f.input_shape, f.mean, f.std, threads=self.config.preprocess_threads,
                           stored_size=f.stored_size, num_parts=self.workers, part_index=self.rank, **kwargs)


def plan_run(config, facts, workers=1, rank=0, devices=1):
    """The :class:`RunPlan` of worker ``rank`` of ``workers``, with ``devices`` devices.

    DataError when train.rec has too few records to give every worker a part.
    """
    n_train, n_test = facts.train_records, facts.test_records
    if dist.shard_range(n_train, workers, workers - 1)[0] >= n_train:
        raise DataError(f"{facts.train_rec}: {n_train} records are too few to split between {workers} workers")
    return RunPlan(config=config, facts=facts, workers=workers, rank=rank,
                   batch_size=dist.worker_batch(config.batch_size, workers, devices),
                   test_batch_size=max(devices, -(-config.test_batch_size // workers)),
                   steps=dist.steps_per_epoch(n_train, config.batch_size),
                   train_part=dist.shard_range(n_train, workers, rank),
                   test_part=dist.shard_range(n_test, workers, rank))


def run_record(config, facts, workers=1):
    """``config.json``: the configuration, the network's final arguments and what the data and the job
    decided (``classes``, ``mean``, ``std``, ``input_shape``, ``num_workers``), and the warm-up as a
    fraction of the run (``warmup_fraction``, which ``--resume --epochs`` keeps)."""
    return dict(config.to_dict(), model_kwargs=dict(facts.model_kwargs), classes=facts.classes,
                mean=list(facts.mean), std=list(facts.std), input_shape=list(facts.input_shape), num_workers=workers,
                warmup_fraction=config.warmup_epochs / config.epochs)
