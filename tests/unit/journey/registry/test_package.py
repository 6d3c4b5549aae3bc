"""The registry package's facade: callers import everything from `journey.registry`, whatever module defines it."""

from __future__ import annotations

import importlib

import journey.registry

# What code and tests outside the package import from `journey.registry` (the CLI, serving, training, Alembic's env).
USED_OUTSIDE = [
    "Registry",
    "ModelVersion",
    "Stage",
    "Route",
    "RouteVariant",
    "RouteRevision",
    "RouteAction",
    "AuditKind",
    "TamperedArtifactError",
    "ModelVersionRow",
    "RouteVariantRow",
    "Base",
    "HEAD_REVISION",
    "MIGRATIONS_DIR",
    "DEFAULT_VARIANT",
    "MAX_VARIANTS",
    "alembic_config",
    "create_registry_engine",
    "migration_lock_key",
    "registry_schema",
    "parse_version_ref",
    "sha256_of",
    "routes_admin",
]


def test_every_name_in_all_is_importable_from_the_package() -> None:
    missing = [name for name in journey.registry.__all__ if not hasattr(journey.registry, name)]
    assert missing == []


def test_the_names_callers_use_are_still_importable_from_the_package() -> None:
    importlib.import_module("journey.registry.routes_admin")
    assert [name for name in USED_OUTSIDE if not hasattr(journey.registry, name)] == []


def test_the_registry_facade_keeps_its_public_methods() -> None:
    methods = {name for name in vars(journey.registry.Registry) if not name.startswith("_")}
    assert methods >= {
        "location",
        "model_store_dir",
        "close",
        "migrate",
        "current_revision",
        "register",
        "attach_report",
        "promote",
        "archive",
        "get",
        "list",
        "audit",
        "artifact_path",
        "change_token",
        "route",
        "route_snapshot",
        "route_history",
        "set_route",
        "deploy",
        "set_shadow",
        "clear_route",
        "rollback_route",
    }
