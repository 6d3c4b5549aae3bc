"""`journey bench gpu` on a host without a GPU: the production models measured on the CPU, the report says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from journey.settings import Settings
from tests.factories.served import register_propensity

runner = CliRunner()


@pytest.fixture
def production(settings: Settings, tmp_path: Path) -> Settings:
    register_propensity(settings, tmp_path, 1)
    return settings


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="checks the CPU-only report of a host without a GPU")
def test_gpu_bench_of_the_production_models_without_a_gpu_writes_a_cpu_only_report(production: Settings) -> None:
    result = runner.invoke(app, ["bench", "gpu", "--batches", "1,8", "--seconds", "0.05"])

    assert result.exit_code == 0, result.output
    report = json.loads((production.reports_dir / "gpu" / "cpu-only.json").read_text())
    cpu_rows = [r for r in report["rows"] if r["provider"] == "CPUExecutionProvider" and r["rows_per_s"]]
    assert {(r["model"], r["batch"]) for r in cpu_rows} >= {("purchase_propensity", 1), ("purchase_propensity", 8)}
    assert report["crossover"] == {"purchase_propensity": None}
    assert "**No GPU figures**" in (production.reports_dir / "gpu" / "cpu-only.md").read_text()


def test_gpu_bench_of_a_model_without_a_production_version_exits_2_naming_it(production: Settings) -> None:
    result = runner.invoke(app, ["bench", "gpu", "--model", "next_action"])

    assert result.exit_code == 2
    assert "next_action" in result.output
