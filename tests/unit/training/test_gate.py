"""The promotion gate on hand-made runs: who is the best baseline, the interval, pass, fail, and what is stored."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.evaluate import evaluate
from training.export import ExportReport
from training.gate import MARGIN, auc_statistic, mean_statistic, promotion_gate, resample_weights
from training.model_report import write_report
from training.runs import Candidate, TrainingRun, with_validation
from training.splits import SplitSummary

SPLIT = SplitSummary(
    "days", "2026-09-01", "2026-09-20", "2026-09-25", "2026-09-30", {"train": 7, "valid": 2, "test": 3}
)
EXPORT = ExportReport(Path("m.onnx"), "ab" * 32, "xgboost", "onnxmltools", ("features",), ("probabilities",), {1: 0.0})


def _run(
    labels: np.ndarray,
    candidates: tuple[Candidate, ...],
    classes: tuple[str, ...],
    groups: np.ndarray | None = None,
) -> TrainingRun:
    """A run whose validation and test rows are the same (the gate reads the validation ones)."""
    scored = with_validation(candidates, candidates)
    return TrainingRun(
        "m", "xgboost", "svc", EXPORT, ("a",), classes, labels, scored, SPLIT, valid_labels=labels, valid_groups=groups
    )


def _binary(model_strength: float, n: int = 3_000, seed: int = 0) -> TrainingRun:
    """Labels with a base rate of 0.3; the model's scores carry `model_strength` of signal, one baseline 0.3 of it,
    the other none."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    noise = rng.standard_normal((3, n))
    probability = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    candidates = (
        Candidate("xgboost", probability(model_strength * labels + noise[0]), is_model=True),
        Candidate("logistic_regression", probability(0.3 * labels + noise[1])),
        Candidate("coin", probability(noise[2])),
    )
    return _run(labels, candidates, ("0", "1"), groups=np.arange(n) // 3)


def test_weighted_auc_at_unit_weights_is_sklearns_with_ties_counting_half() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    labels = (rng.random(500) < 0.4).astype(np.int64)
    scores = np.round(rng.random(500) + 0.3 * labels, 1)  # many ties
    assert auc_statistic(labels, scores)(np.ones(500)) == pytest.approx(roc_auc_score(labels, scores))
    weights = rng.integers(0, 3, 500).astype(float)  # a resample = rows repeated
    repeated = np.repeat(np.arange(500), weights.astype(int))
    assert auc_statistic(labels, scores)(weights) == pytest.approx(roc_auc_score(labels[repeated], scores[repeated]))


def test_resampling_sessions_moves_a_sessions_rows_together() -> None:
    groups = np.array([7, 7, 7, 9, 9, 4])
    draw = resample_weights(groups, len(groups), seed=0)
    for _ in range(20):
        weights = draw()
        assert weights[0] == weights[1] == weights[2] and weights[3] == weights[4]
        assert weights[[0, 3, 5]].sum() == 3  # three sessions drawn, with replacement
    assert mean_statistic(np.array([1.0, 0.0]))(np.array([3.0, 1.0])) == pytest.approx(0.75)


def test_a_model_clearly_better_than_every_baseline_passes_against_the_best_one() -> None:
    gate = promotion_gate(_binary(model_strength=1.5))
    assert gate.passed and gate.task == "binary" and gate.metric == "roc_auc"
    assert gate.headline is not None and gate.headline.baseline == "logistic_regression"  # the better baseline
    assert 0 < gate.headline.ci95_low <= gate.headline.difference <= gate.headline.ci95_high
    assert gate.resampled == "sessions" and gate.units == 1_000 and gate.rounds == 1_000
    assert set(gate.validation) == {"xgboost", "logistic_regression", "coin"}
    assert "pass" in gate.reason and "logistic_regression" in gate.reason


def test_a_model_that_loses_to_a_baseline_fails_naming_it_and_the_interval() -> None:
    gate = promotion_gate(_binary(model_strength=0.1))
    assert not gate.passed
    assert gate.headline is not None and gate.headline.baseline == "logistic_regression"
    assert gate.headline.ci95_high < 0
    low, high = f"{gate.headline.ci95_low:+.4f}", f"{gate.headline.ci95_high:+.4f}"
    assert "logistic_regression" in gate.reason and low in gate.reason and high in gate.reason
    assert "FAIL" in gate.reason


def test_a_tie_with_the_best_baseline_fails_the_model_must_beat_it() -> None:
    run = _binary(model_strength=1.0)
    twin = replace(run.model, name="twin", is_model=False)
    gate = promotion_gate(replace(run, candidates=(*run.candidates, twin)))
    assert gate.headline is not None and gate.headline.baseline == "twin"
    assert gate.headline.difference == 0.0 and gate.headline.ci95_low == 0.0
    assert not gate.passed  # not worse is not enough: the point estimate must be better


def test_a_model_better_within_noise_passes_and_one_worse_beyond_the_margin_fails() -> None:
    rng = np.random.default_rng(5)
    n = 4_000
    labels = rng.integers(0, 3, n)
    model = np.where(rng.random((n, 1)) < 0.505, np.eye(3)[labels], np.eye(3)[(labels + 1) % 3])  # ~50.5% right
    close = np.where(rng.random((n, 1)) < 0.50, np.eye(3)[labels], np.eye(3)[(labels + 2) % 3])  # ~50%
    far = np.where(rng.random((n, 1)) < 0.56, np.eye(3)[labels], np.eye(3)[(labels + 2) % 3])  # ~56%

    near = promotion_gate(
        _run(labels, (Candidate("gru", model, is_model=True), Candidate("b", close)), ("a", "b", "c"))
    )
    beaten = promotion_gate(
        _run(labels, (Candidate("gru", model, is_model=True), Candidate("b", far)), ("a", "b", "c"))
    )

    assert near.headline is not None and near.headline.difference > 0 and -MARGIN <= near.headline.ci95_low < 0
    assert near.passed  # better on the point estimate, not worse beyond the margin with 95% confidence
    assert beaten.headline is not None and beaten.headline.ci95_high < 0 and not beaten.passed


def test_a_run_without_validation_scores_is_not_promoted_and_says_why() -> None:
    run = _binary(model_strength=1.5)
    stripped = replace(run, candidates=tuple(replace(c, valid_scores=None) for c in run.candidates))
    gate = promotion_gate(stripped)
    assert not gate.passed and gate.headline is None
    assert gate.reason.startswith("not evaluated: no validation-day scores")
    assert not promotion_gate(replace(run, valid_labels=None)).passed


def test_next_action_is_gated_on_accuracy() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 2_000)
    right = np.eye(3)[labels] * 0.6 + 0.4 / 3
    wrong = np.eye(3)[(labels + 1) % 3]
    model = np.where(rng.random((2_000, 1)) < 0.8, right, wrong)  # right on ~80% of the rows
    repeat = np.where(rng.random((2_000, 1)) < 0.5, np.eye(3)[labels], wrong)  # ~50%
    run = _run(labels, (Candidate("gru", model, is_model=True), Candidate("repeat", repeat)), ("a", "b", "c"))
    gate = promotion_gate(run)
    assert gate.passed and gate.task == "multiclass" and gate.metric == "accuracy"
    assert gate.headline is not None and gate.headline.difference == pytest.approx(
        np.mean(model.argmax(1) == labels) - np.mean(repeat.argmax(1) == labels)
    )
    assert gate.resampled == "rows" and gate.units == 2_000


def _lists(labels: np.ndarray, place: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """[n, 20] lists of items nobody asks for, with the label at `place` where `hit`."""
    lists = np.tile(np.arange(1_000, 1_020), (len(labels), 1))
    rows = np.flatnonzero(hit)
    lists[rows, place[rows]] = labels[rows]
    return lists


def test_next_item_passes_on_hit_rate_only_when_mrr_is_not_worse_by_more_than_the_margin() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    labels = rng.integers(1, 500, n)
    baseline = _lists(labels, np.zeros(n, dtype=int), rng.random(n) < 0.30)  # 30% hits, all in first place
    deep = _lists(labels, np.full(n, 15), rng.random(n) < 0.40)  # more hits, all at place 16
    shallow = _lists(labels, np.zeros(n, dtype=int), rng.random(n) < 0.40)
    groups = np.arange(n) // 4
    covis = Candidate("item_to_item_covisitation", baseline)

    deep_gate = promotion_gate(_run(labels, (Candidate("gru4rec", deep, is_model=True), covis), (), groups))
    assert deep_gate.headline is not None and deep_gate.headline.passed  # hit rate@20: 0.40 vs 0.30
    assert [g.metric for g in deep_gate.guards] == ["mrr@20"] and not deep_gate.guards[0].passed
    assert deep_gate.guards[0].threshold == -MARGIN
    assert not deep_gate.passed and "mrr@20" in deep_gate.reason

    good = promotion_gate(_run(labels, (Candidate("gru4rec", shallow, is_model=True), covis), (), groups))
    assert good.passed and good.metric == "hit_rate@20"
    assert good.validation["gru4rec"]["hit_rate@20"] == pytest.approx(np.mean((shallow == labels[:, None]).any(axis=1)))


def test_the_report_states_the_gate_and_metrics_json_keeps_it(tmp_path: Path) -> None:
    run = _binary(model_strength=0.1)
    gate = promotion_gate(run)
    report = write_report(run, evaluate(run), tmp_path / "m" / "2", version="2", training_meta={"events": 9}, gate=gate)
    text = report.read_text()
    assert "## Promotion gate (validation days)" in text and "**FAIL**" in text
    assert "| roc_auc | logistic_regression |" in text
    assert f"[{gate.headline.ci95_low:+.4f}, {gate.headline.ci95_high:+.4f}]" in text  # type: ignore[union-attr]
    assert "Every candidate on the validation days" in text and "| coin |" in text
    assert "| **xgboost** (model) |" in text and "| logistic_regression |" in text  # the test table: all of them
    saved = json.loads((report.parent / "metrics.json").read_text())
    assert saved["gate"]["passed"] is False and saved["gate"]["headline"]["baseline"] == "logistic_regression"
    assert "rule" in saved["gate"]
