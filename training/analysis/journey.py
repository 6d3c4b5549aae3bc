"""Journey analysis of a stored event dataset: stages, Markov chains, funnels, time to convert, segments, categories,
and how long after their views purchases come.

    analyze_events(events, seed=...)       -> JourneyAnalysis (`results.py`), all in memory; `run.py` writes it
                                              (the chain artifact serving reads, the report, the profile features)

Every figure is computed for all sessions, per user segment (k-means over what users do before any purchase, never
over the outcome: `profiles.py`, `behaviour.py`) and per top entry category (the category of a session's first
event). The stage rules live in `journey/stages.py` and the chain algebra in `journey/chain.py`, so serving answers
from exactly what is estimated here. Those figures are session-scoped; `delays.py` measures, across sessions, the
purchases they miss (bought a day or a week after the views), and the notes say when those are material.

A hidden-Markov alternative (the issue's optional item) is not implemented: the stages are observable by rule, and
on the synthetic data the rule recovers the generator's stages exactly, so there is nothing hidden to fit there.

How it stays fast (2M events in seconds on two cores): events are put in session order once; per-session figures are
`reduceat`s over contiguous rows; per-group counts (all, per segment, per category) are one `bincount` over packed
(group, from, to) codes. No Python loop touches an event.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pyarrow as pa

from journey.chain import PURCHASE, MarkovChain
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
from training.analysis.delays import PurchaseDelays, purchase_delays
from training.analysis.profiles import K_RANGE, Profiles, build_profiles
from training.analysis.results import (
    EVENT_STATES,
    PATH_NODES,
    PATH_STEPS,
    Funnel,
    GroupStats,
    JourneyAnalysis,
    StagePaths,
    TimeToConvert,
)

TOP_CATEGORIES: Final = 5
TOP_PATHS: Final = 10
_PATH_CODE_STEPS: Final = 8  # stage paths are told apart on their first 8 steps
_N: Final = len(STAGE_STATES)
_MORE: Final = len(STAGE_STATES)
_PURCHASE_CODE: Final = EVENT_TYPES.index("purchase")


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


def _notes(
    overall: GroupStats, profiles: Profiles, categories: list[str], differences: int, delays: PurchaseDelays
) -> list[str]:
    notes = list(profiles.notes)
    if overall.funnel.reached[STAGES.index(PURCHASE)] == 0:
        notes.append("no session purchases: P(purchase) is 0 from every stage and there is no time to convert")
    delayed = delays.note()
    if delayed:
        notes.append(delayed)
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
    delays = purchase_delays(ordered)
    lap("purchase_delays")
    start, end = (datetime.fromtimestamp(int(f(ordered.ts_us)) / 1e6, UTC) for f in (np.min, np.max))
    notes = _notes(overall, profiles, category_labels, differences, delays)
    return JourneyAnalysis(
        dataset, seed, (start, end), overall, tuple(segments), tuple(categories), paths, profiles, differences,
        tuple(notes), seconds, delays,
    )  # fmt: skip
