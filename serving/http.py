"""HTTP conventions BentoML does not give us, as one small ASGI middleware around the service.

- `GET /readyz` answers with the serving state (model versions, execution provider, problems) as JSON: 200 when
  ready, 503 otherwise. BentoML's own probe only says 200/503; operators and `make demo` want to see *what* is up.
- A body that is not `application/json` gets 415 (BentoML would answer 500). Request bodies over
  `JOURNEY_MAX_BODY_BYTES` get 413 before they are read (a multi-MB JSON would otherwise be
  parsed in full before validation refuses it).
- BentoML answers pydantic validation errors with 400; the platform contract (DESIGN.md) is 422 with the field
  named, so a 400 from an API route becomes 422 (the body, pydantic's `detail` with `loc`, is kept).
- `GET /journey/{user_id}[?session_id=...]`: BentoML APIs are POST with a JSON body; this read is a resource
  lookup, so it is answered here from a handler the worker publishes (serving.journey_map does the work), with the
  same error shape: `{"error", "field"}` and the status of the raised Journey error (404 unknown user, 422 bad id,
  503 store or chain unavailable).
- `GET /docs.json`: BentoML's OpenAPI document with the answers it does not list (413, 422, 503 and the error
  shape) and the routes served here (serving.openapi), so client generators and API fuzzers know what to expect.
- `/admin/...` (serving.admin: deploy, route set/shadow/clear, rollback, route show, reload): only with
  `Authorization: Bearer <JOURNEY_ADMIN_TOKEN>`, compared in constant time; 401 otherwise (and while the worker has
  no token), before the body is read. Same error shape; JSON bodies up to the body limit.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, unquote

from journey.errors import ServiceUnavailableError
from serving import metrics
from serving.errors import error_answer, http_status
from serving.openapi import documented

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StatusFn = Callable[[], dict[str, Any]]
JourneyFn = Callable[[str, str | None], dict[str, Any]]  # (raw user id, raw session id) -> body; raises on errors
AdminFn = Callable[[str, str, dict[str, str], dict[str, Any]], tuple[int, dict[str, Any]]]
JOURNEY_PREFIX = "/journey/"
DOCS_JSON = "/docs.json"
ADMIN_PREFIX = "/admin/"

log = logging.getLogger(__name__)

# set by the service instance in its worker; the middleware of that worker's app reads it
_status: list[StatusFn] = []


_journey: list[JourneyFn] = []
_admin: list[tuple[AdminFn, bytes]] = []  # (handler, the admin token as bytes)


def publish_status(status: StatusFn) -> None:
    _status[:] = [status]


def publish_journey(handler: JourneyFn) -> None:
    _journey[:] = [handler]


def publish_admin(handler: AdminFn, token: str | None) -> None:
    """The worker's admin handler and the bearer token it requires (None or empty: every admin request is 401)."""
    _admin[:] = [(handler, (token or "").encode())]


def _authorized(scope: Scope, token: bytes) -> str | None:
    """None when the request carries the admin bearer token, else why not (for the 401 body)."""
    header = dict(scope.get("headers") or []).get(b"authorization", b"")
    scheme, _, credentials = header.partition(b" ")
    if not header or scheme.lower() != b"bearer":
        return "admin endpoints need `Authorization: Bearer <JOURNEY_ADMIN_TOKEN>`"
    # compare_digest: the time taken does not tell how much of a guessed token was right
    if not token or not hmac.compare_digest(credentials.strip(), token):
        return "invalid admin token"
    return None


async def _admin_answer(scope: Scope, receive: Receive, send: Send, max_body_bytes: int) -> None:
    """`/admin/...`: authenticate, read the JSON body (bounded), run the published handler in a thread (it writes to
    the registry and may load models)."""
    handler, token = _admin[0] if _admin else (None, b"")
    if (reason := _authorized(scope, token)) is not None:
        await _json(send, 401, {"error": reason, "field": "authorization"}, [(b"www-authenticate", b"Bearer")])
        return
    if handler is None:
        await _json(send, 503, {"error": "admin operations are not loaded in this worker"})
        return
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = bool(message.get("more_body", False))
        if size > max_body_bytes:
            await _json(send, 413, {"error": f"request body over {max_body_bytes} bytes", "field": "body"})
            return
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError as exc:
        await _json(send, 422, {"error": f"the body is not JSON: {exc}", "field": "body"})
        return
    if not isinstance(body, dict):
        await _json(send, 422, {"error": "the body must be a JSON object", "field": "body"})
        return
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
    try:
        status, answer = await asyncio.to_thread(handler, scope["method"], scope["path"], query, body)
    except Exception as exc:  # every error is an answer (serving.errors): Journey's carry their status, others are 500
        if http_status(exc) is None:
            log.exception("admin request failed", extra={"path": scope["path"][:128]})
        status, answer = error_answer(exc)
    await _json(send, status, answer)


async def _journey_answer(scope: Scope, send: Send) -> None:
    """`GET /journey/{user_id}`: the published handler runs in a thread (it reads the online store)."""
    started, status = time.perf_counter(), 200
    raw_user = unquote(scope["path"][len(JOURNEY_PREFIX) :])
    # blank values kept: `?session_id=` is an empty session id (422), not a request without one
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    session = query.get("session_id", [None])[-1]
    try:
        if not _journey:
            raise ServiceUnavailableError("the journey map is not loaded in this worker")
        body = await asyncio.to_thread(_journey[0], raw_user, session)
    except Exception as exc:  # every error is an answer (serving.errors): Journey's carry their status, others are 500
        if http_status(exc) is None:
            log.exception("GET /journey failed", extra={"user_id": raw_user[:64]})
        status, body = error_answer(exc)
    metrics.observe_request("journey", metrics.NO_VARIANT, status, time.perf_counter() - started)
    await _json(send, status, body)


async def _json(
    send: Send, status: int, body: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body, default=str).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += extra_headers or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class JourneyHTTP:
    def __init__(self, app: ASGIApp, *, api_paths: tuple[str, ...], max_body_bytes: int) -> None:
        self.app = app
        self.api_paths = frozenset(api_paths)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/readyz" and scope["method"] == "GET":
            status = _status[0]() if _status else {"ready": False, "problems": ["service not initialised"]}
            await _json(send, 200 if status.get("ready") else 503, status)
            return
        if path.startswith(JOURNEY_PREFIX) and scope["method"] == "GET":
            await _journey_answer(scope, send)
            return
        if path.startswith(ADMIN_PREFIX):
            await _admin_answer(scope, receive, send, self.max_body_bytes)
            return
        if path == DOCS_JSON and scope["method"] == "GET":
            await self._docs(scope, receive, send)
            return
        if path not in self.api_paths:
            await self.app(scope, receive, send)
            return
        await self._api(scope, receive, send)

    async def _docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's OpenAPI document with what this middleware answers added (serving.openapi)."""
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start.get("status") != 200:
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks)})
            return
        await _json(send, 200, documented(json.loads(b"".join(chunks)), self.api_paths))

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An API route: the body bounded (413), a 400 or 422 answered as 422 in the one error shape."""
        too_large = {"error": f"request body over {self.max_body_bytes} bytes", "field": "body"}
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            await _json(send, 413, too_large)
            return
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media != b"application/json":  # BentoML answers another media type with a 500 of its own
            refused = {"error": f"content-type must be application/json, not {media.decode(errors='replace')}"}
            await _json(send, 415, refused | {"field": "content-type"})
            return
        started = False
        overflowed = False
        received = 0
        held: list[Message] = []
        chunks: list[bytes] = []

        async def receive_bounded() -> Message:
            # a chunked body has no content-length: count what arrives
            nonlocal received, overflowed
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                overflowed = True
                raise _TooLarge
            return message

        async def send_mapped(message: Message) -> None:
            nonlocal started
            if overflowed:
                # BentoML catches every exception of a body read and answers 500 itself: that answer becomes the 413
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _json(send, 413, too_large)
                return
            if message["type"] == "http.response.start":
                started = True
                if message["status"] in (400, 422):
                    held.append({**message, "status": 422})  # the body is reshaped below, so hold the start
                    return
            if held and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await _json(send, 422, _one_error_shape(b"".join(chunks)))
                return
            await send(message)

        try:
            await self.app(scope, receive_bounded, send_mapped)
        except _TooLarge:
            if not started:
                await _json(send, 413, too_large)


def _one_error_shape(body: bytes) -> dict[str, Any]:
    """BentoML answers schema errors with `{"error", "detail"}` but raised errors with `[{"error"}]`: give clients
    one shape, `{"error": ..., "detail"?: [...]}`."""
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        return {"error": body.decode(errors="replace")}
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]
    return payload if isinstance(payload, dict) else {"error": payload}


class _TooLarge(Exception):
    """Raised from inside the app's body read; caught by the middleware that raised it."""
