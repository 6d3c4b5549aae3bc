"""Route operations as a person asks for them, shared by the `journey` CLI and the admin HTTP endpoints.

Both front ends take the same words (`purchase_propensity:3`, `control=2:90`, a weight in percent) and must refuse
the same mistakes with the same message, so the parsing lives here, beside one function per operation that parses,
calls the registry (which validates, applies and audits the change) and returns the resulting `Route`:

    deploy(registry, "purchase_propensity:3", 10, actor="alice")               v3 takes 10% of predict_purchase
    set_route(registry, "predict_purchase", ["control=2:90", "candidate=3:10"], actor="alice", shadow="4")
    set_shadow(registry, "predict_purchase", "4", actor="alice")              (None removes the shadow)
    rollback(registry, "predict_purchase", actor="alice")
    clear(registry, "predict_purchase", actor="alice")
    show(registry, endpoint=None)                                             every endpoint's route

A variant may also be given as a mapping `{"name", "version", "weight"[, "model"]}` (JSON bodies). Bad input raises
`InvalidInputError` naming the field (exit code 2 in the CLI, HTTP 422 over HTTP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from journey.contracts import ENDPOINT_MODELS
from journey.errors import InvalidInputError
from journey.registry.facade import Registry
from journey.registry.models import Route, RouteVariant, VersionRef, parse_version_ref

VariantSpec = str | Mapping[str, Any]


# ------------------------------------------------------------------------------------------------------ operations


def deploy(
    registry: Registry,
    model_version: str,
    weight: float,
    *,
    actor: str,
    endpoint: str | None = None,
    variant: str | None = None,
    experiment: str | None = None,
    salt: str | None = None,
    note: str | None = None,
) -> Route:
    """Give MODEL:VERSION `weight` percent of its endpoint's users (the model's endpoint unless one is named);
    `note` goes into the audit detail (the caller's promotion gate, a forced deployment's reason)."""
    model, version = parse_model_version(model_version)
    return registry.deploy(
        endpoint or endpoint_of(model),
        version,
        weight,
        model=model,
        variant=variant,
        experiment=experiment,
        salt=salt,
        actor=actor,
        note=note,
    )


def set_route(
    registry: Registry,
    endpoint: str,
    variants: Sequence[VariantSpec],
    *,
    actor: str,
    shadow: str | int | None = None,
    experiment: str | None = None,
    salt: str | None = None,
) -> Route:
    """Replace the endpoint's route with these variants (weights are relative) and an optional shadow version."""
    model = ENDPOINT_MODELS.get(endpoint, "")
    if isinstance(variants, str | bytes) or not variants:
        raise InvalidInputError("give at least one variant", field="variants", value=variants)
    parsed = [parse_variant(spec, model) for spec in variants]
    shadow_version = plain_version(str(shadow), model, "shadow") if shadow is not None else None
    return registry.set_route(
        endpoint, parsed, actor=actor, experiment=experiment, salt=salt, shadow_version=shadow_version
    )


def set_shadow(
    registry: Registry,
    endpoint: str,
    model_version: str | int | None,
    *,
    actor: str,
    experiment: str | None = None,
) -> Route:
    """Score [MODEL:]VERSION beside the live variants on every request of the endpoint; None removes the shadow."""
    model: str | None = None
    version: VersionRef | None = None
    if model_version is not None:
        model, version = parse_model_version(str(model_version), default_model=ENDPOINT_MODELS.get(endpoint))
    return registry.set_shadow(endpoint, version, model=model, actor=actor, experiment=experiment)


def rollback(registry: Registry, endpoint: str, *, actor: str) -> Route:
    """Restore the route the endpoint's newest change replaced."""
    return registry.rollback_route(endpoint, actor=actor)


def clear(registry: Registry, endpoint: str, *, actor: str) -> Route:
    """Remove the endpoint's route: its production version answers everything (variant `production`)."""
    return registry.clear_route(endpoint, actor=actor)


def show(registry: Registry, endpoint: str | None = None) -> list[Route]:
    """The route of one endpoint, or of every routed endpoint (stored or default)."""
    if endpoint is not None:
        return [registry.route(endpoint)]
    return list(registry.route_snapshot().routes.values())


# --------------------------------------------------------------------------------------------------------- parsing


def parse_model_version(text: str, default_model: str | None = None) -> tuple[str, VersionRef]:
    """'purchase_propensity:3' -> ('purchase_propensity', 3); '3' -> (default_model, 3) when one is given."""
    model, sep, version = text.rpartition(":")
    if not sep:
        model, version = default_model or "", text
    if not model or not version:
        raise InvalidInputError(
            f"expected MODEL:VERSION (e.g. purchase_propensity:3), got {text!r}", field="model_version", value=text
        )
    return model, parse_version_ref(version)


def parse_variant(spec: VariantSpec, model: str) -> RouteVariant:
    """'control=3:90', 'control=purchase_propensity:3:90' or {"name", "version", "weight"[, "model"]} ->
    RouteVariant (the registry validates names, versions and weights)."""
    if isinstance(spec, Mapping):
        return _variant_from_mapping(spec, model)
    text = str(spec)
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) not in (2, 3):
        raise InvalidInputError(
            f"expected NAME=[MODEL:]VERSION:WEIGHT (e.g. control=3:90), got {text!r}", field="variant", value=text
        )
    variant_model = parts[0] if len(parts) == 3 else model
    version, weight = parts[-2], parts[-1]
    if not version.isdigit() or int(version) < 1:
        raise InvalidInputError(
            f"variant {name!r}: version must be a number >= 1, got {version!r}", field="version", value=version
        )
    return RouteVariant(name, variant_model, int(version), number(weight, "weight"))


def _variant_from_mapping(spec: Mapping[str, Any], model: str) -> RouteVariant:
    unknown = set(spec) - {"name", "version", "weight", "model"}
    if unknown or not {"name", "version", "weight"} <= set(spec):
        raise InvalidInputError(
            f"a variant is {{name, version, weight[, model]}}, got keys {sorted(spec)}", field="variant", value=spec
        )
    version = spec["version"]
    if isinstance(version, bool) or not isinstance(version, int | str) or not str(version).isdigit():
        raise InvalidInputError(
            f"variant {spec['name']!r}: version must be a number >= 1, got {version!r}", field="version", value=version
        )
    weight = spec["weight"]
    if isinstance(weight, bool) or not isinstance(weight, int | float | str):
        raise InvalidInputError(f"weight must be a number, got {weight!r}", field="weight", value=weight)
    return RouteVariant(str(spec["name"]), str(spec.get("model") or model), int(version), number(str(weight), "weight"))


def parse_weight(text: str) -> tuple[str, float]:
    """'control=90' -> ('control', 90.0): an expected split for the A/B report."""
    name, sep, weight = text.partition("=")
    if not sep or not name:
        raise InvalidInputError(f"expected NAME=WEIGHT (e.g. control=90), got {text!r}", field="weight", value=text)
    return name, number(weight, "weight")


def number(text: str, field: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidInputError(f"{field} must be a number, got {text!r}", field=field, value=text) from None


def plain_version(text: str, model: str, field: str) -> int:
    """A version number of the endpoint's model, as [MODEL:]VERSION ('latest' and 'production' are refused)."""
    parsed_model, version = parse_model_version(text, default_model=model)
    if not isinstance(version, int):
        raise InvalidInputError(f"{field} must be a version number, got {text!r}", field=field, value=text)
    if parsed_model != model:
        raise InvalidInputError(
            f"{field}: the endpoint serves {model}, not {parsed_model!r}", field="model", value=parsed_model
        )
    return version


def endpoint_of(model: str) -> str:
    """The one routed endpoint that serves `model`."""
    endpoints = [endpoint for endpoint, served in ENDPOINT_MODELS.items() if served == model]
    if len(endpoints) != 1:
        known = ", ".join(f"{m} ({e})" for e, m in ENDPOINT_MODELS.items())
        raise InvalidInputError(f"no routed endpoint serves {model!r}; models: {known}", field="model", value=model)
    return endpoints[0]
