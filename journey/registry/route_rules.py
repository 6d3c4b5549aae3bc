"""The rules every route satisfies: checked on each change, before anything is written.

A route's versions exist, are not archived (a rollback may restore archived ones, with a warning) and belong to the
endpoint's model; its weights are >= 0 with a positive sum; its variant names are unique, short and label-safe (they
become Prometheus label values); the shadow is not also a variant; the experiment and salt are well formed. A version
entering a route is re-hashed in the model store first, as `promote` does: a version serving could not load never
gets traffic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from journey.contracts import ENDPOINT_MODELS
from journey.errors import InvalidInputError, NotFoundError
from journey.registry import versions
from journey.registry.artifacts import ArtifactStore
from journey.registry.models import Route, Stage, VersionRef
from journey.registry.orm import ModelVersionRow

MAX_VARIANTS: Final = 8
# Variant names become Prometheus label values and log fields: short, lower-case, no dots.
_VARIANT = re.compile(r"^[a-z0-9](?:[-_a-z0-9]{0,30}[a-z0-9])?$")
_SALT = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII without spaces


def routable_version(session: Session, model: str, version: VersionRef, field: str, where: str) -> int:
    """A version number that exists and is not archived, from a number, 'latest' or 'production'."""
    rows = list(session.scalars(select(ModelVersionRow).filter_by(name=model)))
    try:
        row = versions.pick(rows, model, version, where)
    except NotFoundError as exc:
        raise InvalidInputError(str(exc), field=field, value=version) from exc
    if row.stage == Stage.ARCHIVED:
        raise InvalidInputError(
            f"{model} version {row.version} is archived and cannot take traffic; promote or register another",
            field=field,
            value=row.version,
        )
    return row.version


def validated(
    session: Session, route: Route, current: Route, *, allow_archived: bool, where: str, artifacts: ArtifactStore
) -> Route:
    """`route` checked (see the module docstring), with each version that was not already in the current
    route re-hashed in the model store, as promote does: a version serving could not load never gets traffic."""
    model = ENDPOINT_MODELS[route.endpoint]
    stages = {row.version: row.stage for row in session.scalars(select(ModelVersionRow).filter_by(name=model))}
    _check_variants(route, model, stages, allow_archived)
    _check_experiment_and_salt(route)
    known = {v.version for v in current.variants} | {current.shadow_version}
    entering = ({v.version for v in route.variants} | {route.shadow_version}) - known
    for version in sorted(v for v in entering if v is not None):
        artifacts.verified_path(versions.resolve(session, model, version, where).detached())
    return replace(route, model=model, variants=tuple(replace(v, weight=float(v.weight)) for v in route.variants))


def _check_variants(route: Route, model: str, stages: Mapping[int, str], allow_archived: bool) -> None:
    """The variants (1 to MAX_VARIANTS, unique valid names, the endpoint's model, weights with a positive sum,
    existing versions) and the shadow (an existing version that is not also a live variant)."""
    if not route.variants:
        raise InvalidInputError(f"a route of {route.endpoint} needs at least one variant", field="variants")
    if len(route.variants) > MAX_VARIANTS:
        raise InvalidInputError(
            f"a route has at most {MAX_VARIANTS} variants, got {len(route.variants)}",
            field="variants",
            value=len(route.variants),
        )
    seen: set[str] = set()
    for v in route.variants:
        if not isinstance(v.name, str) or not _VARIANT.match(v.name):
            raise InvalidInputError(
                f"invalid variant name {v.name!r}: lower-case letters, digits, '-' and '_', at most 32",
                field="variant",
                value=v.name,
            )
        if v.name in seen:
            raise InvalidInputError(f"variant name {v.name!r} appears twice", field="variant", value=v.name)
        seen.add(v.name)
        if v.model != model:
            raise wrong_model(route.endpoint, v.model)
        _check_weight(v.weight)
        _check_version(stages, model, v.version, "version", allow_archived)
    if route.total_weight <= 0:
        raise InvalidInputError(
            f"the weights of {route.endpoint}'s variants sum to 0: at least one must be positive",
            field="weight",
            value=0,
        )
    if route.shadow_version is not None:
        _check_version(stages, model, route.shadow_version, "shadow", allow_archived)
        if any(v.version == route.shadow_version for v in route.variants):
            raise InvalidInputError(
                f"version {route.shadow_version} is a live variant of {route.endpoint}; it cannot also be the shadow",
                field="shadow",
                value=route.shadow_version,
            )


def _check_experiment_and_salt(route: Route) -> None:
    """The experiment name follows the model-name rule; the salt, hashed with each user id, is printable ASCII."""
    experiment = route.experiment
    if not isinstance(experiment, str) or not versions.NAME.match(experiment):
        raise InvalidInputError(
            f"invalid experiment name {experiment!r}: lower-case letters, digits, '-', '_', '.', at most 63",
            field="experiment",
            value=experiment,
        )
    if not isinstance(route.salt, str) or not _SALT.match(route.salt):
        raise InvalidInputError(
            f"invalid salt {route.salt!r}: 1 to 64 printable characters without spaces",
            field="salt",
            value=route.salt,
        )


def _check_version(stages: Mapping[int, str], model: str, version: object, field: str, allow_archived: bool) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version not in stages:
        known = ", ".join(f"{v} ({stage})" for v, stage in sorted(stages.items())) or "none"
        raise InvalidInputError(f"{model} has no version {version!r}; versions: {known}", field=field, value=version)
    if stages[version] == Stage.ARCHIVED and not allow_archived:
        raise InvalidInputError(
            f"{model} version {version} is archived and cannot take traffic; promote or register another",
            field=field,
            value=version,
        )


def valid_endpoint(endpoint: str) -> str:
    if endpoint not in ENDPOINT_MODELS:
        known = ", ".join(ENDPOINT_MODELS)
        raise InvalidInputError(
            f"unknown endpoint {endpoint!r}; routed endpoints: {known}", field="endpoint", value=endpoint
        )
    return endpoint


def wrong_model(endpoint: str, model: str) -> InvalidInputError:
    expected = ENDPOINT_MODELS.get(endpoint)
    return InvalidInputError(f"{endpoint} serves {expected} versions, not {model!r}", field="model", value=model)


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
        raise InvalidInputError(f"a weight must be a finite number >= 0, got {weight!r}", field="weight", value=weight)
    return float(weight)


def percent(weight: object) -> float:
    value = _check_weight(weight)
    if value > 100:
        raise InvalidInputError(
            f"a deploy weight is a percentage (0..100), got {weight!r}", field="weight", value=weight
        )
    return value
