"""What the journey analysis estimates, as typed results with their JSON: funnels, times to convert, the chains and
conversion of each group of sessions, stage paths, and the whole analysis with the chain artifact serving loads.

`journey.py` computes them, `report.py` renders them, `run.py` writes them; none of those import each other's
internals, so estimation never imports reporting.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from journey.chain import CONVERSION, PURCHASE, MarkovChain
from journey.chain_artifact import JourneyArtifact, SegmentChain
from journey.contracts import STAGES
from journey.events import EVENT_TYPES
from journey.stages import STAGE_STATES
from training.analysis.delays import PurchaseDelays
from training.analysis.profiles import Profiles

EVENT_STATES: Final = (*EVENT_TYPES, "exit")
PATH_STEPS: Final = 5  # columns of the stage-path flow; longer paths end in a "more" node
PATH_NODES: Final = (*STAGE_STATES, "more")


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
    delays: PurchaseDelays | None = None  # purchases against the views of their item (any session)

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

    def populated(self) -> list[GroupStats]:
        """All sessions, then each segment that has sessions: the groups plots and tables compare."""
        return [self.overall, *(g for g in self.segments if g.sessions)]

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
            "purchase_delays": self.delays.to_dict() if self.delays is not None else None,
            "notes": list(self.notes),
            "seconds": self.seconds,
        }
