"""Evaluation metrics and the report: checked on scores whose answers are known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate, hit_rate, lift_and_gain, mrr, paired_bootstrap
from training.export import ExportReport
from training.model_report import write_report
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


# --------------------------------------------------------------------------------------------------------------
# Ranking (next item): scores are recommended item ids, best first
# --------------------------------------------------------------------------------------------------------------

RANK_LABELS = np.array([5, 7, 9, 4])
RECOMMENDED = np.array(
    [
        [5, 1, 2],  # the next item first
        [1, 7, 2],  # second
        [1, 2, 3],  # absent
        [1, 2, 4],  # third
    ]
)


def test_hit_rate_is_the_share_of_rows_whose_next_item_is_in_the_first_k() -> None:
    assert hit_rate(RANK_LABELS, RECOMMENDED, 1) == pytest.approx(1 / 4)
    assert hit_rate(RANK_LABELS, RECOMMENDED, 2) == pytest.approx(2 / 4)
    assert hit_rate(RANK_LABELS, RECOMMENDED, 3) == pytest.approx(3 / 4)
    assert hit_rate(RANK_LABELS, RECOMMENDED, 20) == pytest.approx(3 / 4)  # a list shorter than k: all of it


def test_mrr_averages_one_over_the_next_items_place_and_zero_when_absent() -> None:
    assert mrr(RANK_LABELS, RECOMMENDED, 3) == pytest.approx((1 + 1 / 2 + 0 + 1 / 3) / 4)
    assert mrr(RANK_LABELS, RECOMMENDED, 2) == pytest.approx((1 + 1 / 2) / 4)  # third place is past k


def test_empty_places_never_count_as_a_hit_and_no_rows_give_nan() -> None:
    assert hit_rate(np.array([3]), np.array([[-1, -1, 3]]), 2) == 0.0
    assert np.isnan(hit_rate(np.array([], dtype=np.int64), np.empty((0, 20), dtype=np.int64)))
    assert np.isnan(mrr(np.array([], dtype=np.int64), np.empty((0, 20), dtype=np.int64)))


def _ranking_run(n: int = 300, seed: int = 0) -> TrainingRun:
    """Next items 1..50; the model has the next item in its top 20 for ~80% of the rows, the baseline always says
    items 1..20 (right for the rows whose next item is one of them)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, 51, n)
    model = np.tile(np.arange(101, 121), (n, 1))  # items no row asks for
    places = rng.integers(0, 20, n)
    knows = rng.random(n) < 0.8
    model[knows, places[knows]] = labels[knows]
    popular = np.tile(np.arange(1, 21), (n, 1))
    return _run(labels, (Candidate("gru4rec", model, is_model=True), Candidate("popularity", popular)), ())


def test_a_run_without_classes_is_scored_as_a_ranking_against_each_baseline() -> None:
    run = _ranking_run()
    evaluation = evaluate(run)

    assert evaluation.task == "ranking"
    assert evaluation.confusion == {} and evaluation.per_class == {}
    model, baseline = run.candidates[0].scores, run.candidates[1].scores
    metrics = evaluation.metrics["gru4rec"]
    assert list(metrics) == ["hit_rate@10", "hit_rate@20", "mrr@20", "distinct_items@20"]
    assert metrics["hit_rate@20"] == pytest.approx(hit_rate(run.labels, model, 20))
    assert metrics["hit_rate@10"] == pytest.approx(hit_rate(run.labels, model, 10))
    assert metrics["mrr@20"] == pytest.approx(mrr(run.labels, model, 20))
    assert evaluation.metrics["popularity"]["distinct_items@20"] == 20.0
    assert evaluation.metrics["popularity"]["hit_rate@20"] == pytest.approx(np.mean(run.labels <= 20))

    assert list(evaluation.versus_baselines) == ["popularity (hit rate@20)"]
    versus = evaluation.versus_baselines["popularity (hit rate@20)"]
    assert versus["difference"] == pytest.approx(hit_rate(run.labels, model) - hit_rate(run.labels, baseline))
    assert versus["ci95_low"] > 0  # ~0.8 against ~0.4: clearly better
    assert versus["ci95_low"] <= versus["difference"] <= versus["ci95_high"]


def test_ranking_report_has_the_hit_rate_at_k_plot_and_no_confusion_matrix(tmp_path: Path) -> None:
    run = _ranking_run()
    evaluation = evaluate(run)
    report = write_report(run, evaluation, tmp_path / "next_item" / "1", version="1", training_meta={"events": 9})

    text = report.read_text()
    assert report.name == "report.md"
    assert "](hit_rate_at_k.png)" in text
    assert (report.parent / "hit_rate_at_k.png").stat().st_size > 1_000
    assert not (report.parent / "confusion.png").exists()
    assert "| **gru4rec** (model) |" in text and "| popularity |" in text
    assert "hit rate at 20" in text and "| popularity (hit rate@20) |" in text
    saved = json.loads((report.parent / "metrics.json").read_text())
    assert saved["task"] == "ranking" and saved["classes"] == []
    assert saved["metrics"]["gru4rec"]["hit_rate@20"] == pytest.approx(evaluation.metrics["gru4rec"]["hit_rate@20"])
