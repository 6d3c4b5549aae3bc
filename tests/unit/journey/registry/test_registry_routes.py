"""Routes in the model registry (embedded profile): defaults, deploy, set, shadow, clear, rollback, audit, migration."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from journey.errors import InvalidInputError, NotFoundError
from journey.registry import (
    DEFAULT_VARIANT,
    HEAD_REVISION,
    MAX_VARIANTS,
    AuditKind,
    Registry,
    RouteAction,
    RouteVariant,
    TamperedArtifactError,
    alembic_config,
    create_registry_engine,
)
from journey.settings import Settings
from tests.factories.models import tiny_onnx

PP = "purchase_propensity"
NA = "next_action"
EP = "predict_purchase"


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    with Registry(settings) as reg:
        yield reg


@pytest.fixture
def versions(registry: Registry, tmp_path: Path) -> Registry:
    """purchase_propensity v1 (production), v2, v3, v4 (staging); next_action v1 (production)."""
    path, sha = tiny_onnx(tmp_path / "model.onnx")
    for name, count, framework in ((PP, 4, "xgboost"), (NA, 1, "pytorch")):
        for _ in range(count):
            registry.register(
                name=name,
                onnx_path=path,
                expected_sha256=sha,
                framework=framework,
                feature_service=f"{name}_v1",
                metrics={},
                data_window={},
                params={},
                actor="alice",
            )
        registry.promote(name, 1, "alice")
    return registry


def split(registry: Registry, endpoint: str = EP) -> list[tuple[str, int, float]]:
    return [(v.name, v.version, round(v.weight, 9)) for v in registry.route(endpoint).variants]


def route_audit(registry: Registry) -> list[Any]:
    return registry.audit(kind=AuditKind.ROUTE)


# --------------------------------------------------------------------------------------------------------- default


def test_an_endpoint_without_a_route_is_answered_by_its_production_version_as_variant_production(
    versions: Registry,
) -> None:
    route = versions.route(EP)
    assert not route.stored and route.revision == 0 and route.shadow_version is None and route.experiment is None
    assert split(versions) == [(DEFAULT_VARIANT, 1, 100.0)] and route.shares() == {DEFAULT_VARIANT: 1.0}


def test_the_default_route_follows_promotions(versions: Registry) -> None:
    versions.promote(PP, 3, "bob")
    assert split(versions) == [(DEFAULT_VARIANT, 3, 100.0)]


def test_an_endpoint_without_route_or_production_version_has_no_variant(registry: Registry) -> None:
    route = registry.route("predict_next_action")
    assert route.model == NA and route.variants == () and not route.stored


# ---------------------------------------------------------------------------------------------------------- deploy


def test_deploy_makes_the_default_explicit_and_gives_the_version_its_percentage(versions: Registry) -> None:
    route = versions.deploy(EP, 2, 10, actor="bob")
    assert route.stored and route.revision == 1 and route.updated_by == "bob"
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert route.experiment == "purchase_propensity-v2" and len(route.salt) == 16


def test_deploy_again_rescales_the_other_variants_keeping_their_relative_weights(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 3, 20, actor="bob")
    assert split(versions) == [("production", 1, 72.0), ("v2", 2, 8.0), ("v3", 3, 20.0)]


def test_deploy_of_a_version_already_in_the_route_updates_its_variant_in_place(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 2, 30, actor="bob")
    assert split(versions) == [("production", 1, 70.0), ("v2", 2, 30.0)]


def test_deploy_to_a_named_variant_replaces_its_version_and_keeps_its_place(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, variant="candidate", actor="bob")
    versions.deploy(EP, 3, 10, variant="candidate", actor="bob")
    assert split(versions) == [("production", 1, 90.0), ("candidate", 3, 10.0)]


def test_deploy_at_100_percent_leaves_the_others_in_place_at_zero(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    route = versions.deploy(EP, 2, 100, actor="bob")
    assert split(versions) == [("production", 1, 0.0), ("v2", 2, 100.0)] and route.shares()["v2"] == 1.0


def test_deploy_keeps_the_salt_within_an_experiment_and_draws_a_new_one_for_a_new_experiment(
    versions: Registry,
) -> None:
    first = versions.deploy(EP, 2, 10, actor="bob")
    same = versions.deploy(EP, 3, 20, actor="bob")
    other = versions.deploy(EP, 3, 20, experiment="ramp-2", actor="bob")
    assert same.experiment == first.experiment and same.salt == first.salt
    assert other.experiment == "ramp-2" and other.salt != first.salt


def test_deploy_of_the_shadow_version_makes_it_live_and_removes_the_shadow(versions: Registry) -> None:
    versions.set_shadow(EP, 2, actor="bob")
    route = versions.deploy(EP, 2, 10, actor="bob")
    assert route.shadow_version is None and split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert "was the shadow" in route_audit(versions)[0].detail


def test_deploy_resolves_latest(versions: Registry) -> None:
    versions.deploy(EP, "latest", 5, actor="bob")
    assert split(versions)[-1] == ("v4", 4, 5.0)


def test_deploy_refuses_a_version_whose_stored_artifact_was_modified(versions: Registry) -> None:
    tiny_onnx(versions.artifact_path(versions.get(PP, 2)), scale=7.0)
    with pytest.raises(TamperedArtifactError):
        versions.deploy(EP, 2, 10, actor="bob")
    assert not versions.route(EP).stored and versions.route_history() == []


# ------------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda r: r.deploy("predict_everything", 2, 10, actor="bob"), "endpoint"),
        (lambda r: r.deploy(EP, 1, 10, model=NA, actor="bob"), "model"),
        (lambda r: r.deploy(EP, 9, 10, actor="bob"), "version"),
        (lambda r: r.deploy(EP, 2, -1, actor="bob"), "weight"),
        (lambda r: r.deploy(EP, 2, math.nan, actor="bob"), "weight"),
        (lambda r: r.deploy(EP, 2, 101, actor="bob"), "weight"),
        (lambda r: r.deploy(EP, 2, 10, variant="Not Valid", actor="bob"), "variant"),
        (lambda r: r.deploy(EP, 2, 10, experiment="Bad Name", actor="bob"), "experiment"),
        (lambda r: r.deploy(EP, 2, 10, salt="has space", actor="bob"), "salt"),
        (lambda r: r.deploy(EP, 2, 10, actor=" "), "actor"),
        (lambda r: r.set_route(EP, [], actor="bob"), "variants"),
        (lambda r: r.set_route(EP, [RouteVariant("a", PP, 1, 1), RouteVariant("a", PP, 2, 1)], actor="bob"), "variant"),
        (lambda r: r.set_route(EP, [RouteVariant("a", PP, 1, 0), RouteVariant("b", PP, 2, 0)], actor="bob"), "weight"),
        (lambda r: r.set_route(EP, [RouteVariant("a", NA, 1, 1)], actor="bob"), "model"),
        (lambda r: r.set_route(EP, [RouteVariant("a", PP, 1, 1)], shadow_version=1, actor="bob"), "shadow"),
        (lambda r: r.set_route(EP, [RouteVariant("a", PP, 1, 1)], shadow_version=8, actor="bob"), "shadow"),
        (
            lambda r: r.set_route(EP, [RouteVariant(f"v{i}", PP, 1, 1) for i in range(MAX_VARIANTS + 1)], actor="b"),
            "variants",
        ),
        (lambda r: r.set_shadow(EP, 9, actor="bob"), "shadow"),
    ],
)
def test_bad_route_input_is_refused_naming_the_field_and_nothing_is_written(
    versions: Registry, call: Any, field: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        call(versions)
    assert raised.value.field == field and raised.value.exit_code == 2
    assert versions.route_history() == [] and route_audit(versions) == [] and not versions.route(EP).stored


@pytest.mark.parametrize("change", ["deploy", "variant", "shadow"])
def test_an_archived_version_cannot_take_traffic(versions: Registry, change: str) -> None:
    versions.archive(PP, 2, "bob")
    with pytest.raises(InvalidInputError, match="archived") as raised:
        if change == "deploy":
            versions.deploy(EP, 2, 10, actor="bob")
        elif change == "variant":
            versions.set_route(EP, [RouteVariant("a", PP, 1, 1), RouteVariant("b", PP, 2, 1)], actor="bob")
        else:
            versions.set_shadow(EP, 2, actor="bob")
    assert raised.value.field == ("shadow" if change == "shadow" else "version") and raised.value.value == 2


# ---------------------------------------------------------------------------------------------- set, shadow, clear


def test_set_route_stores_variants_in_the_given_order_with_weights_shadow_and_experiment(versions: Registry) -> None:
    variants = [RouteVariant("control", PP, 2, 3), RouteVariant("candidate", PP, 3, 1)]
    route = versions.set_route(EP, variants, experiment="exp-1", salt="fixed-salt", shadow_version=4, actor="bob")
    assert split(versions) == [("control", 2, 3.0), ("candidate", 3, 1.0)]
    assert route.shares() == {"control": 0.75, "candidate": 0.25}
    assert (route.experiment, route.salt, route.shadow_version) == ("exp-1", "fixed-salt", 4)


def test_setting_the_route_it_already_has_writes_no_revision(versions: Registry) -> None:
    variants = [RouteVariant("control", PP, 2, 3), RouteVariant("candidate", PP, 3, 1)]
    versions.set_route(EP, variants, experiment="exp-1", actor="bob")
    again = versions.set_route(EP, variants, actor="carol")
    assert again.revision == 1 and again.updated_by == "bob" and len(versions.route_history()) == 1


def test_set_shadow_scores_a_version_beside_the_split_and_none_removes_it(versions: Registry) -> None:
    assert versions.set_shadow(EP, 3, actor="bob").shadow_version == 3
    assert split(versions) == [("production", 1, 100.0)]
    assert versions.set_shadow(EP, None, actor="bob").shadow_version is None


def test_clear_route_returns_to_the_production_default_and_is_audited(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    route = versions.clear_route(EP, actor="carol")
    assert not route.stored and route.revision == 2 and split(versions) == [("production", 1, 100.0)]
    entry = route_audit(versions)[0]
    assert (entry.action, entry.actor, entry.after) == ("route_clear", "carol", None)
    assert entry.before is not None and [v["name"] for v in entry.before["variants"]] == ["production", "v2"]


def test_clearing_an_endpoint_without_a_route_changes_nothing(versions: Registry) -> None:
    versions.clear_route(EP, actor="bob")
    assert versions.route_history() == [] and route_audit(versions) == []


def test_routes_of_two_endpoints_are_independent(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    assert not versions.route("predict_next_action").stored
    assert split(versions, "predict_next_action") == [("production", 1, 100.0)]


# -------------------------------------------------------------------------------------------------------- rollback


def test_rollback_restores_the_previous_route_with_its_experiment_and_salt(versions: Registry) -> None:
    before = versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 3, 50, experiment="other", actor="bob")
    restored = versions.rollback_route(EP, actor="carol")
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert (restored.experiment, restored.salt, restored.revision) == (before.experiment, before.salt, 3)
    assert route_audit(versions)[0].action == "route_rollback"


def test_rollbacks_walk_back_through_the_history_to_the_default_then_stop(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 3, 20, actor="bob")
    versions.set_shadow(EP, 4, actor="bob")
    versions.rollback_route(EP, actor="bob")
    assert versions.route(EP).shadow_version is None and len(split(versions)) == 3
    versions.rollback_route(EP, actor="bob")
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert not versions.rollback_route(EP, actor="bob").stored
    with pytest.raises(NotFoundError, match="no earlier route") as raised:
        versions.rollback_route(EP, actor="bob")
    assert raised.value.exit_code == 2


def test_rollback_of_a_clear_restores_the_cleared_route(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.clear_route(EP, actor="bob")
    assert versions.rollback_route(EP, actor="bob").stored
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]


def test_rollback_without_any_change_is_not_found(versions: Registry) -> None:
    with pytest.raises(NotFoundError):
        versions.rollback_route(EP, actor="bob")


def test_rollback_restores_a_route_whose_version_was_archived_since_with_a_warning(
    versions: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 3, 10, actor="bob")
    versions.archive(PP, 2, "bob")
    with caplog.at_level(logging.WARNING, logger="journey.registry"):
        versions.rollback_route(EP, actor="bob")
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]
    assert "archived versions in the route: 2" in route_audit(versions)[0].detail
    assert any("archived" in record.getMessage() for record in caplog.records)


def test_route_history_lists_revisions_with_what_a_rollback_restores(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.deploy(EP, 3, 10, actor="bob")
    versions.rollback_route(EP, actor="bob")
    history = versions.route_history(EP)
    assert [(r.revision, r.action, r.previous_revision) for r in history] == [
        (3, RouteAction.ROLLBACK, 0),
        (2, RouteAction.DEPLOY, 1),
        (1, RouteAction.DEPLOY, 0),
    ]
    assert history[0].route is not None and history[0].route.variants == history[2].route.variants  # type: ignore[union-attr]
    assert [r.revision for r in versions.route_history(EP, oldest_first=True, limit=2)] == [1, 2]


# ----------------------------------------------------------------------------------------------- audit and polling


def test_every_route_change_writes_a_route_audit_row_with_before_and_after(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.set_shadow(EP, 3, actor="carol")
    shadow, deploy = route_audit(versions)
    assert (deploy.kind, deploy.name, deploy.version, deploy.actor) == (AuditKind.ROUTE, EP, 1, "bob")
    assert deploy.before is None and deploy.after is not None and deploy.after["shadow_version"] is None
    assert shadow.before == deploy.after and shadow.after is not None and shadow.after["shadow_version"] == 3
    assert shadow.as_dict()["kind"] == "route"


def test_model_audit_leaves_out_route_rows_unless_asked(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    assert all(e.kind is AuditKind.MODEL for e in versions.audit())
    assert {e.kind for e in versions.audit(kind=None)} == {AuditKind.MODEL, AuditKind.ROUTE}


def test_change_token_grows_with_every_registry_change(versions: Registry) -> None:
    tokens = [versions.change_token()]
    versions.deploy(EP, 2, 10, actor="bob")
    tokens.append(versions.change_token())
    versions.promote(PP, 3, "bob")
    tokens.append(versions.change_token())
    assert tokens == sorted(set(tokens))


def test_route_snapshot_holds_every_endpoint_and_the_current_token(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    snapshot = versions.route_snapshot()
    assert set(snapshot.routes) == {EP, "predict_next_action", "recommend"}
    assert snapshot.token == versions.change_token()
    assert snapshot.routes[EP] == versions.route(EP)


def test_a_stored_route_keeps_its_pinned_version_after_a_promotion(versions: Registry) -> None:
    versions.deploy(EP, 2, 10, actor="bob")
    versions.promote(PP, 2, "bob")  # archives v1, which the route's production variant still names
    assert split(versions) == [("production", 1, 90.0), ("v2", 2, 10.0)]


def test_concurrent_route_changes_get_consecutive_revisions(versions: Registry) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(versions.deploy, EP, 2 + i % 3, 10 + i, actor=f"u{i}") for i in range(6)]
    assert all(f.result().stored for f in futures)
    assert sorted(r.revision for r in versions.route_history(EP)) == list(range(1, 7))
    assert len(route_audit(versions)) == 6


# ------------------------------------------------------------------------------------------------------ migrations


def test_a_0001_database_is_upgraded_in_place_keeping_its_rows(settings: Settings) -> None:
    from alembic import command

    engine = create_registry_engine(settings)  # the file's folder made, BEGIN IMMEDIATE as the registry's
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection, None), "0001")
            connection.execute(
                text(
                    "INSERT INTO model_versions (name, version, framework, onnx_sha256, bento_tag, feature_service, "
                    "metrics, data_window, params, created_at, stage, created_by) VALUES ('purchase_propensity', 1, "
                    "'xgboost', :sha, 'purchase_propensity:v1-x', 'f', '{}', '{}', '{}', '2026-11-01 00:00:00', "
                    "'production', 'alice')"
                ),
                {"sha": "0" * 64},
            )
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, name, version, detail) "
                    "VALUES ('2026-11-01 00:00:00', 'alice', 'promote', 'purchase_propensity', 1, 'old')"
                )
            )
        assert "routes" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    with Registry(settings) as registry:
        assert registry.current_revision() == "0001"
        assert registry.migrate() == HEAD_REVISION == "0003"
        [entry] = registry.audit()
        assert (entry.kind, entry.detail, entry.action) == (AuditKind.MODEL, "old", "promote")
        assert registry.get(PP, "production").version == 1
        assert split(registry) == [("production", 1, 100.0)] and registry.route_history() == []


def test_downgrade_to_0001_and_upgrade_again_keeps_the_model_rows(versions: Registry, settings: Settings) -> None:
    from alembic import command

    versions.deploy(EP, 2, 10, actor="bob")
    before = versions.list()
    with versions._engine.begin() as connection:
        command.downgrade(alembic_config(connection, None), "0001")
    assert versions.current_revision() == "0001"
    with Registry(settings) as again:
        assert again.migrate() == HEAD_REVISION and again.list() == before
        assert not again.route(EP).stored and again.route_history() == []
