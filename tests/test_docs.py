"""docs/ against the code: the tables that carry numbers, and every citation of a docs section.

The tables are parsed from the Markdown and compared with what the code holds, so a change on either
side without the other fails here:

* docs/anchors.md "Anchor table": exactly the registry's anchors (``anchors=`` of every family and
  preset), compared as (family, full spec arguments) -> count; "Computed counts" recounted;
* docs/recipes.md "Recipe table", "Dataset departures", "Normalisation": ``RECIPES``,
  ``recipe_defaults`` and ``data.presets.PRESETS``;
* docs/networks.md names every registered family and preset;
* every ``docs/<page>.md#<anchor>`` written anywhere in the repository, and every local link in the
  Markdown files, resolves to a file and a heading (GitHub's anchor rule).
"""
import ast
import json
import os
import re
from fractions import Fraction

import pytest

from gluonfuse.data.presets import PRESETS
from gluonfuse.models import count_params, get_entry, get_model, get_spec, list_models
from gluonfuse.train import config as train_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
NONE = ("—", "-", "")


# ---------------------------------------------------------------- Markdown helpers

def _lines(path):
    """The lines of a Markdown file outside fenced code blocks."""
    out, fenced = [], False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if not fenced:
                out.append(line.rstrip("\n"))
    return out


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link anchors on its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path):
    """Every anchor of a Markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen, result = {}, set()
    for line in _lines(path):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


def table(path, heading):
    """The first Markdown table under ``heading``: a list of {column header: cell text}."""
    lines = _lines(path)
    start = next(i for i, line in enumerate(lines) if re.match(rf"#+\s+{re.escape(heading)}\s*$", line))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    assert len(rows) > 2, f"{path}: no table under '{heading}'"
    header = rows[0]
    return [dict(zip(header, r)) for r in rows[2:]]


def _code(cell):
    return cell.strip().strip("`").strip()


def _number(cell):
    return int(cell.replace(",", ""))


def _assignments(cell):
    """``"aug_type=0, epochs=10"`` or ``"dropout=0.4"`` -> dict (values as Python literals)."""
    if _code(cell) in NONE:
        return {}
    out = {}
    for part in re.split(r"[,\s]+", _code(cell)):
        if part:
            key, value = part.split("=", 1)
            out[key] = _literal(value)
    return out


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# ---------------------------------------------------------------- parameter anchors

def _key(name, kwargs):
    """A network configuration as (family, every spec argument), whichever name built it."""
    spec = get_spec(name, **kwargs)
    return get_entry(name).family, json.dumps(spec.kwargs(), sort_keys=True)


def _documented(heading):
    """{configuration key: count} from a table of docs/anchors.md; checks preset == family call."""
    found = {}
    for row in table(os.path.join(DOCS, "anchors.md"), heading):
        family, *args = _code(row["`get_model` arguments"]).split()
        kwargs = {k: _literal(v) for k, v in (a.split("=", 1) for a in args)}
        kwargs["classes"] = int(row["classes"])
        key = _key(family, kwargs)
        preset = _code(row["preset"])
        if preset not in NONE:
            assert _key(preset, {"classes": kwargs["classes"]}) == key, f"{preset} is not {row}"
        assert key not in found, f"docs/anchors.md lists {key} twice"
        found[key] = (_number(row["trainable parameters"]), family, kwargs)
    return found


def _registry_anchors():
    found = {}
    for name in list_models():
        for kwargs, count in get_entry(name).anchors:
            key = _key(name, kwargs)
            assert found.get(key, count) == count, f"{name} {kwargs}: two different anchors"
            found[key] = count
    return found


def test_anchor_table_is_the_registrys_anchors():
    documented = {key: row[0] for key, row in _documented("Anchor table").items()}
    registry = _registry_anchors()
    missing = sorted(set(registry) - set(documented))
    extra = sorted(set(documented) - set(registry))
    assert not missing, f"registry anchors missing from docs/anchors.md: {missing}"
    assert not extra, f"docs/anchors.md rows that are no registry anchor: {extra}"
    wrong = {k: (documented[k], registry[k]) for k in registry if documented[k] != registry[k]}
    assert not wrong, f"docs/anchors.md counts differ from the registry (docs, registry): {wrong}"


def test_computed_counts_are_what_the_code_builds():
    registry = _registry_anchors()
    for key, (count, family, kwargs) in _documented("Computed counts").items():
        assert key not in registry, f"{key} has a registry anchor: move it to the anchor table"
        assert count_params(get_model(family, **kwargs)) == count, (family, kwargs)


# ---------------------------------------------------------------- recipes

RECIPE_FIELDS = ("optimizer", "lr", "lr_factor", "epochs", "batch_size", "wd", "momentum", "aug_type",
                 "lr_schedule", "label_smoothing", "ema", "cutout")


def _recipe_rows():
    return {_code(row["recipe"]): row for row in table(os.path.join(DOCS, "recipes.md"), "Recipe table")}


def test_recipe_table_matches_the_recipes():
    rows = _recipe_rows()
    assert set(rows) == set(train_config.RECIPES)
    for name, row in rows.items():
        r = train_config.RECIPES[name]
        documented = (row["optimizer"], float(row["momentum"]), float(row["lr"]), float(row["lr factor"]),
                      int(row["epochs"]), int(row["batch"]), float(row["weight decay"]), int(row["aug type"]))
        assert documented == (r.optimizer, r.momentum, r.lr, r.lr_factor, r.epochs, r.batch_size, r.wd,
                              r.aug_type), name
        fractions = [Fraction(f) for f in row["lr steps, fractions"].split(",") if _code(f) not in NONE]
        assert fractions == [Fraction(f) for f in r.lr_steps], name
        assert [int(s) for s in row["lr steps, epochs"].split(",") if _code(s) not in NONE] == r.steps(r.epochs), name
        extras = (row["schedule"], Fraction(row["warm-up, fraction"]), float(row["label smoothing"]),
                  float(row["EMA"]), int(row["cutout"]))
        assert extras == (r.lr_schedule, Fraction(r.warmup), r.label_smoothing, r.ema, r.cutout), name
        assert _assignments(row["network defaults"]) == dict(r.model_defaults), name


def test_dataset_departures_match_the_config():
    changes = {}
    for row in table(os.path.join(DOCS, "recipes.md"), "Dataset departures"):
        recipe = _code(row["recipe"])
        recipes = train_config.RECIPES if recipe == "every recipe" else [recipe]
        for name in recipes:
            changes.setdefault((_code(row["dataset"]), name), {}).update(_assignments(row["changes"]))
    datasets = set(train_config.KNOWN_DATASETS) | {d for d, _ in changes}
    for dataset in sorted(datasets):
        for name, r in train_config.RECIPES.items():
            base = {f: getattr(r, f) for f in RECIPE_FIELDS}
            actual = train_config.recipe_defaults(name, dataset)
            got = {k: v for k, v in actual.items() if base.get(k) != v}
            expected = {k: v for k, v in changes.get((dataset, name), {}).items() if base[k] != v}
            assert got == expected, (dataset, name)


def test_normalisation_table_matches_the_presets():
    rows = table(os.path.join(DOCS, "recipes.md"), "Normalisation")
    assert {_code(r["dataset"]) for r in rows} == set(PRESETS)
    for row in rows:
        preset = PRESETS[_code(row["dataset"])]
        assert tuple(float(x) for x in row["mean (R, G, B)"].split(",")) == tuple(preset["mean"])
        assert tuple(float(x) for x in row["std (R, G, B)"].split(",")) == tuple(preset["std"])
        assert int(row["classes"]) == preset["num_classes"]
        assert tuple(int(x) for x in row["input"].split("x")) == tuple(preset["image_shape"])


# ---------------------------------------------------------------- coverage and citations

def test_networks_page_names_every_family_and_preset():
    with open(os.path.join(DOCS, "networks.md"), encoding="utf-8") as f:
        text = f.read()
    missing = [name for name in list_models() if f"`{name}`" not in text]
    assert not missing, f"docs/networks.md does not describe: {missing}"


def test_docs_stand_alone():
    # the docs are the reference the code cites; they must not send the reader to a document
    # that is not in the repository
    for root, _, files in os.walk(DOCS):  # docs/reports/ too
        for name in sorted(files):
            with open(os.path.join(root, name), encoding="utf-8") as f:
                assert not re.search(r"\bSPEC\b", f.read()), f"{os.path.join(root, name)} cites SPEC"


SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "runs", "build", "dist", ".pytest_cache"}
TEXT_SUFFIXES = (".py", ".md", ".cfg", ".toml", ".txt", ".sh", "")


def _repository_text_files():
    for root, dirs, files in os.walk(REPO):
        rel = os.path.relpath(root, REPO)
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                   and not (rel == "." and d == "data")]
        for name in files:
            if os.path.splitext(name)[1] in TEXT_SUFFIXES:
                yield os.path.join(root, name)
        if rel == ".":
            yield os.path.join(REPO, "data", "README.md")


CITATION = re.compile(r"(?<![\w/.-])docs/([\w-]+\.md)(?:#([\w-]+))?")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_cited_docs_section_exists():
    bad = []
    for path in _repository_text_files():
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, OSError):
            continue
        for m in CITATION.finditer(text):
            target = os.path.join(DOCS, m.group(1))
            if not os.path.isfile(target) or (m.group(2) and m.group(2) not in anchors(target)):
                bad.append(f"{os.path.relpath(path, REPO)}: {m.group(0)}")
    assert not bad, "citations of missing docs sections:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", ["README.md"] + sorted(
    os.path.relpath(os.path.join(root, n), REPO) for root, _, files in os.walk(DOCS) for n in files if n.endswith(".md")))
def test_markdown_links_resolve(page):
    source = os.path.join(REPO, page)
    bad = []
    for line in _lines(source):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked here
                continue
            file_part, _, anchor = target.partition("#")
            path = os.path.normpath(os.path.join(os.path.dirname(source), file_part)) if file_part else source
            if not os.path.exists(path):
                bad.append(target)
            elif anchor and path.endswith(".md") and anchor not in anchors(path):
                bad.append(target)
    assert not bad, f"{page}: links that do not resolve: {bad}"


def test_no_citation_leaves_the_repository():
    # code and README cite docs/ (or a paper or the authors' code), never a document a clone lacks
    outside = re.compile(r"\bSPEC\b|notes/README-families|HELPERS\.md")
    here = os.path.abspath(__file__)
    bad = []
    for path in _repository_text_files():
        if os.path.abspath(path) == here:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        bad += [f"{os.path.relpath(path, REPO)}:{i}" for i, line in enumerate(lines, 1) if outside.search(line)]
    assert not bad, f"citations of documents outside the repository: {bad}"
