"""The JSON artifact `journey analyze` writes and serving answers `/journey` from: the pooled stage chain, the
event-type chain and one stage chain per user segment (`journey.chain`), and the journey state of a user read off
them. Only numpy (and `journey.contracts`) is imported, so serving loads the artifact without any training code.

Serving contract (`GET /journey/{user_id}`):

    artifact = JourneyArtifact.load(settings.journey_chain_path)                      # once, at start-up
    row = online features of service `journey_profile_v1` for {"user_id": user_id}   # user_profile + journey_stage
    live = journey.stages.stage_of_last_event(session_last_event_types, session_last_item_ids, session_purchases)
           # only when the caller names the session (session_activity online row); else None
    state = describe_user(artifact, user_id, session_stage=live, activity_stage=row["journey_stage"],
                          profile_stage=row["last_stage"], segment_id=row["segment_id"],
                          segment_name=row["segment_name"])
    state is None -> 404 (nothing known about the user); else state.to_dict() is the answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from journey.chain import PURCHASE, MarkovChain
from journey.contracts import STAGES

ARTIFACT_VERSION: Final = 1
MIN_SEGMENT_SESSIONS: Final = 200  # below this a segment's own chain is too noisy to answer from: use the pooled one


@dataclass(frozen=True)
class SegmentChain:
    """A user segment (from `user_profile`) and the stage chain of its sessions."""

    segment_id: int
    name: str
    users: int
    sessions: int
    chain: MarkovChain

    def to_dict(self) -> dict[str, Any]:
        return {
            "segment_id": self.segment_id,
            "name": self.name,
            "users": self.users,
            "sessions": self.sessions,
            "chain": self.chain.to_dict(),
        }


@dataclass(frozen=True)
class JourneyArtifact:
    """What `journey analyze` writes to `Settings.journey_chain_path` for serving: the pooled stage chain, the
    event-type chain, one stage chain per segment, and where they came from (`meta`: dataset, data window, counts)."""

    stages: MarkovChain
    events: MarkovChain | None = None
    segments: tuple[SegmentChain, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def chain_for(self, segment_id: int | None, segment_name: str | None = None) -> tuple[MarkovChain, str]:
        """The segment's own chain when it has enough sessions (and, if given, the same name), else the pooled one.

        The name check guards against a profile written by another analysis run than this artifact's.
        """
        for segment in self.segments:
            if segment.segment_id != segment_id or segment.sessions < MIN_SEGMENT_SESSIONS:
                continue
            if segment_name is None or segment_name == segment.name:
                return segment.chain, f"segment {segment.segment_id}"
        return self.stages, "all"

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact_version": ARTIFACT_VERSION,
            "meta": dict(self.meta),
            "stages": self.stages.to_dict(),
            "events": self.events.to_dict() if self.events is not None else None,
            "segments": [s.to_dict() for s in self.segments],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JourneyArtifact:
        version = data.get("artifact_version")
        if version != ARTIFACT_VERSION:
            raise ValueError(f"journey artifact version {version!r} is not supported (expected {ARTIFACT_VERSION})")
        segments = tuple(
            SegmentChain(int(s["segment_id"]), str(s["name"]), int(s["users"]), int(s["sessions"]), _chain(s["chain"]))
            for s in data.get("segments", [])
        )
        events = data.get("events")
        return cls(_chain(data["stages"]), _chain(events) if events else None, segments, dict(data.get("meta", {})))

    def save(self, path: Path) -> Path:
        """Write atomically (temp file + rename): a serving process reloading it never reads half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, default=str), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> JourneyArtifact:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _chain(data: Mapping[str, Any]) -> MarkovChain:
    return MarkovChain.from_dict(data)


StageSource = Literal["session", "user_activity", "user_profile"]


@dataclass(frozen=True)
class JourneyState:
    """The answer to `GET /journey/{user_id}`: where the shopper is and what the chain expects next."""

    user_id: int
    stage: str
    stage_source: StageSource
    purchase_probability: float  # P(a purchase at a later event of the session), from the current stage
    next_stage: str  # likeliest next state, `exit` included
    next_stage_probability: float
    exit_next_probability: float  # P(the session ends right after the current event)
    drop_off_stage: str  # the stage the session most likely ends in (its last event's stage)
    drop_off_probability: float
    segment_id: int | None
    segment_name: str | None
    chain: str  # "all" or "segment <id>": which chain answered

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def describe_user(
    artifact: JourneyArtifact,
    user_id: int,
    *,
    session_stage: int | None = None,
    activity_stage: int | None = None,
    profile_stage: int | None = None,
    segment_id: int | None = None,
    segment_name: str | None = None,
) -> JourneyState | None:
    """The user's journey state from the freshest stage known, or None when nothing is known (HTTP 404).

    Stages are ordinals into `STAGES`, freshest first: the live session's (`journey.stages.stage_of_last_event` on
    `session_activity`), then the last daily snapshot's (`user_activity.journey_stage`), then the profile's
    (`user_profile.last_stage`, as of the analysis). An ordinal outside STAGES counts as unknown.
    """
    sources: tuple[tuple[StageSource, int | None], ...] = (
        ("session", session_stage),
        ("user_activity", activity_stage),
        ("user_profile", profile_stage),
    )
    known = [(source, int(s)) for source, s in sources if s is not None and 0 <= int(s) < len(STAGES)]
    if not known:
        return None
    source, ordinal = known[0]
    stage = STAGES[ordinal]
    chain, which = artifact.chain_for(segment_id, segment_name)
    next_stage, next_p = chain.most_likely_next(stage)
    ends = chain.exit_points(stage)
    drop_stage = max(ends, key=lambda s: ends[s])
    return JourneyState(
        user_id=user_id,
        stage=stage,
        stage_source=source,
        purchase_probability=float(chain.hit_probability(PURCHASE)[chain.index(stage)]),
        next_stage=next_stage,
        next_stage_probability=next_p,
        exit_next_probability=float(chain.transitions[chain.index(stage), chain.index(chain.terminal)]),
        drop_off_stage=drop_stage,
        drop_off_probability=ends[drop_stage],
        segment_id=segment_id,
        segment_name=segment_name,
        chain=which,
    )
