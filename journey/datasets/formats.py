"""How each public event log maps onto the canonical event: one declarative `SourceFormat` per source.

RetailRocket, REES46 and Taobao are built-in; any other CSV/Parquet log is described by a YAML mapping file
(`SourceFormat.from_yaml`) with the same fields plus the options of mapping.py (delimiter, constant event types,
composed timestamps, anonymous users, side files). The importer reads only what a format declares, so the full public
files are taken unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from journey.datasets.mapping import EventsFile, FileMapping, LookupFile, inherit
from journey.errors import ConfigError

SideFile = Annotated[EventsFile | LookupFile, Field(discriminator="kind")]


class SourceFormat(FileMapping):
    """A named mapping from a source's columns and values to canonical events, with its side files."""

    name: str = Field(description="Short name, used as the event id prefix for content-derived ids.")
    side_files: list[SideFile] = Field(
        default_factory=list, description="More events (kind: events) or values joined by key (kind: lookup)."
    )

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        """Side files take what they do not set from this mapping (see mapping.inherit)."""
        if isinstance(data, dict) and isinstance(data.get("side_files"), list):
            return {**data, "side_files": [inherit(data, side) for side in data["side_files"]]}
        return data

    @model_validator(mode="after")
    def _side_files_agree(self) -> SourceFormat:
        for side in self.events_files:
            if side.has_sessions != self.has_sessions or side.has_event_ids != self.has_event_ids:
                raise ValueError(
                    f"side file {side.path}: map session_id and event_id exactly when the main file does "
                    "(events of one import are sessionised and identified one way)"
                )
        return self

    @property
    def events_files(self) -> list[EventsFile]:
        return [side for side in self.side_files if isinstance(side, EventsFile)]

    @property
    def lookups(self) -> list[LookupFile]:
        return [side for side in self.side_files if isinstance(side, LookupFile)]

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
