"""The registry's tables as SQLAlchemy rows; each row turns into its value object with `detached()`.

    model_versions   one row per registered version: version 1, 2, 3... per name, stage, hash, BentoML tag, metrics
    audit_log        one append-only row per change (register, promote, archive, attach_report; route changes,
                     kind `route`), who, before/after
    routes           per endpoint: the variants (model version + weight) that answer, a shadow version, the
                     experiment and its salt (`route_variants` holds the variants in their fixed order)
    route_history    every route change as a numbered revision per endpoint, so `rollback_route` can restore the
                     route a change replaced

One set of models serves both backends: the tables have no schema, and PostgreSQL maps `None` to
`registry_schema` at execution (`schema_translate_map`, see `journey.registry.database`). These models describe the
newest migration; a test compares them with the migrated schema, so the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from journey.registry.models import (
    AuditEntry,
    AuditKind,
    ModelVersion,
    Route,
    RouteAction,
    RouteRevision,
    RouteVariant,
    Stage,
)


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
        CheckConstraint("framework IN ('xgboost', 'pytorch', 'onnx')", name="framework"),
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
    variants: Mapped[list[RouteVariantRow]] = relationship(
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
            route = Route.from_document(self.endpoint, self.route, self.revision, self.at, self.actor)
        return RouteRevision(
            endpoint=self.endpoint,
            revision=self.revision,
            action=RouteAction(self.action),
            route=route,
            previous_revision=self.previous_revision,
            at=self.at,
            actor=self.actor,
        )
