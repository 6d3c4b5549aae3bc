"""The numbers of an A/B report: predictions labelled with their outcome -> per-variant results against the control.

    analyse(labelled, experiment=..., weights=...)   -> AbReport   (`ab_report.py` reads the log and writes files)
    weights_from_history(revisions, experiment)      -> the route's weight periods, for the sample ratio check

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
different questions and both are reported (statistics in `statistics.py`).

Sample ratio mismatch: a chi-square goodness-of-fit test of users per variant against the route's weights at each
user's first exposure (so a mid-experiment ramp-up is accounted for). p < 0.001 (the usual SRM threshold) flags
the experiment: assignment or logging is broken, and the other numbers cannot be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from journey.errors import InvalidInputError, NotFoundError
from training.experiments.statistics import (
    ALPHA,
    Interval,
    SrmCheck,
    auc_difference_test,
    difference_interval,
    roc_auc,
    srm_check,
    two_proportion_test,
    uplift_interval,
    wilson_interval,
)

if TYPE_CHECKING:
    import pandas as pd

    from journey.registry import RouteRevision


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
    frame = labelled_frame(labelled, experiment)
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
    counts = _Counts(users, conversions, expected, chosen, alpha)
    control_scored = _scored(live[live["variant"] == chosen])
    return AbReport(
        experiment=experiment,
        endpoints=sorted(frame["endpoint"].unique().tolist()),
        control=chosen,
        window_s=window_s,
        start=live["time"].min().to_pydatetime(),
        end=live["time"].max().to_pydatetime(),
        variants=[_variant(name, live[live["variant"] == name], counts, control_scored) for name in names],
        srm=srm_check(users, expected) if expected else None,
        shadows=_shadows(frame),
        alpha=alpha,
    )


@dataclass(frozen=True)
class _Counts:
    """Users and converted users per variant (first exposure), the users the weights expected, the control."""

    users: dict[str, int]
    conversions: dict[str, int]
    expected: dict[str, float]
    control: str
    alpha: float


def _variant(name: str, rows: pd.DataFrame, counts: _Counts, control_scored: pd.DataFrame) -> VariantResult:
    """One variant's conversion and AUC, and (unless it is the control) both compared with the control's."""
    n, x = counts.users[name], counts.conversions.get(name, 0)
    expected_total = sum(counts.expected.values())
    result = VariantResult(
        variant=name,
        model_versions=sorted(int(v) for v in rows["model_version"].unique()),
        users=n,
        predictions=len(rows),
        conversions=x,
        rate=x / n,
        rate_ci=wilson_interval(x, n),
        observed_share=n / sum(counts.users.values()),
        expected_share=counts.expected.get(name, 0.0) / expected_total if expected_total else None,
        auc=_auc(rows),
        control=name == counts.control,
    )
    if name == counts.control:
        return result
    n_c, x_c = counts.users[counts.control], counts.conversions.get(counts.control, 0)
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
        significant=bool(p_value < counts.alpha),
    )
    return _auc_versus_control(result, _scored(rows), control_scored, counts.alpha)


def _auc_versus_control(
    result: VariantResult, scored: pd.DataFrame, control_scored: pd.DataFrame, alpha: float
) -> VariantResult:
    """The variant's AUC minus the control's, by DeLong's test for independent samples (unchanged when undefined)."""
    auc_test = auc_difference_test(
        scored["score"].to_numpy(),
        scored["converted"].to_numpy(),
        control_scored["score"].to_numpy(),
        control_scored["converted"].to_numpy(),
    )
    if auc_test is None:
        return result
    return replace(
        result,
        auc_difference=auc_test.difference,
        auc_difference_ci=auc_test.ci,
        auc_z=auc_test.z,
        auc_p_value=auc_test.p_value,
        auc_significant=bool(auc_test.p_value < alpha),
    )


def labelled_frame(labelled: pa.Table, experiment: str) -> pd.DataFrame:
    """The experiment's labelled predictions as a frame (`converted`, `shadow` as booleans); names a missing column."""
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
