"""The HTTP middleware on a bare Starlette app: status mapping, one error shape, body limits, /readyz."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving import http

LIMIT = 1024


async def schema_error(_: Request) -> Response:
    return JSONResponse({"error": "1 validation error", "detail": [{"loc": ["items"], "msg": "too short"}]}, 400)


async def raised_error(_: Request) -> Response:
    return JSONResponse([{"error": "events[0].event_type: unknown"}], 422)


async def echo(request: Request) -> Response:
    return JSONResponse({"bytes": len(await request.body())})


class Client:
    """httpx over ASGI, synchronous for the tests (starlette's TestClient is deprecated with this httpx)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture
def client() -> Iterator[Client]:
    routes = [Route("/schema", schema_error, methods=["POST"]), Route("/raised", raised_error, methods=["POST"])]
    routes += [Route("/echo", echo, methods=["POST"]), Route("/other", schema_error, methods=["POST"])]
    app = http.JourneyHTTP(Starlette(routes=routes), api_paths=("/schema", "/raised", "/echo"), max_body_bytes=LIMIT)
    yield Client(app)
    http._status.clear()


def test_a_schema_error_is_422_with_the_field_in_detail(client: Client) -> None:
    response = client.post("/schema", json={})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["items"]


def test_a_raised_error_list_becomes_the_same_object_shape(client: Client) -> None:
    response = client.post("/raised", json={})
    assert response.status_code == 422
    assert response.json() == {"error": "events[0].event_type: unknown"}


def test_routes_outside_the_api_are_left_alone(client: Client) -> None:
    assert client.post("/other", json={}).status_code == 400


def test_a_declared_body_over_the_limit_is_413_naming_the_body(client: Client) -> None:
    response = client.post("/echo", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_a_chunked_body_over_the_limit_is_413(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * (LIMIT // 2)

    assert client.post("/echo", content=chunks()).status_code == 413


def test_a_body_within_the_limit_passes(client: Client) -> None:
    assert client.post("/echo", content=b"x" * LIMIT).json() == {"bytes": LIMIT}


def test_readyz_is_503_until_a_status_is_published_then_follows_it(client: Client) -> None:
    assert client.get("/readyz").status_code == 503
    state: dict[str, Any] = {"ready": False, "problems": ["model next_action: not found"]}
    http.publish_status(lambda: state)
    assert client.get("/readyz").json()["problems"] == ["model next_action: not found"]
    state["ready"] = True
    assert client.get("/readyz").status_code == 200
