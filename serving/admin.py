"""Admin HTTP operations: the `journey deploy|rollback|route ...` commands over HTTP, for operators and automation
that reach the service but not the registry database.

    GET    /admin/routes[?endpoint=E]          every route (or one), as `journey route show --json`, and what this
                                               worker serves
    POST   /admin/deploy                       {"model_version": "purchase_propensity:3", "weight": 10,
                                                "endpoint"?, "variant"?, "experiment"?, "salt"?, "actor"?}
    PUT    /admin/routes/{endpoint}            {"variants": ["control=2:90", {"name", "version", "weight"}], "shadow"?,
                                                "experiment"?, "salt"?, "actor"?}
    PUT    /admin/routes/{endpoint}/shadow     {"model_version": "4" | null, "experiment"?, "actor"?}
    POST   /admin/routes/{endpoint}/rollback   {"actor"?}
    DELETE /admin/routes/{endpoint}            {"actor"?}   the production version answers everything again
    POST   /admin/reload                       reload from the registry now (e.g. after fixing a version that
                                               failed to load)

The bearer token is checked by serving.http before anything here runs. Each change goes through
`journey.registry.routes_admin` (the CLI's code: same parsing, same registry validation and audit), then this
worker reloads at once, so the answer says what it serves now; the other workers follow within `route_poll_s`.
Errors are Journey errors (422 naming the field, 404, 409, 503), turned into `{"error", "field"}` by serving.http.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from journey.errors import InvalidInputError, NotFoundError
from journey.registry import routes_admin

if TYPE_CHECKING:
    from journey.registry import Registry, Route
    from serving.lifecycle import Lifecycle

log = logging.getLogger(__name__)

PREFIX: Final = "/admin/"
DEFAULT_ACTOR: Final = "admin-http"
Answer = tuple[int, dict[str, Any]]


class Admin:
    """Answers admin requests of one worker: registry changes through `journey.registry.routes_admin`, then a reload."""

    def __init__(self, lifecycle: Lifecycle, registry_factory: Callable[[], Registry]) -> None:
        self.lifecycle = lifecycle
        self.registry_factory = registry_factory

    def handle(self, method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any]) -> Answer:
        """One admin request (already authenticated) -> (HTTP status, JSON body); raises Journey errors."""
        parts = [p for p in path.removeprefix(PREFIX).split("/") if p]
        if parts == ["reload"] and method == "POST":
            self.lifecycle.reload(force=True)  # also retries a reload refused for a version that failed to load
            return 200, {"serving": self.lifecycle.status()}
        if parts[:1] == ["routes"] and len(parts) <= 2 and method == "GET":
            with self.registry_factory() as registry:
                routes = routes_admin.show(registry, parts[1] if len(parts) == 2 else query.get("endpoint"))
            return 200, {"routes": [r.as_dict() for r in routes], "serving": self.lifecycle.status()["routes"]}
        if parts == ["deploy"] and method == "POST":
            return self._change(
                lambda registry: routes_admin.deploy(
                    registry,
                    _text(body, "model_version"),
                    _weight(body),
                    endpoint=_optional(body, "endpoint"),
                    variant=_optional(body, "variant"),
                    experiment=_optional(body, "experiment"),
                    salt=_optional(body, "salt"),
                    actor=_actor(body),
                )
            )
        if len(parts) >= 2 and parts[0] == "routes":
            endpoint, action = parts[1], "/".join(parts[2:])
            operation = self._route_operation(method, endpoint, action, body)
            if operation is not None:
                return self._change(operation)
        raise NotFoundError(f"no admin operation {method} {path}; see serving/admin.py for the list")

    def _route_operation(
        self, method: str, endpoint: str, action: str, body: Mapping[str, Any]
    ) -> Callable[[Registry], Route] | None:
        if (method, action) == ("PUT", ""):
            variants = body.get("variants")
            if not isinstance(variants, list):
                raise InvalidInputError("variants must be a list", field="variants", value=variants)
            return lambda registry: routes_admin.set_route(
                registry,
                endpoint,
                variants,
                actor=_actor(body),
                shadow=_optional(body, "shadow"),
                experiment=_optional(body, "experiment"),
                salt=_optional(body, "salt"),
            )
        if (method, action) == ("PUT", "shadow"):
            if "model_version" not in body:
                raise InvalidInputError("give model_version (null removes the shadow)", field="model_version")
            return lambda registry: routes_admin.set_shadow(
                registry,
                endpoint,
                _optional(body, "model_version"),
                actor=_actor(body),
                experiment=_optional(body, "experiment"),
            )
        if (method, action) == ("POST", "rollback"):
            return lambda registry: routes_admin.rollback(registry, endpoint, actor=_actor(body))
        if (method, action) == ("DELETE", ""):
            return lambda registry: routes_admin.clear(registry, endpoint, actor=_actor(body))
        return None

    def _change(self, operation: Callable[[Registry], Route]) -> Answer:
        with self.registry_factory() as registry:
            route = operation(registry)
        self.lifecycle.reload()  # this worker serves the change before it answers; the others poll
        log.info("route changed over HTTP", extra={"endpoint": route.endpoint, "revision": route.revision})
        return 200, {"route": route.as_dict(), "serving": self.lifecycle.status()["routes"].get(route.endpoint)}


def _optional(body: Mapping[str, Any], field: str) -> Any:
    value = body.get(field)
    if isinstance(value, bool) or (value is not None and not isinstance(value, str | int)):
        raise InvalidInputError(f"{field} must be a string or a number, got {value!r}", field=field, value=value)
    return str(value) if value is not None else None


def _text(body: Mapping[str, Any], field: str) -> str:
    value = _optional(body, field)
    if value is None:
        raise InvalidInputError(f"{field} is required", field=field)
    return str(value)


def _weight(body: Mapping[str, Any]) -> float:
    value = body.get("weight")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"weight must be a number (percent), got {value!r}", field="weight", value=value)
    return float(value)


def _actor(body: Mapping[str, Any]) -> str:
    return _optional(body, "actor") or DEFAULT_ACTOR
