"""Model versions: numbering, stages and their validation, each change audited in the transaction that makes it.

Stages: a new version is `staging`; `promote` makes it `production` and archives the previous production version of
that name in the same transaction (a partial unique index keeps at most one production version per name even under
concurrent promotions); `archive` retires a version (archiving the production one leaves none: allowed, logged as a
warning). Promoting an archived version is the rollback.

Every function here works inside a session the caller (the `Registry` facade) opened: one transaction per operation.
Input that needs no database is validated before the session opens (`valid_name`, `registration_fields`,
`list_query`), so a bad argument never touches the database (nor migrates it).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from journey.errors import InvalidInputError
from journey.registry import audit
from journey.registry.artifacts import ArtifactStore, git_commit
from journey.registry.errors import ModelVersionNotFoundError
from journey.registry.models import Framework, ModelVersion, Stage, VersionRef, parse_version_ref, valid_enum
from journey.registry.orm import ModelVersionRow

# One logger for the whole package: the registry's log lines keep the name they have always had.
log = logging.getLogger("journey.registry")

# BentoML's tag rule (lower-case alphanumerics and - _ ., alphanumeric at both ends, at most 63): the registry name
# is the BentoML model name, so a name BentoML would refuse is refused before anything is written.
NAME: Final = re.compile(r"^[a-z0-9](?:[-._a-z0-9]{0,61}[a-z0-9])?$")
REGISTER_ATTEMPTS: Final = 5


# -------------------------------------------------------------------------------------------------------- register


def registration_fields(
    *,
    framework: str,
    feature_service: str,
    actor: str,
    metrics: Mapping[str, Any],
    data_window: Mapping[str, Any],
    params: Mapping[str, Any],
    report_path: str | None,
) -> dict[str, Any]:
    """The columns of a new version other than its number, hash and tag, validated (each error names its field)."""
    return {
        "framework": valid_enum(Framework, framework, "framework").value,
        "feature_service": non_empty(feature_service, "feature_service"),
        "created_by": non_empty(actor, "actor"),
        "metrics": _json_document(metrics, "metrics"),
        "data_window": _json_document(data_window, "data_window"),
        "params": _json_document(params, "params"),
        "report_path": report_path,
        "git_commit": git_commit(),
    }


def add_version(session: Session, name: str, sha256: str, fields: dict[str, Any]) -> ModelVersionRow:
    """The next version of `name` (stage `staging`) and its audit row, flushed: the unique (name, version)
    constraint speaks here, as an `IntegrityError` the caller retries, before any file is written."""
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
    audit.record_model_change(session, row, "register", fields["created_by"], None, after, f"framework {row.framework}")
    session.flush()
    return row


def attach_report(
    session: Session, name: str, version: VersionRef, report_path: str, actor: str | None, *, where: str
) -> ModelVersion:
    """See `Registry.attach_report`: the actor defaults to whoever registered the version."""
    row = resolve(session, name, version, where)
    before = {"report_path": row.report_path}
    row.report_path = report_path
    audit.record_model_change(
        session, row, "attach_report", actor or row.created_by, before, {"report_path": report_path}, ""
    )
    return row.detached()


# ---------------------------------------------------------------------------------------------------------- stages


def promote(
    session: Session,
    name: str,
    version: VersionRef,
    actor: str,
    *,
    where: str,
    artifacts: ArtifactStore,
    note: str | None = None,
) -> ModelVersion:
    """See `Registry.promote`: the stored artifact is re-hashed before anything changes; `note` ends the detail."""
    rows = _lock_versions(session, name)
    target = pick(rows, name, version, where)
    if target.stage == Stage.PRODUCTION:
        log.info("already in production", extra={"model": name, "version": target.version})
        return target.detached()
    artifacts.verified_path(target.detached())
    superseded = f"superseded by version {target.version}"
    for current in (r for r in rows if r.stage == Stage.PRODUCTION):
        _set_stage(session, current, Stage.ARCHIVED, actor, "archive", superseded)
    session.flush()  # the old production row leaves before the new one arrives (partial unique index)
    detail = "rollback to an archived version" if target.stage == Stage.ARCHIVED else "promoted from staging"
    detail = f"{detail}; {note}" if note else detail
    _set_stage(session, target, Stage.PRODUCTION, actor, "promote", detail)
    session.flush()
    return target.detached()


def archive(session: Session, name: str, version: VersionRef, actor: str, *, where: str) -> ModelVersion:
    """See `Registry.archive`: archiving an archived version changes (and audits) nothing."""
    target = pick(_lock_versions(session, name), name, version, where)
    if target.stage == Stage.ARCHIVED:
        return target.detached()
    detail = "archived"
    if target.stage == Stage.PRODUCTION:
        detail = f"archived the production version: {name!r} has no production version now"
        log.warning("no production version left", extra={"model": name, "version": target.version})
    _set_stage(session, target, Stage.ARCHIVED, actor, "archive", detail)
    return target.detached()


def _lock_versions(session: Session, name: str) -> list[ModelVersionRow]:
    """Every version of `name`, locked for the transaction (PostgreSQL), so stage changes of one name queue."""
    query = select(ModelVersionRow).filter_by(name=name).order_by(ModelVersionRow.version).with_for_update()
    return list(session.scalars(query))


def _set_stage(session: Session, row: ModelVersionRow, stage: Stage, actor: str, action: str, detail: str) -> None:
    before = {"stage": row.stage}
    row.stage = stage.value
    audit.record_model_change(session, row, action, non_empty(actor, "actor"), before, {"stage": stage.value}, detail)
    log.info(
        "model stage changed",
        extra={"model": row.name, "version": row.version, "before": before["stage"], "after": stage.value},
    )


# ----------------------------------------------------------------------------------------------------------- reads


def resolve(session: Session, name: str, version: VersionRef, where: str) -> ModelVersionRow:
    """One version of `name` by number, `"latest"` or `"production"`; `where` names the registry in errors."""
    rows = list(session.scalars(select(ModelVersionRow).filter_by(name=name)))
    return pick(rows, name, version, where)


def pick(rows: list[ModelVersionRow], name: str, version: VersionRef, where: str) -> ModelVersionRow:
    """The row `version` refers to among `rows` (every version of `name`); not found names the versions there are."""
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


def list_query(name: str | None, stage: str | None) -> Select[ModelVersionRow]:
    """Versions ordered by name and number, optionally of one name and/or one (validated) stage."""
    query = select(ModelVersionRow).order_by(ModelVersionRow.name, ModelVersionRow.version)
    if name is not None:
        query = query.filter_by(name=name)
    if stage is not None:
        query = query.filter_by(stage=valid_enum(Stage, stage, "stage").value)
    return query


# ------------------------------------------------------------------------------------------------------ validation


def valid_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: lower-case letters, digits, '-', '_', '.', alphanumeric at both ends, "
            "at most 63 characters",
            field="name",
            value=name,
        )
    return name


def non_empty(value: str, field: str) -> str:
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
