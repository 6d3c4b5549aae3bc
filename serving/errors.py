"""Errors become HTTP answers here, and only here: the error's status and `{"error": message, "field"?: name}`.

Journey's errors carry their `http_status` (journey.errors: 422 naming the field, 404, 409, 503), and so does the
ONNX runtime's `InputError` (422; serving.runtime may not import journey.errors, so the status travels as the same
attribute). Anything else is not an answer this module gives: the BentoML endpoints let it reach BentoML (a 500 whose
traceback is logged), and the middleware answers 500 pointing at the server log.

Used by the BentoML endpoints (`answered`, `answered_sync`: a JSON response in place of BentoML's own error body,
which replaces the reason of every 5xx with "an unexpected error") and by the ASGI middleware for what it answers
itself (`GET /journey/...`, `/admin/...`), so every error of the service has one shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import JSONResponse

T = TypeVar("T")
Answer = tuple[int, dict[str, Any]]


def http_status(exc: BaseException) -> int | None:
    """The status an error says it maps to (None: not one of ours, an unexpected failure)."""
    status = getattr(type(exc), "http_status", None)
    return status if isinstance(status, int) else None


def error_answer(exc: BaseException) -> Answer:
    """An error's status and body; an error without a status is a 500 that points at the log (never its text)."""
    status = http_status(exc)
    if status is None:
        return 500, {"error": f"internal error ({type(exc).__name__}): see the server log"}
    field = getattr(exc, "field", None)
    return status, {"error": str(exc)} | ({"field": field} if field else {})


def error_response(exc: BaseException) -> JSONResponse:
    status, body = error_answer(exc)
    return JSONResponse(body, status_code=status)


async def answered(call: Awaitable[T]) -> T | JSONResponse:
    """`call`'s result, or the HTTP answer of the Journey error it raised (other errors propagate)."""
    try:
        return await call
    except Exception as exc:
        if http_status(exc) is None:
            raise
        return error_response(exc)


def answered_sync(call: Callable[[], T]) -> T | JSONResponse:
    """`answered` for an endpoint that runs in BentoML's thread pool."""
    try:
        return call()
    except Exception as exc:
        if http_status(exc) is None:
            raise
        return error_response(exc)
