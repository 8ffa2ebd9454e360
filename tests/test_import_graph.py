"""The import graph of the ``cromss`` package (every import, lazy ones in functions included, read
with ``ast``): no cycle, no library module importing a command line, and the networks at the bottom."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cromss"
ENTRY_POINTS = {"cromss.cli", "cromss.__main__"}
"""The ``cromss`` command and ``python -m cromss``: the only modules that may import ``cromss.cli``."""
NETWORK_DEPENDENCIES = {"cromss.constants", "cromss.errors"}
"""All that :mod:`cromss.models` (networks only) may import from the package."""
ABOVE_WEIGHTS = ("cromss.training", "cromss.predict", "cromss.report", "cromss.cli")
"""Layers that use weights files: :mod:`cromss.weights` never imports them."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) \
                if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            for alias in node.names:  # `from cromss.training import checkpoint` is a module
                submodule = f"{module}.{alias.name}"
                found.add(submodule if submodule in MODULES else module)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (empty for an acyclic graph)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([*stack[stack.index(target):], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_the_graph_is_read_right():
    assert {"cromss.models", "cromss.weights.files", "cromss.training.finetune"} <= set(GRAPH)
    assert "cromss.weights.files" in GRAPH["cromss.training.finetune"]  # from-import of a module
    assert "cromss.models" in GRAPH["cromss.weights.trained"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_package_has_no_import_cycle():
    assert cycles(GRAPH) == []


def test_no_library_module_imports_the_command_line():
    stage_clis = {name for name in MODULES if name.endswith(".cli")}
    importers = {name for name, targets in GRAPH.items() if "cromss.cli" in targets}
    assert importers <= ENTRY_POINTS | stage_clis  # the stages' commands read its `Groups` type
    for name, targets in GRAPH.items():
        if not name.endswith(".cli") and name not in ENTRY_POINTS:
            assert not targets & stage_clis, f"{name} imports {targets & stage_clis}"


def test_the_networks_import_nothing_above_them():
    assert GRAPH["cromss.models"] <= NETWORK_DEPENDENCIES, GRAPH["cromss.models"]


def test_weights_files_import_no_layer_that_uses_them():
    for name, targets in GRAPH.items():
        if name.startswith("cromss.weights.") and name != "cromss.weights.cli":
            upward = {t for t in targets if t.startswith(ABOVE_WEIGHTS)}
            assert not upward, f"{name} imports {upward}"
