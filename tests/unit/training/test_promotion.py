"""The promotion policy the CLI enforces from a version's stored gate: refuse, allow, force with a reason."""

from __future__ import annotations

import pytest

from journey.errors import InvalidInputError
from training.promotion import GateRefusedError, check_override, promotion_note

FAILED = {"gate": {"passed": False, "reason": "hit_rate@20: gru4rec 0.186 vs item_to_item_covisitation 0.295"}}
PASSED = {"gate": {"passed": True, "reason": "roc_auc: xgboost 0.81 vs logistic_regression 0.77"}}


def test_a_failed_gate_is_refused_naming_the_baseline_and_how_to_force_it() -> None:
    with pytest.raises(GateRefusedError) as caught:
        promotion_note("next_item v3", FAILED, force=False, reason=None, override="--force --reason TEXT")
    message = str(caught.value)
    assert "next_item v3 did not pass the promotion gate" in message
    assert "item_to_item_covisitation 0.295" in message and "--force --reason TEXT" in message
    assert caught.value.exit_code == 2


def test_a_forced_promotion_carries_the_gate_and_the_reason() -> None:
    note = promotion_note("next_item v3", FAILED, force=True, reason="incident 42: cold start", override="")
    assert note.startswith("FORCED past a failed gate (hit_rate@20")
    assert note.endswith("reason: incident 42: cold start")


def test_a_passed_gate_and_a_version_from_before_the_gate_are_allowed() -> None:
    assert (
        promotion_note("m v1", PASSED, force=False, reason=None, override="")
        == f"gate passed: {PASSED['gate']['reason']}"
    )
    assert "registered before the gate" in promotion_note(
        "m v1", {"roc_auc": 0.8}, force=False, reason=None, override=""
    )
    assert promotion_note("m v1", PASSED, force=True, reason="why", override="").endswith("forced anyway, reason: why")


@pytest.mark.parametrize(("force", "reason", "expected"), [(False, None, None), (True, " why ", "why")])
def test_force_and_reason_go_together(force: bool, reason: str | None, expected: str | None) -> None:
    assert check_override(force, reason, "--force") == expected


@pytest.mark.parametrize(
    ("force", "reason", "words"),
    [(True, None, "needs --reason"), (True, "  ", "needs --reason"), (False, "why", "goes with --force")],
)
def test_a_force_without_reason_or_a_reason_without_force_is_refused(
    force: bool, reason: str | None, words: str
) -> None:
    with pytest.raises(InvalidInputError, match=words) as caught:
        check_override(force, reason, "--force")
    assert caught.value.field == "--reason"
    with pytest.raises(InvalidInputError):
        promotion_note("m v1", FAILED, force=True, reason=None, override="")
