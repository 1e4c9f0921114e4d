"""The package's import graph has no cycle, lazy imports inside functions and imports for
types only included: every module can be read, and changed, after the ones it imports."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

SRC = ROOT / "src"
PACKAGES = ("loaderbench", "hydra_plugins")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (SRC / package).rglob("*.py"):
            parts = list(path.relative_to(SRC).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source. ``from pkg import
    sub`` is an edge to ``pkg.sub`` only (the package's ``__init__`` runs for any submodule)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules():
    graph = import_graph()
    assert "loaderbench.experiment" in graph and "hydra_plugins.loaderbench_tune" in graph
    assert cycles(graph) == []


def test_the_checker_sees_lazy_imports_and_cycles():
    graph = import_graph()
    assert "loaderbench.experiment" in graph["loaderbench.cli"]  # imported inside run_job
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_job_imports_nothing_from_its_entry_point():
    graph = import_graph()
    below_cli = {"loaderbench.experiment", "loaderbench.job", "loaderbench.record"}
    assert not any("loaderbench.cli" in graph[m] for m in below_cli)
    # the sweep and the tuner meet only in the registry both import
    assert "loaderbench.sweep" not in graph["hydra_plugins.loaderbench_tune"]
    assert "loaderbench.sweep" not in graph["loaderbench.tune"]
