"""The model registry: which ONNX model versions exist, which one serves (production), and who changed what.

    model_versions   one row per registered version: version 1, 2, 3... per name, stage, hash, BentoML tag, metrics
    audit_log        one append-only row per change (register, promote, archive, attach_report; route changes,
                     kind `route`), who, before/after
    routes           per endpoint: the variants (model version + weight) that answer, a shadow version, the
                     experiment and its salt (`route_variants` holds the variants in their fixed order)
    route_history    every route change as a numbered revision per endpoint, so `rollback_route` can restore the
                     route a change replaced

The rows live in SQL (SQLite file `data_dir/registry.db` in the local profile, schema `registry_schema` of PostgreSQL
in prod; one set of models serves both through `schema_translate_map`), the bytes in BentoML's model store
(`<bentoml_home>/models/<name>/<tag version>/model.onnx`). The SHA-256 in the row is the trust anchor: `register`
refuses a file whose hash differs from what the exporter computed, and `artifact_path` re-hashes the stored copy
before serving may load it, so a file swapped on disk is refused at both ends.

Stages: a new version is `staging`; `promote` makes it `production` and archives the previous production version of
that name in the same transaction (a partial unique index keeps at most one production version per name even under
concurrent promotions); `archive` retires a version (archiving the production one leaves none: allowed, logged as a
warning). Promoting an archived version is the rollback.

Routes (serving's A/B split): an endpoint without a stored route is answered by its model's production version
(variant `production`, 100%). A stored route pins version numbers: promoting or archiving a version later does not
change it (`route show` warns about archived versions in a route). Every change is validated (versions exist, are
not archived and belong to the endpoint's model; weights >= 0 with a positive sum; unique variant names; the shadow
is not also a variant), recorded as a revision in `route_history` and audited. Changes of one endpoint are
serialised (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite). Serving polls `change_token()` (the newest
audit id: it grows with every registry change) and re-reads `route_snapshot()` when it moves.

Schema changes are Alembic migrations in `journey/registry/migrations/versions/` (0001, 0002, ...). A `Registry`
upgrades its database to the newest migration on first use (idempotent, one check per instance; concurrent
upgraders on PostgreSQL are serialised by an advisory lock), so neither tests nor deployments need a separate step.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from journey.contracts import ENDPOINT_MODELS
from journey.errors import ConflictError, InvalidInputError, JourneyError, NotFoundError, ServiceUnavailableError
from journey.settings import PROJECT_ROOT, Settings, get_settings

if TYPE_CHECKING:
    from alembic.config import Config
    from bentoml._internal.models.model import ModelStore

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
# The newest migration in MIGRATIONS_DIR (a test keeps them equal). Knowing it without importing Alembic keeps the
# common case, a database already at head, to one small query: Alembic costs ~0.5 s to import.
HEAD_REVISION: Final = "0002"
ARTIFACT_FILENAME: Final = "model.onnx"
VERSION_TABLE: Final = "alembic_version"
# BentoML's tag rule (lower-case alphanumerics and - _ ., alphanumeric at both ends, at most 63): the registry name
# is the BentoML model name, so a name BentoML would refuse is refused before anything is written.
_NAME = re.compile(r"^[a-z0-9](?:[-._a-z0-9]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REGISTER_ATTEMPTS = 5
DEFAULT_VARIANT: Final = "production"  # the variant of an endpoint without a stored route
MAX_VARIANTS: Final = 8
# Variant names become Prometheus label values and log fields: short, lower-case, no dots.
_VARIANT = re.compile(r"^[a-z0-9](?:[-_a-z0-9]{0,30}[a-z0-9])?$")
_SALT = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII without spaces
# Alembic's `context` is a module-global proxy: two threads of one process must not run migrations at once (other
# processes are kept apart by the database: an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
_MIGRATION_LOCK = threading.Lock()

VersionRef = int | str  # 3, "3", "latest" or "production"
E = TypeVar("E", bound=StrEnum)


class Stage(StrEnum):
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class Framework(StrEnum):
    XGBOOST = "xgboost"
    PYTORCH = "pytorch"


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


# ------------------------------------------------------------------------------------------------------------ errors


class TamperedArtifactError(InvalidInputError):
    """The bytes are not the ones the exporter wrote (or the registry stored): refused, never served."""

    def __init__(self, message: str, *, path: Path, expected: str, actual: str) -> None:
        super().__init__(message, field="onnx_sha256", value=actual)
        self.path = path
        self.expected = expected
        self.actual = actual


class ModelVersionNotFoundError(NotFoundError):
    """A model name, or a version of it, that the registry does not hold."""

    def __init__(self, message: str, *, name: str, version: VersionRef | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.version = version


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


# ----------------------------------------------------------------------------------------------------------- tables


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out: SQLite has no time zones and hands back naive values, PostgreSQL the session's."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the registry stores UTC-aware times only")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact), JSON text elsewhere; migrations spell the same type.
JSONDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")

# Constraint names follow one convention so later migrations (0002+) can name what they alter on both backends.
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
}


class Base(DeclarativeBase):
    """Tables without a schema: PostgreSQL maps `None` to `registry_schema` at execution, SQLite has no schemas."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSONDocument}


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint("stage IN ('staging', 'production', 'archived')", name="stage"),
        CheckConstraint("framework IN ('xgboost', 'pytorch')", name="framework"),
        CheckConstraint("version >= 1", name="version_positive"),
        # At most one production version per name, enforced by the database itself (both backends know partial
        # indexes): a promotion racing another fails instead of leaving two versions serving.
        Index(
            "uq_model_versions_one_production",
            "name",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int]
    framework: Mapped[str] = mapped_column(String(16))
    onnx_sha256: Mapped[str] = mapped_column(String(64))
    bento_tag: Mapped[str] = mapped_column(String(128))
    feature_service: Mapped[str] = mapped_column(String(128))
    metrics: Mapped[dict[str, Any]]
    data_window: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    report_path: Mapped[str | None] = mapped_column(Text)
    git_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    stage: Mapped[str] = mapped_column(String(16), default=Stage.STAGING.value, server_default=Stage.STAGING.value)
    created_by: Mapped[str] = mapped_column(String(128))

    def detached(self) -> ModelVersion:
        return ModelVersion(
            id=self.id,
            name=self.name,
            version=self.version,
            framework=self.framework,
            onnx_sha256=self.onnx_sha256,
            bento_tag=self.bento_tag,
            feature_service=self.feature_service,
            metrics=dict(self.metrics),
            data_window=dict(self.data_window),
            params=dict(self.params),
            report_path=self.report_path,
            git_commit=self.git_commit,
            created_at=self.created_at,
            stage=Stage(self.stage),
            created_by=self.created_by,
        )


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_name_version", "name", "version"),
        CheckConstraint("kind IN ('model', 'route')", name="kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int]
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    detail: Mapped[str] = mapped_column(Text, default="", server_default="")
    kind: Mapped[str] = mapped_column(String(16), default=AuditKind.MODEL.value, server_default=AuditKind.MODEL.value)

    def detached(self) -> AuditEntry:
        return AuditEntry(
            id=self.id,
            at=self.at,
            actor=self.actor,
            action=self.action,
            name=self.name,
            version=self.version,
            before=self.before,
            after=self.after,
            detail=self.detail,
            kind=AuditKind(self.kind),
        )


class RouteRow(Base):
    """The current route of an endpoint (no row: the default route). Variants and the shadow reference model
    versions by (name, version), so PostgreSQL refuses a route to a version that does not exist."""

    __tablename__ = "routes"
    __table_args__ = (
        ForeignKeyConstraint(["model", "shadow_version"], ["model_versions.name", "model_versions.version"]),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )

    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(63))
    experiment: Mapped[str] = mapped_column(String(63))
    salt: Mapped[str] = mapped_column(String(64))
    shadow_version: Mapped[int | None]
    revision: Mapped[int]
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(128))
    variants: Mapped[builtins.list[RouteVariantRow]] = relationship(
        order_by="RouteVariantRow.position", cascade="all, delete-orphan", lazy="selectin"
    )

    def detached(self) -> Route:
        return Route(
            endpoint=self.endpoint,
            model=self.model,
            variants=tuple(RouteVariant(v.name, v.model, v.version, v.weight) for v in self.variants),
            experiment=self.experiment,
            salt=self.salt,
            shadow_version=self.shadow_version,
            revision=self.revision,
            updated_at=self.updated_at,
            updated_by=self.updated_by,
            stored=True,
        )


class RouteVariantRow(Base):
    __tablename__ = "route_variants"
    __table_args__ = (
        UniqueConstraint("endpoint", "name"),
        UniqueConstraint("endpoint", "position"),
        ForeignKeyConstraint(["model", "version"], ["model_versions.name", "model_versions.version"]),
        CheckConstraint("weight >= 0", name="weight_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64), ForeignKey("routes.endpoint", ondelete="CASCADE"))
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(63))
    version: Mapped[int]
    weight: Mapped[float] = mapped_column(Float)


class RouteHistoryRow(Base):
    __tablename__ = "route_history"
    __table_args__ = (
        UniqueConstraint("endpoint", "revision"),
        CheckConstraint("action IN ('set', 'deploy', 'shadow', 'clear', 'rollback')", name="action"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    revision: Mapped[int]
    action: Mapped[str] = mapped_column(String(16))
    route: Mapped[dict[str, Any] | None]
    previous_revision: Mapped[int | None]
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))

    def detached(self) -> RouteRevision:
        route = None
        if self.route is not None:
            route = _route_from_document(self.endpoint, self.route, self.revision, self.at, self.actor)
        return RouteRevision(
            endpoint=self.endpoint,
            revision=self.revision,
            action=RouteAction(self.action),
            route=route,
            previous_revision=self.previous_revision,
            at=self.at,
            actor=self.actor,
        )


# ---------------------------------------------------------------------------------------------------------- engines


def registry_schema(settings: Settings) -> str | None:
    """The schema the registry's tables live in: `registry_schema` on PostgreSQL, none on SQLite."""
    backend = make_url(settings.registry_database_url).get_backend_name()
    return None if backend == "sqlite" else settings.registry_schema


def create_registry_engine(settings: Settings) -> Engine:
    """An engine whose schema-less tables land in the registry schema (PostgreSQL) or the SQLite file."""
    url = make_url(settings.registry_database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings.registry_database_url)
    schema = registry_schema(settings)
    connect_args = {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}
    return create_engine(
        url,
        pool_pre_ping=True,  # serving keeps a registry for hours; a restarted database must not fail the next read
        connect_args=connect_args,
        execution_options={"schema_translate_map": {None: schema}},
    )


def _sqlite_engine(url: str) -> Engine:
    """SQLite with `BEGIN IMMEDIATE`: a transaction takes the write lock up front, so two registrations queue
    (busy timeout) instead of both reading max(version) and one failing on the upgrade to a write lock."""
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not emit its own BEGIN

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    """Alembic's configuration without an ini file: the migrations ship inside the package; `env.py` runs them on
    `connection` (in the caller's transaction) with the version table in `schema`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def migration_lock_key(schema: str | None) -> int:
    """A stable advisory-lock key per registry schema (PostgreSQL), so only one process migrates it at a time."""
    return zlib.crc32(f"journey-registry:{schema}".encode())


# --------------------------------------------------------------------------------------------------------- registry


class Registry:
    """Model versions and their audit trail for one settings profile. Use as a context manager (or `close()`), so
    the engine's connections are released.

    Every operation first brings the database to the newest migration (once per instance; a no-op check after).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.schema = registry_schema(self.settings)
        self._engine = create_registry_engine(self.settings)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._migrated = False

    # ----------------------------------------------------------------------------------------------- lifecycle

    @property
    def location(self) -> str:
        """The database URL with the password masked, plus the schema where there is one (for messages)."""
        url = make_url(self.settings.registry_database_url).render_as_string(hide_password=True)
        return f"{url} (schema {self.schema})" if self.schema else url

    @property
    def model_store_dir(self) -> Path:
        """BentoML's model store under `bentoml_home` (the layout `BENTOML_HOME=... bentoml models list` reads)."""
        return self.settings.bentoml_home / "models"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- migrations

    def migrate(self) -> str:
        """Upgrade the database to the newest migration (creating the schema on PostgreSQL); return the revision.

        Idempotent and cheap when already at head: the version table is read first and Alembic runs only when it
        lags, so every process may call it on start-up.
        """
        with _MIGRATION_LOCK, self._connect() as connection:
            current = self._current_revision(connection)
            if current != HEAD_REVISION:
                self._upgrade(connection, current)
        self._migrated = True
        return HEAD_REVISION

    def current_revision(self) -> str | None:
        """The revision the database is at (None: never migrated)."""
        with self._connect() as connection:
            return self._current_revision(connection)

    def _current_revision(self, connection: Connection) -> str | None:
        if not inspect(connection).has_table(VERSION_TABLE, schema=self.schema):
            return None
        table = f"{self._quoted_schema(connection)}.{VERSION_TABLE}" if self.schema else VERSION_TABLE
        return connection.execute(text(f"SELECT version_num FROM {table}")).scalar()

    def _quoted_schema(self, connection: Connection) -> str:
        return connection.dialect.identifier_preparer.quote_schema(self.schema or "")

    def _upgrade(self, connection: Connection, current: str | None) -> None:
        from alembic import command
        from alembic.util import CommandError

        log.info("migrating the model registry", extra={"registry": self.location, "from": current})
        try:
            command.upgrade(alembic_config(connection, self.schema), "head")
        except CommandError as exc:  # typically a database migrated by a newer release than this code
            raise JourneyError(
                f"cannot migrate the model registry at {self.location} from revision {current} to {HEAD_REVISION}: "
                f"{exc}"
            ) from exc

    def _ensure_migrated(self) -> None:
        if not self._migrated:
            self.migrate()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        """One connection in one transaction (the migration runs inside it, atomically where DDL is transactional)."""
        try:
            with self._engine.begin() as connection:
                yield connection
        except OperationalError as exc:
            raise self._unavailable(exc) from None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A migrated session in one transaction: committed at the end of the block, rolled back if it raises."""
        self._ensure_migrated()
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: OperationalError) -> ServiceUnavailableError:
        reason = next((line.strip() for line in str(exc.orig).splitlines() if line.strip()), type(exc).__name__)
        return ServiceUnavailableError(f"model registry at {self.location} unavailable: {reason}")

    # ------------------------------------------------------------------------------------------------ register

    def register(
        self,
        *,
        name: str,
        onnx_path: str | Path,
        expected_sha256: str,
        framework: str,
        feature_service: str,
        metrics: Mapping[str, Any],
        data_window: Mapping[str, Any],
        params: Mapping[str, Any],
        report_path: str | None = None,
        actor: str,
    ) -> ModelVersion:
        """Store an exported ONNX file as the next version of `name` (stage `staging`) and audit it.

        The file is copied first and the copy is hashed and loaded, so the bytes checked are exactly the bytes
        stored. A hash other than `expected_sha256` raises `TamperedArtifactError`, a file ONNX cannot load
        raises `InvalidInputError`; either way nothing is written. The row, the audit row and the BentoML model
        are committed together: if any of them fails, none remains.
        """
        name = _valid_name(name)
        fields = {
            "framework": _valid_enum(Framework, framework, "framework").value,
            "feature_service": _non_empty(feature_service, "feature_service"),
            "created_by": _non_empty(actor, "actor"),
            "metrics": _json_document(metrics, "metrics"),
            "data_window": _json_document(data_window, "data_window"),
            "params": _json_document(params, "params"),
            "report_path": report_path,
            "git_commit": git_commit(),
        }
        last: IntegrityError | None = None
        self._model_store()  # import BentoML now, not while the transaction below holds the write lock
        with tempfile.TemporaryDirectory(prefix="journey-register-") as tmp:
            staged, sha256 = _staged_artifact(Path(onnx_path), Path(tmp), expected_sha256)
            for attempt in range(1, _REGISTER_ATTEMPTS + 1):
                try:
                    return self._insert(name, sha256, staged, fields)
                except IntegrityError as exc:  # another process took this version number first
                    log.info("version number taken, retrying", extra={"model": name, "attempt": attempt})
                    last = exc
        raise ConflictError(
            f"could not allocate a version of model {name!r} after {_REGISTER_ATTEMPTS} attempts (concurrent "
            f"registrations at {self.location}): {last.orig if last else ''}"
        )

    def _insert(self, name: str, sha256: str, staged: Path, fields: dict[str, Any]) -> ModelVersion:
        stored_tag: str | None = None
        try:
            with self._session() as session:
                version = (session.scalar(select(func.max(ModelVersionRow.version)).filter_by(name=name)) or 0) + 1
                tag = f"{name}:v{version}-{secrets.token_hex(4)}"
                row = ModelVersionRow(
                    name=name,
                    version=version,
                    onnx_sha256=sha256,
                    bento_tag=tag,
                    created_at=datetime.now(UTC),
                    stage=Stage.STAGING.value,
                    **fields,
                )
                session.add(row)
                after = {"stage": row.stage, "onnx_sha256": sha256, "bento_tag": tag}
                _audit(session, row, "register", fields["created_by"], None, after, f"framework {row.framework}")
                session.flush()  # the unique (name, version) constraint speaks here, before any file is written
                stored_tag = self._store_artifact(row, staged)
                result = row.detached()
        except BaseException:
            if stored_tag is not None:
                self._remove_artifact(stored_tag)
            raise
        log.info(
            "model version registered",
            extra={"model": name, "version": result.version, "sha256": sha256, "bento_tag": result.bento_tag},
        )
        return result

    def _store_artifact(self, row: ModelVersionRow, staged: Path) -> str:
        """Save the checked copy into BentoML's model store under the row's tag; the tag's version carries ours."""
        models = _bentoml_models()
        from bentoml.exceptions import BentoMLException

        labels = {"framework": row.framework, "feature_service": row.feature_service, "version": str(row.version)}
        # The registry row is the record (metrics and all); BentoML's metadata only has to identify the bytes, and it
        # refuses None, which JSON metrics may hold.
        metadata = {"onnx_sha256": row.onnx_sha256, "registry_version": row.version, "created_by": row.created_by}
        try:
            with models.create(
                row.bento_tag, labels=labels, metadata=metadata, _model_store=self._model_store()
            ) as model:
                shutil.copyfile(staged, model.path_of(ARTIFACT_FILENAME))
        except (BentoMLException, OSError, ValueError) as exc:
            where = self.model_store_dir
            raise JourneyError(f"could not save {row.bento_tag} in the BentoML store {where}: {exc}") from exc
        return row.bento_tag

    def _remove_artifact(self, tag: str) -> None:
        store = self._model_store()
        from bentoml.exceptions import BentoMLException

        try:
            store.delete(tag)
        except (BentoMLException, OSError) as exc:
            log.warning("could not remove an orphaned BentoML model", extra={"bento_tag": tag, "error": str(exc)})

    def _model_store(self) -> ModelStore:
        """A store on this registry's `bentoml_home`, passed explicitly: BentoML's own container reads BENTOML_HOME
        once per process, which would send every test (and every profile) to the same directory."""
        _bentoml_models()
        from bentoml._internal.models.model import ModelStore

        self.model_store_dir.mkdir(parents=True, exist_ok=True)
        return ModelStore(self.model_store_dir)

    def attach_report(
        self, name: str, version: VersionRef, report_path: str, *, actor: str | None = None
    ) -> ModelVersion:
        """Record where the evaluation report of a version was written (it is written after the version number is
        known, so after `register`)."""
        with self._session() as session:
            row = self._resolve(session, name, version)
            before = {"report_path": row.report_path}
            row.report_path = report_path
            _audit(session, row, "attach_report", actor or row.created_by, before, {"report_path": report_path}, "")
            return row.detached()

    # -------------------------------------------------------------------------------------------------- stages

    def promote(self, name: str, version: VersionRef, actor: str) -> ModelVersion:
        """Make `version` the production version of `name` and archive the one it replaces, in one transaction.

        Promoting an archived version is how a rollback is done; promoting the production version changes nothing.
        The stored artifact is re-hashed first: a version serving could not load (`TamperedArtifactError`,
        `NotFoundError`) is never promoted.
        """
        with self._session() as session:
            rows = self._lock_versions(session, name)
            target = _pick(rows, name, version, self.location)
            if target.stage == Stage.PRODUCTION:
                log.info("already in production", extra={"model": name, "version": target.version})
                return target.detached()
            self.artifact_path(target.detached())
            superseded = f"superseded by version {target.version}"
            for current in (r for r in rows if r.stage == Stage.PRODUCTION):
                self._set_stage(session, current, Stage.ARCHIVED, actor, "archive", superseded)
            session.flush()  # the old production row leaves before the new one arrives (partial unique index)
            detail = "rollback to an archived version" if target.stage == Stage.ARCHIVED else "promoted from staging"
            self._set_stage(session, target, Stage.PRODUCTION, actor, "promote", detail)
            session.flush()
            return target.detached()

    def archive(self, name: str, version: VersionRef, actor: str) -> ModelVersion:
        """Retire a version. Archiving the production version leaves the name without one (allowed, warned)."""
        with self._session() as session:
            target = _pick(self._lock_versions(session, name), name, version, self.location)
            if target.stage == Stage.ARCHIVED:
                return target.detached()
            detail = "archived"
            if target.stage == Stage.PRODUCTION:
                detail = f"archived the production version: {name!r} has no production version now"
                log.warning("no production version left", extra={"model": name, "version": target.version})
            self._set_stage(session, target, Stage.ARCHIVED, actor, "archive", detail)
            return target.detached()

    def _lock_versions(self, session: Session, name: str) -> builtins.list[ModelVersionRow]:
        """Every version of `name`, locked for the transaction (PostgreSQL), so stage changes of one name queue."""
        query = select(ModelVersionRow).filter_by(name=name).order_by(ModelVersionRow.version).with_for_update()
        return builtins.list(session.scalars(query))

    @staticmethod
    def _set_stage(session: Session, row: ModelVersionRow, stage: Stage, actor: str, action: str, detail: str) -> None:
        before = {"stage": row.stage}
        row.stage = stage.value
        _audit(session, row, action, _non_empty(actor, "actor"), before, {"stage": stage.value}, detail)
        log.info(
            "model stage changed",
            extra={"model": row.name, "version": row.version, "before": before["stage"], "after": stage.value},
        )

    # --------------------------------------------------------------------------------------------------- reads

    def get(self, name: str, version: VersionRef = "latest") -> ModelVersion:
        """One version: a number, `"latest"` (highest number, any stage) or `"production"`."""
        with self._session() as session:
            return self._resolve(session, name, version).detached()

    def list(self, name: str | None = None, stage: str | None = None) -> builtins.list[ModelVersion]:
        """Versions ordered by name and number, optionally of one name and/or one stage."""
        query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)
        if name is not None:
            query = query.filter_by(name=name)
        if stage is not None:
            query = query.filter_by(stage=_valid_enum(Stage, stage, "stage").value)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    def audit(
        self,
        name: str | None = None,
        version: int | None = None,
        limit: int = 100,
        kind: AuditKind | str | None = AuditKind.MODEL,
    ) -> builtins.list[AuditEntry]:
        """The newest `limit` changes first, optionally of one name (and version).

        Model changes by default, as before routes existed; `kind="route"` gives route changes (name = endpoint,
        version = revision), `kind=None` both.
        """
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if kind is not None:
            query = query.filter_by(kind=_valid_enum(AuditKind, kind, "kind").value)
        if name is not None:
            query = query.filter_by(name=name)
        if version is not None:
            query = query.filter_by(version=version)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    # -------------------------------------------------------------------------------------------------- routes

    def change_token(self) -> int:
        """A number that grows with every change to the registry (registration, stage change, route change): the
        newest audit id. One indexed query, cheap enough for serving to poll every second."""
        with self._session() as session:
            return self._change_token(session)

    def route(self, endpoint: str) -> Route:
        """The route of `endpoint`: the stored one, or the default (the production version takes all traffic)."""
        endpoint = _valid_endpoint(endpoint)
        with self._session() as session:
            return self._current_route(session, endpoint)

    def route_snapshot(self) -> RouteSnapshot:
        """Every routed endpoint's route and the change token, for serving to load (and reload when the token of
        `change_token()` differs from the snapshot's)."""
        with self._session() as session:
            token = self._change_token(session)  # first: a change committed after it moves the token again
            routes = {endpoint: self._current_route(session, endpoint) for endpoint in ENDPOINT_MODELS}
        return RouteSnapshot(token=token, routes=MappingProxyType(routes))

    def route_history(
        self, endpoint: str | None = None, *, limit: int | None = None, oldest_first: bool = False
    ) -> builtins.list[RouteRevision]:
        """Route revisions, newest first (or oldest first), of one endpoint or all."""
        order = RouteHistoryRow.id.asc() if oldest_first else RouteHistoryRow.id.desc()
        query = select(RouteHistoryRow).order_by(order)
        if endpoint is not None:
            query = query.filter_by(endpoint=_valid_endpoint(endpoint))
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            return [row.detached() for row in session.scalars(query)]

    def set_route(
        self,
        endpoint: str,
        variants: Sequence[RouteVariant],
        *,
        actor: str,
        experiment: str | None = None,
        salt: str | None = None,
        shadow_version: int | None = None,
    ) -> Route:
        """Replace the route of `endpoint`: the variants in this (fixed) order, their weights, an optional shadow.

        The experiment defaults to the current one (else `<endpoint>-<UTC time>`); the salt is kept while the
        experiment is unchanged, so users stay in their variants, and drawn afresh for a new experiment (an
        independent split). Setting the route it already has changes nothing.
        """

        def build(session: Session, current: Route) -> tuple[Route | None, str]:
            model = ENDPOINT_MODELS[current.endpoint]
            default = f"{current.endpoint}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
            name, drawn = _experiment_and_salt(current, experiment, salt, default)
            target = replace(
                current,
                variants=tuple(variants),
                experiment=name,
                salt=drawn,
                shadow_version=shadow_version,
                model=model,
            )
            split = ", ".join(f"{v.name}=v{v.version}:{v.weight:g}" for v in target.variants)
            return target, f"route set: {split}" + (f"; shadow v{shadow_version}" if shadow_version else "")

        return self._change_route(endpoint, RouteAction.SET, actor, build)

    def deploy(
        self,
        endpoint: str,
        version: VersionRef,
        weight: float,
        *,
        actor: str,
        model: str | None = None,
        variant: str | None = None,
        experiment: str | None = None,
        salt: str | None = None,
    ) -> Route:
        """Give `version` `weight` percent (0..100) of the endpoint's users; the other variants share the rest in
        their current proportions.

        An endpoint without a route first gets its default made explicit (variant `production`, pinned to today's
        production version). The variant is `variant`, else the one already serving `version`, else `v<version>`;
        a new variant goes last in the fixed order. Deploying the shadow version makes it a live variant (the
        shadow is removed). In the router, only users moving into (or, for a lower weight, out of) this variant
        change variant: exactly the change of its share.
        """
        if model is not None and model != ENDPOINT_MODELS.get(endpoint, model):
            raise _wrong_model(endpoint, model)
        percent = _percent(weight)

        def build(session: Session, current: Route) -> tuple[Route | None, str]:
            target_version = self._routable_version(session, current.model, version, "version")
            name = variant or next(
                (v.name for v in current.variants if v.version == target_version), f"v{target_version}"
            )
            others = [v for v in current.variants if v.name != name]
            rest = sum(v.weight for v in others)
            scale = (100.0 - percent) / rest if rest > 0 else 1.0
            placed = RouteVariant(name, current.model, target_version, percent)
            variants = [replace(v, weight=v.weight * scale) if v.name != name else placed for v in current.variants]
            if current.variant(name) is None:
                variants.append(placed)
            shadow = None if current.shadow_version == target_version else current.shadow_version
            default = f"{current.model}-v{target_version}"
            run, drawn = _experiment_and_salt(current, experiment, salt, default)
            detail = f"deploy {current.model} v{target_version} as {name!r} at {percent:g}%"
            if shadow != current.shadow_version:
                detail += " (was the shadow)"
            target = replace(current, variants=tuple(variants), shadow_version=shadow, experiment=run, salt=drawn)
            return target, detail

        return self._change_route(endpoint, RouteAction.DEPLOY, actor, build)

    def set_shadow(
        self,
        endpoint: str,
        version: VersionRef | None,
        *,
        actor: str,
        model: str | None = None,
        experiment: str | None = None,
    ) -> Route:
        """Score `version` beside the live variants on every request of the endpoint (logged, never returned);
        None removes the shadow. An endpoint without a route gets its default made explicit first."""
        if model is not None and model != ENDPOINT_MODELS.get(endpoint, model):
            raise _wrong_model(endpoint, model)

        def build(session: Session, current: Route) -> tuple[Route | None, str]:
            if version is None:
                return replace(current, shadow_version=None), "shadow removed"
            shadow = self._routable_version(session, current.model, version, "shadow")
            name, drawn = _experiment_and_salt(current, experiment, None, f"{current.model}-v{shadow}")
            target = replace(current, shadow_version=shadow, experiment=name, salt=drawn)
            return target, f"shadow {current.model} v{shadow}"

        return self._change_route(endpoint, RouteAction.SHADOW, actor, build)

    def clear_route(self, endpoint: str, *, actor: str) -> Route:
        """Remove the endpoint's route: its production version answers everything again (variant `production`)."""
        return self._change_route(endpoint, RouteAction.CLEAR, actor, lambda _s, _c: (None, "route cleared"))

    def rollback_route(self, endpoint: str, *, actor: str) -> Route:
        """Restore the route the newest change replaced (experiment and salt included, so users go back to the
        variants they had). Rolling back again goes one step further back; past the first route, the default.

        Versions archived since are restored as they were (a rollback must not be blocked in an emergency), with
        a warning in the log and the audit detail. Raises `NotFoundError` when there is nothing to roll back to.
        """
        return self._change_route(endpoint, RouteAction.ROLLBACK, actor, None)

    def _change_route(
        self,
        endpoint: str,
        action: RouteAction,
        actor: str,
        build: Callable[[Session, Route], tuple[Route | None, str]] | None,
    ) -> Route:
        """One route change in one transaction: lock the endpoint, build the new route from the current one,
        validate it, write routes/route_variants, a route_history revision and an audit row."""
        endpoint = _valid_endpoint(endpoint)
        actor = _non_empty(actor, "actor")
        with self._session() as session:
            self._lock_route(session, endpoint)
            current = self._current_route(session, endpoint)
            head = session.scalars(
                select(RouteHistoryRow).filter_by(endpoint=endpoint).order_by(RouteHistoryRow.revision.desc()).limit(1)
            ).first()
            if build is None:
                target, previous, detail = self._rollback_target(session, current, head)
            else:
                target, detail = build(session, current)
                previous = head.revision if head is not None else 0
                if target is None and not current.stored:
                    return current  # clearing the default route
                if target is not None and current.stored and target.document() == current.document():
                    return current  # nothing changes: no revision, no audit row
            if target is not None:
                target = self._validated(session, target, current, allow_archived=action is RouteAction.ROLLBACK)
                detail = _archived_note(session, target, detail)
            revision = (head.revision if head is not None else 0) + 1
            now = datetime.now(UTC)
            stored = session.get(RouteRow, endpoint)
            if stored is not None:
                session.delete(stored)
                session.flush()  # variants leave before new ones with the same names and positions arrive
            if target is not None:
                session.add(_route_row(target, revision, now, actor))
            document = target.document() if target is not None else None
            session.add(
                RouteHistoryRow(
                    endpoint=endpoint,
                    revision=revision,
                    action=action.value,
                    route=document,
                    previous_revision=previous,
                    at=now,
                    actor=actor,
                )
            )
            before = current.document() if current.stored else None
            _audit_route(session, endpoint, revision, action, actor, before, document, detail)
            session.flush()
            result = self._current_route(session, endpoint)
        log.info(
            "route changed",
            extra={"endpoint": endpoint, "action": action.value, "revision": revision, "detail": detail},
        )
        return result

    def _rollback_target(
        self, session: Session, current: Route, head: RouteHistoryRow | None
    ) -> tuple[Route | None, int | None, str]:
        """The route to restore, the revision a further rollback would restore, and the audit detail."""
        back_to = head.previous_revision if head is not None else None
        if head is None or back_to is None:
            raise NotFoundError(f"endpoint {current.endpoint!r} has no earlier route to roll back to")
        if back_to == 0:
            return None, None, f"rollback from revision {head.revision} to the default route (production version)"
        earlier = session.scalars(select(RouteHistoryRow).filter_by(endpoint=current.endpoint, revision=back_to)).one()
        detail = f"rollback from revision {head.revision} to revision {back_to}"
        if earlier.route is None:
            return None, earlier.previous_revision, detail + " (the default route)"
        restored = _route_from_document(current.endpoint, earlier.route, back_to, earlier.at, earlier.actor)
        return restored, earlier.previous_revision, detail

    def _lock_route(self, session: Session, endpoint: str) -> None:
        """Serialise changes of one endpoint's route (SQLite: BEGIN IMMEDIATE already did)."""
        if session.get_bind().dialect.name == "postgresql":
            key = zlib.crc32(f"journey-route:{self.schema}:{endpoint}".encode())
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    @staticmethod
    def _change_token(session: Session) -> int:
        return int(session.scalar(select(func.max(AuditRow.id))) or 0)

    def _current_route(self, session: Session, endpoint: str) -> Route:
        row = session.get(RouteRow, endpoint, populate_existing=True)
        if row is not None:
            return row.detached()
        model = ENDPOINT_MODELS[endpoint]
        head = session.scalars(
            select(RouteHistoryRow).filter_by(endpoint=endpoint).order_by(RouteHistoryRow.revision.desc()).limit(1)
        ).first()
        production = session.scalars(select(ModelVersionRow).filter_by(name=model, stage=Stage.PRODUCTION)).first()
        variants = (RouteVariant(DEFAULT_VARIANT, model, production.version, 100.0),) if production else ()
        return Route(
            endpoint=endpoint,
            model=model,
            variants=variants,
            experiment=None,
            salt="",
            revision=head.revision if head is not None else 0,
            updated_at=head.at if head is not None else None,
            updated_by=head.actor if head is not None else None,
            stored=False,
        )

    def _routable_version(self, session: Session, model: str, version: VersionRef, field: str) -> int:
        """A version number that exists and is not archived, from a number, 'latest' or 'production'."""
        rows = builtins.list(session.scalars(select(ModelVersionRow).filter_by(name=model)))
        try:
            row = _pick(rows, model, version, self.location)
        except NotFoundError as exc:
            raise InvalidInputError(str(exc), field=field, value=version) from exc
        if row.stage == Stage.ARCHIVED:
            raise InvalidInputError(
                f"{model} version {row.version} is archived and cannot take traffic; promote or register another",
                field=field,
                value=row.version,
            )
        return row.version

    def _validated(self, session: Session, route: Route, current: Route, *, allow_archived: bool) -> Route:
        """`route` checked (see the module docstring), with each version that was not already in the current
        route re-hashed in the model store, as promote does: a version serving could not load never gets traffic."""
        model = ENDPOINT_MODELS[route.endpoint]
        stages = {row.version: row.stage for row in session.scalars(select(ModelVersionRow).filter_by(name=model))}
        if not route.variants:
            raise InvalidInputError(f"a route of {route.endpoint} needs at least one variant", field="variants")
        if len(route.variants) > MAX_VARIANTS:
            raise InvalidInputError(
                f"a route has at most {MAX_VARIANTS} variants, got {len(route.variants)}",
                field="variants",
                value=len(route.variants),
            )
        seen: set[str] = set()
        for v in route.variants:
            if not isinstance(v.name, str) or not _VARIANT.match(v.name):
                raise InvalidInputError(
                    f"invalid variant name {v.name!r}: lower-case letters, digits, '-' and '_', at most 32",
                    field="variant",
                    value=v.name,
                )
            if v.name in seen:
                raise InvalidInputError(f"variant name {v.name!r} appears twice", field="variant", value=v.name)
            seen.add(v.name)
            if v.model != model:
                raise _wrong_model(route.endpoint, v.model)
            _check_weight(v.weight)
            self._check_version(stages, model, v.version, "version", allow_archived)
        if route.total_weight <= 0:
            raise InvalidInputError(
                f"the weights of {route.endpoint}'s variants sum to 0: at least one must be positive",
                field="weight",
                value=0,
            )
        if route.shadow_version is not None:
            self._check_version(stages, model, route.shadow_version, "shadow", allow_archived)
            if any(v.version == route.shadow_version for v in route.variants):
                raise InvalidInputError(
                    f"version {route.shadow_version} is a live variant of {route.endpoint}; it cannot also be "
                    "the shadow",
                    field="shadow",
                    value=route.shadow_version,
                )
        experiment = route.experiment
        if not isinstance(experiment, str) or not _NAME.match(experiment):
            raise InvalidInputError(
                f"invalid experiment name {experiment!r}: lower-case letters, digits, '-', '_', '.', at most 63",
                field="experiment",
                value=experiment,
            )
        if not isinstance(route.salt, str) or not _SALT.match(route.salt):
            raise InvalidInputError(
                f"invalid salt {route.salt!r}: 1 to 64 printable characters without spaces",
                field="salt",
                value=route.salt,
            )
        known = {v.version for v in current.variants} | {current.shadow_version}
        entering = ({v.version for v in route.variants} | {route.shadow_version}) - known
        for version in sorted(v for v in entering if v is not None):
            self.artifact_path(self._resolve(session, model, version).detached())
        return replace(route, model=model, variants=tuple(replace(v, weight=float(v.weight)) for v in route.variants))

    @staticmethod
    def _check_version(
        stages: Mapping[int, str], model: str, version: object, field: str, allow_archived: bool
    ) -> None:
        if not isinstance(version, int) or isinstance(version, bool) or version not in stages:
            known = ", ".join(f"{v} ({stage})" for v, stage in sorted(stages.items())) or "none"
            raise InvalidInputError(
                f"{model} has no version {version!r}; versions: {known}", field=field, value=version
            )
        if stages[version] == Stage.ARCHIVED and not allow_archived:
            raise InvalidInputError(
                f"{model} version {version} is archived and cannot take traffic; promote or register another",
                field=field,
                value=version,
            )

    def artifact_path(self, mv: ModelVersion) -> Path:
        """The version's ONNX file in the BentoML store, after checking it still has the registered SHA-256.

        This is what serving loads. A file changed (or removed) in the store raises `TamperedArtifactError`; a
        model missing from the store altogether (usually another `JOURNEY_DATA_DIR`) raises `NotFoundError`.
        """
        store = self._model_store()
        from bentoml.exceptions import NotFound

        try:
            model = store.get(mv.bento_tag)
        except NotFound as exc:
            raise NotFoundError(
                f"{mv.name} version {mv.version}: BentoML model {mv.bento_tag} is not in the store "
                f"{self.model_store_dir}"
            ) from exc
        path = Path(model.path_of(ARTIFACT_FILENAME))
        actual = sha256_of(path) if path.is_file() else "missing"
        if actual != mv.onnx_sha256:
            raise TamperedArtifactError(
                f"{mv.name} version {mv.version}: {path} has SHA-256 {actual}, registered {mv.onnx_sha256}; "
                "the stored model was modified and will not be served",
                path=path,
                expected=mv.onnx_sha256,
                actual=actual,
            )
        return path

    def _resolve(self, session: Session, name: str, version: VersionRef) -> ModelVersionRow:
        rows = builtins.list(session.scalars(select(ModelVersionRow).filter_by(name=name)))
        return _pick(rows, name, version, self.location)


# ---------------------------------------------------------------------------------------------------------- helpers


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


def _pick(rows: builtins.list[ModelVersionRow], name: str, version: VersionRef, where: str) -> ModelVersionRow:
    ref = parse_version_ref(version)
    if not rows:
        raise ModelVersionNotFoundError(f"no model named {name!r} in the registry at {where}", name=name, version=ref)
    if ref == "latest":
        return max(rows, key=lambda r: r.version)
    found = [r for r in rows if (r.stage == ref if ref == Stage.PRODUCTION.value else r.version == ref)]
    if not found:
        known = ", ".join(f"{r.version} ({r.stage})" for r in sorted(rows, key=lambda r: r.version))
        what = "no production version" if ref == Stage.PRODUCTION.value else f"no version {ref}"
        raise ModelVersionNotFoundError(f"model {name!r} has {what}; versions: {known}", name=name, version=ref)
    return found[0]


def _bentoml_models() -> ModuleType:
    """`bentoml.models`, imported on first use (BentoML is slow to import and most registry calls never need it).

    Two process-wide adjustments, both overridable: usage tracking is off unless BENTOML_DO_NOT_TRACK says
    otherwise (a registry must not post events to bentoml.com on every save), and BentoML 1.4.39's import-time
    deprecation warning from pathspec (`GitWildMatchPattern`), which is not ours to fix, is silenced for the import.
    """
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*GitWildMatchPattern", category=DeprecationWarning)
        import bentoml.models
    return bentoml.models


def _add_audit(
    session: Session,
    kind: AuditKind,
    action: str,
    name: str,
    version: int,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: str,
) -> None:
    session.add(
        AuditRow(
            at=datetime.now(UTC),
            actor=actor,
            action=action,
            name=name,
            version=version,
            before=before,
            after=after,
            detail=detail,
            kind=kind.value,
        )
    )


def _audit(
    session: Session,
    row: ModelVersionRow,
    action: str,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: str,
) -> None:
    _add_audit(session, AuditKind.MODEL, action, row.name, row.version, actor, before, after, detail)


def _audit_route(
    session: Session,
    endpoint: str,
    revision: int,
    action: RouteAction,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: str,
) -> None:
    _add_audit(session, AuditKind.ROUTE, f"route_{action.value}", endpoint, revision, actor, before, after, detail)


def _route_row(route: Route, revision: int, at: datetime, actor: str) -> RouteRow:
    assert route.experiment is not None  # validated
    return RouteRow(
        endpoint=route.endpoint,
        model=route.model,
        experiment=route.experiment,
        salt=route.salt,
        shadow_version=route.shadow_version,
        revision=revision,
        updated_at=at,
        updated_by=actor,
        variants=[
            RouteVariantRow(
                endpoint=route.endpoint, position=i, name=v.name, model=v.model, version=v.version, weight=v.weight
            )
            for i, v in enumerate(route.variants)
        ],
    )


def _route_from_document(
    endpoint: str, document: Mapping[str, Any], revision: int, at: datetime | None, actor: str | None
) -> Route:
    """A route as `Route.document()` stored it (history rows, audit before/after)."""
    model = str(document["model"])
    return Route(
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


def _archived_note(session: Session, route: Route, detail: str) -> str:
    """The detail, plus a warning when the route serves archived versions (possible after a rollback only)."""
    versions = {v.version for v in route.variants} | ({route.shadow_version} if route.shadow_version else set())
    archived = sorted(
        session.scalars(
            select(ModelVersionRow.version).filter(
                ModelVersionRow.name == route.model,
                ModelVersionRow.stage == Stage.ARCHIVED,
                ModelVersionRow.version.in_(versions),
            )
        )
    )
    if not archived:
        return detail
    log.warning("route serves archived versions", extra={"endpoint": route.endpoint, "versions": archived})
    return f"{detail}; archived versions in the route: {', '.join(map(str, archived))}"


def _experiment_and_salt(current: Route, experiment: str | None, salt: str | None, default: str) -> tuple[str, str]:
    """The experiment a change runs under, and its salt: kept while the experiment stays the same (users keep
    their variants), drawn afresh for a new one (an independent split, no carry-over from the last test)."""
    name = experiment or current.experiment or default
    if salt is not None:
        return name, salt
    if current.stored and current.experiment == name and current.salt:
        return name, current.salt
    return name, secrets.token_hex(8)


def _valid_endpoint(endpoint: str) -> str:
    if endpoint not in ENDPOINT_MODELS:
        known = ", ".join(ENDPOINT_MODELS)
        raise InvalidInputError(
            f"unknown endpoint {endpoint!r}; routed endpoints: {known}", field="endpoint", value=endpoint
        )
    return endpoint


def _wrong_model(endpoint: str, model: str) -> InvalidInputError:
    expected = ENDPOINT_MODELS.get(endpoint)
    return InvalidInputError(f"{endpoint} serves {expected} versions, not {model!r}", field="model", value=model)


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        raise InvalidInputError(f"a weight must be a finite number >= 0, got {weight!r}", field="weight", value=weight)
    return float(weight)


def _percent(weight: object) -> float:
    value = _check_weight(weight)
    if value > 100:
        raise InvalidInputError(
            f"a deploy weight is a percentage (0..100), got {weight!r}", field="weight", value=weight
        )
    return value


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _staged_artifact(source: Path, tmp: Path, expected_sha256: str) -> tuple[Path, str]:
    """Copy `source` aside, then hash and load the copy: what was checked is what gets stored, even if the
    original changes in between. Returns the copy and its SHA-256."""
    expected = expected_sha256.strip().lower()
    if not _SHA256.match(expected):
        raise InvalidInputError(
            f"expected_sha256 must be 64 hex digits, got {expected_sha256!r}",
            field="onnx_sha256",
            value=expected_sha256,
        )
    if not source.is_file():
        raise InvalidInputError(f"ONNX file {source} does not exist", field="onnx_path", value=str(source))
    staged = tmp / ARTIFACT_FILENAME
    shutil.copyfile(source, staged)
    actual = sha256_of(staged)
    if actual != expected:
        raise TamperedArtifactError(
            f"{source} has SHA-256 {actual} but the exporter wrote {expected}: the file changed after export; "
            "nothing was registered",
            path=source,
            expected=expected,
            actual=actual,
        )
    _check_onnx(staged, source)
    return staged, actual


def _check_onnx(path: Path, shown_as: Path) -> None:
    """ONNX must parse and pass the checker, and hold its weights inline: the hash covers one file only."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
        if any(uses_external_data(tensor) for tensor in model.graph.initializer):
            raise InvalidInputError(
                f"{shown_as} keeps weights in a side file; export with external data off so one file is the model",
                field="onnx_path",
                value=str(shown_as),
            )
        onnx.checker.check_model(str(path))  # by path: the checker refuses in-memory models over 2 GB
    except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
        reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise InvalidInputError(
            f"{shown_as} is not a loadable ONNX model ({reason}); nothing was registered",
            field="onnx_path",
            value=str(shown_as),
        ) from exc


def git_commit() -> str | None:
    """The checkout's commit (best effort: None outside a git repository or without git)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _valid_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: lower-case letters, digits, '-', '_', '.', alphanumeric at both ends, "
            "at most 63 characters",
            field="name",
            value=name,
        )
    return name


def _valid_enum(kind: type[E], value: str, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise InvalidInputError(f"unknown {field} {value!r}; known: {known}", field=field, value=value) from None


def _non_empty(value: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{field} must be a non-empty string, got {value!r}", field=field, value=value)
    return value.strip()


def _json_document(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    """A plain JSON object: NumPy scalars and arrays become numbers and lists, paths and times strings, NaN and
    infinities null (PostgreSQL's JSONB refuses them, and an undefined metric is better stored as unknown)."""

    def convert(obj: object) -> object:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if isinstance(obj, Path | datetime):
            return str(obj) if isinstance(obj, Path) else obj.isoformat()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{field} must be a mapping, got {type(value).__name__}", field=field)
    try:
        document: dict[str, Any] = json.loads(json.dumps(dict(value), default=convert), parse_constant=lambda _c: None)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{field} is not JSON serialisable: {exc}", field=field) from exc
    return document
