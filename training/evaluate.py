"""Evaluation of a training run: the model and its baselines on the same test days, as numbers.

    evaluate(run)   -> Evaluation (per-candidate metrics; the registry stores the model's; `model_report.py` draws
                       and writes them)

Binary tasks (propensity): ROC-AUC, PR-AUC (average precision), log loss, Brier score, lift and gain in the top 10%
of scores. Multi-class tasks (next action): accuracy, macro-F1, log loss where the candidate gives probabilities,
per-class precision/recall/F1 and a confusion matrix per candidate. Ranking tasks (next item: each candidate's
scores are its recommended item ids, best first): hit rate at 10 and 20 (the next item is in the list), MRR at 20
and the number of distinct items recommended. The model is compared with each baseline by a paired bootstrap.

scikit-learn is imported inside the metric functions that use it: importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from training.runs import Candidate, TrainingRun

TOP_FRACTION: Final = 0.10
BOOTSTRAP_ROUNDS: Final = 200
BOOTSTRAP_SEED: Final = 0
_EPS: Final = 1e-7

Metrics = dict[str, float | None]


@dataclass(frozen=True)
class Evaluation:
    """Metrics per candidate (model first), and the model's per-class table for multi-class tasks."""

    task: str  # "binary", "multiclass" or "ranking"
    metrics: dict[str, Metrics]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    # model minus each baseline on the headline metric (ROC-AUC / accuracy / hit rate at 20): mean and 95% paired
    # bootstrap interval
    versus_baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def model_metrics(self, run: TrainingRun) -> Metrics:
        return self.metrics[run.model.name]


def lift_and_gain(labels: np.ndarray, scores: np.ndarray, fraction: float = TOP_FRACTION) -> tuple[float, float]:
    """Positive rate in the top `fraction` of scores over the overall rate (lift), and the share of all positives
    found there (gain). Ties are broken by row order after a stable sort, so a constant score gives lift ~1."""
    n_top = max(1, round(len(labels) * fraction))
    order = np.argsort(-scores, kind="stable")[:n_top]
    positives = float(labels.sum())
    if positives == 0:
        return float("nan"), float("nan")
    top_rate = float(labels[order].mean())
    return top_rate / (positives / len(labels)), float(labels[order].sum()) / positives


def _binary_metrics(labels: np.ndarray, scores: np.ndarray) -> Metrics:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    clipped = np.clip(scores, _EPS, 1 - _EPS)
    lift, gain = lift_and_gain(labels, scores)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
        f"lift_at_{int(TOP_FRACTION * 100)}pct": lift,
        f"gain_at_{int(TOP_FRACTION * 100)}pct": gain,
    }


def _is_hard(scores: np.ndarray) -> bool:
    """A candidate that only names a class (one-hot rows): its log loss would measure nothing but the clipping."""
    return bool(np.all((scores == 0) | (scores == 1)))


def _multiclass_metrics(labels: np.ndarray, scores: np.ndarray, n_classes: int) -> Metrics:
    from sklearn.metrics import accuracy_score, f1_score, log_loss

    predicted = scores.argmax(axis=1)
    probabilities = np.clip(scores, _EPS, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=range(n_classes), zero_division=0)),
        "log_loss": None if _is_hard(scores) else float(log_loss(labels, probabilities, labels=range(n_classes))),
    }


def _per_class(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=range(len(classes)), zero_division=0
    )
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
    }


def _confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[list[int]]:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    counts: list[list[int]] = matrix.tolist()
    return counts


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else float("nan")


def _log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    rows = np.clip(scores[np.arange(len(labels)), labels], _EPS, 1.0)
    return float(-np.mean(np.log(rows)))


def _accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == labels))


RANKING_CUTOFFS: Final = (10, 20)


def rank_of_label(labels: np.ndarray, recommended: np.ndarray) -> np.ndarray:
    """1-based position of each row's label in its list; 0 when it is not there."""
    hits = recommended == labels[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def hit_rate(labels: np.ndarray, recommended: np.ndarray, k: int = RANKING_CUTOFFS[-1]) -> float:
    """Share of rows whose next item is in the first `k` recommended (recall at k with one relevant item)."""
    ranks = rank_of_label(labels, recommended[:, :k])
    return float((ranks > 0).mean()) if len(ranks) else float("nan")


def mrr(labels: np.ndarray, recommended: np.ndarray, k: int = RANKING_CUTOFFS[-1]) -> float:
    """Mean reciprocal rank of the next item within the first `k` (0 when it is not there)."""
    ranks = rank_of_label(labels, recommended[:, :k])
    return float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).mean()) if len(ranks) else float("nan")


def _ranking_metrics(labels: np.ndarray, recommended: np.ndarray) -> Metrics:
    metrics: Metrics = {f"hit_rate@{k}": hit_rate(labels, recommended, k) for k in RANKING_CUTOFFS}
    last = RANKING_CUTOFFS[-1]
    metrics[f"mrr@{last}"] = mrr(labels, recommended, last)
    shown = recommended[:, :last]
    metrics[f"distinct_items@{last}"] = float(len(np.unique(shown[shown >= 0])))
    return metrics


def paired_bootstrap(
    labels: np.ndarray,
    model: np.ndarray,
    baseline: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """metric(model) - metric(baseline) on the test rows, with a 95% interval from resampling the *same* rows for
    both: "clearly better" then means the interval excludes 0, not just a bigger number on one sample."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        rows = rng.integers(0, len(labels), len(labels))
        diffs.append(metric(labels[rows], model[rows]) - metric(labels[rows], baseline[rows]))
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return {
        "difference": metric(labels, model) - metric(labels, baseline),
        "ci95_low": float(low),
        "ci95_high": float(high),
    }


def _versus(
    run: TrainingRun, labels: np.ndarray, metric: Callable[[np.ndarray, np.ndarray], float]
) -> dict[str, dict[str, float]]:
    model = run.model
    return {c.name: paired_bootstrap(labels, model.scores, c.scores, metric) for c in run.candidates if not c.is_model}


def evaluate(run: TrainingRun) -> Evaluation:
    """Score every candidate of the run on its test labels, and the model against each baseline."""
    labels = np.asarray(run.labels, dtype=np.int64)
    if not run.classes:  # ranking: scores are recommended item ids
        metrics = {c.name: _ranking_metrics(labels, c.scores) for c in run.candidates}
        versus = {f"{name} (hit rate@{RANKING_CUTOFFS[-1]})": v for name, v in _versus(run, labels, hit_rate).items()}
        return Evaluation("ranking", metrics, versus_baselines=versus)
    if len(run.classes) == 2 and all(c.scores.ndim == 1 for c in run.candidates):
        metrics = {c.name: _binary_metrics(labels, c.scores) for c in run.candidates}
        return Evaluation("binary", metrics, versus_baselines=_versus(run, labels, _auc))
    n = len(run.classes)
    metrics = {c.name: _multiclass_metrics(labels, c.scores, n) for c in run.candidates}
    confusion = {c.name: _confusion(labels, c.scores.argmax(axis=1), n) for c in run.candidates}
    per_class = _per_class(labels, run.model.scores.argmax(axis=1), run.classes)
    versus = {f"{name} (accuracy)": v for name, v in _versus(run, labels, _accuracy).items()}
    probabilistic = [c for c in run.candidates if not c.is_model and not _is_hard(c.scores)]
    for c in probabilistic:  # a tie on accuracy can hide a better probability model: log loss says (lower is better)
        versus[f"{c.name} (log loss)"] = paired_bootstrap(labels, run.model.scores, c.scores, _log_loss)
    return Evaluation("multiclass", metrics, per_class, confusion, versus)


def candidate_table(run: TrainingRun, evaluation: Evaluation) -> list[tuple[Candidate, Metrics]]:
    """Candidates with their metrics, model first (for CLI tables)."""
    return [(c, evaluation.metrics[c.name]) for c in run.candidates]
