"""Feature services are model contracts: one versioned list per model, used by training and serving alike.

A published service never changes; a new feature set is a new version (`purchase_propensity_v2`).
"""

from feast import FeatureService
from feature_views import item_popularity, session_activity, user_activity, user_profile
from on_demand import request_context, session_item_context

from journey.contracts import (
    JOURNEY_PROFILE_V1,
    JOURNEY_SESSION_V1,
    NEXT_ACTION_V1,
    NEXT_ITEM_V1,
    PURCHASE_PROPENSITY_V1,
    SESSION_ACTIVITY_FEATURES,
)

purchase_propensity_v1 = FeatureService(
    name=PURCHASE_PROPENSITY_V1,
    features=[
        user_activity,
        item_popularity,
        session_activity[
            ["session_events", "session_views", "session_carts", "session_purchases", "session_seconds_since_start"]
        ],
        request_context,
        session_item_context,
    ],
    description="XGBoost purchase propensity: will this user buy this item in this session?",
    tags={"model": "purchase_propensity", "version": "1"},
)

next_action_v1 = FeatureService(
    name=NEXT_ACTION_V1,
    # the session view's user_id column is a join helper, not a model input: project the session features only
    features=[user_activity, session_activity[list(SESSION_ACTIVITY_FEATURES)]],
    description="PyTorch next action/intent: the session's last events plus the user's behaviour.",
    tags={"model": "next_action", "version": "1"},
)

next_item_v1 = FeatureService(
    name=NEXT_ITEM_V1,
    # keyed by session: a recommendation needs what this session looked at, not the user's history
    features=[session_activity[["session_last_item_ids", "session_last_event_types"]]],
    description="PyTorch next item (GRU4Rec-style recommender): the session's last items and event types.",
    tags={"model": "next_item", "version": "1"},
)

journey_profile_v1 = FeatureService(
    name=JOURNEY_PROFILE_V1,
    # keyed by user only, as GET /journey/{user_id} is; the live session's stage comes from session_activity when
    # the caller knows the session (journey.stages.stage_of_last_event)
    features=[user_profile, user_activity[["journey_stage"]]],
    description="Journey state of a shopper: profile, segment and stages (no model: read by /journey/{user_id}).",
    tags={"endpoint": "journey", "version": "1"},
)

journey_session_v1 = FeatureService(
    name=JOURNEY_SESSION_V1,
    # keyed by session: what journey.stages.stage_of_last_event needs for the live stage of a named session
    features=[session_activity[["session_last_event_types", "session_last_item_ids", "session_purchases"]]],
    description="The live session's last events, for its journey stage (read by /journey/{user_id}?session_id=).",
    tags={"endpoint": "journey", "version": "1"},
)
