"""The import graph: no cycles, and no module imports a layer above its own (lazy imports inside functions count)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS = ("analysis", "analysis.core", "analysis.models", "analysis.data", "analysis.evaluation", "analysis.importance",
          "analysis.pruning", "analysis.training", "analysis.experiments", "figures", "cards", "cli_commands", "cli")


def _modules() -> dict[str, Path]:
    files = [*ROOT.joinpath("analysis").rglob("*.py"), *ROOT.joinpath("figures").rglob("*.py"),
             *ROOT.joinpath("cards").rglob("*.py"), *ROOT.joinpath("cli_commands").rglob("*.py"),
             ROOT / "cli.py"]
    out = {}
    for f in files:
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its source."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def layer(module: str) -> int:
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if layer(b) > layer(a)]
    assert upward == [], "the library must not know its presentation layer, nor a layer the data reaches later"


def test_every_module_is_in_a_layer():
    assert all(layer(m) >= 0 for m in import_graph())


def test_the_checks_catch_what_they_should():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("analysis.pruning.export") > layer("analysis.importance.results")
    assert layer("cards.publish") > layer("analysis.pruning.export")  # so export importing cards is upward
