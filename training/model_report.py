"""The report of a training run: Markdown, PNG plots and metrics.json in reports/models/<name>/<version>/.

    write_report(run, evaluation, out_dir, version=..., gate=...)
        -> report.md (data; the promotion gate on the validation days: metric, model, best baseline, difference,
           interval, pass/fail, and every candidate's validation figures; the test metrics of the model and every
           baseline; the model minus each baseline with its interval; export parity; training) + plots + metrics.json

Plots: ROC and precision-recall, calibration and cumulative gain (binary); confusion matrices (multi-class); hit
rate at k (ranking); training curves (all). They use matplotlib's object API (`Figure`), not pyplot: no global
state, safe inside a server or a test run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Final

import numpy as np

from training.evaluate import BOOTSTRAP_ROUNDS, RANKING_CUTOFFS, TOP_FRACTION, Evaluation, rank_of_label
from training.gate import RULE, GateResult
from training.runs import TrainingRun

log = logging.getLogger(__name__)

CALIBRATION_BINS: Final = 10
REPORT_FILE: Final = "report.md"
METRICS_FILE: Final = "metrics.json"  # serving reads it beside the registered version's report


# ---------------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------------


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure  # matplotlib loads only when a report is drawn

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
        ranks = rank_of_label(labels, c.scores)
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


def _gate_section(gate: GateResult | None) -> list[str]:
    """The promotion decision (validation days) and what it was decided on."""
    lines = ["## Promotion gate (validation days)", ""]
    if gate is None:
        return [*lines, "- not computed for this run", ""]
    lines += [f"**{'PASS' if gate.passed else 'FAIL'}**: {gate.reason}", "", f"- rule: {RULE}"]
    if gate.headline is None:
        return [*lines, ""]
    lines += [
        f"- interval: {gate.rounds} paired bootstrap resamples of the {gate.units:,} validation {gate.resampled}",
        "",
    ]
    rows = [
        [
            c.metric + ("" if c is gate.headline else " (guard)"),
            c.baseline,
            c.model_value,
            c.baseline_value,
            c.difference,
            f"[{c.ci95_low:+.4f}, {c.ci95_high:+.4f}]",
            ("difference > 0, " if c.require_gain else "") + f"lower bound >= {c.threshold:+.2f}",
            "pass" if c.passed else "FAIL",
        ]
        for c in (gate.headline, *gate.guards)
    ]
    header = ["metric", "best baseline", f"{gate.model} (model)", "baseline", "difference", "95% interval"]
    lines += [*_table([*header, "needs", "result"], rows), ""]
    metrics = list(next(iter(gate.validation.values()), {}))
    rows = [
        [f"**{name}** (model)" if name == gate.model else name, *values.values()]
        for name, values in gate.validation.items()
    ]
    return [*lines, "Every candidate on the validation days:", "", *_table(["candidate", *metrics], rows), ""]


def _selection_section(selection: dict[str, Any] | None) -> list[str]:
    """`--kind auto`: which kind was exported and every kind's validation figures (the test days did not choose)."""
    if not selection:
        return []
    figures = selection["validation"]
    metrics = list(next(iter(figures.values())))
    rows = [
        [f"**{name}** (served)" if name == selection["chosen"] else name, *values.values()]
        for name, values in figures.items()
    ]
    return [
        "## Kind selection (validation days, `--kind auto`)",
        "",
        f"Served: **{selection['chosen']}**; rule: {selection['rule']}; {selection['rows']:,} validation rows. The test"
        " days below did not take part in the choice.",
        "",
        *_table(["kind", *metrics], rows),
        "",
        *_challenges(selection.get("challenges", [])),
    ]


def _challenges(challenges: list[dict[str, Any]]) -> list[str]:
    """Each challenge of `--kind auto` (a kind replaces the one served so far only when the lower bound is > 0)."""
    return [
        f"- {c['challenger']} minus {c['incumbent']}, {c['metric']}: {c['difference']:+.4f} "
        f"[95% {c['ci95'][0]:+.4f}, {c['ci95'][1]:+.4f}]: {'replaces it' if c['won'] else 'does not replace it'}"
        for c in challenges
    ] + ([""] if challenges else [])


def _export_section(run: TrainingRun) -> list[str]:
    e = run.export
    parity = ", ".join(f"batch {k}: {v:.2e}" for k, v in sorted(e.max_abs_diff.items()))
    return [
        f"- ONNX `{e.path.name}`, sha256 `{e.sha256}`, exporter {e.exporter}",
        f"- inputs {list(e.input_names)}, outputs {list(e.output_names)}, {len(run.feature_order)} feature columns",
        f"- parity vs the native model (max abs diff): {parity}",
    ]


def _render(
    run: TrainingRun,
    evaluation: Evaluation,
    plots: dict[str, str],
    version: str,
    training_meta: dict[str, Any],
    gate: GateResult | None,
) -> str:
    lines = [f"# {run.model_name} v{version}", "", "## Data", *_data_section(run, training_meta), ""]
    lines += _gate_section(gate)
    lines += _selection_section(run.params.get("selection"))
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
    gate: GateResult | None = None,
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
    report.write_text(_render(run, evaluation, plots, version, meta, gate), encoding="utf-8")
    payload = {
        "model": run.model_name,
        "version": version,
        "task": evaluation.task,
        "metrics": evaluation.metrics,
        "per_class": evaluation.per_class,
        "confusion": evaluation.confusion,
        "versus_baselines": evaluation.versus_baselines,
        "gate": None if gate is None else gate.as_dict(),
        "classes": list(run.classes),
        "split": run.split.as_dict(),
        "training_set": meta,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    log.info("evaluation report written", extra={"model": run.model_name, "version": version, "path": str(report)})
    return report
