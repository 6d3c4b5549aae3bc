"""A tiny real HTTP server for the load tests: uvicorn + Starlette in a thread, on a free loopback port, recording
what it was sent."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    """What the server saw: requests received and the most it was answering at once."""

    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    bodies: list[object] = field(default_factory=list)

    def clear(self) -> None:
        self.requests = self.most_in_flight = 0
        self.bodies.clear()


@dataclass
class Server:
    url: str
    seen: Seen


def _app(seen: Seen) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.json()
        seen.requests += 1
        seen.bodies.append(body)
        seen.in_flight += 1
        seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
        try:
            await asyncio.sleep(0.005)  # long enough that concurrent requests overlap
        finally:
            seen.in_flight -= 1
        if isinstance(body, dict) and body.get("fail"):
            return JSONResponse({"error": "asked to fail"}, status_code=500)
        return JSONResponse(body)

    async def ping(_request: Request) -> Response:
        seen.requests += 1
        return Response("ok")

    return Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/ping", ping, methods=["GET"])])


@contextmanager
def echo_server() -> Iterator[Server]:
    """`POST /echo` answers its JSON body after 5 ms (500 when the body says `fail`), `GET /ping` answers "ok"."""
    seen = Seen()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(_app(seen), log_level="warning", lifespan="off", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    try:
        yield Server(f"http://127.0.0.1:{port}", seen)
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
