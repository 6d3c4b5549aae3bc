"""The JSON artifact serving answers `/journey` from: file round trip, version check, segment choice, and the
serving contract (`describe_user`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from journey.chain import CONVERSION, STAGE_STATES, MarkovChain
from journey.chain_artifact import MIN_SEGMENT_SESSIONS, JourneyArtifact, SegmentChain, describe_user
from journey.contracts import STAGES


def _artifact(segment_sessions: int = MIN_SEGMENT_SESSIONS) -> JourneyArtifact:
    pooled = MarkovChain.from_probabilities(
        STAGE_STATES,
        [
            [0.5, 0.2, 0.05, 0.0, 0.25],
            [0.2, 0.4, 0.1, 0.0, 0.3],
            [0.0, 0.0, 0.0, 0.5, 0.5],
            [0.0, 0.0, 0.0, 0.6, 0.4],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ],
        [0.8, 0.2, 0, 0, 0],
    )
    buyers = MarkovChain.from_probabilities(
        STAGE_STATES,
        [
            [0.3, 0.3, 0.3, 0.0, 0.1],
            [0.1, 0.3, 0.5, 0.0, 0.1],
            [0.0, 0.0, 0.0, 0.7, 0.3],
            [0.0, 0.0, 0.1, 0.5, 0.4],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ],
    )
    segment = SegmentChain(0, "loyal buyers", 10, segment_sessions, buyers)
    return JourneyArtifact(pooled, None, (segment,), {"dataset": "hand"})


def test_artifact_round_trips_through_a_file(tmp_path: Path) -> None:
    artifact = _artifact()
    path = artifact.save(tmp_path / "journey" / "chain.json")
    back = JourneyArtifact.load(path)
    assert back.meta == {"dataset": "hand"} and back.segments[0].name == "loyal buyers"
    assert np.allclose(back.stages.transitions, artifact.stages.transitions)
    assert not list(path.parent.glob(".*tmp"))


def test_artifact_of_another_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        JourneyArtifact.from_dict({"artifact_version": 99})


def test_segment_chain_is_used_only_with_enough_sessions_and_the_same_name() -> None:
    assert _artifact().chain_for(0)[1] == "segment 0"
    assert _artifact().chain_for(0, "loyal buyers")[1] == "segment 0"
    assert _artifact().chain_for(0, "window shoppers")[1] == "all"  # profile from another analysis run
    assert _artifact(MIN_SEGMENT_SESSIONS - 1).chain_for(0)[1] == "all"
    assert _artifact().chain_for(None)[1] == "all"


def test_describe_user_takes_the_freshest_stage_and_answers_from_the_chain() -> None:
    artifact = _artifact()
    state = describe_user(artifact, 7, session_stage=1, activity_stage=0, profile_stage=0, segment_id=0)
    assert state is not None
    assert (state.stage, state.stage_source, state.chain) == ("consideration", "session", "segment 0")
    chain = artifact.segments[0].chain
    assert state.purchase_probability == pytest.approx(
        chain.absorbing(CONVERSION).probability("consideration", "purchase")
    )
    assert (state.next_stage, state.next_stage_probability) == ("purchase", 0.5)
    assert state.exit_next_probability == pytest.approx(0.1)
    ends = chain.exit_points("consideration")
    assert state.drop_off_stage == max(ends, key=ends.__getitem__)
    assert json.loads(json.dumps(state.to_dict()))["user_id"] == 7


def test_describe_user_falls_back_to_older_stages_and_knows_when_it_knows_nothing() -> None:
    artifact = _artifact()
    assert describe_user(artifact, 1, activity_stage=3).stage_source == "user_activity"  # type: ignore[union-attr]
    only_profile = describe_user(artifact, 1, profile_stage=2, segment_id=5, segment_name="x")
    assert only_profile is not None and only_profile.stage == "purchase" and only_profile.chain == "all"
    assert describe_user(artifact, 1) is None
    assert describe_user(artifact, 1, session_stage=len(STAGES)) is None  # not a stage ordinal: unknown
