"""Feature services are model contracts: one versioned list per model, used by training and serving alike.

A published service never changes; a new feature set is a new version (`purchase_propensity_v2`).
"""

from feast import FeatureService
from feature_views import item_popularity, session_activity, user_activity
from on_demand import request_context, session_item_context

from journey.contracts import NEXT_ACTION_V1, PURCHASE_PROPENSITY_V1, SESSION_ACTIVITY_FEATURES

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
