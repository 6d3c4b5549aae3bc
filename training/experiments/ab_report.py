"""The A/B report of an experiment: did a variant convert more, is its model more predictive, is the split sound?

    build_report(settings, experiment, events, ...)    read the prediction log, label, analyse, write
    write_report(report, folder)         -> report.md + report.png + report.json in <reports_dir>/ab/<experiment>/
    markdown(report)                     -> report.md's text

The numbers come from `ab_analysis.analyse` (users per variant, conversion, AUC, sample ratio) and the tests behind
them from `statistics.py`; this module reads the experiment's predictions from the prediction log, labels each with
the purchases that followed it within the attribution window, and writes what a person reads: tables with verdicts,
a plot of conversion with intervals (and ROC curves per variant), and every number as JSON.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa

from journey.errors import InvalidInputError, NotFoundError
from journey.settings import Settings
from journey.stores.prediction_log import label_predictions, read_predictions
from training.experiments.ab_analysis import AbReport, VariantResult, WeightPeriod, analyse, labelled_frame
from training.experiments.statistics import SRM_THRESHOLD, Interval, SrmCheck

log = logging.getLogger(__name__)

REPORT_FILE: Final = "report.md"
PLOT_FILE: Final = "report.png"
JSON_FILE: Final = "report.json"
_COLUMNS: Final = (
    "| variant | versions | users | share (expected) | predictions | conversions | rate [95% CI] | "
    "difference vs control [95% CI] | uplift [95% CI] | p-value | AUC | AUC vs control [95% CI] | AUC p-value |",
    "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | --- | ---: |",
)
_METHOD: Final = (
    "Users are counted in the variant of their first prediction (intention to treat) and convert when a purchase "
    "falls within the attribution window after one of their served predictions. Rate intervals: Wilson; "
    "difference: unpooled Wald; uplift: Katz log interval; p-value: pooled two-proportion z-test, not adjusted "
    "for several treatments. AUC: logged scores against whether the user bought within the window after each "
    "prediction; AUC vs control: DeLong's test for two independent samples (the arms score different users, so "
    "the variances of the two AUCs add), normal interval, two-sided p-value. Sample ratio: chi-square of users "
    "per variant against the route's weights at first exposure."
)


def build_report(
    settings: Settings,
    experiment: str,
    events: pa.Table,
    *,
    weights: Mapping[str, float] | Sequence[WeightPeriod] | None = None,
    control: str | None = None,
    window_s: float | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    output_dir: Path | None = None,
) -> tuple[AbReport, dict[str, Path]]:
    """Read the experiment's predictions from the prediction log, label them with `events` (canonical events;
    purchases count), analyse and write the report (default folder `<reports_dir>/ab/<experiment>/`)."""
    window = window_s if window_s is not None else settings.attribution_window_s
    predictions = read_predictions(settings, experiment=experiment, since=since, until=until)
    if predictions.num_rows == 0:
        raise NotFoundError(f"no prediction of experiment {experiment!r} in the prediction log")
    labelled = label_predictions(predictions, events, window)
    report = analyse(labelled, experiment=experiment, weights=weights, control=control, window_s=window)
    folder = output_dir or settings.ab_reports_dir / _safe_folder(experiment)
    paths = write_report(report, folder, labelled=labelled)
    return report, paths


def write_report(report: AbReport, folder: Path, *, labelled: pa.Table | None = None) -> dict[str, Path]:
    """report.md (tables and verdicts), report.png (conversion rates with intervals; ROC curves when `labelled` is
    given) and report.json (every number) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / REPORT_FILE, "plot": folder / PLOT_FILE, "json": folder / JSON_FILE}
    _plot(report, paths["plot"], labelled)
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    log.info("A/B report written", extra={"experiment": report.experiment, "folder": str(folder)})
    return paths


def markdown(report: AbReport) -> str:
    """report.md: the experiment, one table row per variant, the sample ratio verdict, shadows, the method."""
    lines = [
        f"# A/B report: {report.experiment}",
        "",
        f"- endpoint(s): {', '.join(report.endpoints)}; control: `{report.control}`",
        f"- predictions from {_when(report.start)} to {_when(report.end)} (UTC); attribution window "
        f"{report.window_s / 3600:g} h",
        f"- unit: users (first exposure); significance at alpha = {report.alpha:g}, two-sided",
        "",
        *_COLUMNS,
        *(_variant_row(v) for v in report.variants),
        "",
        "## Sample ratio",
        "",
        _srm_text(report.srm),
    ]
    if report.shadows:
        lines += ["", "## Shadow versions", "", "| version | predictions | AUC | live AUC, same requests |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for s in report.shadows:
            auc = "n/a" if s.auc is None else f"{s.auc:.3f}"
            live = "n/a" if s.live_auc is None else f"{s.live_auc:.3f}"
            lines.append(f"| v{s.model_version} | {s.predictions:,} | {auc} | {live} |")
    lines += ["", "## Method", "", _METHOD, "", f"![conversion and ROC]({PLOT_FILE})", ""]
    return "\n".join(lines)


def _variant_row(v: VariantResult) -> str:
    versions = ", ".join(f"v{n}" for n in v.model_versions)
    share = f"{v.observed_share:.1%}" + (f" ({v.expected_share:.1%})" if v.expected_share is not None else "")
    rate = f"{v.rate:.2%} [{v.rate_ci[0]:.2%}, {v.rate_ci[1]:.2%}]"
    if v.control:
        versus = uplift = p_value = auc_versus = auc_p = "control"
    else:
        auc_versus = _auc_points(v.auc_difference, v.auc_difference_ci)
        auc_p = _p(v.auc_p_value, v.auc_significant)
        versus = _points(v.difference, v.difference_ci)
        uplift = _percent(v.uplift, v.uplift_ci)
        p_value = _p(v.p_value, v.significant)
    auc = "n/a" if v.auc is None else f"{v.auc:.3f}"
    return (
        f"| {v.variant} | {versions} | {v.users:,} | {share} | {v.predictions:,} | {v.conversions:,} | {rate} | "
        f"{versus} | {uplift} | {p_value} | {auc} | {auc_versus} | {auc_p} |"
    )


def _srm_text(srm: SrmCheck | None) -> str:
    if srm is None:
        return "Not checked: no route weights for this experiment (or a single variant)."
    verdict = (
        "**MISMATCH: users do not split as the route says; fix assignment/logging before trusting any number above.**"
        if srm.mismatch
        else "no mismatch."
    )
    counts = ", ".join(f"{name} {srm.observed[name]:,} / {srm.expected[name]:,.1f}" for name in srm.observed)
    return (
        f"Chi-square {srm.statistic:.2f} (df {srm.df}), p = {srm.p_value:.3g} (threshold {SRM_THRESHOLD:g}): "
        f"{verdict}  \nUsers observed / expected: {counts}."
    )


def _plot(report: AbReport, path: Path, labelled: pa.Table | None) -> None:
    from matplotlib.figure import Figure  # matplotlib loads only when a report is drawn

    panels = 2 if labelled is not None else 1
    fig = Figure(figsize=(5.5 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    names = [v.variant for v in report.variants]
    rates = np.array([v.rate for v in report.variants])
    lower = rates - np.array([v.rate_ci[0] for v in report.variants])
    upper = np.array([v.rate_ci[1] for v in report.variants]) - rates
    colours = ["tab:gray" if v.control else ("tab:green" if v.significant else "tab:blue") for v in report.variants]
    axes[0].bar(names, rates, yerr=np.vstack([lower, upper]), color=colours, capsize=6)
    axes[0].set_ylabel("conversion rate (users)")
    axes[0].set_title(f"{report.experiment}: conversion, 95% CI")
    if labelled is not None:
        frame = labelled_frame(labelled, report.experiment)
        live = frame[~frame["shadow"] & frame["score"].notna()]
        for name in names:
            rows = live[live["variant"] == name]
            curve = _roc_curve(rows["score"].to_numpy(), rows["converted"].to_numpy())
            if curve is not None:
                result = report.variant(name)
                versus = (
                    ""
                    if result.auc_p_value is None or math.isnan(result.auc_p_value)
                    else f", vs control {result.auc_difference:+.3f}, p {result.auc_p_value:.2g}"
                )
                axes[1].plot(curve[0], curve[1], label=f"{name} (AUC {result.auc:.3f}{versus})")
        axes[1].plot([0, 1], [0, 1], linestyle=":", color="gray")
        axes[1].set_xlabel("false positive rate")
        axes[1].set_ylabel("true positive rate")
        axes[1].set_title("ROC of logged scores vs outcome")
        if axes[1].get_legend_handles_labels()[1]:
            axes[1].legend(loc="lower right")
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------------ helpers


def _roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # one point per distinct threshold: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(sorted_scores) - 1]
    tps = np.cumsum(sorted_labels)[last]
    fps = (last + 1) - tps
    return np.r_[0, fps / fps[-1]], np.r_[0, tps / tps[-1]]


def _points(value: float | None, interval: Interval | None) -> str:
    if value is None or interval is None or math.isnan(value):
        return "n/a"
    return f"{value * 100:+.2f} pp [{interval[0] * 100:+.2f}, {interval[1] * 100:+.2f}]"


def _auc_points(value: float | None, interval: Interval | None) -> str:
    if value is None or interval is None or math.isnan(value):
        return "n/a"
    if math.isnan(interval[0]):
        return f"{value:+.3f} [n/a]"
    return f"{value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]"


def _p(value: float | None, significant: bool) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3g}" + (" **significant**" if significant else "")


def _percent(value: float | None, interval: Interval | None) -> str:
    if value is None or interval is None or math.isnan(value):
        return "n/a"
    return f"{value:+.1%} [{interval[0]:+.1%}, {interval[1]:+.1%}]"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _safe_folder(experiment: str) -> str:
    """The experiment name as one path component (registry names are already safe; this guards a typed one)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment).strip(".")
    if not safe:
        raise InvalidInputError(f"experiment name {experiment!r} cannot name a folder", field="experiment")
    return safe
