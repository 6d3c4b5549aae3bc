"""Routes (serving's A/B split): which versions answer an endpoint, with which weights, and a shadow beside them.

An endpoint without a stored route is answered by its model's production version (variant `production`, 100%). A
stored route pins version numbers: promoting or archiving a version later does not change it (`route show` warns
about archived versions in a route). Every change is validated (versions exist, are not archived and belong to the
endpoint's model; weights >= 0 with a positive sum; unique variant names; the shadow is not also a variant: the
rules live in `journey.registry.route_rules`), recorded as a revision in `route_history` and audited. Changes of one
endpoint are serialised (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite). Serving polls `change_token()`
(the newest audit id: it grows with every registry change) and re-reads `route_snapshot()` when it moves.

Each operation is a `Build`, the new route as a function of the current one (set, deploy, shadow, clear; a rollback
reads its target from the history instead); `change_route` runs it inside the caller's transaction and does the
rest the same way for all of them: lock, validate, write the route, its revision and the audit row.
"""

from __future__ import annotations

import logging
import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from sqlalchemy import Select, select, text
from sqlalchemy.orm import Session

from journey.contracts import ENDPOINT_MODELS
from journey.errors import NotFoundError
from journey.registry import audit, route_rules
from journey.registry.artifacts import ArtifactStore
from journey.registry.models import Route, RouteAction, RouteSnapshot, RouteVariant, Stage, VersionRef
from journey.registry.orm import ModelVersionRow, RouteHistoryRow, RouteRow, RouteVariantRow

# One logger for the whole package: the registry's log lines keep the name they have always had.
log = logging.getLogger("journey.registry")

DEFAULT_VARIANT: Final = "production"  # the variant of an endpoint without a stored route

# The new route from the current one (None: no route) and the audit detail; it may read the session.
Build = Callable[[Session, Route], tuple[Route | None, str]]


@dataclass(frozen=True)
class RouteChange:
    """What `change_route` did: the route now, and the revision it wrote (None: nothing changed, nothing to log)."""

    route: Route
    revision: int | None = None
    detail: str = ""


# ----------------------------------------------------------------------------------------------------------- reads


def current_route(session: Session, endpoint: str) -> Route:
    """The stored route of `endpoint`, or the default (the production version takes all traffic)."""
    row = session.get(RouteRow, endpoint, populate_existing=True)
    if row is not None:
        return row.detached()
    model = ENDPOINT_MODELS[endpoint]
    head = _head(session, endpoint)
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


def snapshot(session: Session) -> RouteSnapshot:
    """Every routed endpoint's route in this one transaction, with the change token read before them."""
    token = audit.change_token(session)  # first: a change committed after it moves the token again
    routes = {endpoint: current_route(session, endpoint) for endpoint in ENDPOINT_MODELS}
    return RouteSnapshot(token=token, routes=MappingProxyType(routes))


def history_query(endpoint: str | None, limit: int | None, oldest_first: bool) -> Select[RouteHistoryRow]:
    """Route revisions, newest first (or oldest first), of one (validated) endpoint or all."""
    order = RouteHistoryRow.id.asc() if oldest_first else RouteHistoryRow.id.desc()
    query = select(RouteHistoryRow).order_by(order)
    if endpoint is not None:
        query = query.filter_by(endpoint=route_rules.valid_endpoint(endpoint))
    if limit is not None:
        query = query.limit(limit)
    return query


def _head(session: Session, endpoint: str) -> RouteHistoryRow | None:
    """The endpoint's newest route revision (None: its route never changed)."""
    return session.scalars(
        select(RouteHistoryRow).filter_by(endpoint=endpoint).order_by(RouteHistoryRow.revision.desc()).limit(1)
    ).first()


# ---------------------------------------------------------------------------------------------------------- builds


def set_build(
    variants: Sequence[RouteVariant], *, experiment: str | None, salt: str | None, shadow_version: int | None
) -> Build:
    """`Registry.set_route`: these variants in this order, the shadow, and the experiment (kept, given or new)."""

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

    return build


def deploy_build(
    endpoint: str,
    version: VersionRef,
    weight: float,
    *,
    model: str | None,
    variant: str | None,
    experiment: str | None,
    salt: str | None,
    where: str,
) -> Build:
    """`Registry.deploy`: `version` at `weight` percent, the other variants scaled to share the rest."""
    if model is not None and model != ENDPOINT_MODELS.get(endpoint, model):
        raise route_rules.wrong_model(endpoint, model)
    percent = route_rules.percent(weight)

    def build(session: Session, current: Route) -> tuple[Route | None, str]:
        target_version = route_rules.routable_version(session, current.model, version, "version", where)
        name = variant or next((v.name for v in current.variants if v.version == target_version), f"v{target_version}")
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

    return build


def shadow_build(
    endpoint: str, version: VersionRef | None, *, model: str | None, experiment: str | None, where: str
) -> Build:
    """`Registry.set_shadow`: `version` as the shadow (None: no shadow), the live variants untouched."""
    if model is not None and model != ENDPOINT_MODELS.get(endpoint, model):
        raise route_rules.wrong_model(endpoint, model)

    def build(session: Session, current: Route) -> tuple[Route | None, str]:
        if version is None:
            return replace(current, shadow_version=None), "shadow removed"
        shadow = route_rules.routable_version(session, current.model, version, "shadow", where)
        name, drawn = _experiment_and_salt(current, experiment, None, f"{current.model}-v{shadow}")
        target = replace(current, shadow_version=shadow, experiment=name, salt=drawn)
        return target, f"shadow {current.model} v{shadow}"

    return build


def cleared(_session: Session, _current: Route) -> tuple[Route | None, str]:
    """`Registry.clear_route`: no stored route, so the production version answers everything again."""
    return None, "route cleared"


def _experiment_and_salt(current: Route, experiment: str | None, salt: str | None, default: str) -> tuple[str, str]:
    """The experiment a change runs under, and its salt: kept while the experiment stays the same (users keep
    their variants), drawn afresh for a new one (an independent split, no carry-over from the last test)."""
    name = experiment or current.experiment or default
    if salt is not None:
        return name, salt
    if current.stored and current.experiment == name and current.salt:
        return name, current.salt
    return name, secrets.token_hex(8)


# ---------------------------------------------------------------------------------------------------------- change


def change_route(
    session: Session,
    endpoint: str,
    action: RouteAction,
    actor: str,
    build: Build | None,
    *,
    schema: str | None,
    where: str,
    artifacts: ArtifactStore,
) -> RouteChange:
    """One route change inside the caller's transaction: lock the endpoint, build the new route from the current
    one (`build` None: roll back), validate it, write routes/route_variants, a route_history revision and an audit
    row."""
    _lock_route(session, schema, endpoint)
    current = current_route(session, endpoint)
    head = _head(session, endpoint)
    if build is None:
        target, previous, detail = _rollback_target(session, current, head)
    else:
        target, detail = build(session, current)
        previous = head.revision if head is not None else 0
        if target is None and not current.stored:
            return RouteChange(current)  # clearing the default route
        if target is not None and current.stored and target.document() == current.document():
            return RouteChange(current)  # nothing changes: no revision, no audit row
    if target is not None:
        allow_archived = action is RouteAction.ROLLBACK
        target = route_rules.validated(
            session, target, current, allow_archived=allow_archived, where=where, artifacts=artifacts
        )
        detail = _archived_note(session, target, detail)
    revision = (head.revision if head is not None else 0) + 1
    _write(session, current, target, action, actor, revision, previous, detail)
    return RouteChange(current_route(session, endpoint), revision, detail)


def _write(
    session: Session,
    current: Route,
    target: Route | None,
    action: RouteAction,
    actor: str,
    revision: int,
    previous: int | None,
    detail: str,
) -> None:
    """Replace the stored route by `target` (None: none) as `revision`, with its history row and audit row."""
    endpoint = current.endpoint
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
    audit.record_route_change(session, endpoint, revision, action, actor, before, document, detail)
    session.flush()


def _rollback_target(
    session: Session, current: Route, head: RouteHistoryRow | None
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
    restored = Route.from_document(current.endpoint, earlier.route, back_to, earlier.at, earlier.actor)
    return restored, earlier.previous_revision, detail


def _lock_route(session: Session, schema: str | None, endpoint: str) -> None:
    """Serialise changes of one endpoint's route (SQLite: BEGIN IMMEDIATE already did)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"journey-route:{schema}:{endpoint}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


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
