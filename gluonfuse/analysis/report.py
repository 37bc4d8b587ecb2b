"""The analysis as text and pictures: tables (aligned, Markdown, CSV, JSON), a summary, files, a plot.

Everything here reads only the JSON-ready dict :func:`gluonfuse.analysis.components.analyze_run`
returns (the content of ``analysis.json``).
"""
import collections
import math
import os

from gluonfuse.io import saved_figure

FORMATS = ("table", "csv", "markdown", "json")


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
    levels = {b["label"] for b in analysis["branches"] if b["kind"] == "level"}
    if levels:  # RoR: the shortcuts that span a stage or the net, each removed alone
        summary["shortcuts"] = [{"removed": r["removed"][0], "error": r["error"]}
                                for r in singles if r["removed"][0] in levels]
    survivals = [b["survival"] for b in analysis["branches"] if b["survival"] < 1]
    if survivals:
        summary["survival_range"] = [max(survivals), min(survivals)]
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
    if s.get("shortcuts"):
        lines.append("Removing one level shortcut: " + ", ".join(
            f"{r['removed']} {_pct(r['error'])}%" for r in s["shortcuts"]) + ".")
    for r in s.get("random", []):
        lines.append(f"Removing {r['k']} random branch{'es' if r['k'] > 1 else ''}: error "
                     f"{_pct(r['mean_error'])} ± {_pct(r['std_error'])}% over {r['draws']} draws.")
    if "survival_range" in s:
        high, low = s["survival_range"]
        lines.append(f"Stochastic depth: every residual a component keeps is scaled by its survival "
                     f"probability ({high:.2f} down to {low:.2f}), as at test time.")
    lines.append("BatchNorm: the trained running statistics, as they are, for every component.")
    paths = collections.Counter(r.get("path", "plain") for r in rows)
    if paths.get("fused"):
        lines.append(f"Computed with the MKLDNN-fused fp32 graph: {paths['fused']} of {len(rows)} components "
                     f"(each checked against the plain graph on one batch); plain fp32: {paths['plain']}.")
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
    return f"length = {analysis['path_unit']}"


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

        (_plot_singles if lesion else _plot_parts)(axes[0], analysis)
        if lesion and randoms:
            _plot_randoms(axes[1], analysis, randoms)
        for ax in axes[:-1]:
            ax.axhline(full_acc, color="k", linestyle="--", linewidth=1, label=f"full net {full_acc:.2f}%")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        _plot_path_lengths(axes[-1], analysis["path_lengths"])
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # depths, blocks and counts are whole
    return out


def _lesion_group(branch):
    if branch["kind"] == "level":
        return f"{branch['name']} shortcut removed"
    return "residual branch removed" if branch["name"] == "residual" else f"branch {branch['name']} removed"


def _plot_singles(ax, analysis):
    """Accuracy with one branch removed, against the position of its block, one line per kind of branch."""
    branch_of = {b["label"]: b for b in analysis["branches"]}
    singles = [r for r in analysis["components"] if r["kind"] == "single"]
    groups = collections.defaultdict(list)
    for r in singles:
        groups[_lesion_group(branch_of[r["removed"][0]])].append(r)
    for name, pick in sorted(groups.items()):
        ax.plot([r["position"] for r in pick], [100 * (1 - r["error"]) for r in pick], "o-", label=name,
                markersize=4)
    spans = {}  # stage -> (first, last) position of its removable branches
    for b in analysis["branches"]:
        first, last = spans.get(b["stage"], (b["position"], b["position"]))
        spans[b["stage"]] = (min(first, b["position"]), max(last, b["position"]))
    ordered = [spans[s] for s in sorted(spans)]
    for (_, last), (first, _) in zip(ordered, ordered[1:]):
        ax.axvline((last + first) / 2, color="grey", linestyle=":", linewidth=1)  # a stage (and width) change
    ax.set_xlabel("block whose branch is removed (input to output)")
    ax.set_title("single lesions")


def _plot_parts(ax, analysis):
    """Members or columns: accuracy against depth, each named."""
    parts = [r for r in analysis["components"] if r["kind"] in ("member", "column")]
    ax.scatter([r["depth"] for r in parts], [100 * (1 - r["error"]) for r in parts], zorder=3)
    for r in parts:
        ax.annotate(r["name"], (r["depth"], 100 * (1 - r["error"])), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("component depth (longest path, layers)")
    ax.set_title(f"{analysis['kind']} of {analysis['network']}")


def _plot_randoms(ax, analysis, randoms):
    full_acc = 100 * (1 - analysis["components"][0]["error"])
    ks = sorted({len(r["removed"]) for r in randoms})
    ax.scatter([len(r["removed"]) for r in randoms], [100 * (1 - r["error"]) for r in randoms],
               s=12, alpha=0.6, label="draws")
    means = [100 * (1 - s["mean_error"]) for s in analysis["summary"]["random"]]
    ax.plot([0] + ks, [full_acc] + means, "o-", color="C1", label="mean")
    ax.set_xlabel("branches removed at random")
    ax.set_title("random lesions")


def _plot_path_lengths(ax, lengths):
    total = sum(p["paths"] for p in lengths)
    ax.bar([p["length"] for p in lengths], [100 * p["paths"] / total for p in lengths], width=0.8)
    ax.set_xlabel("path length (layers)")
    ax.set_ylabel("share of paths (%)")
    ax.set_title(f"{total} paths")
    ax.grid(True, alpha=0.3, axis="y")
