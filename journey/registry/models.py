"""The registry's vocabulary: stages, frameworks, audit and route-change kinds, and the value objects it hands out.

Every value object is detached from the database (frozen, safe to keep after the session and to pass between
threads), so nothing outside `journey.registry` ever holds a SQLAlchemy row. Parsing user input into this
vocabulary lives here as well (`parse_version_ref`, `valid_enum`): the registry, the CLI and the admin endpoints
refuse a malformed version or an unknown stage with one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self, TypeVar

from journey.errors import InvalidInputError

VersionRef = int | str  # 3, "3", "latest" or "production"
E = TypeVar("E", bound=StrEnum)


class Stage(StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Framework(StrEnum):
    XGBOOST = "xgboost"
    PYTORCH = "pytorch"
    ONNX = "onnx"  # built with onnx.helper, e.g. the next-item index kinds (migration 0003)


class AuditKind(StrEnum):
    """What an audit row is about: a model version (name, version) or a route (endpoint, revision)."""

    MODEL = "model"
    ROUTE = "route"


class RouteAction(StrEnum):
    SET = "set"
    DEPLOY = "deploy"
    SHADOW = "shadow"
    CLEAR = "clear"
    ROLLBACK = "rollback"


# ---------------------------------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, detached from the database (safe to keep after the session and to pass around)."""

    id: int
    name: str
    version: int
    framework: str
    onnx_sha256: str
    bento_tag: str
    feature_service: str
    metrics: dict[str, Any]
    data_window: dict[str, Any]
    params: dict[str, Any]
    report_path: str | None
    git_commit: str | None
    created_at: datetime
    stage: Stage
    created_by: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the timestamp as ISO 8601, the stage as its name."""
        return {**asdict(self), "created_at": self.created_at.isoformat(), "stage": self.stage.value}


@dataclass(frozen=True)
class AuditEntry:
    """One change: `before`/`after` hold the fields that changed (for a stage change, `{"stage": ...}`).

    For `kind` route, `name` is the endpoint, `version` the route revision and `before`/`after` whole routes
    (`Route.document()`; None: no stored route, the production version answered).
    """

    id: int
    at: datetime
    actor: str
    action: str
    name: str
    version: int
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    detail: str
    kind: AuditKind = AuditKind.MODEL

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "at": self.at.isoformat(), "kind": self.kind.value}


@dataclass(frozen=True)
class RouteVariant:
    """One arm of a route: requests of the users hashed into it are answered by `model` version `version`.

    `weight` is relative (any scale): the variant's share is weight / sum of the route's weights. A weight of 0 keeps
    the variant in the route, and its place in the fixed order, without traffic.
    """

    name: str
    model: str
    version: int
    weight: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "weight": self.weight}


@dataclass(frozen=True)
class Route:
    """How one endpoint's traffic is split, detached from the database.

    `stored` is False for the default route (no route set): the model's production version answers everything as
    variant `production` (no variant at all when there is no production version). `revision` is the endpoint's
    newest route revision (0: never changed); `shadow_version` is scored and logged, never returned.
    """

    endpoint: str
    model: str
    variants: tuple[RouteVariant, ...]
    experiment: str | None
    salt: str
    shadow_version: int | None = None
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None
    stored: bool = False

    @property
    def total_weight(self) -> float:
        return sum(v.weight for v in self.variants)

    def shares(self) -> dict[str, float]:
        """Each variant's expected fraction of users (0..1), in route order."""
        total = self.total_weight
        return {v.name: (v.weight / total if total > 0 else 0.0) for v in self.variants}

    def variant(self, name: str) -> RouteVariant | None:
        return next((v for v in self.variants if v.name == name), None)

    def document(self) -> dict[str, Any]:
        """What defines the split (variants, shadow, experiment, salt): stored in route_history and the audit log,
        and what `rollback_route` restores."""
        return {
            "model": self.model,
            "experiment": self.experiment,
            "salt": self.salt,
            "variants": [v.as_dict() for v in self.variants],
            "shadow_version": self.shadow_version,
        }

    @classmethod
    def from_document(
        cls, endpoint: str, document: Mapping[str, Any], revision: int, at: datetime | None, actor: str | None
    ) -> Self:
        """A route as `document()` stored it (history rows, audit before/after): the inverse lives beside it."""
        model = str(document["model"])
        return cls(
            endpoint=endpoint,
            model=model,
            variants=tuple(
                RouteVariant(str(v["name"]), model, int(v["version"]), float(v["weight"])) for v in document["variants"]
            ),
            experiment=document.get("experiment"),
            salt=str(document.get("salt") or ""),
            shadow_version=document.get("shadow_version"),
            revision=revision,
            updated_at=at,
            updated_by=actor,
            stored=True,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for `journey route show --json` and admin endpoints."""
        return {
            "endpoint": self.endpoint,
            **self.document(),
            "shares": self.shares(),
            "revision": self.revision,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "updated_by": self.updated_by,
            "stored": self.stored,
        }


@dataclass(frozen=True)
class RouteRevision:
    """One change of an endpoint's route. `route` is the route it set (None: it cleared the route);
    `previous_revision` is what a rollback from here restores (0: the default route; None: nothing)."""

    endpoint: str
    revision: int
    action: RouteAction
    route: Route | None
    previous_revision: int | None
    at: datetime
    actor: str


@dataclass(frozen=True)
class RouteSnapshot:
    """Every routed endpoint's route, read in one transaction, and the registry's `change_token` read before them:
    a poller that reloads when the token moves never misses a change (it may reload once more than needed)."""

    token: int
    routes: Mapping[str, Route]


# ---------------------------------------------------------------------------------------------------------- parsing


def parse_version_ref(version: VersionRef) -> int | str:
    """3, "3" -> 3; "latest" and "production" as they are; anything else is an input error naming it."""
    if isinstance(version, int) and not isinstance(version, bool) and version >= 1:
        return version
    if isinstance(version, str) and version.isdigit() and int(version) >= 1:
        return int(version)
    if version in ("latest", Stage.PRODUCTION.value):
        return version
    raise InvalidInputError(
        f"version must be a number >= 1, 'latest' or 'production', got {version!r}", field="version", value=version
    )


def valid_enum(kind: type[E], value: str, field: str) -> E:
    """`value` as a member of `kind`, or an input error listing the known values (a stage, framework, audit kind)."""
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise InvalidInputError(f"unknown {field} {value!r}; known: {known}", field=field, value=value) from None
