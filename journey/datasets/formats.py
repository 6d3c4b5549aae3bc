"""How each public event log maps onto the canonical event: one declarative `SourceFormat` per source.

RetailRocket, REES46 and Taobao are built-in; any other CSV/Parquet log is described by a YAML mapping file
(`SourceFormat.from_yaml`) with the same fields. The importer reads only what a format declares, so the full public
files are taken unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from journey.errors import ConfigError
from journey.events import EVENT_TYPES

TimestampUnit = Literal["s", "ms", "us"]
CanonicalField = Literal[
    "event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp", "price", "category_id"
]
REQUIRED_FIELDS = ("user_id", "item_id", "event_type", "event_timestamp")


class SourceFormat(BaseModel):
    """A mapping from a source's columns and values to canonical events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Short name, used as the event id prefix for content-derived ids.")
    columns: dict[CanonicalField, str] = Field(description="Canonical field -> source column name.")
    event_types: dict[str, str] = Field(description="Source event value -> canonical event type.")
    timestamp_unit: TimestampUnit | None = Field(None, description="Integer epoch timestamps in this unit.")
    timestamp_format: str | None = Field(
        None, description="strptime pattern, or `iso` for ISO 8601 with or without offset."
    )
    timezone: str = Field("UTC", description="Zone of naive timestamps.")
    header: bool = Field(True, description="False when the CSV has no header row.")
    column_names: list[str] | None = Field(None, description="Source column names for header-less files.")

    @model_validator(mode="after")
    def _consistent(self) -> SourceFormat:
        missing = [f for f in REQUIRED_FIELDS if f not in self.columns]
        if missing:
            raise ValueError(f"columns must map {missing}")
        if (self.timestamp_unit is None) == (self.timestamp_format is None):
            raise ValueError("set exactly one of timestamp_unit and timestamp_format")
        unknown = sorted(set(self.event_types.values()) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"event_types maps onto unknown canonical types {unknown}; known: {list(EVENT_TYPES)}")
        if not self.header and not self.column_names:
            raise ValueError("column_names is required when header is false")
        return self

    @property
    def has_sessions(self) -> bool:
        return "session_id" in self.columns

    @property
    def has_event_ids(self) -> bool:
        return "event_id" in self.columns

    @classmethod
    def from_yaml(cls, path: Path) -> SourceFormat:
        """Load a mapping file; every problem is reported with the file name and the field path."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read mapping: {exc}", path=str(path)) from exc
        if not isinstance(raw, dict):
            raise ConfigError("mapping must be a YAML mapping", path=str(path))
        raw.setdefault("name", path.stem)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems, path=str(path)) from exc


RETAILROCKET = SourceFormat(
    name="rr",
    columns={
        "user_id": "visitorid",
        "item_id": "itemid",
        "event_type": "event",
        "event_timestamp": "timestamp",
    },
    event_types={"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"},
    timestamp_unit="ms",
)

REES46 = SourceFormat(
    name="rees46",
    columns={
        "user_id": "user_id",
        "session_id": "user_session",
        "item_id": "product_id",
        "event_type": "event_type",
        "event_timestamp": "event_time",
        "price": "price",
        "category_id": "category_id",
    },
    event_types={
        "view": "view",
        "cart": "add_to_cart",
        "remove_from_cart": "remove_from_cart",
        "purchase": "purchase",
    },
    timestamp_format="%Y-%m-%d %H:%M:%S UTC",
)

# Taobao's `fav` (add to favourites) is a save-for-later signal of consideration; the canonical schema has no
# favourite type, so it maps onto add_to_cart (documented in journey/datasets/README.md).
TAOBAO = SourceFormat(
    name="taobao",
    columns={
        "user_id": "user_id",
        "item_id": "item_id",
        "category_id": "category_id",
        "event_type": "behavior_type",
        "event_timestamp": "timestamp",
    },
    event_types={"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"},
    timestamp_unit="s",
    header=False,
    column_names=["user_id", "item_id", "category_id", "behavior_type", "timestamp"],
)

BUILTIN_FORMATS: dict[str, SourceFormat] = {"retailrocket": RETAILROCKET, "rees46": REES46, "taobao": TAOBAO}
