"""On-demand views (Python mode: ~10x faster than pandas mode online) over request-time inputs."""

from typing import Any

from data_sources import request_inputs
from feast.field import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from feature_views import session_activity, user_activity

from journey.contracts import REQUEST_CONTEXT, SESSION_ITEM_CONTEXT, SESSION_ITEM_CONTEXT_FEATURES


@on_demand_feature_view(  # type: ignore[untyped-decorator]  # Feast ships no types
    name=REQUEST_CONTEXT,
    sources=[user_activity[["avg_viewed_price_30d"]], request_inputs],
    schema=[
        Field(name="price_vs_user_avg_viewed", dtype=Float64),
        Field(name="request_hour", dtype=Int64),
        Field(name="request_weekday", dtype=Int64),
    ],
    mode="python",
    description="How the candidate's price compares with what the user usually views, and when the request is.",
)
def request_context(inputs: dict[str, Any]) -> dict[str, Any]:
    # Feast rebuilds this function from its source text in a bare namespace: imports must live inside it.
    from datetime import UTC, datetime

    ratios, hours, weekdays = [], [], []
    for price, avg, ts in zip(
        inputs["candidate_price"], inputs["avg_viewed_price_30d"], inputs["request_ts"], strict=True
    ):
        # unknown or zero average (new user, unpriced views): neutral ratio 1.0 rather than inf/NaN
        usable = price is not None and avg is not None and avg == avg and avg > 0
        ratios.append(float(price) / float(avg) if usable else 1.0)
        moment = datetime.fromtimestamp(int(ts), UTC)
        hours.append(moment.hour)
        weekdays.append(moment.weekday())
    return {"price_vs_user_avg_viewed": ratios, "request_hour": hours, "request_weekday": weekdays}


@on_demand_feature_view(  # type: ignore[untyped-decorator]  # Feast ships no types
    name=SESSION_ITEM_CONTEXT,
    sources=[session_activity[["session_last_item_ids", "session_last_event_types"]], request_inputs],
    schema=[Field(name=name, dtype=Int64) for name in SESSION_ITEM_CONTEXT_FEATURES],
    mode="python",
    description="What the session's last events say about the candidate item: viewed, in the cart, how recently.",
)
def session_item_context(inputs: dict[str, Any]) -> dict[str, Any]:
    # Feast rebuilds this function from its source text in a bare namespace: no module-level names inside it.
    out: dict[str, list[int]] = {
        "candidate_session_views": [],
        "candidate_in_cart": [],
        "candidate_is_last_carted": [],
        "candidate_events_since_first_seen": [],
    }
    for candidate, items, types in zip(
        inputs["candidate_item_id"], inputs["session_last_item_ids"], inputs["session_last_event_types"], strict=True
    ):
        items, types = list(items or []), list(types or [])  # an unknown session: no events
        views = cart = 0
        last_carted, since = None, -1
        for position, (item, kind) in enumerate(zip(items, types, strict=False)):
            if kind == "add_to_cart":
                last_carted = item
            if item != candidate:
                continue
            since = len(items) - 1 - position if since < 0 else since
            views += kind == "view"
            cart += 1 if kind == "add_to_cart" else -1 if kind == "remove_from_cart" else 0
            cart = max(cart, 0)
        out["candidate_session_views"].append(views)
        out["candidate_in_cart"].append(cart)
        out["candidate_is_last_carted"].append(int(last_carted is not None and last_carted == candidate))
        out["candidate_events_since_first_seen"].append(since)
    return out
