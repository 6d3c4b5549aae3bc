"""Evaluation metrics and the report: checked on scores whose answers are known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate, lift_and_gain, paired_bootstrap, write_report
from training.export import ExportReport
from training.runs import Candidate, TrainingRun
from training.splits import SplitSummary

SPLIT = SplitSummary(
    "days", "2026-09-01", "2026-09-20", "2026-09-25", "2026-09-30", {"train": 7, "valid": 2, "test": 3}
)


def _run(labels: np.ndarray, candidates: tuple[Candidate, ...], classes: tuple[str, ...]) -> TrainingRun:
    export = ExportReport(
        Path("m.onnx"), "ab" * 32, "xgboost", "onnxmltools", ("features",), ("probabilities",), {1: 1e-7, 7: 2e-7}
    )
    return TrainingRun(
        "m",
        "xgboost",
        "svc",
        export,
        ("a", "b"),
        classes,
        labels,
        candidates,
        SPLIT,
        history={"valid_loss": [0.5, 0.4, 0.45]},
    )


def _binary_run(seed: int = 0, n: int = 2_000) -> TrainingRun:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(np.int64)
    good = np.clip(0.2 + 0.5 * (labels - 0.2) + 0.15 * rng.standard_normal(n), 0.001, 0.999)
    noise = rng.random(n)
    return _run(labels, (Candidate("model", good, is_model=True), Candidate("coin", noise)), ("0", "1"))


def test_lift_and_gain_of_a_perfect_ranking() -> None:
    labels = np.array([1] * 10 + [0] * 90)
    scores = labels.astype(float)
    lift, gain = lift_and_gain(labels, scores, 0.10)
    assert lift == pytest.approx(10.0)
    assert gain == pytest.approx(1.0)


def test_lift_of_a_constant_score_is_the_base_rate_of_the_first_rows() -> None:
    labels = np.array([1, 0] * 50)
    lift, _ = lift_and_gain(labels, np.zeros(100), 0.10)
    assert lift == pytest.approx(1.0)


def test_binary_metrics_rank_the_informative_model_above_noise() -> None:
    evaluation = evaluate(_binary_run())
    assert evaluation.task == "binary"
    assert evaluation.metrics["model"]["roc_auc"] > 0.9 > 0.6 > evaluation.metrics["coin"]["roc_auc"]
    versus = evaluation.versus_baselines["coin"]
    assert versus["ci95_low"] > 0.3
    assert versus["ci95_low"] <= versus["difference"] <= versus["ci95_high"]


def test_bootstrap_interval_of_identical_scores_is_exactly_zero() -> None:
    labels = np.array([0, 1] * 50)
    scores = np.linspace(0, 1, 100)
    result = paired_bootstrap(labels, scores, scores.copy(), lambda y, s: float(np.mean((s > 0.5) == y)), rounds=20)
    assert result == {"difference": 0.0, "ci95_low": 0.0, "ci95_high": 0.0}


def test_multiclass_confusion_counts_every_test_row_once() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    model = np.eye(3)[[0, 1, 2, 1, 1, 0]] * 0.8 + 0.2 / 3
    hard = np.eye(3)[[0, 0, 0, 0, 0, 0]]
    run = _run(labels, (Candidate("gru", model, is_model=True), Candidate("always_first", hard)), ("a", "b", "c"))
    evaluation = evaluate(run)
    assert evaluation.metrics["gru"]["accuracy"] == pytest.approx(5 / 6)
    assert evaluation.metrics["always_first"]["accuracy"] == pytest.approx(2 / 6)
    assert evaluation.metrics["always_first"]["log_loss"] is None  # a hard baseline has no probabilities
    assert evaluation.confusion["gru"] == [[2, 0, 0], [0, 2, 0], [0, 1, 1]]
    assert evaluation.per_class["c"]["recall"] == pytest.approx(0.5)


def test_report_has_tables_plots_and_metrics_json(tmp_path: Path) -> None:
    run = _binary_run()
    evaluation = evaluate(run)
    report = write_report(
        run, evaluation, tmp_path / "m" / "3", version="3", training_meta={"dataset": "d", "events": 9}
    )
    text = report.read_text()
    assert text.startswith("# m v3")
    assert "| **model** (model) |" in text and "| coin |" in text
    for image in ("roc_pr.png", "calibration_gain.png", "training_curves.png"):
        assert f"]({image})" in text
        assert (report.parent / image).stat().st_size > 1_000
    saved = json.loads((report.parent / "metrics.json").read_text())
    assert saved["metrics"]["model"]["roc_auc"] == pytest.approx(evaluation.metrics["model"]["roc_auc"])
    assert saved["split"]["rows"] == {"train": 7, "valid": 2, "test": 3}
