"""The promotion policy as the CLI enforces it: a version whose stored gate failed is neither promoted nor deployed,
unless forced with a reason, which goes into the registry's audit log.

    check_override(force, reason, flag)            the --force/--reason pair, validated before any work
    promotion_note(version, metrics, force=..., reason=..., override=...)
                                                   the audit note of the change, or GateRefusedError (exit code 2)

`gate.py` computes the gate when a model is trained and `pipeline.py` stores it in the version's metrics
(metrics["gate"], see `GateResult.as_dict`); the registry only keeps it (`journey` never imports `training`); this
module reads it back. It imports nothing heavy, so `journey models promote` and `journey deploy` stay fast.

A version registered before the gate existed has no stored result: it is allowed (a rollback to it must keep
working), and the note says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from journey.errors import ConflictError, InvalidInputError

GATE_KEY: Final = "gate"


class GateRefusedError(ConflictError):
    """The version did not beat the best baseline on the validation days (exit code 2, HTTP 409)."""


def check_override(force: bool, reason: str | None, flag: str) -> str | None:
    """The reason of a forced change (None when not forced); a force without a reason, or a reason without a force,
    is refused before anything is trained or changed."""
    text = (reason or "").strip()
    if force and not text:
        raise InvalidInputError(f"{flag} needs --reason TEXT (recorded in the audit log)", field="--reason")
    if text and not force:
        raise InvalidInputError(f"--reason goes with {flag}", field="--reason", value=reason)
    return text or None


def stored_gate(metrics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The gate result a version was registered with, or None for a version registered before the gate."""
    gate = metrics.get(GATE_KEY)
    return gate if isinstance(gate, Mapping) else None


def promotion_note(version: str, metrics: Mapping[str, Any], *, force: bool, reason: str | None, override: str) -> str:
    """The audit note of promoting or deploying `version` ("next_item v3"); raises GateRefusedError when its stored
    gate failed and the change is not forced with a reason (`override` names the options that would force it)."""
    if force and not (reason or "").strip():
        raise InvalidInputError("a forced promotion needs a reason (recorded in the audit log)", field="--reason")
    gate = stored_gate(metrics)
    if gate is None:
        note = "no promotion gate stored (registered before the gate)"
    elif gate.get("passed") is True:
        note = f"gate passed: {gate.get('reason', '')}"
    elif not force:
        why = gate.get("reason", "no reason stored")
        raise GateRefusedError(
            f"{version} did not pass the promotion gate on the validation days: {why}. Nothing changed. To go ahead "
            f"anyway: {override} (recorded in the audit log)"
        )
    else:
        return f"FORCED past a failed gate ({gate.get('reason', 'no reason stored')}); reason: {reason}"
    return f"{note}; forced anyway, reason: {reason}" if force and reason else note
