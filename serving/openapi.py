"""The OpenAPI document as the service really answers: BentoML's `/docs.json` plus what the middleware adds.

BentoML documents 200, 400, 404 and 500 for every API route. The service also answers 413 (body over
JOURNEY_MAX_BODY_BYTES), 415 (a body that is not JSON), 422 (a request its schema refuses: the middleware turns
BentoML's 400 into 422) and 503 (no model deployed for the endpoint, the feature store unavailable), all in one
error shape, and serves `GET /readyz` and `GET /journey/{user_id}` from the middleware. A client generator or an
API fuzzer (Schemathesis) reads the document to know what to expect, so it must list them: `documented(spec)`
adds them.
"""

from __future__ import annotations

import copy
from typing import Any, Final

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, in words."},
        "field": {"type": "string", "nullable": True, "description": "The request field at fault, when one is."},
        "detail": {"type": "array", "items": {"type": "object"}, "description": "pydantic's errors, with `loc`."},
    },
}
_ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
API_ERRORS: Final[dict[str, str]] = {
    "413": "Request body over JOURNEY_MAX_BODY_BYTES.",
    "415": "A body that is not application/json.",
    "422": "The request does not match its schema; `field` or `detail[].loc` names the field.",
    "503": "No model deployed for this endpoint, or the feature store is unavailable; `error` says which.",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _get(summary: str, responses: dict[str, str], parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    answers = {
        "200": {"description": responses["200"], "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    answers |= {code: _error(text) for code, text in responses.items() if code != "200"}
    return {"get": {"summary": summary, "parameters": parameters or [], "responses": answers}}


MIDDLEWARE_PATHS: Final[dict[str, dict[str, Any]]] = {
    "/readyz": _get(
        "Serving state: each endpoint's model or why it has none, providers, problems",
        {"200": "Ready: every deployed endpoint is served.", "503": "Not ready; `problems` says why."},
    ),
    "/journey/{user_id}": _get(
        "The shopper's journey: stage, P(purchase), next stage, segment, drop-off risk",
        {
            "200": "The journey state.",
            "404": "Unknown user.",
            "422": "A user or session id that is not valid.",
            "503": "No journey chain (run `journey analyze`) or the feature store is unavailable.",
        },
        [
            {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "session_id", "in": "query", "required": False, "schema": {"type": "string", "minLength": 1}},
        ],
    ),
}


def documented(spec: dict[str, Any], api_paths: frozenset[str]) -> dict[str, Any]:
    """`spec` with the error answers of every API route and the middleware's own routes added (a copy)."""
    spec = copy.deepcopy(spec)
    spec.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in spec.get("paths", {}).items():
        if path not in api_paths:
            continue
        for operation in item.values():
            if isinstance(operation, dict) and "responses" in operation:
                for code, text in API_ERRORS.items():
                    operation["responses"].setdefault(code, _error(text))
                if "requestBody" in operation:  # every API route needs its JSON body (no body: 422)
                    operation["requestBody"]["required"] = True
    for path, item in MIDDLEWARE_PATHS.items():
        spec["paths"].setdefault(path, copy.deepcopy(item))
    return spec
