"""The promotion gate: does the model beat the best baseline on the validation days?

    promotion_gate(run)  -> GateResult (stored in the version's metrics at registration, stated in its report;
                            `promotion.py` reads it back when someone promotes or deploys the version)

The rule (DESIGN: "no version is promoted unless it beats the best baseline on the validation days"):

    headline metric   binary (propensity): ROC-AUC; multi-class (next action): accuracy; ranking (next item):
                      hit rate@20 (MRR@20 is a guard, below)
    best baseline     the baseline with the highest headline metric on the validation rows
    difference        metric(model) - metric(best baseline) on the validation rows
    interval          95% percentile interval of that difference over GATE_ROUNDS paired bootstrap resamples of the
                      validation *sessions* (a drawn session brings all its rows; model and baselines are scored on
                      the same resample); rows are resampled when the run gives no session ids
    passes when       the model beats the best baseline on the point estimate (difference > 0) and is not worse
                      than it beyond MARGIN with 95% confidence (lower bound >= -0.01): the non-inferiority test the
                      issue's acceptance uses for "the served model is >= the best baseline"; and, for ranking,
                      MRR@20 is not worse than the best baseline on MRR@20 by more than MARGIN either (lower bound
                      >= -0.01): a model that wins on hit rate by pushing the next item from first place to tenth
                      is not promoted

A missing or undefined figure (no validation scores, a NaN metric) fails the gate, saying why.

Why accuracy for next action: it is defined for every baseline (last-action repeat names a class and gives no
probabilities, so its log loss measures only the clipping) and it is what the served argmax decides; log loss is
reported beside it on the test days. Why sessions: the examples of one session share its shopper and its items, so
resampling rows would make the interval too narrow. The validation days also chose the model's early-stopping
epoch (one number; the baselines learn nothing there): a slight advantage to the model. Why not require the lower
bound > 0 (significance): a model as good as its baseline within noise, which also wins on the point estimate, is
worth serving (it is the better bet), and requiring significance refused the demo's XGBoost propensity model at
+0.0058 ROC-AUC [-0.0010, +0.0129] over 9,695 validation sessions; a model that is worse beyond the margin is
refused either way. The test days stay untouched by the decision: they are what the report shows.

Every metric is a function of per-row weights (a bootstrap resample is a multiplicity per row), so a resample costs
one pass over the rows: means of per-row values (accuracy, hit, reciprocal rank), and ROC-AUC by mid-rank counting
over score groups sorted once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from training.evaluate import RANKING_CUTOFFS, rank_of_label
from training.runs import TrainingRun

GATE_ROUNDS: Final = 1000
GATE_SEED: Final = 0
MARGIN: Final = 0.01  # non-inferiority margin, in the metric's units (ROC-AUC, accuracy, hit rate, MRR)
_K: Final = RANKING_CUTOFFS[-1]
HIT: Final = f"hit_rate@{_K}"
MRR: Final = f"mrr@{_K}"

Statistic = Callable[[np.ndarray], float]  # row weights [n] -> metric value


# ---------------------------------------------------------------------------------------------------------------
# Weighted metrics (weights = how often each row was drawn)
# ---------------------------------------------------------------------------------------------------------------


def mean_statistic(values: np.ndarray) -> Statistic:
    """The weighted mean of per-row values (accuracy, hit, reciprocal rank)."""
    values = np.asarray(values, dtype=np.float64)

    def statistic(weights: np.ndarray) -> float:
        total = float(weights.sum())
        return float(weights @ values) / total if total > 0 else float("nan")

    return statistic


def auc_statistic(labels: np.ndarray, scores: np.ndarray) -> Statistic:
    """Weighted ROC-AUC: P(score of a positive > score of a negative), ties counting half (sklearn's value at unit
    weights). Scores are grouped and sorted once; each call is two bincounts and a cumulative sum."""
    groups, inverse = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    positive = np.asarray(labels).reshape(-1) == 1
    inverse = inverse.reshape(-1)

    def statistic(weights: np.ndarray) -> float:
        pos = np.bincount(inverse, weights=weights * positive, minlength=len(groups))
        neg = np.bincount(inverse, weights=weights * ~positive, minlength=len(groups))
        below = np.cumsum(neg) - neg
        denominator = float(pos.sum() * neg.sum())
        return float(pos @ (below + 0.5 * neg)) / denominator if denominator > 0 else float("nan")

    return statistic


def candidate_statistics(task: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, Statistic]:
    """The gate's metrics of one candidate's validation scores: the headline first, then the guard (ranking)."""
    if task == "binary":
        return {"roc_auc": auc_statistic(labels, scores)}
    if task == "multiclass":
        return {"accuracy": mean_statistic(scores.argmax(axis=1) == labels)}
    ranks = rank_of_label(labels, scores[:, :_K])
    return {HIT: mean_statistic(ranks > 0), MRR: mean_statistic(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0))}


def task_of(run: TrainingRun) -> str:
    """ "binary", "multiclass" or "ranking", as `evaluate` decides it."""
    if not run.classes:
        return "ranking"
    return "binary" if len(run.classes) == 2 and all(c.scores.ndim == 1 for c in run.candidates) else "multiclass"


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------------


def resample_weights(groups: np.ndarray | None, n: int, seed: int) -> Callable[[], np.ndarray]:
    """A draw of row weights per call: each group (session) drawn with replacement as often as there are groups,
    every row weighted by how often its group was drawn (rows are their own groups when `groups` is None)."""
    inverse = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n_groups = int(inverse.max()) + 1 if n else 0
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups).astype(np.float64)
        weights: np.ndarray = counts[inverse]
        return weights

    return draw


def bootstrap_table(
    statistics: dict[str, Statistic], groups: np.ndarray | None, n: int, rounds: int, seed: int
) -> dict[str, np.ndarray]:
    """Every statistic on the same `rounds` resamples: paired, whichever two columns are compared."""
    draw = resample_weights(groups, n, seed)
    table = np.empty((rounds, len(statistics)))
    for r in range(rounds):
        weights = draw()
        table[r] = [statistic(weights) for statistic in statistics.values()]
    return {name: table[:, j] for j, name in enumerate(statistics)}


# ---------------------------------------------------------------------------------------------------------------
# The gate
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The model against one baseline on one metric, on the validation days."""

    metric: str
    baseline: str
    model_value: float
    baseline_value: float
    difference: float
    ci95_low: float
    ci95_high: float
    threshold: float  # the lower bound must be >= threshold
    require_gain: bool  # and the difference > 0 (the headline metric)
    passed: bool

    def sentence(self, model: str) -> str:
        needs = ("difference > 0 and " if self.require_gain else "") + f"lower bound >= {self.threshold:+.2f}"
        return (
            f"{self.metric}: {model} {self.model_value:.4f} vs {self.baseline} {self.baseline_value:.4f}, "
            f"difference {self.difference:+.4f} [95% {self.ci95_low:+.4f}, {self.ci95_high:+.4f}] "
            f"(needs {needs}: {'pass' if self.passed else 'FAIL'})"
        )


@dataclass(frozen=True)
class GateResult:
    """The gate's decision and everything it was decided on (what the registry stores under metrics["gate"])."""

    passed: bool
    reason: str  # one line: the decisive comparison, or why there was none
    task: str
    model: str
    metric: str
    headline: Comparison | None = None
    guards: tuple[Comparison, ...] = ()
    validation: dict[str, dict[str, float]] = field(default_factory=dict)  # candidate -> metric -> value
    resampled: str = "sessions"  # "sessions" or "rows"
    units: int = 0  # how many sessions (or rows) were resampled
    rounds: int = GATE_ROUNDS

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["rule"] = RULE
        return document


RULE: Final = (
    "the model passes when, on the validation days, it beats the best baseline on the headline metric (ROC-AUC, "
    f"accuracy, hit rate@20; difference > 0) and the 95% paired bootstrap lower bound of the difference is >= -{MARGIN}"
    f"; for next item the MRR@20 lower bound against the best baseline on MRR@20 is >= -{MARGIN} too"
)
HEADLINES: Final = {"binary": "roc_auc", "multiclass": "accuracy", "ranking": HIT}


def _compare(
    metric: str, model: str, baseline: str, values: dict[str, dict[str, float]], table: dict[str, np.ndarray]
) -> tuple[float, float, float]:
    diffs = table[f"{model}/{metric}"] - table[f"{baseline}/{metric}"]
    difference = values[model][metric] - values[baseline][metric]
    if np.isnan(difference) or np.isnan(diffs).all():
        return difference, float("nan"), float("nan")
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return difference, float(low), float(high)


def _best(baselines: list[str], metric: str, values: dict[str, dict[str, float]]) -> str:
    """The baseline with the highest value of `metric` (NaN last, ties: the first)."""
    return max(baselines, key=lambda name: -np.inf if np.isnan(values[name][metric]) else values[name][metric])


def _comparison(
    metric: str,
    run: TrainingRun,
    values: dict[str, dict[str, float]],
    table: dict[str, np.ndarray],
    require_gain: bool,
) -> Comparison:
    model = run.model.name
    best = _best([c.name for c in run.baselines], metric, values)
    difference, low, high = _compare(metric, model, best, values, table)
    passed = bool(not np.isnan(low) and low >= -MARGIN and (difference > 0 or not require_gain))
    return Comparison(
        metric, best, values[model][metric], values[best][metric], difference, low, high, -MARGIN, require_gain, passed
    )


def _not_evaluated(run: TrainingRun, task: str, why: str) -> GateResult:
    return GateResult(False, f"not evaluated: {why}", task, run.model.name, HEADLINES[task])


def promotion_gate(run: TrainingRun, *, rounds: int = GATE_ROUNDS, seed: int = GATE_SEED) -> GateResult:
    """The gate of one run (see the module docstring); never raises for a model that merely loses."""
    task = task_of(run)
    scored = {c.name: np.asarray(c.valid_scores) for c in run.candidates if c.valid_scores is not None}
    missing = [c.name for c in run.candidates if c.name not in scored]
    if run.valid_labels is None or missing:
        return _not_evaluated(run, task, f"no validation-day scores for {missing or ['the labels']}")
    if not run.baselines:
        return _not_evaluated(run, task, "the run has no baseline to beat")
    labels = np.asarray(run.valid_labels, dtype=np.int64)
    if not len(labels):
        return _not_evaluated(run, task, "no validation rows")
    statistics = {
        f"{name}/{metric}": statistic
        for name, scores in scored.items()
        for metric, statistic in candidate_statistics(task, labels, scores).items()
    }
    ones = np.ones(len(labels))
    values: dict[str, dict[str, float]] = {c.name: {} for c in run.candidates}
    for key, statistic in statistics.items():
        name, metric = key.rsplit("/", 1)
        values[name][metric] = statistic(ones)
    groups = run.valid_groups
    table = bootstrap_table(statistics, groups, len(labels), rounds, seed)
    headline = _comparison(HEADLINES[task], run, values, table, require_gain=True)
    guards = (_comparison(MRR, run, values, table, require_gain=False),) if task == "ranking" else ()
    failed = next((c for c in (headline, *guards) if not c.passed), None)
    decisive = failed or headline
    return GateResult(
        passed=failed is None,
        reason=decisive.sentence(run.model.name),
        task=task,
        model=run.model.name,
        metric=headline.metric,
        headline=headline,
        guards=guards,
        validation=values,
        resampled="rows" if groups is None else "sessions",
        units=len(labels) if groups is None else len(np.unique(np.asarray(groups))),
        rounds=rounds,
    )
