"""The fusion-to-ensemble analysis of a trained network: its components, evaluated one by one.

Zhao et al. ("On the Connection of Deep Fusion to Ensembling", arXiv 1611.07718) read a deeply-fused
net as an ensemble of shallower networks that share weights, and claim that the deepest component is
not the strongest contributor. Veit et al. ("Residual Networks Behave Like Ensembles of Relatively
Shallow Networks", NIPS 2016) read a ResNet the same way and test it with a lesion study: residual
branches are deleted from the trained network at test time and the error is measured. The authors of
the fusion papers never released their analysis; this module makes it for any trained run.

What a *component* is, per network family (every component is a real sub-network of the trained
net: it computes with the very same Parameter objects, nothing is copied or retrained):

* ``fuse3``, ``fuse6``, ``ensemble`` (``members``): the single-path networks that choose, in every
  deep-and-shallow block, the left (shallow) or the right (deep) path: 8 members for fuse3 and its
  ensemble view (named ``LLR`` etc. as :attr:`~gluonfuse.models.fusion.EnsembleNet.MEMBERS`), 64 for
  fuse6. The block's ReLU stays after the chosen path, exactly as ``EnsembleNet`` computes members.
* ``fractalnet`` (``columns``): every column alone, through ``net.column_net(c)``.
* ``resnet``, ``cross``, ``half``, ``side`` (``lesion``): the trained net with residual branches
  removed. A single lesion removes one branch; ``max_lesions`` K adds K x ``draws`` lesions of
  k = 1..K branches drawn at random (fixed ``seed``). Removing a branch means:

  - ``resnet``: block ``ReLU(short(x) + two(x))`` becomes ``ReLU(short(x))``, keeping the shortcut, as
    Veit et al. delete residual modules. On an identity block the input is already a ReLU output, so
    the block becomes the identity; at a width change the 1x1 projection shortcut stays.
  - ``half``: ``ReLU(short + two_a + two_b)`` loses ``two_a`` (branch ``a``) or ``two_b`` (``b``);
    ``side`` the same, but a block must keep one of its two branches (it has no shortcut).
  - ``cross`` (merge-and-run): streams a and b, ``m = (short_a(a) + short_b(b)) / 2``,
    ``a' = ReLU(m + da)``, ``b' = ReLU(m + db)``. Removing ``a`` removes the residual ``da`` of stream
    a: ``a' = ReLU(m)``, while ``b'`` is untouched, since the merge ``m`` reads only the block's inputs.
    This is the lesion of the residual view of merge-and-run (Zhao et al.): the block is a residual
    block on the two streams together whose shortcut is the merge and whose residual is (da, db);
    removing ``a`` zeroes the a-half of that residual. With both removed the block is the bare merge.
    In the last block (``ReLU(m + da + db)``) a removed branch drops out of the sum.

Batch normalisation uses the trained running statistics as they are, for every component; nothing
is re-estimated or retrained (Veit et al.'s lesion study likewise deletes modules from the trained
network at test time).

Path lengths: the number of distinct paths through the net's graph, per length, counted by dynamic
programming over the blocks (a path picks, in every block, one of its terms: shortcut or branch,
left or right, a column at a join). In ``cross`` the two streams count as separate inputs of each
block (the first block reads the stem output twice). Lengths follow each family's own depth
convention, so the longest path equals the network's ``longest_path`` in ``gluonfuse summary``:
for the fusion nets the stem convolution, every convolution on the path (a 1x1 projection shortcut
counts as one) and the Dense layer; for FractalNet the convolutions only (FractalNet-20's deepest path
is 20). A resnet of n blocks has 2^n paths; with identity shortcuts only, C(n, k) of them take k
residual branches.

Each component is evaluated with the trainer's exact :func:`gluonfuse.train.evaluate.evaluate` on
the run's test ``.rec`` (or another one), with the run's normalisation; every record counts once.
"""
import collections
import dataclasses
import itertools
import math
import os
import random
import time

import mxnet as mx

from gluonfuse.errors import DataError
from gluonfuse.io import saved_figure
from gluonfuse.models import get_entry
from gluonfuse.models.views import Branch, BranchView, hybridized  # noqa: F401 - this module's API

# family -> the analysis it gets
KINDS = {"fuse3": "members", "fuse6": "members", "ensemble": "members", "fractalnet": "columns",
         "resnet": "lesion", "cross": "lesion", "half": "lesion", "side": "lesion"}
FORMATS = ("table", "csv", "markdown", "json")
DEFAULT_DRAWS = 3


def analysis_kind(network):
    """``members``, ``columns`` or ``lesion`` for a registered network; ValueError for the others."""
    family = get_entry(network).family
    if family not in KINDS:
        supported = ", ".join(f"{k} ({v})" for k, v in KINDS.items())
        raise ValueError(f"gluonfuse analyze has no ensemble view of {network!r} (family {family!r}): "
                         f"it has no branches or columns to evaluate apart. Supported: {supported}")
    return KINDS[family]


# ---------------------------------------------------------------- the nets' own views

def branches(net):
    """Every removable branch of ``net``, in depth order (gluonfuse.models.views)."""
    return net.branches()


def fusion_paths(net, removed=()):
    """Path-length polynomial (Counter {length: paths}) of ``net`` with ``removed`` branches out."""
    return net.path_lengths(removed)


def fractal_paths(net):
    """Path-length polynomial of a FractalNet (or one of its columns): convolutions only."""
    return net.path_lengths()


# ---------------------------------------------------------------- components

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


def _poly_stats(poly):
    return max(poly), sum(poly.values())


def member_components(net):
    """fuse3/fuse6/ensemble: the full net and its 2^k single-path members (``L``/``R`` per block)."""
    comps = [Component("full", "full", *_poly_stats(fusion_paths(net)), build=lambda: net)]
    for name, removed in net.members():
        comps.append(Component(name, "member", *_poly_stats(fusion_paths(net, removed)),
                               removed=tuple(b.label for b in sorted(removed)),
                               build=lambda r=removed: hybridized(BranchView(net, r))))
    return comps


def column_components(net):
    """FractalNet: the full net and every column alone (``column_net(c)``, the same Parameters)."""
    from gluonfuse.train.evaluate import column_view, has_columns

    if not has_columns(net):
        raise ValueError(f"{net.spec.name} is a single FractalNet column; analyse the full net's run")
    comps = [Component("full", "full", *_poly_stats(fractal_paths(net)), build=lambda: net)]
    for c in range(1, net.spec.columns + 1):
        comps.append(Component(f"column{c}", "column", *_poly_stats(fractal_paths(net.column_net(c))),
                               build=lambda c=c: column_view(net, c)))
    return comps


def _valid(net, removed):
    return any(fusion_paths(net, removed).values())


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
    all_branches = branches(net)
    if max_lesions > len(all_branches):
        raise ValueError(f"--max-lesions {max_lesions} exceeds the {len(all_branches)} removable branches "
                         f"of this {net.spec.network}")
    rng = random.Random(seed)
    out = []
    for k in range(1, max_lesions + 1):
        drawn = []
        if math.comb(len(all_branches), k) <= draws:  # few enough: take every set, in order
            drawn = [frozenset(c) for c in itertools.combinations(all_branches, k)]
            drawn = [r for r in drawn if _valid(net, r)]
        else:
            for _ in range(draws):
                for _ in range(1000):
                    removed = frozenset(rng.sample(all_branches, k))
                    if removed not in drawn and _valid(net, removed):
                        drawn.append(removed)
                        break
        if not drawn:
            raise ValueError(f"--max-lesions {max_lesions}: no removal of {k} branches keeps every block "
                             f"of this {net.spec.network} connected; use a smaller --max-lesions")
        out += [(k, d, removed) for d, removed in enumerate(drawn, start=1)]
    return out


def lesion_components(net, max_lesions=0, draws=DEFAULT_DRAWS, seed=0):
    """resnet/cross/half/side: the full net, each branch removed alone, then random lesions."""
    comps = [Component("full", "full", *_poly_stats(fusion_paths(net)), build=lambda: net)]
    for b in branches(net):
        removed = frozenset([b])
        if not _valid(net, removed):
            continue
        comps.append(Component(f"without {b.label}", "single", *_poly_stats(fusion_paths(net, removed)),
                               removed=(b.label,), position=b.position,
                               build=lambda r=removed: hybridized(BranchView(net, r))))
    for k, d, removed in lesion_sets(net, max_lesions, draws, seed):
        comps.append(Component(f"random k={k} #{d}", "random", *_poly_stats(fusion_paths(net, removed)),
                               removed=tuple(b.label for b in sorted(removed)), draw=d,
                               build=lambda r=removed: hybridized(BranchView(net, r))))
    return comps


def components(net, kind, max_lesions=0, draws=DEFAULT_DRAWS, seed=0):
    """The components of ``net`` for analysis ``kind`` (see :data:`KINDS`), the full net first."""
    if kind == "members":
        return member_components(net)
    if kind == "columns":
        return column_components(net)
    return lesion_components(net, max_lesions, draws, seed)


def path_distribution(net, kind):
    """``[(length, paths), ...]`` of the whole net, shortest first."""
    poly = fractal_paths(net) if kind == "columns" else fusion_paths(net)
    return sorted(poly.items())


# ---------------------------------------------------------------- the analysis of a run

def analyze_run(run_dir, which="best", data=None, contexts=None, batch_size=None, max_lesions=0,
                draws=DEFAULT_DRAWS, seed=0, threads=2, progress=None):
    """Evaluate every component of a trained run on a ``.rec`` (default: the run's test set).

    Returns a JSON-ready dict: ``run``, ``network``, ``kind``, ``which``, ``data``, ``count``,
    ``components`` (the full net first; each with ``error``, ``top5_error``, ``loss`` as fractions),
    ``path_lengths`` and ``summary``. ``progress(i, n, component_row)`` is called after each
    component. Raises ValueError for a network without an ensemble view, DataError for bad files.
    """
    from gluonfuse.train.data import count_records, record_iter
    from gluonfuse.train.evaluate import _stored_size, evaluate
    from gluonfuse.train.rundir import load_run

    run = load_run(run_dir)
    cfg = run.config
    kind = analysis_kind(cfg["network"])
    if data is None:
        data = os.path.join(cfg["data_dir"], "test.rec")
        if not os.path.isfile(data):
            raise DataError(f"{data} not found: the test set named by {os.path.join(run_dir, 'config.json')} "
                            "(data_dir); give --data PATH.rec")
    elif not os.path.isfile(data):
        raise DataError(f"record file not found: {data}")
    contexts = contexts or [mx.cpu()]
    net = run.build_network(which, ctx=contexts)
    net.hybridize(static_alloc=True, static_shape=True)
    comps = components(net, kind, max_lesions, draws, seed)
    batch_size = batch_size or cfg.get("test_batch_size") or 64
    expected = count_records(data)
    rows = []
    for i, comp in enumerate(comps, start=1):
        start = time.time()
        it = record_iter(data, batch_size, cfg["input_shape"], cfg["mean"], cfg["std"], threads=threads,
                         stored_size=_stored_size(run.dataset_meta))
        result = evaluate(comp.build(), it, contexts, cfg["classes"], expected=expected, source=data)
        row = dict(comp.row(), error=result["error"], top5_error=result["top5_error"], loss=result["loss"],
                   seconds=round(time.time() - start, 3))
        rows.append(row)
        if progress:
            progress(i, len(comps), row)
    out = {"run": run_dir, "network": cfg["network"], "model_kwargs": cfg.get("model_kwargs", {}),
           "kind": kind, "which": which, "data": data, "count": expected,
           "epoch": _epoch_of(run, which),
           "components": rows,
           "path_lengths": [{"length": length, "paths": n} for length, n in path_distribution(net, kind)],
           "batchnorm": "trained running statistics, as they are, for every component"}
    out["summary"] = summarize(out)
    return out


def _epoch_of(run, which):
    if which == "best":
        return run.status.get("best_epoch")
    if which == "last":
        return run.status.get("epoch")
    return which


# ---------------------------------------------------------------- summary and output

def summarize(analysis):
    """The headline numbers: deepest vs strongest component, or the lesion study's averages."""
    rows = analysis["components"]
    full = rows[0]
    parts = [r for r in rows[1:] if r["kind"] in ("member", "column")]
    summary = {"full_error": full["error"]}
    if parts:
        deepest_depth = max(r["depth"] for r in parts)
        deepest = [r for r in parts if r["depth"] == deepest_depth]
        best_error = min(r["error"] for r in parts)
        strongest = [r for r in parts if r["error"] == best_error]
        summary.update(
            deepest=[r["name"] for r in deepest], deepest_depth=deepest_depth,
            deepest_error=min(r["error"] for r in deepest),
            strongest=[r["name"] for r in strongest], strongest_error=best_error,
            strongest_depths=sorted({r["depth"] for r in strongest}),
            same_depth=len({r["depth"] for r in parts}) == 1,
            deepest_is_strongest=any(r["error"] == best_error for r in deepest))
        return summary
    singles = [r for r in rows if r["kind"] == "single"]
    if singles:
        worst = max(singles, key=lambda r: r["error"])
        summary.update(single_mean_error=sum(r["error"] for r in singles) / len(singles),
                       single_worst=worst["name"], single_worst_error=worst["error"],
                       single_count=len(singles))
    by_k = collections.defaultdict(list)
    for r in rows:
        if r["kind"] == "random":
            by_k[len(r["removed"])].append(r["error"])
    summary["random"] = [{"k": k, "draws": len(v), "mean_error": sum(v) / len(v),
                          "std_error": math.sqrt(sum((e - sum(v) / len(v)) ** 2 for e in v) / len(v))}
                         for k, v in sorted(by_k.items())]
    return summary


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}"


def summary_lines(analysis):
    """Plain-language lines under the table."""
    s, rows = analysis["summary"], analysis["components"]
    lines = []
    if "deepest" in s:
        what = "member" if analysis["kind"] == "members" else "column"
        if s["same_depth"]:
            lines.append(f"Every {what} has depth {s['deepest_depth']}: depth cannot separate them "
                         "(build a deeper net to test the claim).")
        deep = ", ".join(s["deepest"])
        strong = ", ".join(s["strongest"])
        lines.append(f"Deepest {what}: {deep} (depth {s['deepest_depth']}), error {_pct(s['deepest_error'])}%. "
                     f"Strongest {what}: {strong} (depth {'/'.join(map(str, s['strongest_depths']))}), "
                     f"error {_pct(s['strongest_error'])}%.")
        if not s["same_depth"]:
            lines.append("The deepest component is " + ("" if s["deepest_is_strongest"] else "not ")
                         + "the strongest contributor on this run.")
    if "single_mean_error" in s:
        lines.append(f"Removing one branch: mean error {_pct(s['single_mean_error'])}% over "
                     f"{s['single_count']} lesions (full net {_pct(rows[0]['error'])}%); the largest effect: "
                     f"{s['single_worst']}, {_pct(s['single_worst_error'])}%.")
    for r in s.get("random", []):
        lines.append(f"Removing {r['k']} random branch{'es' if r['k'] > 1 else ''}: error "
                     f"{_pct(r['mean_error'])} ± {_pct(r['std_error'])}% over {r['draws']} draws.")
    lines.append("BatchNorm: the trained running statistics, as they are, for every component.")
    return lines


COLUMNS = ("name", "kind", "depth", "paths", "removed", "error %", "top-5 error %", "loss")
CSV_COLUMNS = ("name", "kind", "depth", "paths", "removed_count", "removed", "draw", "position",
               "error_pct", "top5_error_pct", "loss")


def _table(header, rows, fmt):
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return lines + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]


def component_cells(row):
    removed = row["removed"]
    if row["kind"] in ("single", "random"):
        shown = removed[0] if len(removed) == 1 else f"{len(removed)} branches"
    else:
        shown = "-"  # members and columns are named by what they keep
    return [row["name"], row["kind"], str(row["depth"]), str(row["paths"]), shown, _pct(row["error"]),
            _pct(row["top5_error"]), f"{row['loss']:.4f}"]


def format_analysis(analysis, fmt="table"):
    """The analysis as an aligned table, Markdown, CSV (components only) or JSON."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if fmt == "json":
        import json

        return json.dumps(analysis, indent=2, sort_keys=True) + "\n"
    if fmt == "csv":
        return components_csv(analysis)
    a = analysis
    epoch = f", epoch {a['epoch']}" if a.get("epoch") is not None else ""
    head = (f"Ensemble view ({a['kind']}) of {a['run']}: {a['network']}, {a['which']} weights{epoch}; "
            f"{a['count']} images of {a['data']}")
    lines = [head, ""] + _table(list(COLUMNS), [component_cells(r) for r in a["components"]], fmt)
    lines += [""] + summary_lines(a)
    total = sum(p["paths"] for p in a["path_lengths"])
    lines += ["", f"Path lengths ({total} paths; {_length_unit(a)}):", ""]
    lines += _table(["length", "paths", "share %"],
                    [[str(p["length"]), str(p["paths"]), f"{100 * p['paths'] / total:.2f}"]
                     for p in a["path_lengths"]], fmt)
    return "\n".join(lines) + "\n"


def _length_unit(analysis):
    if analysis["kind"] == "columns":
        return "length = convolutions on the path"
    return "length = stem convolution + convolutions on the path + Dense"


def components_csv(analysis):
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in analysis["components"]:
        writer.writerow([r["name"], r["kind"], r["depth"], r["paths"], len(r["removed"]), " ".join(r["removed"]),
                         "" if r["draw"] is None else r["draw"], "" if r["position"] is None else r["position"],
                         f"{100 * r['error']:.4f}",
                         "" if r["top5_error"] is None else f"{100 * r['top5_error']:.4f}", f"{r['loss']:.6f}"])
    return buf.getvalue()


def path_lengths_csv(analysis):
    lines = ["length,paths"] + [f"{p['length']},{p['paths']}" for p in analysis["path_lengths"]]
    return "\n".join(lines) + "\n"


def write_outputs(analysis, out_dir, plot=None):
    """``analysis.json``, ``components.csv``, ``path_lengths.csv`` and the plot into ``out_dir``."""
    from gluonfuse.io import atomic_path, write_json

    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "analysis.json"),
             "components": os.path.join(out_dir, "components.csv"),
             "path_lengths": os.path.join(out_dir, "path_lengths.csv")}
    write_json(paths["json"], analysis)
    for key, text in (("components", components_csv(analysis)), ("path_lengths", path_lengths_csv(analysis))):
        with atomic_path(paths[key]) as tmp:
            with open(tmp, "w") as f:
                f.write(text)
    paths["plot"] = plot_analysis(analysis, plot or os.path.join(out_dir, "analysis.png"))
    return paths


# ---------------------------------------------------------------- plot

def plot_analysis(analysis, out):
    """Component accuracy against depth (members, columns) or the lesion curves, plus path lengths."""
    rows = analysis["components"]
    full_acc = 100 * (1 - rows[0]["error"])
    lesion = analysis["kind"] == "lesion"
    randoms = [r for r in rows if r["kind"] == "random"]
    panels = 2 + (1 if lesion and randoms else 0)
    with saved_figure(out, ncols=panels, figsize=(5.5 * panels, 4.5)) as (fig, axes):
        from matplotlib.ticker import MaxNLocator

        ax = axes[0]
        if lesion:
            singles = [r for r in rows if r["kind"] == "single"]
            by_branch = collections.defaultdict(list)  # 'g2.b1.a' -> 'a'; resnet's 'g2.b1' -> 'residual'
            for r in singles:
                parts = r["removed"][0].split(".")
                by_branch[parts[2] if len(parts) == 3 else "residual"].append(r)
            for name, pick in sorted(by_branch.items()):
                ax.plot([r["position"] for r in pick], [100 * (1 - r["error"]) for r in pick], "o-",
                        label="residual branch removed" if name == "residual" else f"branch {name} removed",
                        markersize=4)
            starts = {}  # stage -> position of its first block
            for r in singles:
                stage = r["removed"][0].split(".")[0]
                starts[stage] = min(starts.get(stage, r["position"]), r["position"])
            for stage, first in sorted(starts.items())[1:]:
                ax.axvline(first - 0.5, color="grey", linestyle=":", linewidth=1)  # a stage (and width) change
            ax.axhline(full_acc, color="k", linestyle="--", linewidth=1, label=f"full net {full_acc:.2f}%")
            ax.set_xlabel("block whose branch is removed (input to output)")
            ax.set_title("single lesions")
        else:
            parts = [r for r in rows if r["kind"] in ("member", "column")]
            ax.scatter([r["depth"] for r in parts], [100 * (1 - r["error"]) for r in parts], zorder=3)
            for r in parts:
                ax.annotate(r["name"], (r["depth"], 100 * (1 - r["error"])), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
            ax.axhline(full_acc, color="k", linestyle="--", linewidth=1, label=f"full net {full_acc:.2f}%")
            ax.set_xlabel("component depth (longest path, layers)")
            ax.set_title(f"{analysis['kind']} of {analysis['network']}")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if lesion and randoms:
            ax = axes[1]
            ks = sorted({len(r["removed"]) for r in randoms})
            ax.scatter([len(r["removed"]) for r in randoms], [100 * (1 - r["error"]) for r in randoms],
                       s=12, alpha=0.6, label="draws")
            means = [100 * (1 - s["mean_error"]) for s in analysis["summary"]["random"]]
            ax.plot([0] + ks, [full_acc] + means, "o-", color="C1", label="mean")
            ax.set_xlabel("branches removed at random")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title("random lesions")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        ax = axes[-1]
        lengths = analysis["path_lengths"]
        total = sum(p["paths"] for p in lengths)
        ax.bar([p["length"] for p in lengths], [100 * p["paths"] / total for p in lengths], width=0.8)
        ax.set_xlabel("path length (layers)")
        ax.set_ylabel("share of paths (%)")
        ax.set_title(f"{total} paths")
        ax.grid(True, alpha=0.3, axis="y")
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # depths, blocks and counts are whole
    return out
