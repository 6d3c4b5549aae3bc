"""The A/B report of an experiment: did a variant convert more, is its model more predictive, is the split sound?

    analyse(labelled, weights=...)       -> AbReport   (predictions labelled by journey.stores.prediction_log)
    build_report(settings, experiment, events, ...)    read the prediction log, label, analyse, write
    write_report(report, folder)         -> report.md + report.png + report.json in <reports_dir>/ab/<experiment>/

Unit of analysis: the user (intention to treat). A user belongs to the variant of their *first* prediction in the
experiment, even if a later weight change moved them, and converts when a purchase falls within the attribution
window after any of their served predictions. Users are the randomised unit (the router hashes user ids), so they
are independent draws and the tests below are valid; predictions of one user are not.

Per variant: users, predictions, conversions, conversion rate with a 95% Wilson interval, and against the control:
the absolute difference with an unpooled Wald interval, the relative uplift with a Katz log interval, and the
pooled two-proportion z-test p-value (two-sided; unadjusted when there are several treatments). The AUC of the
logged scores against the outcome of each prediction (did the user buy within the window after it?) says whose
ranking is better; shadow versions get theirs on the requests they shadowed, beside the live AUC of those requests.
Against the control, the AUC difference gets a 95% interval and a two-sided p-value from DeLong's test for two
independent samples: variants score different users, so the variance of the difference is the sum of each AUC's
DeLong variance (no covariance term, unlike DeLong's paired test of two models on the same rows). A variant can
rank buyers better without converting more (the model may not change what shoppers buy), so the two tests answer
different questions and both are reported.

Sample ratio mismatch: a chi-square goodness-of-fit test of users per variant against the route's weights at each
user's first exposure (so a mid-experiment ramp-up is accounted for). p < 0.001 (the usual SRM threshold) flags
the experiment: assignment or logging is broken, and the other numbers cannot be trusted.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from journey.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from journey.registry import RouteRevision
    from journey.settings import Settings

log = logging.getLogger(__name__)

ALPHA: Final = 0.05
SRM_THRESHOLD: Final = 0.001
Z_95: Final = 1.959963984540054  # the 97.5% quantile of the standard normal
REPORT_FILE: Final = "report.md"
PLOT_FILE: Final = "report.png"
JSON_FILE: Final = "report.json"

Interval = tuple[float, float]


# ---------------------------------------------------------------------------------------------------- statistics


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Wilson score interval of a proportion: unlike p ± z·se it stays inside [0, 1] and covers well at small n."""
    if trials <= 0:
        return (math.nan, math.nan)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_test(x_treatment: int, n_treatment: int, x_control: int, n_control: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p_treatment = p_control: (z, two-sided p-value); (nan, nan) when undefined."""
    if n_treatment <= 0 or n_control <= 0:
        return (math.nan, math.nan)
    pooled = (x_treatment + x_control) / (n_treatment + n_control)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_treatment + 1 / n_control))
    if se == 0:
        return (math.nan, math.nan)
    z = (x_treatment / n_treatment - x_control / n_control) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def difference_interval(
    x_treatment: int, n_treatment: int, x_control: int, n_control: int, z: float = Z_95
) -> tuple[float, Interval]:
    """p_treatment - p_control and its unpooled Wald interval."""
    if n_treatment <= 0 or n_control <= 0:
        return math.nan, (math.nan, math.nan)
    p_t, p_c = x_treatment / n_treatment, x_control / n_control
    se = math.sqrt(p_t * (1 - p_t) / n_treatment + p_c * (1 - p_c) / n_control)
    return p_t - p_c, (p_t - p_c - z * se, p_t - p_c + z * se)


def uplift_interval(
    x_treatment: int, n_treatment: int, x_control: int, n_control: int, z: float = Z_95
) -> tuple[float, Interval]:
    """Relative uplift p_treatment / p_control - 1 and its Katz log interval (undefined without conversions)."""
    if min(x_treatment, x_control, n_treatment, n_control) <= 0:
        return math.nan, (math.nan, math.nan)
    ratio = (x_treatment / n_treatment) / (x_control / n_control)
    se = math.sqrt(1 / x_treatment - 1 / n_treatment + 1 / x_control - 1 / n_control)
    log_ratio = math.log(ratio)
    return ratio - 1, (math.exp(log_ratio - z * se) - 1, math.exp(log_ratio + z * se) - 1)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve as the Mann-Whitney probability P(score of a positive > score of a negative), ties
    counted half; None when one class is absent."""
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def delong_auc(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float] | None:
    """The AUC and its DeLong variance, (auc, variance); None when one class is absent.

    DeLong's structural components: each positive's share of negatives ranked below it (V10, ties half) and each
    negative's share of positives ranked above it (V01); the AUC is the mean of either and its variance
    var(V10)/m + var(V01)/n (m positives, n negatives, sample variances). Mid-ranks give every component at once
    (O(n log n) instead of the m x n pair table): a positive's rank among all scores minus its rank among the
    positives counts the negatives below it. The variance is NaN with a single positive or negative (no spread to
    estimate).
    """
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[labels], scores[~labels]
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        return None
    overall = rankdata(np.concatenate([positives, negatives]))
    v10 = (overall[:m] - rankdata(positives)) / n
    v01 = 1.0 - (overall[m:] - rankdata(negatives)) / m
    auc = float(v10.mean())
    if m < 2 or n < 2:
        return auc, math.nan
    return auc, float(v10.var(ddof=1) / m + v01.var(ddof=1) / n)


@dataclass(frozen=True)
class AucDifference:
    """AUC(treatment) - AUC(control) from independent samples, its 95% interval, DeLong z and two-sided p."""

    difference: float
    ci: Interval
    z: float
    p_value: float


def auc_difference_test(
    treatment_scores: np.ndarray,
    treatment_labels: np.ndarray,
    control_scores: np.ndarray,
    control_labels: np.ndarray,
    z: float = Z_95,
) -> AucDifference | None:
    """DeLong's test of AUC(treatment) = AUC(control) for two independent samples (different users per arm):
    var(difference) = var(AUC treatment) + var(AUC control). None when an arm lacks a class; NaN interval and
    p-value when the variance cannot be estimated (fewer than two of a class) or is zero (both arms separate
    perfectly)."""
    from scipy.stats import norm

    treatment = delong_auc(treatment_scores, treatment_labels)
    control = delong_auc(control_scores, control_labels)
    if treatment is None or control is None:
        return None
    difference = treatment[0] - control[0]
    se = math.sqrt(treatment[1] + control[1]) if not math.isnan(treatment[1] + control[1]) else math.nan
    if math.isnan(se) or se == 0:
        return AucDifference(difference, (math.nan, math.nan), math.nan, math.nan)
    statistic = difference / se
    return AucDifference(
        difference, (difference - z * se, difference + z * se), statistic, float(2 * norm.sf(abs(statistic)))
    )


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square goodness of fit of users per variant against the configured weights."""

    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    df: int
    p_value: float
    mismatch: bool


def srm_check(
    observed: Mapping[str, int], expected: Mapping[str, float], threshold: float = SRM_THRESHOLD
) -> SrmCheck | None:
    """Compare observed user counts with expected ones (any scale: rescaled to the observed total). A variant
    with users but no expected share is a mismatch outright. None when fewer than two variants are expected."""
    from scipy.stats import chi2

    names = list(dict.fromkeys([*expected, *observed]))
    total = sum(observed.values())
    scale = sum(expected.values())
    if total == 0 or scale <= 0:
        return None
    expected_n = {name: total * expected.get(name, 0.0) / scale for name in names}
    counts = {name: int(observed.get(name, 0)) for name in names}
    tested = [name for name in names if expected_n[name] > 0]
    if len(tested) < 2:
        return None
    if any(counts[name] > 0 and expected_n[name] == 0 for name in names):
        return SrmCheck(counts, expected_n, math.inf, len(tested) - 1, 0.0, True)
    statistic = sum((counts[n] - expected_n[n]) ** 2 / expected_n[n] for n in tested)
    df = len(tested) - 1
    p_value = float(chi2.sf(statistic, df))
    return SrmCheck(counts, expected_n, statistic, df, p_value, p_value < threshold)


# ----------------------------------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class WeightPeriod:
    """The route's weights from `start` (None: from the beginning) until the next period's start."""

    start: datetime | None
    weights: Mapping[str, float]


@dataclass(frozen=True)
class VariantResult:
    variant: str
    model_versions: list[int]
    users: int
    predictions: int
    conversions: int
    rate: float
    rate_ci: Interval
    observed_share: float
    expected_share: float | None
    auc: float | None
    control: bool
    difference: float | None = None  # rate - control rate
    difference_ci: Interval | None = None
    uplift: float | None = None  # rate / control rate - 1
    uplift_ci: Interval | None = None
    z: float | None = None
    p_value: float | None = None
    significant: bool = False
    auc_difference: float | None = None  # auc - control auc (DeLong, independent samples)
    auc_difference_ci: Interval | None = None
    auc_z: float | None = None
    auc_p_value: float | None = None
    auc_significant: bool = False


@dataclass(frozen=True)
class ShadowResult:
    """A shadow version's ranking on the requests it scored, beside the live answers' on the same requests."""

    model_version: int
    predictions: int
    auc: float | None
    live_auc: float | None


@dataclass(frozen=True)
class AbReport:
    experiment: str
    endpoints: list[str]
    control: str
    window_s: float
    start: datetime | None
    end: datetime | None
    variants: list[VariantResult]
    srm: SrmCheck | None
    shadows: list[ShadowResult] = field(default_factory=list)
    alpha: float = ALPHA

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.variant == name)

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["start"] = self.start.isoformat() if self.start else None
        document["end"] = self.end.isoformat() if self.end else None
        safe: dict[str, Any] = _json_safe(document)
        return safe


def weights_from_history(revisions: Sequence[RouteRevision], experiment: str) -> list[WeightPeriod]:
    """The weight periods of `experiment` from the route history (oldest first): each revision that ran it opens
    a period with its weights; a revision that ran something else (or cleared the route) closes it."""
    periods: list[WeightPeriod] = []
    for revision in sorted(revisions, key=lambda r: r.at):
        route = revision.route
        if route is not None and route.experiment == experiment:
            periods.append(WeightPeriod(revision.at, {v.name: v.weight for v in route.variants}))
        elif periods and periods[-1].weights:
            periods.append(WeightPeriod(revision.at, {}))
    return periods


def analyse(
    labelled: pa.Table,
    *,
    experiment: str,
    weights: Mapping[str, float] | Sequence[WeightPeriod] | None = None,
    control: str | None = None,
    window_s: float,
    alpha: float = ALPHA,
) -> AbReport:
    """The report's numbers from predictions labelled by `journey.stores.prediction_log.label_predictions` (columns of
    PREDICTION_SCHEMA plus `converted`), restricted to `experiment`.

    `weights` are the route's (a constant mapping, or periods from `weights_from_history`); without them the SRM
    check is skipped. `control` defaults to the variant named `control`, else `production`, else the first variant
    of the weights, else the variant with the most users.
    """
    frame = _frame(labelled, experiment)
    live = frame[~frame["shadow"]]
    if live.empty:
        raise NotFoundError(f"no served prediction of experiment {experiment!r} in the prediction log")
    first = live.sort_values("time", kind="stable").groupby("user_id", sort=False).head(1)
    users = {str(k): int(v) for k, v in first.groupby("variant")["user_id"].count().items()}
    converted_users = set(live.loc[live["converted"], "user_id"].tolist())
    converted_first = first[first["user_id"].isin(converted_users)]
    conversions = {str(k): int(v) for k, v in converted_first.groupby("variant")["user_id"].count().items()}
    periods = _periods(weights)
    order = list(
        dict.fromkeys([*(name for p in periods for name in p.weights), *sorted(users, key=lambda n: -users[n])])
    )
    names = [name for name in order if name in users]
    chosen = _control(control, names, periods)
    expected = _expected_users(first, periods) if periods else {}
    srm = srm_check(users, expected) if expected else None
    total_users = sum(users.values())
    expected_total = sum(expected.values())

    results: list[VariantResult] = []
    n_c, x_c = users[chosen], conversions.get(chosen, 0)
    control_scored = _scored(live[live["variant"] == chosen])
    for name in names:
        rows = live[live["variant"] == name]
        n, x = users[name], conversions.get(name, 0)
        result = VariantResult(
            variant=name,
            model_versions=sorted(int(v) for v in rows["model_version"].unique()),
            users=n,
            predictions=len(rows),
            conversions=x,
            rate=x / n,
            rate_ci=wilson_interval(x, n),
            observed_share=n / total_users,
            expected_share=expected.get(name, 0.0) / expected_total if expected_total else None,
            auc=_auc(rows),
            control=name == chosen,
        )
        if name != chosen:
            difference, difference_ci = difference_interval(x, n, x_c, n_c)
            uplift, uplift_ci = uplift_interval(x, n, x_c, n_c)
            z, p_value = two_proportion_test(x, n, x_c, n_c)
            result = replace(
                result,
                difference=difference,
                difference_ci=difference_ci,
                uplift=uplift,
                uplift_ci=uplift_ci,
                z=z,
                p_value=p_value,
                significant=bool(p_value < alpha),
            )
            scored = _scored(rows)
            auc_test = auc_difference_test(
                scored["score"].to_numpy(),
                scored["converted"].to_numpy(),
                control_scored["score"].to_numpy(),
                control_scored["converted"].to_numpy(),
            )
            if auc_test is not None:
                result = replace(
                    result,
                    auc_difference=auc_test.difference,
                    auc_difference_ci=auc_test.ci,
                    auc_z=auc_test.z,
                    auc_p_value=auc_test.p_value,
                    auc_significant=bool(auc_test.p_value < alpha),
                )
        results.append(result)
    return AbReport(
        experiment=experiment,
        endpoints=sorted(frame["endpoint"].unique().tolist()),
        control=chosen,
        window_s=window_s,
        start=live["time"].min().to_pydatetime(),
        end=live["time"].max().to_pydatetime(),
        variants=results,
        srm=srm,
        shadows=_shadows(frame),
        alpha=alpha,
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
    from journey.stores.prediction_log import label_predictions, read_predictions

    window = window_s if window_s is not None else settings.attribution_window_s
    predictions = read_predictions(settings, experiment=experiment, since=since, until=until)
    if predictions.num_rows == 0:
        raise NotFoundError(f"no prediction of experiment {experiment!r} in the prediction log")
    labelled = label_predictions(predictions, events, window)
    report = analyse(labelled, experiment=experiment, weights=weights, control=control, window_s=window)
    folder = output_dir or settings.ab_reports_dir / _safe_folder(experiment)
    paths = write_report(report, folder, labelled=labelled)
    return report, paths


# ------------------------------------------------------------------------------------------------------ writing


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
    lines = [
        f"# A/B report: {report.experiment}",
        "",
        f"- endpoint(s): {', '.join(report.endpoints)}; control: `{report.control}`",
        f"- predictions from {_when(report.start)} to {_when(report.end)} (UTC); attribution window "
        f"{report.window_s / 3600:g} h",
        f"- unit: users (first exposure); significance at alpha = {report.alpha:g}, two-sided",
        "",
        "| variant | versions | users | share (expected) | predictions | conversions | rate [95% CI] | "
        "difference vs control [95% CI] | uplift [95% CI] | p-value | AUC | AUC vs control [95% CI] | AUC p-value |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for v in report.variants:
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
        lines.append(
            f"| {v.variant} | {versions} | {v.users:,} | {share} | {v.predictions:,} | {v.conversions:,} | {rate} | "
            f"{versus} | {uplift} | {p_value} | {auc} | {auc_versus} | {auc_p} |"
        )
    lines += ["", "## Sample ratio", ""]
    if report.srm is None:
        lines.append("Not checked: no route weights for this experiment (or a single variant).")
    else:
        srm = report.srm
        verdict = (
            "**MISMATCH: users do not split as the route says; fix assignment/logging before trusting any number "
            "above.**"
            if srm.mismatch
            else "no mismatch."
        )
        counts = ", ".join(f"{name} {srm.observed[name]:,} / {srm.expected[name]:,.1f}" for name in srm.observed)
        lines.append(
            f"Chi-square {srm.statistic:.2f} (df {srm.df}), p = {srm.p_value:.3g} (threshold {SRM_THRESHOLD:g}): "
            f"{verdict}  \nUsers observed / expected: {counts}."
        )
    if report.shadows:
        lines += ["", "## Shadow versions", "", "| version | predictions | AUC | live AUC, same requests |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for s in report.shadows:
            auc = "n/a" if s.auc is None else f"{s.auc:.3f}"
            live = "n/a" if s.live_auc is None else f"{s.live_auc:.3f}"
            lines.append(f"| v{s.model_version} | {s.predictions:,} | {auc} | {live} |")
    lines += [
        "",
        "## Method",
        "",
        "Users are counted in the variant of their first prediction (intention to treat) and convert when a purchase "
        "falls within the attribution window after one of their served predictions. Rate intervals: Wilson; "
        "difference: unpooled Wald; uplift: Katz log interval; p-value: pooled two-proportion z-test, not adjusted "
        "for several treatments. AUC: logged scores against whether the user bought within the window after each "
        "prediction; AUC vs control: DeLong's test for two independent samples (the arms score different users, so "
        "the variances of the two AUCs add), normal interval, two-sided p-value. Sample ratio: chi-square of users "
        "per variant against the route's weights at first exposure.",
        "",
        f"![conversion and ROC]({PLOT_FILE})",
        "",
    ]
    return "\n".join(lines)


def _plot(report: AbReport, path: Path, labelled: pa.Table | None) -> None:
    from matplotlib.figure import Figure

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
        frame = _frame(labelled, report.experiment)
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


def _frame(labelled: pa.Table, experiment: str) -> pd.DataFrame:
    for column in ("user_id", "time", "variant", "model_version", "score", "shadow", "experiment", "converted"):
        if column not in labelled.column_names:
            raise InvalidInputError(
                f"labelled predictions lack column {column!r} (label them with label_predictions)",
                field="predictions",
                value=column,
            )
    frame: pd.DataFrame = labelled.to_pandas()
    frame = frame[frame["experiment"] == experiment].copy()
    frame["converted"] = frame["converted"].astype(bool)
    frame["shadow"] = frame["shadow"].astype(bool)
    return frame


def _periods(weights: Mapping[str, float] | Sequence[WeightPeriod] | None) -> list[WeightPeriod]:
    if weights is None:
        return []
    if isinstance(weights, Mapping):
        return [WeightPeriod(None, dict(weights))] if weights else []
    return sorted(weights, key=lambda p: (p.start is not None, p.start or datetime.min))


def _expected_users(first: pd.DataFrame, periods: Sequence[WeightPeriod]) -> dict[str, float]:
    """Each user contributes the shares in force at their first exposure (weights before the first period: the
    first period's, so a route changed by hand just before logging began does not count as a mismatch)."""
    expected: dict[str, float] = {}
    starts = [p.start for p in periods]
    times = first["time"].tolist()
    for time_ in times:
        index = 0
        for i, start in enumerate(starts):
            if start is None or start <= time_:
                index = i
        weights = periods[index].weights
        total = sum(weights.values())
        for name, weight in weights.items():
            if total > 0:
                expected[name] = expected.get(name, 0.0) + weight / total
    return expected


def _control(control: str | None, names: Sequence[str], periods: Sequence[WeightPeriod]) -> str:
    if control is not None:
        if control not in names:
            raise InvalidInputError(
                f"control variant {control!r} has no users; variants: {', '.join(names)}",
                field="control",
                value=control,
            )
        return control
    for candidate in ("control", "production"):
        if candidate in names:
            return candidate
    for period in periods:
        for name in period.weights:
            if name in names:
                return name
    return names[0]


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with a logged score (a model without a positive-class probability logs none)."""
    scored: pd.DataFrame = rows[rows["score"].notna()]
    return scored


def _auc(rows: pd.DataFrame) -> float | None:
    scored = _scored(rows)
    return roc_auc(scored["score"].to_numpy(), scored["converted"].to_numpy()) if len(scored) else None


def _shadows(frame: pd.DataFrame) -> list[ShadowResult]:
    shadow = frame[frame["shadow"] & frame["score"].notna()]
    live = frame[~frame["shadow"] & frame["score"].notna()]
    results = []
    for version in sorted(int(v) for v in shadow["model_version"].unique()):
        rows = shadow[shadow["model_version"] == version]
        same = live[live["request_id"].isin(set(rows["request_id"]))]
        results.append(ShadowResult(version, len(rows), _auc(rows), _auc(same) if len(same) else None))
    return results


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


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null (JSON has neither), tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
