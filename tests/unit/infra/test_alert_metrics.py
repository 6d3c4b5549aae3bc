"""The metrics that exist for the alerts (serving/metrics.py, set in serving/loaded.py): GPU expected, the training
score reference of drift, and the A/B route weights and conversions that sample-ratio and conversion panels read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from journey.registry import ModelVersion, Stage
from serving import loaded, metrics
from serving.runtime import ModelRuntime


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _version(
    name: str, *, metrics_: dict[str, Any] | None = None, classes: int = 2, report: Path | None = None
) -> ModelVersion:
    return ModelVersion(
        id=1,
        name=name,
        version=7,
        framework="xgboost",
        onnx_sha256="0" * 64,
        bento_tag=f"{name}:7",
        feature_service="purchase_propensity_v1",
        metrics=metrics_ or {},
        data_window={},
        params={"classes": [str(c) for c in range(classes)], "feature_order": ["a"]},
        report_path=str(report) if report else None,
        git_commit=None,
        created_at=datetime(2026, 11, 1, tzinfo=UTC),
        stage=Stage.PRODUCTION,
        created_by="test",
    )


def _runtime(framework: str) -> ModelRuntime:
    fake = SimpleNamespace(
        metadata=SimpleNamespace(framework=framework), provider="CPUExecutionProvider", placement=None
    )
    fake.feature_order = ("a",)
    return cast(ModelRuntime, fake)


def _report(tmp_path: Path, training_set: dict[str, Any]) -> Path:
    (tmp_path / loaded.REPORT_METRICS_FILE).write_text(json.dumps({"training_set": training_set}), encoding="utf-8")
    return tmp_path / "report.md"


def test_helpers_expose_gpu_expected_reference_route_weights_and_conversions() -> None:
    metrics.set_gpu_expected("am_model", "1", True)
    metrics.set_training_score_mean("am_model", "1", 0.125)
    metrics.set_route_weights("am_ep", {"a": 90, "b": 10})
    metrics.count_conversions("am_ep", "b", 3)
    metrics.count_conversions("am_ep", "b", 0)

    assert _value("journey_gpu_expected", model="am_model", version="1") == 1
    assert _value("journey_training_score_mean", model="am_model", version="1") == 0.125
    assert _value("journey_ab_route_weight", endpoint="am_ep", variant="a") == 90
    assert _value("journey_ab_conversions_total", endpoint="am_ep", variant="b") == 3


def test_prime_series_gives_each_route_zero_conversions() -> None:
    metrics.prime_series(routes=[("prime_conv_ep", "a")])

    assert _value("journey_ab_conversions_total", endpoint="prime_conv_ep", variant="a") == 0


@pytest.mark.parametrize(
    ("device", "framework", "expected"),
    [(True, "pytorch", True), (True, "xgboost", False), (False, "pytorch", False)],
)
def test_gpu_is_expected_only_for_graphs_with_cuda_kernels_on_a_host_with_a_gpu(
    monkeypatch: pytest.MonkeyPatch, device: bool, framework: str, expected: bool
) -> None:
    monkeypatch.setattr(loaded, "nvidia_device_present", lambda: device)

    assert loaded.gpu_expected(_runtime(framework)) is expected


def test_training_reference_prefers_the_registered_score_reference(tmp_path: Path) -> None:
    report = _report(tmp_path, {"positive_rate": 0.3})
    version = _version("ref_model", metrics_={"score_reference": {"mean": 0.21}}, report=report)

    assert loaded.training_score_mean(version) == 0.21


def test_training_reference_of_a_binary_model_is_its_training_positive_rate(tmp_path: Path) -> None:
    version = _version("ref_model", report=_report(tmp_path, {"positive_rate": 0.3}))

    assert loaded.training_score_mean(version) == 0.3


def test_no_training_reference_without_a_source(tmp_path: Path) -> None:
    (tmp_path / "multiclass").mkdir()
    (tmp_path / "no_rate").mkdir()
    multiclass = _version("ref_model", classes=5, report=_report(tmp_path / "multiclass", {"positive_rate": 0.3}))
    unreadable = _version("ref_model", report=tmp_path / "gone" / "report.md")
    no_rate = _version("ref_model", report=_report(tmp_path / "no_rate", {}))

    assert loaded.training_score_mean(multiclass) is None
    assert loaded.training_score_mean(unreadable) is None
    assert loaded.training_score_mean(no_rate) is None
    assert loaded.training_score_mean(_version("ref_model")) is None


def test_serving_a_version_publishes_its_gpu_expectation_and_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loaded, "nvidia_device_present", lambda: True)
    version = _version("serve_ref_model", report=_report(tmp_path, {"positive_rate": 0.4}))

    loaded.Loaded(version, _runtime("pytorch")).publish()

    labels = {"model": "serve_ref_model", "version": "7"}
    assert _value("journey_gpu_expected", **labels) == 1
    assert _value("journey_training_score_mean", **labels) == 0.4
    assert _value("journey_execution_provider", **labels, provider="CPUExecutionProvider") == 1
