"""The model registry: which ONNX model versions exist, which one serves (production), and who changed what.

    model_versions   one row per registered version: version 1, 2, 3... per name, stage, hash, BentoML tag, metrics
    audit_log        one append-only row per change (register, promote, archive, attach_report; route changes,
                     kind `route`), who, before/after
    routes           per endpoint: the variants (model version + weight) that answer, a shadow version, the
                     experiment and its salt (`route_variants` holds the variants in their fixed order)
    route_history    every route change as a numbered revision per endpoint, so `rollback_route` can restore the
                     route a change replaced

The rows live in SQL (SQLite locally, a PostgreSQL schema in prod), the bytes in BentoML's model store, and the
SHA-256 in the row ties the two together. Callers hold one object, `Registry`; the rest of the public API is the
vocabulary it speaks, all importable from here. One concern per module, each docstring telling its part of the
design; listed top-down, each module imports only modules below it, so there is no cycle to dodge:

    routes_admin.py   route operations as people type them (the CLI and the admin endpoints share the parsing)
    facade.py         Registry: owns the engine and the transactions (one per operation) and delegates
    routes.py         route reads, snapshot and history; set, deploy, shadow, clear, rollback through one change path
    route_rules.py    what a valid route is: variants, weights, versions, shadow, experiment, salt
    versions.py       register, promote, archive, attach_report and the reads: stages and their validation
    audit.py          the audit row written with each change, the audit query, the change token serving polls
    artifacts.py      the trust anchor: staging and ONNX checks on the way in, BentoML store, re-hash on the way out
    database.py       engines (PostgreSQL schema, SQLite BEGIN IMMEDIATE), Alembic config, upgrade to head
    orm.py            the SQLAlchemy rows of the five tables; `detached()` turns each into its value object
    errors.py         TamperedArtifactError, ModelVersionNotFoundError (kinds of `journey.errors`)
    models.py         stages, frameworks, audit and route-action kinds, the detached value objects, version refs
    migrations/       Alembic environment (imports database and orm) and versions 0001, 0002, ... (shipped)
"""

from __future__ import annotations

from journey.registry.artifacts import ARTIFACT_FILENAME, git_commit, sha256_of
from journey.registry.database import (
    HEAD_REVISION,
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    create_registry_engine,
    migration_lock_key,
    registry_schema,
)
from journey.registry.errors import ModelVersionNotFoundError, TamperedArtifactError
from journey.registry.facade import Registry
from journey.registry.models import (
    AuditEntry,
    AuditKind,
    Framework,
    ModelVersion,
    Route,
    RouteAction,
    RouteRevision,
    RouteSnapshot,
    RouteVariant,
    Stage,
    VersionRef,
    parse_version_ref,
)
from journey.registry.orm import (
    NAMING_CONVENTION,
    AuditRow,
    Base,
    JSONDocument,
    ModelVersionRow,
    RouteHistoryRow,
    RouteRow,
    RouteVariantRow,
    UTCDateTime,
)
from journey.registry.route_rules import MAX_VARIANTS
from journey.registry.routes import DEFAULT_VARIANT

__all__ = [
    "ARTIFACT_FILENAME",
    "DEFAULT_VARIANT",
    "HEAD_REVISION",
    "MAX_VARIANTS",
    "MIGRATIONS_DIR",
    "NAMING_CONVENTION",
    "VERSION_TABLE",
    "AuditEntry",
    "AuditKind",
    "AuditRow",
    "Base",
    "Framework",
    "JSONDocument",
    "ModelVersion",
    "ModelVersionNotFoundError",
    "ModelVersionRow",
    "Registry",
    "Route",
    "RouteAction",
    "RouteHistoryRow",
    "RouteRevision",
    "RouteRow",
    "RouteSnapshot",
    "RouteVariant",
    "RouteVariantRow",
    "Stage",
    "TamperedArtifactError",
    "UTCDateTime",
    "VersionRef",
    "alembic_config",
    "create_registry_engine",
    "git_commit",
    "migration_lock_key",
    "parse_version_ref",
    "registry_schema",
    "sha256_of",
]
