"""Imports inside gluonfuse point one way: no module imports, even inside a function, a module that
imports it back (directly or through others). Read from the source with ``ast``, so imports made
lazily inside functions count too."""
import ast
import os

from conftest import REPO

PACKAGE = os.path.join(REPO, "gluonfuse")


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for fname in files:
            if fname.endswith(".py"):
                path = os.path.join(folder, fname)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _imported(name, path, modules):
    """The package's modules that ``name`` imports anywhere in its source (its parents excepted:
    every module loads its package's ``__init__`` anyway)."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in modules and m != name and not name.startswith(m + ".")}


def import_graph():
    modules = _modules()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}  # 1: on the current path, 2: finished

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_graph_is_read_correctly():
    graph = import_graph()
    assert "gluonfuse.data.recordio" in graph["gluonfuse.data.check"]
    assert "gluonfuse.data.sources" in graph["gluonfuse.data.prepare"]
    assert "gluonfuse.data.prepare" in graph["gluonfuse.train.data"]  # imported inside a function
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_gluonfuse():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_data_library_imports_neither_models_nor_train():
    for name, deps in import_graph().items():
        if name.startswith("gluonfuse.data"):
            bad = sorted(d for d in deps if d.startswith(("gluonfuse.models", "gluonfuse.train")))
            assert not bad, f"{name} imports {bad}"
