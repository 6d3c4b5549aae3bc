"""The input specs: everything that shapes a session model's inputs, saved with the model (JSON in the registry's
params) so serving rebuilds them exactly, and refused when they no longer describe this code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from journey.contracts import LAST_N_EVENTS, SESSION_ACTIVITY_FEATURES, USER_ACTIVITY_FEATURES
from journey.errors import InvalidInputError
from journey.events import EVENT_TYPES
from journey.model_inputs.columns import CATEGORIES, ITEMS, TIMES, TYPES

STEP_FEATURES: Final = ("log_gap_seconds", "item_seen_before", "same_item_as_previous", "category_seen_before")
NEXT_ITEM_SOURCE_FEATURES: Final = (ITEMS, TYPES)
INPUT_SPEC_VERSION: Final = 1
DEFAULT_DENSE_FEATURES: Final = tuple(
    name
    for name, kind in {**USER_ACTIVITY_FEATURES, **SESSION_ACTIVITY_FEATURES}.items()
    if kind in ("int64", "float64")
)


def _check_seq_len(seq_len: int) -> None:
    if not 1 <= seq_len <= LAST_N_EVENTS:
        raise InvalidInputError(
            f"seq_len must be in 1..{LAST_N_EVENTS} (the session lists hold at most that many events)",
            field="seq_len",
            value=seq_len,
        )


def _check_current(spec: Any, current: Mapping[str, Any]) -> None:
    """Refuse a spec whose code-describing fields differ from this code: the model was built for other inputs."""
    for name, expected in current.items():
        if getattr(spec, name) != expected:
            raise InvalidInputError(
                f"input spec {name} {getattr(spec, name)!r} differs from this code's {expected!r}: the model was "
                "built for another version of journey.model_inputs",
                field=name,
                value=getattr(spec, name),
            )


def _spec_dict(spec: Any) -> dict[str, Any]:
    """A spec as JSON-ready values (tuples as lists), what the registry stores in the version's params."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}


def _spec_values(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """Stored params back to a spec's arguments; an unknown key is refused by name rather than ignored."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInputError(f"unknown input spec key {unknown[0]!r}", field=unknown[0])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


@dataclass(frozen=True)
class NextActionInputSpec:
    """Everything that shapes the next-action inputs; saved with the model (JSON) so serving rebuilds them exactly.

    `event_types`, `step_features` and `version` describe this module's code at training time: `from_dict` refuses
    a spec they no longer match rather than feed a model inputs laid out differently from those it learnt on.
    """

    seq_len: int = LAST_N_EVENTS
    item_buckets: int = 1 << 14
    category_buckets: int = 1 << 10
    dense_features: tuple[str, ...] = DEFAULT_DENSE_FEATURES
    event_types: tuple[str, ...] = EVENT_TYPES
    step_features: tuple[str, ...] = STEP_FEATURES
    version: int = INPUT_SPEC_VERSION

    def __post_init__(self) -> None:
        _check_seq_len(self.seq_len)
        for name in ("item_buckets", "category_buckets"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        current = {"event_types": EVENT_TYPES, "step_features": STEP_FEATURES, "version": INPUT_SPEC_VERSION}
        _check_current(self, current)

    @property
    def type_vocab_size(self) -> int:
        """Embedding rows for event types: pad, the known types, unknown."""
        return len(self.event_types) + 2

    @property
    def source_features(self) -> tuple[str, ...]:
        """The feature columns the inputs are built from."""
        return (ITEMS, TYPES, TIMES, CATEGORIES, *self.dense_features)

    def to_dict(self) -> dict[str, Any]:
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextActionInputSpec:
        return cls(**_spec_values(cls, data))


@dataclass(frozen=True)
class NextItemInputSpec:
    """What shapes the recommender's inputs and outputs; saved with the model so serving rebuilds them exactly.

    `top_k` is the number of items the graph returns per row (a request asks for at most that many).
    """

    seq_len: int = 12
    top_k: int = 50
    event_types: tuple[str, ...] = EVENT_TYPES
    version: int = INPUT_SPEC_VERSION

    def __post_init__(self) -> None:
        _check_seq_len(self.seq_len)
        if self.top_k < 1:
            raise InvalidInputError("top_k must be >= 1", field="top_k", value=self.top_k)
        _check_current(self, {"event_types": EVENT_TYPES, "version": INPUT_SPEC_VERSION})

    @property
    def type_vocab_size(self) -> int:
        return len(self.event_types) + 2

    @property
    def source_features(self) -> tuple[str, ...]:
        return NEXT_ITEM_SOURCE_FEATURES

    def to_dict(self) -> dict[str, Any]:
        return _spec_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NextItemInputSpec:
        return cls(**_spec_values(cls, data))
