"""The architecture as checks: the import contracts of `.importlinter` (DESIGN.md's layers), dependencies that match
the imports (deptry), module and function sizes, and READMEs that list what their package holds.

`make lint` runs the two tools too; here they run so that `make test` (CI) fails on a broken layer as well.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SOURCE_DIRS = ("journey", "training", "serving", "benchmarks", "cli", "feature_repo", "infra")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# declarative tables, exempt from the module size (DESIGN.md): the three Grafana dashboards, panel by panel
DECLARATIVE = {"infra/grafana/build_dashboards.py"}
PACKAGE_READMES = ("journey", "training", "serving", "feature_repo", "benchmarks", "cli")


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_the_import_contracts_of_the_architecture_hold() -> None:
    done = _run("lint-imports")

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"Contracts: \d+ kept, 0 broken", done.stdout)


def test_every_import_is_a_declared_dependency_and_every_dependency_is_used() -> None:
    done = _run("deptry", ".")

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines_but_the_declarative_tables(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())

    assert lines <= MAX_MODULE_LINES or str(path.relative_to(ROOT)) in DECLARATIVE, f"{lines} lines"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_function_is_over_60_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    long = {f"{f.name} (line {f.lineno})": f.end_lineno - f.lineno + 1 for f in functions if f.end_lineno}

    assert {name: n for name, n in long.items() if n > MAX_FUNCTION_LINES} == {}


@pytest.mark.parametrize("package", PACKAGE_READMES)
def test_each_package_readme_lists_every_module_it_holds(package: str) -> None:
    readme = (ROOT / package / "README.md").read_text(encoding="utf-8")
    modules = [
        p.relative_to(ROOT / package)
        for p in (ROOT / package).rglob("*.py")
        if p.name != "__init__.py" and "__pycache__" not in p.parts
    ]

    assert [str(m) for m in modules if m.name not in readme] == []


def test_the_root_readme_tour_names_only_paths_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## Tour", 1)[1].split("```", 2)[1]
    paths, parents = [], [ROOT]
    for line in tour.strip("\n").splitlines():
        entry = line.split("<-")[0].rstrip()
        depth = (len(entry) - len(entry.lstrip())) // 2
        parents = parents[: depth + 1]
        paths.append(parents[-1] / entry.strip())
        if entry.endswith("/"):
            parents.append(paths[-1])

    assert [str(p.relative_to(ROOT)) for p in paths if not p.exists()] == []
