"""`GET /journey/{user_id}`: where a shopper is in the journey and what the estimated chain expects next.

The values come from two places, both produced offline and refreshed without a restart of anything but this
process's reads: the online store (`journey_profile_v1`: segment + profile stage + the daily snapshot's stage;
`journey_session_v1`: the live session's last events, when the caller names the session) and the chain that
`journey analyze` estimated (`Settings.journey_chain_path`). The decision itself is
`journey.chain_artifact.describe_user`, shared with the analysis so the served answer and the report cannot disagree.

Unlike the prediction endpoints there is no degraded answer: without the online store nothing is known about the
user, so the store being down is a 503, not a guess from defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from journey.chain_artifact import JourneyArtifact, describe_user
from journey.contracts import JOURNEY_PROFILE_V1, JOURNEY_SESSION_V1, SESSION, USER
from journey.errors import InvalidInputError, NotFoundError, ServiceUnavailableError
from journey.stages import stage_of_last_event
from serving import metrics

if TYPE_CHECKING:
    from serving.features import OnlineFeatureReader

log = logging.getLogger(__name__)

MAX_ID_LENGTH = 256  # a session id longer than this is no session id


def parse_user_id(raw: str) -> int:
    """The path segment as a user id (the `user` entity is INT64); anything else is a 422 naming `user_id`."""
    try:
        user_id = int(raw)
    except ValueError:
        raise InvalidInputError(f"user_id must be an integer, got {raw!r}", field="user_id", value=raw) from None
    if not -(2**63) <= user_id < 2**63:
        raise InvalidInputError(f"user_id {raw} is out of the int64 range", field="user_id", value=raw)
    return user_id


def parse_session_id(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not raw or len(raw) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"session_id must be 1..{MAX_ID_LENGTH} characters, got {len(raw)}", field="session_id", value=raw[:64]
        )
    return raw


@dataclass
class JourneyMap:
    artifact: JourneyArtifact
    profiles: OnlineFeatureReader
    sessions: OnlineFeatureReader
    source: Path

    @classmethod
    def load(cls, path: Path, make_reader: Any) -> JourneyMap:
        """The chain at `path` and readers of both services; NotFoundError when `journey analyze` has not run."""
        if not path.exists():
            raise NotFoundError(f"no journey chain at {path}: run `journey analyze` (it writes it and user_profile)")
        try:
            artifact = JourneyArtifact.load(path)
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(f"journey chain {path} is unreadable: {exc}", field="journey_chain_path") from exc
        return cls(artifact, make_reader(JOURNEY_PROFILE_V1), make_reader(JOURNEY_SESSION_V1), path)

    def describe(self) -> dict[str, Any]:
        """For `/readyz`: which chain answers (dataset, data window, counts)."""
        return {"path": str(self.source), **dict(self.artifact.meta)}

    def state(self, user_id: int, session_id: str | None = None) -> dict[str, Any]:
        """The answer of `GET /journey/{user_id}`; NotFoundError (404) when the store knows nothing of the user."""
        try:
            with metrics.time_online_features(JOURNEY_PROFILE_V1):
                profile = _first_row(self.profiles.read([{USER: user_id}]))
            live = self._session_stage(session_id) if session_id is not None else None
        except ServiceUnavailableError:
            metrics.set_online_store_degraded(True)
            raise
        metrics.set_online_store_degraded(False)
        found = describe_user(
            self.artifact,
            user_id,
            session_stage=live,
            activity_stage=profile.get("journey_stage"),
            profile_stage=profile.get("last_stage"),
            segment_id=profile.get("segment_id"),
            segment_name=profile.get("segment_name"),
        )
        if found is None:
            where = f" or session {session_id!r}" if session_id is not None else ""
            raise NotFoundError(f"user {user_id}{where} is unknown to the online store (no profile, no activity)")
        return {**found.to_dict(), "session_id": session_id}

    def _session_stage(self, session_id: str) -> int | None:
        with metrics.time_online_features(JOURNEY_SESSION_V1):
            row = _first_row(self.sessions.read([{SESSION: session_id}]))
        types, items = row.get("session_last_event_types"), row.get("session_last_item_ids")
        if not types or not items:
            return None
        return stage_of_last_event(types, items, row.get("session_purchases"))


def _first_row(columns: dict[str, list[Any]]) -> dict[str, Any]:
    return {name: values[0] for name, values in columns.items()}
