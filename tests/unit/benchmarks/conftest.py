"""Fixtures of the benchmark tests: one echo server per test module, its record cleared for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.benchmarks.echo_server import Seen, Server, echo_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with echo_server() as running:
        yield running


@pytest.fixture
def seen(server: Server) -> Seen:
    server.seen.clear()
    return server.seen
