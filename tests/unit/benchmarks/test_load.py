"""The load generator against a tiny real HTTP server (uvicorn + Starlette in a thread, on a free loopback port)."""

from __future__ import annotations

import socket

import pytest

from benchmarks.load import NotLoopbackError, check_loopback, load
from tests.unit.benchmarks.echo_server import Seen, Server


def test_a_fixed_count_is_sent_and_timed_and_warmup_is_not_reported(server: Server, seen: Seen) -> None:
    report = load(f"{server.url}/echo", [{"n": 1}, {"n": 2}], concurrency=3, requests=30, warmup=5)
    assert len(report.latencies) == 30 and report.errors == 0
    assert report.status_counts == {200: 30} and report.sent == 30
    assert seen.requests == 35  # the warm-up reached the server, it is only left out of the report
    assert all(0 < s < 5 for s in report.latencies) and report.throughput > 0
    assert report.wall_seconds > 0 and report.client_cpu_seconds > 0


def test_concurrency_is_bounded_and_used(server: Server, seen: Seen) -> None:
    report = load(f"{server.url}/echo", [{"n": 1}], concurrency=4, requests=60)
    assert seen.most_in_flight <= 4 and report.max_in_flight <= 4
    assert seen.most_in_flight == 4  # closed loop with a 5 ms server: all workers overlap


def test_request_number_k_carries_payload_k(server: Server, seen: Seen) -> None:
    load(f"{server.url}/echo", lambda k: {"k": k}, concurrency=1, requests=4, warmup=2)
    assert seen.bodies == [{"k": k} for k in range(6)]


def test_http_errors_are_counted_by_status_and_left_out_of_latencies(server: Server, seen: Seen) -> None:
    report = load(f"{server.url}/echo", lambda k: {"fail": k % 3 == 0}, concurrency=2, requests=30)
    assert report.status_counts == {200: 20, 500: 10}
    assert report.errors == 10 and len(report.latencies) == 20


def test_get_without_payloads(server: Server, seen: Seen) -> None:
    report = load(f"{server.url}/ping", concurrency=2, requests=10)
    assert report.status_counts == {200: 10} and seen.requests == 10


def test_duration_mode_stops_starting_requests_after_the_deadline(server: Server, seen: Seen) -> None:
    report = load(f"{server.url}/echo", [{"n": 1}], concurrency=2, duration=0.3)
    assert report.sent == len(report.latencies) > 10
    assert 0.3 <= report.wall_seconds < 2


def test_no_answer_is_an_error_not_a_crash() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    report = load(f"http://127.0.0.1:{port}/x", [{"n": 1}], concurrency=2, requests=6, timeout=2)
    assert report.errors == 6 and report.latencies == [] and report.status_counts == {}
    assert sum(report.failures.values()) == 6 and all("Connect" in kind for kind in report.failures)


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3/x", "http://example.com/x", "http://0.0.0.0:3000/", "ftp://127.0.0.1/"]
)
def test_non_loopback_targets_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(NotLoopbackError):
        load(url, [{"n": 1}], concurrency=1, requests=1)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:3000/x", "http://localhost/x", "http://[::1]:8080/", "http://127.0.0.2/"]
)
def test_loopback_targets_are_accepted(url: str) -> None:
    assert check_loopback(url).host in {"127.0.0.1", "localhost", "::1", "127.0.0.2"}


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        load("http://127.0.0.1:1/", concurrency=1)
    with pytest.raises(ValueError, match="exactly one"):
        load("http://127.0.0.1:1/", concurrency=1, requests=1, duration=1.0)
    with pytest.raises(ValueError, match="concurrency"):
        load("http://127.0.0.1:1/", concurrency=0, requests=1)
