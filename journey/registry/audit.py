"""The audit log: one append-only row per change, written in the transaction of the change it records.

Model changes (register, promote, archive, attach_report) name the model and version; route changes (kind `route`,
action `route_<set|deploy|shadow|clear|rollback>`) name the endpoint and the route revision, with whole routes as
before/after. Because every change adds a row, the newest audit id doubles as the registry's change token: serving
polls it and re-reads the routes when it moves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from journey.registry.models import AuditKind, RouteAction, valid_enum
from journey.registry.orm import AuditRow, ModelVersionRow


def record(
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
    """Add one audit row to the session: it commits, or rolls back, with the change it records."""
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


def record_model_change(
    session: Session,
    row: ModelVersionRow,
    action: str,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: str,
) -> None:
    record(session, AuditKind.MODEL, action, row.name, row.version, actor, before, after, detail)


def record_route_change(
    session: Session,
    endpoint: str,
    revision: int,
    action: RouteAction,
    actor: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    detail: str,
) -> None:
    record(session, AuditKind.ROUTE, f"route_{action.value}", endpoint, revision, actor, before, after, detail)


def change_token(session: Session) -> int:
    """The newest audit id (0: no change yet): one indexed query, cheap enough for serving to poll every second."""
    return int(session.scalar(select(func.max(AuditRow.id))) or 0)


def query(name: str | None, version: int | None, limit: int, kind: AuditKind | str | None) -> Select[AuditRow]:
    """The newest `limit` rows first, optionally of one kind, name and version; validated before any session opens,
    so a bad `kind` is refused without touching the database."""
    statement = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if kind is not None:
        statement = statement.filter_by(kind=valid_enum(AuditKind, kind, "kind").value)
    if name is not None:
        statement = statement.filter_by(name=name)
    if version is not None:
        statement = statement.filter_by(version=version)
    return statement
