"""What `GET /journey/{user_id}` should answer, decided in the test process from Feast's own reads."""

from __future__ import annotations

from typing import Any

from journey import contracts as c
from journey.settings import Settings


def expected_state(settings: Settings, user_id: int, session_id: str | None = None) -> dict[str, Any]:
    """The same decision in this process: Feast's own online read, the chain file, `describe_user`."""
    from journey.chain_artifact import JourneyArtifact, describe_user
    from journey.stages import stage_of_last_event
    from journey.stores.feature_store import close_store, open_store

    store = open_store(settings)
    try:
        profile = store.get_online_features(
            features=store.get_feature_service(c.JOURNEY_PROFILE_V1), entity_rows=[{c.USER: user_id}]
        ).to_dict()
        live = None
        if session_id is not None:
            session = store.get_online_features(
                features=store.get_feature_service(c.JOURNEY_SESSION_V1), entity_rows=[{c.SESSION: session_id}]
            ).to_dict()
            types, items = session["session_last_event_types"][0], session["session_last_item_ids"][0]
            live = stage_of_last_event(types, items, session["session_purchases"][0]) if types else None
    finally:
        close_store(store)
    state = describe_user(
        JourneyArtifact.load(settings.journey_chain_path),
        user_id,
        session_stage=live,
        activity_stage=profile["journey_stage"][0],
        profile_stage=profile["last_stage"][0],
        segment_id=profile["segment_id"][0],
        segment_name=profile["segment_name"][0],
    )
    assert state is not None
    return {**state.to_dict(), "session_id": session_id}
