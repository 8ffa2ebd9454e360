"""The test suite's own shape: tests mirror the package, and no test module imports another."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

TESTS = ROOT / "tests"
NOT_TESTS = {"helpers", "fixtures", "configs", "__pycache__"}  # shared code, test data, configs


def suite_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py")
                  if not NOT_TESTS & set(p.relative_to(TESTS).parts[:-1]))


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_test_module_imports_another():
    tests = {p.stem for p in suite_modules()}
    assert {"conftest", "test_suite_layout", "test_pretrain"} <= tests  # the walk finds them
    offending = {str(p.relative_to(TESTS)): sorted(imported_modules(p) & tests)
                 for p in suite_modules() + sorted((TESTS / "helpers").rglob("*.py"))}
    assert {path: names for path, names in offending.items() if names} == {}


def test_test_folders_mirror_the_package_or_the_workflow():
    folders = {p.name for p in TESTS.iterdir() if p.is_dir()} - NOT_TESTS - {".pytest_cache"}
    package = {p.name for p in (ROOT / "cromss").iterdir() if (p / "__init__.py").is_file()}
    assert folders and folders <= package | {"workflow"}


def test_test_module_names_are_unique():
    # pytest's default import mode puts each test folder on sys.path: a repeated basename would
    # shadow the other module
    stems = [p.stem for p in suite_modules() if p.stem != "conftest"]
    assert len(stems) == len(set(stems))
