"""Journey analysis of a stored event dataset: stages, Markov chains, funnels, time to convert, segments, categories.

    analyze_events(events, seed=...)       -> JourneyAnalysis, all in memory
    run_analysis(dataset, settings, ...)   -> the chain artifact serving reads (Settings.journey_chain_path), the
                                              report (reports/journey/<dataset>/), the `user_profile` features

Every figure is computed for all sessions, per user segment (k-means over user profiles,
`training/analysis/profiles.py`) and per top entry category (the category of a session's first event). The stage
rules live in `journey/stages.py` and the chain algebra in `journey/chain.py`, so serving answers from exactly what
is estimated here.

A hidden-Markov alternative (the issue's optional item) is not implemented: the stages are observable by rule, and
on the synthetic data the rule recovers the generator's stages exactly, so there is nothing hidden to fit there.

How it stays fast (2M events in seconds on two cores): events are put in session order once; per-session figures are
`reduceat`s over contiguous rows; per-group counts (all, per segment, per category) are one `bincount` over packed
(group, from, to) codes. No Python loop touches an event.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from journey.chain import CONVERSION, PURCHASE, JourneyArtifact, MarkovChain, SegmentChain
from journey.contracts import STAGES
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES
from journey.stages import (
    EXIT,
    NO_CATEGORY,
    STAGE_STATES,
    VIEW_CODE,
    SessionEvents,
    assign_stages,
    events_before,
    first_occurrence,
    session_order,
)
from training.analysis.profiles import K_RANGE, Profiles, build_profiles

if TYPE_CHECKING:
    from journey.settings import Settings

log = logging.getLogger(__name__)

EVENT_STATES: Final = (*EVENT_TYPES, "exit")
TOP_CATEGORIES: Final = 5
PATH_STEPS: Final = 5  # columns of the stage-path flow; longer paths end in a "more" node
PATH_NODES: Final = (*STAGE_STATES, "more")
TOP_PATHS: Final = 10
_PATH_CODE_STEPS: Final = 8  # stage paths are told apart on their first 8 steps
_N: Final = len(STAGE_STATES)
_MORE: Final = len(STAGE_STATES)
_PURCHASE_CODE: Final = EVENT_TYPES.index("purchase")


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True)
class Funnel:
    """Sessions reaching each stage (furthest stage at least it, in funnel order) and leaving from each stage."""

    sessions: int
    reached: tuple[int, ...]  # per STAGES
    ended: tuple[int, ...]  # per STAGES: the stage of the session's last event

    def shares(self) -> list[float]:
        return [r / self.sessions if self.sessions else 0.0 for r in self.reached]

    def drop_off(self) -> list[float | None]:
        """Per step k -> k+1: the share of sessions that reached k but not k+1 (None when none reached k)."""
        return [1 - b / a if a else None for a, b in itertools.pairwise(self.reached)]

    def to_dict(self) -> dict[str, Any]:
        steps = [f"{a} -> {b}" for a, b in itertools.pairwise(STAGES)]
        return {
            "sessions": self.sessions,
            "reached": dict(zip(STAGES, self.reached, strict=True)),
            "share": dict(zip(STAGES, self.shares(), strict=True)),
            "drop_off": dict(zip(steps, self.drop_off(), strict=True)),
            "ended_at": dict(zip(STAGES, self.ended, strict=True)),
        }


@dataclass(frozen=True)
class TimeToConvert:
    """Per converting session: seconds and events from its start to its first purchase."""

    seconds: np.ndarray
    events: np.ndarray

    def summary(self) -> dict[str, Any]:
        if not self.seconds.size:
            return {"sessions": 0}
        q = np.percentile(self.seconds, [25, 50, 75, 90])
        return {
            "sessions": int(self.seconds.size),
            "seconds_mean": float(self.seconds.mean()),
            "seconds_p25": float(q[0]),
            "seconds_median": float(q[1]),
            "seconds_p75": float(q[2]),
            "seconds_p90": float(q[3]),
            "events_before_mean": float(self.events.mean()),
            "events_before_median": float(np.median(self.events)),
        }


@dataclass(frozen=True)
class GroupStats:
    """Everything estimated for one population of sessions (all, a segment, a category)."""

    label: str
    sessions: int
    events: int
    users: int
    stages: MarkovChain
    event_types: MarkovChain
    funnel: Funnel
    time_to_convert: TimeToConvert

    def conversion(self) -> dict[str, Any]:
        """P(purchase) from each stage and event type, expected events, and a new session's conversion."""
        view = self.stages.absorbing(CONVERSION)
        full = self.stages.absorbing()
        p_stage = self.stages.hit_probability(PURCHASE)
        p_type = self.event_types.hit_probability(PURCHASE)
        steps = view.conditional_steps(PURCHASE)
        started = view.from_distribution(self.stages.states, self.stages.initial) if self.sessions else {}
        return {
            "purchase_probability": {s: float(p_stage[self.stages.index(s)]) for s in STAGES},
            "purchase_probability_by_event_type": {t: float(p_type[self.event_types.index(t)]) for t in EVENT_TYPES},
            "events_to_purchase": {s: _nan_to_none(v) for s, v in zip(view.transient, steps, strict=True)},
            "events_left": {s: float(v) for s, v in zip(full.transient, full.expected_steps, strict=True)},
            "new_session_conversion": started.get(PURCHASE, 0.0),
            "observed_conversion": self.funnel.reached[STAGES.index(PURCHASE)] / self.sessions if self.sessions else 0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "sessions": self.sessions,
            "events": self.events,
            "users": self.users,
            "stage_chain": self.stages.to_dict(),
            "event_type_chain": self.event_types.to_dict(),
            "funnel": self.funnel.to_dict(),
            "conversion": self.conversion(),
            "time_to_convert": self.time_to_convert.summary(),
        }


@dataclass(frozen=True)
class StagePaths:
    """Stage paths with repeats collapsed (D D C P -> D C P): the commonest ones and the flow between steps.

    Nodes are PATH_NODES codes (stages, exit, "more" for a path longer than PATH_STEPS); `columns[j, node]` counts
    sessions at step j and `flows[j, a, b]` those moving from node a at step j to node b at step j + 1.
    """

    sessions: int
    top: tuple[tuple[tuple[str, ...], int], ...]
    columns: np.ndarray
    flows: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "top": [{"path": " -> ".join(p), "sessions": n} for p, n in self.top],
            "nodes": list(PATH_NODES),
            "columns": self.columns.tolist(),
        }


@dataclass(frozen=True)
class JourneyAnalysis:
    dataset: str
    seed: int
    window: tuple[datetime, datetime]
    overall: GroupStats
    segments: tuple[GroupStats, ...]  # aligned with profiles.segments
    categories: tuple[GroupStats, ...]
    paths: StagePaths
    profiles: Profiles
    sql_rule_differences: int  # views these rules call consideration and user_activity's SQL calls discovery
    notes: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "seed": self.seed,
            "data_window": {"start": self.window[0].isoformat(), "end": self.window[1].isoformat()},
            "events": self.overall.events,
            "sessions": self.overall.sessions,
            "users": self.overall.users,
            "segments_k": self.profiles.k,
            "silhouette": self.profiles.silhouette,
            "created_at": datetime.now(UTC).isoformat(),
        }

    def artifact(self) -> JourneyArtifact:
        """What serving loads: the pooled chains and one stage chain per segment (ids as in `user_profile`)."""
        segments = tuple(
            SegmentChain(s.segment_id, s.name, g.users, g.sessions, g.stages)
            for s, g in zip(self.profiles.segments, self.segments, strict=True)
        )
        return JourneyArtifact(self.overall.stages, self.overall.event_types, segments, self.meta())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.meta(),
            "overall": self.overall.to_dict(),
            "segments": [g.to_dict() for g in self.segments],
            "profiles": self.profiles.to_dict(),
            "categories": [g.to_dict() for g in self.categories],
            "paths": self.paths.to_dict(),
            "sql_rule_differences": self.sql_rule_differences,
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


# -------------------------------------------------------------------------------------------------------- groups


def _per_event(events: SessionEvents, per_session: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.repeat(per_session, events.lengths)
    return result


def _next_or_exit(values: np.ndarray, events: SessionEvents, exit_code: int) -> np.ndarray:
    nxt: np.ndarray = np.r_[values[1:], exit_code].astype(np.int64)
    nxt[events.last] = exit_code
    return nxt


def _packed_counts(group: np.ndarray, src: np.ndarray, dst: np.ndarray, n_groups: int, n: int) -> np.ndarray:
    """counts[g, src, dst] in one bincount (rows with group < 0 left out)."""
    keep = group >= 0
    code = (group[keep] * n + src[keep]) * n + dst[keep]
    return np.bincount(code, minlength=n_groups * n * n).reshape(n_groups, n, n)


def _initial_counts(group: np.ndarray, first: np.ndarray, n_groups: int, n: int) -> np.ndarray:
    keep = group >= 0
    return np.bincount(group[keep] * n + first[keep], minlength=n_groups * n).reshape(n_groups, n)


def _first_purchases(events: SessionEvents) -> tuple[np.ndarray, np.ndarray]:
    """(session, row) of every session's first purchase."""
    rows = np.flatnonzero(events.event_type == _PURCHASE_CODE)
    sessions = events.session[rows]
    first = np.r_[True, sessions[1:] != sessions[:-1]] if rows.size else np.empty(0, dtype=bool)
    return sessions[first], rows[first]


def _funnels(events: SessionEvents, stages: np.ndarray, group: np.ndarray, n_groups: int) -> list[Funnel]:
    keep = group >= 0
    k = len(STAGES)
    furthest = np.maximum.reduceat(stages, events.starts).astype(np.int64) if events.n_events else group[:0]
    at_least = np.bincount(group[keep] * k + furthest[keep], minlength=n_groups * k).reshape(n_groups, k)
    reached = np.cumsum(at_least[:, ::-1], axis=1)[:, ::-1]
    last = stages[events.last].astype(np.int64)
    ended = np.bincount(group[keep] * k + last[keep], minlength=n_groups * k).reshape(n_groups, k)
    return [
        Funnel(int(reached[g, 0]), tuple(int(v) for v in reached[g]), tuple(int(v) for v in ended[g]))
        for g in range(n_groups)
    ]


def _times(events: SessionEvents, group: np.ndarray, n_groups: int) -> list[TimeToConvert]:
    sessions, rows = _first_purchases(events)
    start = events.starts[sessions]
    seconds = (events.ts_us[rows] - events.ts_us[start]) / 1e6
    before = (rows - start).astype(np.int64)
    owner = group[sessions]
    return [TimeToConvert(seconds[owner == g], before[owner == g]) for g in range(n_groups)]


def group_stats(events: SessionEvents, stages: np.ndarray, group: np.ndarray, labels: list[str]) -> list[GroupStats]:
    """Chains, funnel and time to convert of each group of sessions (`group[session]` in 0..len(labels)-1, or -1)."""
    n_groups, n_types = len(labels), len(EVENT_STATES)
    per_event = _per_event(events, group)
    types = events.event_type.astype(np.int64)
    stage_counts = _packed_counts(per_event, stages.astype(np.int64), _next_or_exit(stages, events, EXIT), n_groups, _N)
    type_counts = _packed_counts(per_event, types, _next_or_exit(types, events, n_types - 1), n_groups, n_types)
    first_stage = _initial_counts(group, stages[events.starts].astype(np.int64), n_groups, _N)
    first_type = _initial_counts(group, types[events.starts], n_groups, n_types)
    funnels, times = _funnels(events, stages, group, n_groups), _times(events, group, n_groups)
    event_counts = np.bincount(per_event[per_event >= 0], minlength=n_groups)
    out = []
    for g, label in enumerate(labels):
        out.append(
            GroupStats(
                label=label,
                sessions=funnels[g].sessions,
                events=int(event_counts[g]),
                users=int(np.unique(events.session_user[group == g]).size),
                stages=MarkovChain.from_counts(STAGE_STATES, stage_counts[g], first_stage[g]),
                event_types=MarkovChain.from_counts(EVENT_STATES, type_counts[g], first_type[g]),
                funnel=funnels[g],
                time_to_convert=times[g],
            )
        )
    return out


def top_categories(events: SessionEvents, top: int) -> tuple[np.ndarray, list[str]]:
    """Sessions grouped by entry category (their first event's), the `top` commonest; others get -1."""
    entry = events.category[events.starts]
    known = entry[entry != NO_CATEGORY]
    if not known.size or top <= 0:
        return np.full(events.n_sessions, -1, dtype=np.int64), []
    values, counts = np.unique(known, return_counts=True)
    chosen = values[np.lexsort((values, -counts))][:top]
    group = np.full(events.n_sessions, -1, dtype=np.int64)
    for g, category in enumerate(chosen):
        group[entry == category] = g
    return group, [f"category {int(c)}" for c in chosen]


# --------------------------------------------------------------------------------------------------------- paths


def stage_paths(events: SessionEvents, stages: np.ndarray) -> StagePaths:
    """Collapsed stage paths: the TOP_PATHS commonest, and node counts and flows over the first PATH_STEPS steps."""
    n_sessions = events.n_sessions
    change = np.r_[True, (stages[1:] != stages[:-1]) | (events.session[1:] != events.session[:-1])]
    change[events.starts] = True
    rows = np.flatnonzero(change)
    sess, stage = events.session[rows], stages[rows].astype(np.int64)
    step = np.arange(rows.size) - np.searchsorted(sess, sess)  # position within the session's collapsed path
    length = np.bincount(sess, minlength=n_sessions)
    grid = np.full((n_sessions, PATH_STEPS + 1), -1, dtype=np.int64)
    early = step < PATH_STEPS
    grid[sess[early], step[early]] = stage[early]
    short = length <= PATH_STEPS
    grid[np.flatnonzero(short), length[short]] = EXIT
    grid[~short, PATH_STEPS] = _MORE
    nodes = len(PATH_NODES)
    columns = np.stack([np.bincount(grid[:, j][grid[:, j] >= 0], minlength=nodes) for j in range(PATH_STEPS + 1)])
    flows = np.zeros((PATH_STEPS, nodes, nodes), dtype=np.int64)
    for j in range(PATH_STEPS):
        both = (grid[:, j] >= 0) & (grid[:, j + 1] >= 0)
        flows[j] = np.bincount(grid[both, j] * nodes + grid[both, j + 1], minlength=nodes * nodes).reshape(nodes, -1)
    return StagePaths(n_sessions, _top_paths(sess, stage, step, length), columns, flows)


def _top_paths(
    sess: np.ndarray, stage: np.ndarray, step: np.ndarray, length: np.ndarray
) -> tuple[tuple[tuple[str, ...], int], ...]:
    kept = step < _PATH_CODE_STEPS
    digits = (stage[kept] + 1) * 5 ** step[kept]  # base 5, digit 0 = no step: exact in float64 for 8 steps
    code = np.rint(np.bincount(sess[kept], weights=digits, minlength=length.size)).astype(np.int64)
    code = code * 2 + (length > _PATH_CODE_STEPS)
    values, counts = np.unique(code, return_counts=True)
    order = np.lexsort((values, -counts))[:TOP_PATHS]
    return tuple((_decode_path(int(values[i])), int(counts[i])) for i in order)


def _decode_path(code: int) -> tuple[str, ...]:
    longer, code = code % 2, code // 2
    names = []
    while code:
        code, digit = divmod(code, 5)
        names.append(STAGES[digit - 1])
    return (*names, "more" if longer else "exit")


# ------------------------------------------------------------------------------------------------------ analysis


def _sql_rule_differences(events: SessionEvents) -> int:
    """Views that are a session's first *view* of their item but not its first event with it (carted before)."""
    views = np.flatnonzero(events.event_type == VIEW_CODE)
    first_view = first_occurrence(events.session[views], events.item[views])
    first_any = first_occurrence(events.session, events.item)[views]
    before_purchase = events_before(events.event_type == _PURCHASE_CODE, events.session)[views] == 0
    return int((first_view & ~first_any & before_purchase).sum())


def _notes(overall: GroupStats, profiles: Profiles, categories: list[str], differences: int) -> list[str]:
    notes = list(profiles.notes)
    if overall.funnel.reached[STAGES.index(PURCHASE)] == 0:
        notes.append("no session purchases: P(purchase) is 0 from every stage and there is no time to convert")
    if not categories:
        notes.append("no event carries a category: the per-category breakdown is empty")
    if differences:
        share = differences / max(overall.events, 1)
        notes.append(
            f"{differences:,} views ({share:.2%} of events) of items carted earlier in their session but not viewed "
            "are consideration here and discovery in user_activity.journey_stage (see journey/stages.py)"
        )
    return notes


def analyze_events(
    events: pa.Table,
    *,
    dataset: str = "",
    seed: int = 42,
    top: int = TOP_CATEGORIES,
    k_range: tuple[int, int] = K_RANGE,
) -> JourneyAnalysis:
    """The whole analysis of canonical events; deterministic for equal events and seed."""
    if events.num_rows == 0:
        raise InvalidInputError(f"dataset {dataset!r} has no events to analyse", field="dataset", value=dataset)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    ordered = session_order(events)
    stages = assign_stages(ordered.session, ordered.item, ordered.event_type)
    lap("order_and_stages")
    profiles = build_profiles(ordered, stages, seed, k_range)
    lap("profiles_and_segments")
    overall = group_stats(ordered, stages, np.zeros(ordered.n_sessions, dtype=np.int64), ["all sessions"])[0]
    segments = group_stats(
        ordered, stages, profiles.segment_of(ordered.session_user), [s.name for s in profiles.segments]
    )
    category_group, category_labels = top_categories(ordered, top)
    categories = group_stats(ordered, stages, category_group, category_labels)
    paths = stage_paths(ordered, stages)
    differences = _sql_rule_differences(ordered)
    lap("chains_funnels_paths")
    start, end = (datetime.fromtimestamp(int(f(ordered.ts_us)) / 1e6, UTC) for f in (np.min, np.max))
    notes = _notes(overall, profiles, category_labels, differences)
    return JourneyAnalysis(
        dataset, seed, (start, end), overall, tuple(segments), tuple(categories), paths, profiles, differences,
        tuple(notes), seconds,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class AnalysisResult:
    analysis: JourneyAnalysis
    report: Path
    html: Path
    chain: Path
    features: dict[str, Any] | None
    seconds: dict[str, float]


def run_analysis(
    dataset: str,
    settings: Settings,
    *,
    seed: int | None = None,
    top: int = TOP_CATEGORIES,
    k_range: tuple[int, int] = K_RANGE,
    write_features: bool = True,
    progress: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Analyse a stored dataset; write the chain artifact, the report and (optionally) the user_profile features."""
    from journey.datasets.store import DatasetStore
    from training.analysis.profiles import write_profiles
    from training.analysis.report import write_report

    say = progress or (lambda _step: None)
    check_k_range(k_range)
    seed = settings.seed if seed is None else seed
    started = time.perf_counter()
    say(f"reading events of {dataset!r}")
    events = DatasetStore(settings.events_dir).events(dataset)
    say(f"analysing {events.num_rows:,} events")
    analysis = analyze_events(events, dataset=dataset, seed=seed, top=top, k_range=k_range)
    seconds = {"analysis": round(time.perf_counter() - started, 3)}
    chain = analysis.artifact().save(settings.journey_chain_path)
    say("rendering the report")
    report, html = write_report(analysis, settings.journey_reports_dir / dataset)
    seconds["report"] = round(time.perf_counter() - started - seconds["analysis"], 3)
    features = None
    if write_features:
        say("writing user_profile features (offline + online)")
        features = write_profiles(analysis.profiles, settings)
    seconds["total"] = round(time.perf_counter() - started, 3)
    log.info("journey analysis done", extra={"dataset": dataset, "report_path": str(report), "seconds": seconds})
    return AnalysisResult(analysis, report, html, chain, features, seconds)


def check_k_range(k_range: tuple[int, int]) -> None:
    low, high = k_range
    if low < 2 or high < low:
        raise InvalidInputError(
            f"segment counts must satisfy 2 <= k-min <= k-max, got {low}..{high}", field="k", value=f"{low}..{high}"
        )
