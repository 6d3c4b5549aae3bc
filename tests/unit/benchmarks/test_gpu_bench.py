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


def test_crossover_is_the_first_batch_where_cuda_serves_more_rows() -> None:
    rows = [
        gpu.Row("m", gpu.CPU, "run", 1, rows_per_s=100.0),
        gpu.Row("m", gpu.CUDA, "run", 1, rows_per_s=10.0),
        gpu.Row("m", gpu.CPU, "run", 64, rows_per_s=1000.0),
        gpu.Row("m", gpu.CUDA, "run", 64, rows_per_s=5000.0),
    ]
    assert gpu.crossover(rows, "m") == 64


def test_a_model_argument_without_a_file_exits_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu.main(["--model", f"x={tmp_path / 'missing.onnx'}"])
    assert exit_info.value.code == 2


def test_the_benchmark_imports_nothing_a_bare_gpu_host_lacks() -> None:
    code = (
        "import sys, benchmarks.gpu; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'feast', 'bentoml', 'pydantic', 'torch', 'pandas', "
        "'journey', 'serving', 'training'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
