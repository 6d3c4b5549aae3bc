"""Evaluation of a training run: the model and its baselines on the same test days, as numbers and as pictures.

    evaluate(run)                            -> Evaluation (per-candidate metrics; the registry stores the model's)
    write_report(run, evaluation, out_dir)   -> report.md + PNG plots + metrics.json in reports/models/<name>/<version>/

Binary tasks (propensity): ROC-AUC, PR-AUC (average precision), log loss, Brier score, lift and gain in the top 10%
of scores, a calibration curve. Multi-class tasks (next action): accuracy, macro-F1, log loss where the candidate
gives probabilities, per-class precision/recall/F1 and a confusion matrix per candidate. Ranking tasks (next item:
each candidate's scores are its recommended item ids, best first): hit rate at 10 and 20 (the next item is in the
list), MRR at 20 and the number of distinct items recommended, with a hit-rate-at-k curve. Plots use matplotlib's
object API (`Figure`), not pyplot: no global state, safe inside a server or a test run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from training.runs import Candidate, TrainingRun

log = logging.getLogger(__name__)

TOP_FRACTION: Final = 0.10
BOOTSTRAP_ROUNDS: Final = 200
BOOTSTRAP_SEED: Final = 0
CALIBRATION_BINS: Final = 10
REPORT_FILE: Final = "report.md"
METRICS_FILE: Final = "metrics.json"
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


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


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


def _rank_of_label(labels: np.ndarray, recommended: np.ndarray) -> np.ndarray:
    """1-based position of each row's label in its list; 0 when it is not there."""
    hits = recommended == labels[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def hit_rate(labels: np.ndarray, recommended: np.ndarray, k: int = RANKING_CUTOFFS[-1]) -> float:
    """Share of rows whose next item is in the first `k` recommended (recall at k with one relevant item)."""
    ranks = _rank_of_label(labels, recommended[:, :k])
    return float((ranks > 0).mean()) if len(ranks) else float("nan")


def mrr(labels: np.ndarray, recommended: np.ndarray, k: int = RANKING_CUTOFFS[-1]) -> float:
    """Mean reciprocal rank of the next item within the first `k` (0 when it is not there)."""
    ranks = _rank_of_label(labels, recommended[:, :k])
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


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: Path) -> str:
    fig.savefig(path)
    return path.name


def _roc_pr_plots(run: TrainingRun, out_dir: Path) -> dict[str, str]:
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig = _figure(11, 4.5)
    roc_ax, pr_ax = fig.subplots(1, 2)
    for c in run.candidates:
        fpr, tpr, _ = roc_curve(run.labels, c.scores)
        roc_ax.plot(fpr, tpr, label=c.name, linewidth=2 if c.is_model else 1.2)
        precision, recall, _ = precision_recall_curve(run.labels, c.scores)
        pr_ax.plot(recall, precision, label=c.name, linewidth=2 if c.is_model else 1.2)
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_ax.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")
    pr_ax.axhline(float(np.mean(run.labels)), linestyle=":", color="grey", label="base rate")
    pr_ax.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    roc_ax.legend(loc="lower right")
    pr_ax.legend(loc="upper right")
    return {"ROC and precision-recall curves": _save(fig, out_dir / "roc_pr.png")}


def _calibration_and_gain_plots(run: TrainingRun, out_dir: Path) -> dict[str, str]:
    from sklearn.calibration import calibration_curve

    fig = _figure(11, 4.5)
    cal_ax, gain_ax = fig.subplots(1, 2)
    labels = np.asarray(run.labels)
    for c in run.candidates:
        if len(np.unique(c.scores)) > 2:
            observed, predicted = calibration_curve(labels, c.scores, n_bins=CALIBRATION_BINS, strategy="quantile")
            cal_ax.plot(predicted, observed, marker="o", label=c.name)
        order = np.argsort(-c.scores, kind="stable")
        gain = np.cumsum(labels[order]) / max(1, labels.sum())
        gain_ax.plot(np.arange(1, len(labels) + 1) / len(labels), gain, label=c.name)
    top = max(float(c.scores.max()) for c in run.candidates)
    cal_ax.plot([0, top], [0, top], linestyle=":", color="grey", label="perfect")
    cal_ax.set(title="Calibration (quantile bins)", xlabel="mean predicted probability", ylabel="observed rate")
    gain_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random")
    gain_ax.axvline(TOP_FRACTION, color="grey", linewidth=0.8)
    gain_ax.set(title="Cumulative gain", xlabel="share of examples (by score)", ylabel="share of purchases found")
    cal_ax.legend(loc="upper left")
    gain_ax.legend(loc="lower right")
    return {"Calibration and cumulative gain": _save(fig, out_dir / "calibration_gain.png")}


def _confusion_plots(run: TrainingRun, evaluation: Evaluation, out_dir: Path) -> dict[str, str]:
    fig = _figure(5.0 * len(run.candidates), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(run.candidates)))
    for ax, c in zip(axes, run.candidates, strict=True):
        counts = np.asarray(evaluation.confusion[c.name], dtype=np.float64)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for (i, j), value in np.ndenumerate(share):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.5 else "black")
        ticks = range(len(run.classes))
        ax.set_xticks(ticks, run.classes, rotation=35, ha="right")
        ax.set_yticks(ticks, run.classes)
        ax.set(title=f"{c.name} (row-normalised)", xlabel="predicted", ylabel="actual")
    return {"Confusion matrices (share of each actual class)": _save(fig, out_dir / "confusion.png")}


def _hit_rate_plot(run: TrainingRun, out_dir: Path) -> dict[str, str]:
    labels = np.asarray(run.labels, dtype=np.int64)
    fig = _figure()
    ax = fig.subplots()
    for c in run.candidates:
        ks = np.arange(1, c.scores.shape[1] + 1)
        ranks = _rank_of_label(labels, c.scores)
        curve = [(ranks > 0) & (ranks <= k) for k in ks]
        ax.plot(ks, [float(hit.mean()) for hit in curve], label=f"{c.name} (model)" if c.is_model else c.name)
    ax.set(title="Hit rate at k (the next item is in the first k)", xlabel="k", ylabel="hit rate", ylim=(0, None))
    ax.legend()
    return {"Hit rate at k": _save(fig, out_dir / "hit_rate_at_k.png")}


def _history_plot(run: TrainingRun, out_dir: Path) -> dict[str, str]:
    curves = {k: v for k, v in run.history.items() if v and "loss" in k}
    if not curves:
        return {}
    fig = _figure()
    ax = fig.subplots()
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    ax.set(title="Training curves", xlabel="iteration / epoch", ylabel="loss")
    ax.legend()
    return {"Training curves": _save(fig, out_dir / "training_curves.png")}


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _metrics_table(run: TrainingRun, evaluation: Evaluation) -> list[str]:
    names = list(next(iter(evaluation.metrics.values())))
    rows = [
        [f"**{c.name}** (model)" if c.is_model else c.name, *evaluation.metrics[c.name].values()]
        for c in run.candidates
    ]
    return _table(["candidate", *names], rows)


def _data_section(run: TrainingRun, training_meta: dict[str, Any]) -> list[str]:
    split = run.split
    lines = [
        f"- dataset `{training_meta.get('dataset', '?')}` ({training_meta.get('events', '?'):,} events), "
        f"feature service `{run.feature_service}`",
        f"- split by {split.method.replace('_', ' ')}: train from {split.train_start}, validation from "
        f"{split.valid_start}, test from {split.test_start} to {split.test_end}",
        f"- rows: train {split.rows['train']:,}, validation {split.rows['valid']:,}, test {split.rows['test']:,}",
        f"- labels (all rows): {json.dumps(training_meta.get('labels', {}))}",
    ]
    missing = training_meta.get("rows_missing_view") or {}
    if any(missing.values()):
        lines.append(f"- rows without a feature row in a view's TTL (features left missing): {json.dumps(missing)}")
    return lines


def _export_section(run: TrainingRun) -> list[str]:
    e = run.export
    parity = ", ".join(f"batch {k}: {v:.2e}" for k, v in sorted(e.max_abs_diff.items()))
    return [
        f"- ONNX `{e.path.name}`, sha256 `{e.sha256}`, exporter {e.exporter}",
        f"- inputs {list(e.input_names)}, outputs {list(e.output_names)}, {len(run.feature_order)} feature columns",
        f"- parity vs the native model (max abs diff): {parity}",
    ]


def _render(
    run: TrainingRun, evaluation: Evaluation, plots: dict[str, str], version: str, training_meta: dict[str, Any]
) -> str:
    lines = [f"# {run.model_name} v{version}", "", "## Data", *_data_section(run, training_meta), ""]
    lines += ["## Test metrics (model and baselines, same test days)", "", *_metrics_table(run, evaluation), ""]
    if evaluation.versus_baselines:
        headline = {
            "binary": "ROC-AUC",
            "ranking": f"hit rate at {RANKING_CUTOFFS[-1]}",
        }.get(evaluation.task, "accuracy (higher is better) and log loss (lower)")
        rows = [
            [name, v["difference"], f"[{v['ci95_low']:.4f}, {v['ci95_high']:.4f}]"]
            for name, v in evaluation.versus_baselines.items()
        ]
        lines += [
            f"Model minus baseline, {headline}, with a 95% paired bootstrap interval "
            f"({BOOTSTRAP_ROUNDS} resamples of the test rows):",
            "",
            *_table(["baseline", "difference", "95% interval"], rows),
            "",
        ]
    if evaluation.per_class:
        rows = [[name, *values.values()] for name, values in evaluation.per_class.items()]
        lines += [
            f"### {run.model.name} per class",
            "",
            *_table(["class", "precision", "recall", "f1", "support"], rows),
            "",
        ]
    for title, file in plots.items():
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    lines += ["## Export", *_export_section(run), ""]
    lines += ["## Training", f"- seconds: {json.dumps(run.seconds)}", f"- parameters: `{json.dumps(run.params)}`", ""]
    return "\n".join(lines)


def write_report(
    run: TrainingRun,
    evaluation: Evaluation,
    out_dir: Path,
    *,
    version: str,
    training_meta: dict[str, Any] | None = None,
) -> Path:
    """Markdown report + plots + metrics.json into `out_dir` (created); returns the report's path."""
    meta = training_meta or {}
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = _history_plot(run, out_dir)
    if evaluation.task == "binary":
        plots = {**_roc_pr_plots(run, out_dir), **_calibration_and_gain_plots(run, out_dir), **plots}
    elif evaluation.task == "ranking":
        plots = {**_hit_rate_plot(run, out_dir), **plots}
    else:
        plots = {**_confusion_plots(run, evaluation, out_dir), **plots}
    report = out_dir / REPORT_FILE
    report.write_text(_render(run, evaluation, plots, version, meta), encoding="utf-8")
    payload = {
        "model": run.model_name,
        "version": version,
        "task": evaluation.task,
        "metrics": evaluation.metrics,
        "per_class": evaluation.per_class,
        "confusion": evaluation.confusion,
        "versus_baselines": evaluation.versus_baselines,
        "classes": list(run.classes),
        "split": run.split.as_dict(),
        "training_set": meta,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    log.info("evaluation report written", extra={"model": run.model_name, "version": version, "path": str(report)})
    return report


def candidate_table(run: TrainingRun, evaluation: Evaluation) -> list[tuple[Candidate, Metrics]]:
    """Candidates with their metrics, model first (for CLI tables)."""
    return [(c, evaluation.metrics[c.name]) for c in run.candidates]
