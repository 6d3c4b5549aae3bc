"""The execution provider policy (`JOURNEY_EXECUTION_PROVIDER=auto|cuda|cpu`) and where its decision shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.runtime.providers import CPU, CUDA, Placement, measured_crossover, place


def _place(policy: str, *, framework: str = "pytorch", gpu: bool = True, batch: int = 1, crossover: int | None = 64):
    return place(policy, framework=framework, gpu_present=gpu, batch=batch, crossover=crossover)


def test_cpu_policy_never_asks_for_cuda() -> None:
    assert _place("cpu", batch=8192, crossover=1) == Placement("cpu", (CPU,), False, "policy cpu")


@pytest.mark.parametrize("policy", ["auto", "cuda"])
def test_a_tree_ensemble_stays_on_the_cpu_under_every_policy(policy: str) -> None:
    placement = _place(policy, framework="xgboost", batch=8192, crossover=1)

    assert (placement.providers, placement.gpu_expected) == ((CPU,), False)
    assert "no CUDA kernels" in placement.reason


def test_cuda_policy_asks_for_cuda_first_on_a_gpu_host() -> None:
    assert _place("cuda").providers == (CUDA, CPU)
    assert _place("cuda").gpu_expected


def test_cuda_policy_on_a_host_without_gpu_runs_on_cpu_but_says_a_gpu_was_expected() -> None:
    placement = _place("cuda", gpu=False)

    assert placement.providers == (CPU,)
    assert placement.gpu_expected  # so the "GPU expected, CPU in use" alert tells the operator
    assert "no NVIDIA GPU" in placement.reason


def test_auto_picks_cuda_only_when_the_batches_reach_the_measured_crossover() -> None:
    below, at = _place("auto", batch=63, crossover=64), _place("auto", batch=64, crossover=64)

    assert (below.providers, below.gpu_expected) == ((CPU,), False)
    assert "below the measured CUDA crossover of 64" in below.reason
    assert (at.providers, at.gpu_expected) == ((CUDA, CPU), True)


def test_auto_stays_on_cpu_without_a_gpu_or_without_a_measured_crossover() -> None:
    assert _place("auto", gpu=False, batch=8192, crossover=1).providers == (CPU,)
    unmeasured = place("auto", framework="pytorch", gpu_present=True, batch=8192, crossover=None, crossover_problem="x")
    assert (unmeasured.providers, unmeasured.reason) == ((CPU,), "x")


def test_an_unknown_policy_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"auto, cuda, cpu.*'gpu'"):
        _place("gpu")


def test_the_crossover_is_read_per_model_from_the_gpu_benchmark_report(tmp_path: Path) -> None:
    report = tmp_path / "gpu.json"
    report.write_text(json.dumps({"crossover": {"next_action": 256, "purchase_propensity": None}}), encoding="utf-8")

    assert measured_crossover(report, "next_action") == (256, "")
    assert measured_crossover(report, "purchase_propensity")[0] is None
    assert "no crossover for other" in measured_crossover(report, "other")[1]
    assert "no GPU benchmark report" in measured_crossover(tmp_path / "missing.json", "next_action")[1]
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert "unreadable" in measured_crossover(tmp_path / "bad.json", "next_action")[1]
