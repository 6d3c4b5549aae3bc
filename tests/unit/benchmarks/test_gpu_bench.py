"""benchmarks/gpu.py on a host without CUDA: CPU rows measured, CUDA reported as unavailable, never a failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu
from tests.factories.models import tiny_onnx


def test_without_cuda_the_cpu_rows_are_measured_and_cuda_is_reported_unavailable(tmp_path: Path) -> None:
    model, _ = tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert gpu.main(["--model", f"tiny={model}", "--batches", "1,8", "--seconds", "0.01", "--out", str(out)]) == 0
    report = json.loads((out / "cpu-only.json").read_text())
    cpu_rows = [r for r in report["rows"] if r["provider"] == gpu.CPU]
    cuda_rows = [r for r in report["rows"] if r["provider"] == gpu.CUDA]
    assert [r["batch"] for r in cpu_rows] == [1, 8] and all(r["rows_per_s"] > 0 for r in cpu_rows)
    assert cuda_rows and all(r["rows_per_s"] is None and "CUDA" in r["note"] for r in cuda_rows)
    assert "No GPU figures" in (out / "cpu-only.md").read_text()


def _runs(speeds: dict[int, tuple[float, float]]) -> list[gpu.Row]:
    """`run` rows of model "m": batch -> (CPU rows/s, CUDA rows/s)."""
    return [
        gpu.Row("m", provider, "run", batch, rows_per_s=speed)
        for batch, pair in speeds.items()
        for provider, speed in zip((gpu.CPU, gpu.CUDA), pair, strict=True)
    ]


def test_crossover_is_the_first_batch_where_cuda_serves_more_rows() -> None:
    assert gpu.crossover(_runs({1: (100.0, 10.0), 64: (1000.0, 5000.0)}), "m") == 64


def test_equal_speeds_are_no_crossover() -> None:
    """A tree model runs on the CPU under both providers: a 1-9% edge at some batch is noise, not a crossover."""
    assert gpu.crossover(_runs({64: (1000.0, 1020.0), 256: (1000.0, 1090.0), 1024: (1000.0, 950.0)}), "m") is None


def test_the_crossover_holds_for_every_larger_batch() -> None:
    speeds = {8: (100.0, 300.0), 64: (1000.0, 900.0), 256: (1000.0, 4000.0), 1024: (1000.0, 9000.0)}
    assert gpu.crossover(_runs(speeds), "m") == 256


def test_speedups_are_each_cuda_mode_as_a_multiple_of_the_cpu() -> None:
    rows = [*_runs({1024: (1000.0, 10_000.0)}), gpu.Row("m", gpu.CUDA, "cuda_graph", 1024, rows_per_s=60_000.0)]
    assert gpu.speedups(rows, "m") == [(1024, 1000.0, {"run": 10.0, "cuda_graph": 60.0})]


def test_the_tf32_variant_is_written_beside_the_report_the_policy_reads(tmp_path: Path) -> None:
    model, _ = tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "out"
    gpu.main(["--model", f"tiny={model}", "--batches", "1", "--seconds", "0.01", "--tf32", "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["cpu-only-tf32.json", "cpu-only-tf32.md"]
    assert json.loads((out / "cpu-only-tf32.json").read_text())["tf32"] is True


def test_a_model_argument_without_a_file_exits_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu.main(["--model", f"x={tmp_path / 'missing.onnx'}"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("module", ["benchmarks.gpu", "benchmarks.gpu_serving_check"])
def test_the_gpu_host_scripts_import_nothing_a_bare_gpu_host_lacks(module: str) -> None:
    """They may use serving's session code (the serving.runtime package), which itself needs numpy, ORT and the
    standard-library-only `journey.onnx_contract`; nothing else of the core (pandas, pydantic, SQLAlchemy...)."""
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'feast', 'bentoml', 'pydantic', 'torch', 'pandas', "
        "'training', 'hummingbird', 'sqlalchemy'} | {m for m in sys.modules if m.startswith('journey.')} - "
        "{'journey.onnx_contract'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
