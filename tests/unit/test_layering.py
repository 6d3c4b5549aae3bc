"""Dependencies point one way (DESIGN.md): the core never imports the layers built on it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UPPER_LAYERS = {"training", "serving", "benchmarks"}


def imported_top_levels(path: Path, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


CORE_MODULES = sorted(p for p in (ROOT / "journey").rglob("*.py") if "cli" not in p.relative_to(ROOT).parts)


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_modules_never_import_upper_layers(path: Path) -> None:
    assert not imported_top_levels(path, module_level_only=False) & UPPER_LAYERS


@pytest.mark.parametrize("path", sorted((ROOT / "journey" / "cli").rglob("*.py")), ids=lambda p: p.name)
def test_cli_reaches_upper_layers_only_lazily(path: Path) -> None:
    assert not imported_top_levels(path, module_level_only=True) & UPPER_LAYERS
