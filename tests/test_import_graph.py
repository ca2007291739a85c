"""The import graph reads as the pipeline: core -> cluster -> pretrain -> transfer -> benchmarks -> results.

Every import of every module (also the ones inside functions) is read from the source with ``ast``; a module
may import its own stage or an earlier one, never a later one, and no two modules import each other, directly or
through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("core", "cluster", "pretrain", "transfer", "benchmarks", "results")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in STAGES:
        for f in (REPO / pkg).rglob("*.py"):
            out[".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = f
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node, except those under ``if TYPE_CHECKING:`` (annotations only: never imported at run time)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", getattr(child.test, "attr", "")) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the suite's modules (and stage packages) it imports."""
    mods = _modules()
    return {m: {n for n in _imports(f) if n != m and (n in mods or n.split(".")[0] in STAGES)} for m, f in mods.items()}


def test_every_stage_exists() -> None:
    assert all((REPO / s / "__init__.py").is_file() for s in STAGES)


def test_no_module_imports_a_later_stage() -> None:
    rank = {s: i for i, s in enumerate(STAGES)}
    upward = sorted(f"{m} imports {n}" for m, deps in _graph().items() for n in deps
                    if rank[n.split(".")[0]] > rank[m.split(".")[0]])
    assert upward == []


def test_no_import_cycles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_graph_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import benchmarks\n\n"
                   "def f():\n    from results.tables import build_tables\n")
    assert {"os", "results.tables", "results.tables.build_tables"} <= _imports(src)
    assert "benchmarks" not in _imports(src)  # annotations only
