"""The layers hold (DESIGN.md): ``docqa/`` is the core every side stands on and imports nothing of
``ingest/``, ``service/`` or ``finetune/``; those reach ``ingest`` only through its public modules; and
no module imports itself back through others. Imports inside functions count too: a lazy import
hides a cycle from Python's start-up, not from a reader of the code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("docqa", "ingest", "service", "finetune")
# what service/ and finetune/ may import of ingest: its entry points, not its insides
INGEST_PUBLIC = {"ingest", "ingest.cli", "ingest.chunking", "ingest.loaders", "ingest.pipeline"}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for pkg in PACKAGES:
        for p in (REPO / pkg).rglob("*.py"):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement, at module level or inside functions, except under ``if TYPE_CHECKING``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (i for n in node.orelse for i in _imports_in(n))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports. ``from pkg import sub`` is an edge to ``pkg.sub`` when
    ``sub`` is a module, else to ``pkg``; the parent packages Python imports on the way are not edges
    (a package's ``__init__`` importing its own modules is how packages work)."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, (path, is_pkg) in mods.items():
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = mod.split(".")[: None if is_pkg else -1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            deps |= {k for t in targets if (k := known(t)) and k != mod}
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    g = import_graph()
    assert {"docqa.search", "ingest.pipeline", "service.app", "finetune.cli"} <= set(g), "the walk missed modules"
    assert "docqa.kb.manifest" in g["docqa.kb.writer"], "the walk missed imports"
    return g


def test_docqa_imports_none_of_the_sides(graph):
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] == "docqa"
                 for d in deps if d.split(".")[0] != "docqa")
    assert not bad, "docqa/ must not import ingest/, service/ or finetune/:\n" + "\n".join(bad)


def test_the_sides_use_only_the_public_modules_of_ingest(graph):
    bad = sorted(f"{m} -> {d}" for m, deps in graph.items() if m.split(".")[0] in ("service", "finetune")
                 for d in deps if d.split(".")[0] == "ingest" and d not in INGEST_PUBLIC)
    assert not bad, f"service/ and finetune/ may import only {sorted(INGEST_PUBLIC)} of ingest:\n" + "\n".join(bad)


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert not found, "import cycles (each a set of modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_importing_docqa_loads_no_module_of_the_sides():
    """At run time too: every module of docqa imported, and not one of ingest, service or finetune with it."""
    code = (
        "import importlib, pkgutil, sys, docqa\n"
        "for m in pkgutil.walk_packages(docqa.__path__, 'docqa.'):\n"
        "    importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n.split('.')[0] in ('ingest', 'service', 'finetune'))\n"
        "print(len([n for n in sys.modules if n.startswith('docqa.')]), loaded)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.split(" ", 1)
    assert int(count) >= 20 and loaded.strip() == "[]", out.stdout
