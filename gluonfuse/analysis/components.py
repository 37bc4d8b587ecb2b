"""The components of a trained network and the evaluation of each on a test set.

What a component is comes from the network's own views (:mod:`gluonfuse.models.views`); the kind
of analysis follows from what the network declares, in this order:

* ``members``: its single-path members (fuse3, fuse6 and the ensemble view: one path of every
  deep-and-shallow block, ``LLR`` etc.; the block's ReLU stays after the chosen path);
* ``columns``: its columns, each alone (FractalNet);
* ``lesion``: its removable branches, each removed alone, and with ``max_lesions`` K also k = 1..K
  branches removed at random (``draws`` sets per k, ``seed``): resnet, cross, half, side, the
  ImageNet nets, pre-activation and wide ResNets, RoR (its residuals, mid and root shortcuts).

A network that declares none of them (``plain``, a single FractalNet column) has no ensemble view:
ValueError. Every component computes with the trained net's own Parameters; BatchNorm keeps its
trained running statistics, and stochastic depth its test-time scaling of every remaining residual.
Each is evaluated with the trainer's :func:`gluonfuse.train.evaluate.evaluate` on the run's test
``.rec`` (or another one), with the run's normalisation; every record counts once.
"""
import dataclasses
import itertools
import math
import os
import random
import time

from gluonfuse.analysis.paths import connected, depth_and_count, path_distribution, path_unit
from gluonfuse.analysis.report import summarize
from gluonfuse.errors import DataError
from gluonfuse.models import get_model, list_models
from gluonfuse.models.views import BranchView, get_views, hybridized

DEFAULT_DRAWS = 3


def analysis_kind(net):
    """``members``, ``columns`` or ``lesion`` from what ``net`` declares; None when it declares none."""
    views = get_views(net)
    if views.members():
        return "members"
    if views.column_count():
        return "columns"
    if views.branches():
        return "lesion"
    return None


def require_kind(network, model_kwargs=None):
    """The analysis kind of registered ``network``; ValueError naming the networks that have one."""
    net = get_model(network, **(model_kwargs or {}))
    kind = analysis_kind(net)
    if kind is None:
        supported = ", ".join(f"{family} ({k})" for family in list_models(kind="family")
                              if (k := analysis_kind(get_model(family))))
        raise ValueError(f"gluonfuse analyze has no ensemble view of {network!r} ({net.spec.name}): it has no "
                         f"members, columns or removable branches to evaluate apart. Networks with one: {supported}")
    return kind


@dataclasses.dataclass
class Component:
    """One sub-network to evaluate: its name, kind, removed branches, depth and path count."""

    name: str
    kind: str  # full, member, column, single, random
    depth: int
    paths: int
    removed: tuple = ()  # Branch labels
    build: object = None  # () -> the network to evaluate
    draw: int = None  # random lesions: draw number (1-based)
    position: int = None  # single lesions: the block's index in depth order (1-based)

    def row(self):
        return {"name": self.name, "kind": self.kind, "depth": self.depth, "paths": self.paths,
                "removed": list(self.removed), "draw": self.draw, "position": self.position}


def _full(net):
    return Component("full", "full", *depth_and_count(net), build=lambda: net)


def _labels(net, removed):
    """Labels of ``removed`` in the net's depth order of branches (members: parameter-name order)."""
    order = {b: i for i, b in enumerate(get_views(net).branches())}
    return tuple(b.label for b in sorted(removed, key=lambda b: (order.get(b, -1), b)))


def _without(net, removed, name, kind, **fields):
    return Component(name, kind, *depth_and_count(net, removed), removed=_labels(net, removed),
                     build=lambda: hybridized(BranchView(net, removed)), **fields)


def member_components(net):
    """The full net and its single-path members (fuse3: 8, ``LLL`` .. ``RRR``; fuse6: 64)."""
    return [_full(net)] + [_without(net, removed, name, "member") for name, removed in get_views(net).members()]


def column_components(net):
    """The full net and every column alone, each sharing the net's Parameters (FractalNet)."""
    from gluonfuse.train.evaluate import column_view

    views = get_views(net)
    if not views.column_count():
        raise ValueError(f"{views.view_name()} has no columns to evaluate apart")
    comps = [_full(net)]
    for c in range(1, views.column_count() + 1):
        comps.append(Component(f"column{c}", "column", *depth_and_count(views.column_view(c)),
                               build=lambda c=c: column_view(net, c)))
    return comps


def lesion_sets(net, max_lesions=0, draws=DEFAULT_DRAWS, seed=0):
    """``[(k, draw, removed), ...]``: ``draws`` distinct random sets of k branches, k = 1..max_lesions.

    Sets are drawn uniformly with ``random.Random(seed)``; a set drawn before, or one that would
    leave a block with no path (``side``), is drawn again. When there are no more than ``draws``
    sets of k branches, every one is taken (then a k may have fewer rows). ValueError when no
    valid set of k exists.
    """
    if isinstance(max_lesions, bool) or not isinstance(max_lesions, int) or max_lesions < 0:
        raise ValueError(f"--max-lesions must be a number of branches >= 0, got {max_lesions!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"--draws must be a positive integer, got {draws!r}")
    views = get_views(net)
    all_branches = views.branches()
    if max_lesions > len(all_branches):
        raise ValueError(f"--max-lesions {max_lesions} exceeds the {len(all_branches)} removable branches "
                         f"of {views.view_name()}")
    rng = random.Random(seed)
    out = []
    for k in range(1, max_lesions + 1):
        drawn = []
        if math.comb(len(all_branches), k) <= draws:  # few enough: take every set, in order
            drawn = [frozenset(c) for c in itertools.combinations(all_branches, k)]
            drawn = [r for r in drawn if connected(net, r)]
        else:
            for _ in range(draws):
                for _ in range(1000):
                    removed = frozenset(rng.sample(all_branches, k))
                    if removed not in drawn and connected(net, removed):
                        drawn.append(removed)
                        break
        if not drawn:
            raise ValueError(f"--max-lesions {max_lesions}: no removal of {k} branches keeps every block "
                             f"of {views.view_name()} connected; use a smaller --max-lesions")
        out += [(k, d, removed) for d, removed in enumerate(drawn, start=1)]
    return out


def lesion_components(net, max_lesions=0, draws=DEFAULT_DRAWS, seed=0):
    """The full net, each branch removed alone (when that leaves a path), then random lesions."""
    comps = [_full(net)]
    for b in get_views(net).branches():
        if connected(net, [b]):
            comps.append(_without(net, frozenset([b]), f"without {b.label}", "single", position=b.position))
    for k, d, removed in lesion_sets(net, max_lesions, draws, seed):
        comps.append(_without(net, removed, f"random k={k} #{d}", "random", draw=d))
    return comps


def components(net, kind, max_lesions=0, draws=DEFAULT_DRAWS, seed=0):
    """The components of ``net`` for analysis ``kind`` (see :func:`analysis_kind`), the full net first."""
    if kind == "members":
        return member_components(net)
    if kind == "columns":
        return column_components(net)
    return lesion_components(net, max_lesions, draws, seed)


def describe_branches(net):
    """The net's removable branches as JSON rows (label, name, kind, stage, position, survival)."""
    views = get_views(net)
    survival = {b: p for b, p in views.stochastic_blocks()}
    return [{"label": b.label, "name": b.name, "kind": b.kind, "stage": b.stage, "position": b.position,
             "survival": survival.get(b, 1.0)} for b in views.branches()]


# ---------------------------------------------------------------- the analysis of a run

def _test_set(run_dir, cfg, data):
    if data is None:
        data = os.path.join(cfg["data_dir"], "test.rec")
        if not os.path.isfile(data):
            raise DataError(f"{data} not found: the test set named by {os.path.join(run_dir, 'config.json')} "
                            "(data_dir); give --data PATH.rec")
    elif not os.path.isfile(data):
        raise DataError(f"record file not found: {data}")
    return data


def analyze_run(run_dir, which="best", data=None, contexts=None, batch_size=None, max_lesions=0,
                draws=DEFAULT_DRAWS, seed=0, progress=None, prepare=None):
    """Evaluate every component of a trained run on a ``.rec`` (default: the run's test set).

    Returns a JSON-ready dict: ``run``, ``network``, ``kind``, ``which``, ``data``, ``count``,
    ``components`` (the full net first; each with ``error``, ``top5_error``, ``loss`` as fractions and
    ``path``, the graph that computed it), ``path_lengths``, ``path_unit``, ``branches`` (see
    :func:`describe_branches`) and ``summary``. ``progress(i, n, component_row)`` is called after
    each component. ``prepare(block, batch) -> (block to run, path name)`` replaces each component by
    a graph computing the same function (``gluonfuse analyze`` fuses each one, checked on ``batch``,
    the first images of the test set); default: the component itself, ``plain``. Raises ValueError
    for a network without an ensemble view, DataError for bad files.
    """
    import mxnet as mx

    from gluonfuse.train.data import count_records, record_iter
    from gluonfuse.data.meta import stored_size
    from gluonfuse.train.evaluate import evaluate
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    cfg = run.config
    kind = require_kind(cfg["network"], cfg.get("model_kwargs"))  # before any weights are read
    data = _test_set(run_dir, cfg, data)
    contexts = contexts or [mx.cpu()]
    net = run.build_network(which, ctx=contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    comps = components(net, kind, max_lesions, draws, seed)
    batch_size = batch_size or cfg.get("test_batch_size") or 64
    expected = count_records(data)
    def records(size):
        return record_iter(data, size, cfg["input_shape"], cfg["mean"], cfg["std"],
                           stored_size=stored_size(run.dataset_meta))

    sample = next(iter(records(2))).data[0].as_in_context(contexts[0]) if prepare else None
    prepare = prepare or (lambda block, batch: (block, "plain"))
    rows = []
    for i, comp in enumerate(comps, start=1):
        start = time.time()
        block, path = prepare(comp.build(), sample)
        result = evaluate(block, records(batch_size), contexts, cfg["classes"], expected=expected, source=data)
        row = dict(comp.row(), error=result["error"], top5_error=result["top5_error"], loss=result["loss"],
                   path=path, seconds=round(time.time() - start, 3))
        rows.append(row)
        if progress:
            progress(i, len(comps), row)
    out = {"run": run_dir, "network": cfg["network"], "model_kwargs": cfg.get("model_kwargs", {}),
           "kind": kind, "which": which, "data": data, "count": expected,
           "epoch": _epoch_of(run, which),
           "components": rows,
           "path_lengths": [{"length": length, "paths": n} for length, n in path_distribution(net)],
           "path_unit": path_unit(net),
           "branches": describe_branches(net),
           "batchnorm": "trained running statistics, as they are, for every component"}
    out["summary"] = summarize(out)
    return out


def _epoch_of(run, which):
    if which == "best":
        return run.status.get("best_epoch")
    if which == "last":
        return run.status.get("epoch")
    return which
