"""The promotion gate at the commands that give a version users: `journey train --promote`, `journey models promote`
and `journey deploy` refuse a version that failed its gate (exit 2) unless forced with a reason, which is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from journey.registry import Registry, Stage
from journey.settings import Settings
from tests.factories.models import tiny_onnx
from training.evaluate import evaluate
from training.export import ExportReport
from training.gate import promotion_gate
from training.pipeline import PipelineResult
from training.runs import Candidate, TrainingRun, with_validation
from training.splits import SplitSummary

runner = CliRunner()
PP = "purchase_propensity"
FAILED = {"passed": False, "reason": "roc_auc: xgboost 0.70 vs logistic_regression 0.75, difference -0.05 [95% ...]"}


def _register(settings: Settings, tmp_path: Path, gate: dict[str, Any] | None) -> int:
    path, sha = tiny_onnx(tmp_path / "model.onnx")
    with Registry(settings) as registry:
        return registry.register(
            name=PP,
            onnx_path=path,
            expected_sha256=sha,
            framework="xgboost",
            feature_service="purchase_propensity_v1",
            metrics={"xgboost": {"roc_auc": 0.7}, **({} if gate is None else {"gate": gate})},
            data_window={},
            params={},
            actor="alice",
        ).version


@pytest.fixture
def failed(settings: Settings, tmp_path: Path) -> Settings:
    """v1 in production (registered before the gate), v2 in staging with a failed gate."""
    _register(settings, tmp_path, None)
    _register(settings, tmp_path, FAILED)
    with Registry(settings) as registry:
        registry.promote(PP, 1, "alice")
    return settings


def _stage(settings: Settings, version: int) -> Stage:
    with Registry(settings) as registry:
        return registry.get(PP, version).stage


def test_models_promote_refuses_a_failed_gate_and_changes_nothing(failed: Settings) -> None:
    result = runner.invoke(app, ["models", "promote", PP, "2"])
    assert result.exit_code == 2, result.output
    assert "did not pass the promotion gate" in result.output and "logistic_regression 0.75" in result.output
    assert "--force --reason" in result.output
    assert _stage(failed, 2) == Stage.STAGING and _stage(failed, 1) == Stage.PRODUCTION


def test_models_promote_force_needs_a_reason_and_audits_it(failed: Settings) -> None:
    assert runner.invoke(app, ["models", "promote", PP, "2", "--force"]).exit_code == 2
    result = runner.invoke(app, ["models", "promote", PP, "2", "--force", "--reason", "A/B says so", "--actor", "bob"])
    assert result.exit_code == 0, result.output
    assert _stage(failed, 2) == Stage.PRODUCTION
    with Registry(failed) as registry:
        entry = registry.audit(name=PP, version=2)[0]
    assert entry.action == "promote" and entry.actor == "bob"
    assert "FORCED past a failed gate" in entry.detail and entry.detail.endswith("reason: A/B says so")


def test_models_promote_lets_a_version_from_before_the_gate_through(failed: Settings) -> None:
    runner.invoke(app, ["models", "promote", PP, "2", "--force", "--reason", "drill"])
    result = runner.invoke(app, ["models", "promote", PP, "1"])  # the rollback to v1 (no gate stored)
    assert result.exit_code == 0, result.output
    assert _stage(failed, 1) == Stage.PRODUCTION


def test_deploy_refuses_a_failed_gate_unless_forced_with_a_reason(failed: Settings) -> None:
    refused = runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "10"])
    assert refused.exit_code == 2 and "did not pass the promotion gate" in refused.output
    with Registry(failed) as registry:
        assert [v.version for v in registry.route("predict_purchase").variants] == [1]
    forced = runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "10", "--force", "--reason", "canary"])
    assert forced.exit_code == 0, forced.output
    with Registry(failed) as registry:
        assert [v.version for v in registry.route("predict_purchase").variants] == [1, 2]
        entry = registry.audit(name="predict_purchase", kind="route")[0]
    assert "FORCED past a failed gate" in entry.detail and entry.detail.endswith("reason: canary")
    assert runner.invoke(app, ["deploy", f"{PP}:2", "--weight", "0"]).exit_code == 0  # no users: not checked


# --------------------------------------------------------------------------------------------------------------
# journey train --promote / --force-promote (the training itself replaced by a hand-made run)
# --------------------------------------------------------------------------------------------------------------


def _fake_training(settings: Settings, tmp_path: Path, model_strength: float) -> PipelineResult:
    rng = np.random.default_rng(0)
    labels = (rng.random(2_000) < 0.3).astype(np.int64)
    noise = rng.standard_normal((2, 2_000))
    candidates = (
        Candidate("xgboost", 1 / (1 + np.exp(-(model_strength * labels + noise[0]))), is_model=True),
        Candidate("logistic_regression", 1 / (1 + np.exp(-(0.5 * labels + noise[1])))),
    )
    export = ExportReport(tmp_path / "m.onnx", "ab" * 32, "xgboost", "onnxmltools", ("features",), ("p",), {1: 0.0})
    split = SplitSummary("days", "a", "b", "c", "d", {"train": 1, "valid": 2_000, "test": 2_000})
    run = TrainingRun(
        PP, "xgboost", "purchase_propensity_v1", export, ("f",), ("0", "1"), labels,
        with_validation(candidates, candidates), split, valid_labels=labels,
    )  # fmt: skip
    gate = promotion_gate(run, rounds=200)
    version = _register(settings, tmp_path, gate.as_dict())
    with Registry(settings) as registry:
        registered = registry.get(PP, version)
    return PipelineResult(run, evaluate(run), registered, tmp_path / "report.md", {}, {}, gate)


@pytest.mark.parametrize("strength", [0.0, 3.0])
def test_train_promote_registers_always_and_promotes_only_past_the_gate(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strength: float
) -> None:
    monkeypatch.setattr("training.pipeline.run_training", lambda *a, **k: _fake_training(settings, tmp_path, strength))
    result = runner.invoke(app, ["train", "propensity", "--promote"])
    with Registry(settings) as registry:
        version = registry.get(PP, "latest")
    if strength == 0.0:  # no signal: loses to the baseline
        assert result.exit_code == 2, result.output
        assert "promotion gate (validation days): FAIL" in result.output
        assert "did not pass the promotion gate" in result.output and "logistic_regression" in result.output
        assert f"journey models promote {PP} {version.version} --force --reason" in result.output
        assert version.stage == Stage.STAGING and version.metrics["gate"]["passed"] is False
    else:
        assert result.exit_code == 0, result.output
        assert "promotion gate (validation days): PASS" in result.output
        assert version.stage == Stage.PRODUCTION
        with Registry(settings) as registry:
            assert registry.audit(name=PP, version=version.version)[0].detail.startswith("promoted from staging; gate")


def test_train_force_promote_audits_the_reason_and_needs_one(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def fake(*_args: object, **_kwargs: object) -> PipelineResult:
        calls.append(1)
        return _fake_training(settings, tmp_path, 0.0)

    monkeypatch.setattr("training.pipeline.run_training", fake)
    refused = runner.invoke(app, ["train", "propensity", "--force-promote"])
    assert refused.exit_code == 2 and "--force-promote needs --reason" in refused.output
    assert calls == []  # refused before any training
    result = runner.invoke(app, ["train", "propensity", "--force-promote", "--reason", "baseline is stale"])
    assert result.exit_code == 0, result.output
    with Registry(settings) as registry:
        version = registry.get(PP, "production")
        entry = registry.audit(name=PP, version=version.version)[0]
    assert entry.actor == "journey train --force-promote"
    assert "FORCED past a failed gate" in entry.detail and entry.detail.endswith("reason: baseline is stale")
