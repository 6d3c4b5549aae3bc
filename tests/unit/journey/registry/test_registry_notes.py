"""A promotion's or a deployment's note (the promotion gate's word, a forced change's reason) lands in the audit
detail of the change, in the change's transaction."""

from __future__ import annotations

from pathlib import Path

from journey.registry import Registry, Stage
from journey.settings import Settings
from tests.factories.models import tiny_onnx

NOTE = "FORCED past a failed gate (hit_rate@20: gru4rec 0.186 vs item_to_item_covisitation 0.295); reason: drill"


def _two_versions(registry: Registry, tmp_path: Path) -> None:
    path, sha = tiny_onnx(tmp_path / "m.onnx")
    for _ in range(2):
        registry.register(
            name="next_item",
            onnx_path=path,
            expected_sha256=sha,
            framework="pytorch",
            feature_service="next_item_v1",
            metrics={"gate": {"passed": False}},
            data_window={},
            params={},
            actor="alice",
        )


def test_the_note_of_a_promotion_ends_its_audit_detail(settings: Settings, tmp_path: Path) -> None:
    with Registry(settings) as registry:
        _two_versions(registry, tmp_path)
        assert registry.promote("next_item", 1, "bob", note=NOTE).stage == Stage.PRODUCTION
        registry.promote("next_item", 2, "bob")  # no note: the detail as before
        first, second = registry.audit(name="next_item", version=1)[1], registry.audit(name="next_item", version=2)[0]
    assert first.action == "promote" and first.actor == "bob"
    assert first.detail == f"promoted from staging; {NOTE}"
    assert second.detail == "promoted from staging"


def test_the_note_of_a_deployment_ends_its_route_audit_detail(settings: Settings, tmp_path: Path) -> None:
    with Registry(settings) as registry:
        _two_versions(registry, tmp_path)
        registry.promote("next_item", 1, "bob")
        registry.deploy("recommend", 2, 10, actor="carol", model="next_item", note=NOTE)
        entry = registry.audit(name="recommend", kind="route")[0]
    assert entry.action == "route_deploy" and entry.actor == "carol"
    assert entry.detail == f"deploy next_item v2 as 'v2' at 10%; {NOTE}"
