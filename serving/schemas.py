"""Request and response bodies of the HTTP API: what the OpenAPI schema documents and what a bad request is told.

Every field is top level (BentoML `input_spec`), constrained here so a bad request fails before any work with the
field named (HTTP 422). Limits that operators tune (candidates and events per request) come from settings at
validation time, so one process serves one configuration.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, computed_field, field_validator

from journey.events import EVENT_TYPES
from journey.settings import get_settings

UserId = Annotated[int, Field(ge=0, le=2**63 - 1, description="The shopper (user_activity entity).")]
# no NUL: PostgreSQL text (the prod prediction log) cannot hold it
SessionId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$", description="The shopping session.")
]


class _Strict(BaseModel):
    """Exactly the documented types: no unknown fields, no coercion (`false` is not the user 0, `"12"` not 12)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _not_null(value: object, info: ValidationInfo) -> object:
    """An optional field may be left out, but not sent as null: the schema does not allow null, and a client that
    sends it has a bug worth hearing about (omitting the field is the way to say "none")."""
    if value is None:
        raise ValueError(f"{info.field_name} may be left out but not null")
    return value


class Candidate(_Strict):
    item_id: int = Field(ge=0, le=2**63 - 1, description="Item to score.")
    price: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Price shown to the shopper; unknown: the model's missing path."
    )


class ModelRequest(_Strict):
    """What every model endpoint is asked about: a shopper (the A/B router assigns by user) and their session."""

    user_id: UserId
    session_id: SessionId | None = Field(None, description="Current session; omitted: no session features.")

    _session_not_null = field_validator("session_id", mode="before")(_not_null)


class PurchaseRequest(ModelRequest):
    items: list[Candidate] = Field(min_length=1, description="Candidates to score (at most JOURNEY_MAX_CANDIDATES).")
    request_ts: int | None = Field(
        None, ge=0, le=4_102_444_800, description="Unix seconds of the request (default: now); drives time features."
    )

    _request_ts_not_null = field_validator("request_ts", mode="before")(_not_null)

    @field_validator("items")
    @classmethod
    def _not_too_many(cls, items: list[Candidate]) -> list[Candidate]:
        limit = get_settings().max_candidates
        if len(items) > limit:
            raise ValueError(f"at most {limit} candidates per request, got {len(items)}")
        return items


class ItemScore(BaseModel):
    item_id: int
    probability: float = Field(description="P(the shopper buys this item later in this session).")


class ModelResponse(BaseModel):
    """What every prediction says about itself: which model answered and how fresh its inputs were."""

    model: str
    version: int
    variant: str = Field(
        description="A/B variant that answered: a variant of the endpoint's route, or `production` without one."
    )
    degraded: bool = Field(description="True when features could not be read and the model ran on missing inputs.")
    feature_age_seconds: dict[str, float | None] = Field(
        description="Per feature view: age of the oldest row served (None: no row for this entity)."
    )

    @computed_field(  # type: ignore[prop-decorator]  # pydantic's documented form: computed_field over a property
        description="The model version that answered: `version`, under the name the prediction log and A/B reports use."
    )
    @property
    def model_version(self) -> int:
        return self.version


class PurchaseResponse(ModelResponse):
    scores: list[ItemScore]


class NextActionRequest(ModelRequest):
    session_id: SessionId


class NextActionResponse(ModelResponse):
    probabilities: dict[str, float] = Field(description="Next event type or `exit` -> probability (sums to 1).")
    predicted: str


class RecommendRequest(ModelRequest):
    session_id: SessionId
    k: int = Field(10, ge=1, le=1000, description="Items to return (at most the model's top_k, 50 by default).")


class Recommendation(BaseModel):
    item_id: int
    score: float = Field(description="P(this is the next item the shopper looks at), from the model's softmax.")


class RecommendResponse(ModelResponse):
    items: list[Recommendation] = Field(description="Best first; items outside the model's vocabulary never appear.")


# The event as the OpenAPI schema documents it (OpenAPI 3.0, as BentoML writes it). Validation does not go through it:
# each event is checked on its own (journey.stores.push.validate_records), so one bad event is a per-row reject and
# not a 422 of the whole batch; every constraint below is one those checks enforce.
EVENT_ITEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Event",
    "type": "object",
    "additionalProperties": False,
    "required": ["event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp"],
    "properties": {
        "event_id": {
            "type": "string",
            "minLength": 1,
            "description": "Unique per event: an id stored before (JOURNEY_EVENT_DEDUP_WINDOW_S) is a duplicate.",
        },
        "user_id": {
            "type": "integer",
            "format": "int64",
            "description": "The shopper (negative: an anonymous id the importer made).",
        },
        "session_id": {"type": "string", "minLength": 1},
        "item_id": {"type": "integer", "format": "int64"},
        "event_type": {"type": "string", "enum": list(EVENT_TYPES)},
        "event_timestamp": {
            "type": "string",
            "format": "date-time",
            "description": "ISO 8601 with a time zone (none: UTC); at most 5 minutes ahead of the server clock.",
        },
        "price": {"type": "number", "minimum": 0, "nullable": True},
        "category_id": {"type": "integer", "format": "int64", "nullable": True},
    },
}
EVENT_EXAMPLE: Final[dict[str, Any]] = {
    "event_id": "e-2026-11-23-0001",
    "user_id": 12,
    "session_id": "s1",
    "item_id": 3,
    "event_type": "add_to_cart",
    "event_timestamp": "2026-11-23T17:00:00Z",
    "price": 9.5,
    "category_id": 4,
}


class EventsRequest(_Strict):
    # OpenAPI 3.0 (as BentoML writes it) has `example`, not JSON Schema's `examples`
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"example": {"events": [EVENT_EXAMPLE]}})

    events: list[Any] = Field(
        min_length=1,
        description="Canonical events, at most JOURNEY_MAX_EVENTS. Each is checked on its own: a bad one is a reject "
        "in the answer (row, field, value, reason) and the others are stored.",
        json_schema_extra={"items": EVENT_ITEM_SCHEMA},
    )

    @field_validator("events")
    @classmethod
    def _not_too_many(cls, events: list[Any]) -> list[Any]:
        limit = get_settings().max_events
        if len(events) > limit:
            raise ValueError(f"at most {limit} events per request, got {len(events)}")
        return events


class Reject(BaseModel):
    row: int = Field(description="1-based position of the event in the request.")
    field: str
    value: str | None
    reason: str


class EventsResponse(BaseModel):
    accepted: int = Field(description="Events stored now (online and offline).")
    rejected: int = Field(description="Events refused (each problem of each is one entry of `rejects`).")
    duplicates: int = Field(
        0,
        description="Events whose event_id was stored before (a retry, within JOURNEY_EVENT_DEDUP_WINDOW_S): "
        "acknowledged, nothing changed.",
    )
    sessions: int = Field(description="Sessions whose online features were updated.")
    rejects: list[Reject]
    duplicate_rows: list[int] = Field(default_factory=list, description="1-based positions of the duplicates.")
