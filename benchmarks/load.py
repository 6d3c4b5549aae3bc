"""A bounded, closed-loop HTTP load generator for the serving benchmarks, against this machine only.

Closed loop: `concurrency` workers each send their next request when the previous one has been answered, so at most
`concurrency` requests are ever in flight and the server is never flooded past what it can answer (an open-loop
generator on a 2-core box measures its own queue, not the service). Connections are kept alive and the pool is sized
to the concurrency: a client that reconnects per request pays ~30 ms here (STACK-NOTES), which would swamp a
millisecond-scale service.

aiohttp, not httpx: the client shares the cores with the server it measures, so its own cost is in every figure.
Against the BentoML no-op endpoint on this 2-core machine, httpx.AsyncClient managed 137 req/s at concurrency 1
(p50 5.8 ms, 0.36 cores of client CPU) and collapsed to 52 req/s at 64 (0.81 cores); aiohttp did 258 req/s
(p50 3.0 ms, 0.16 cores) and 311 req/s at 64 (0.17 cores). With httpx the benchmark measured the client.

Only loopback targets are accepted (127.0.0.1, ::1, localhost): the benchmarks measure a local server and must never
be pointed at someone else's. Redirects are not followed and proxy variables are ignored, for the same reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

Payload = Any  # a JSON-serialisable request body
Payloads = Sequence[Payload] | Callable[[int], Payload] | None


JSON = {"Content-Type": "application/json"}


class NotLoopbackError(ValueError):
    """The URL names a host other than this machine's loopback interface."""


@dataclass
class LoadReport:
    """What one load run saw. Warm-up requests are not in it."""

    latencies: list[float]  # seconds per request answered 2xx, in completion order
    errors: int  # requests without a 2xx answer: an HTTP error status or no answer at all
    status_counts: dict[int, int]  # every HTTP answer, by status code
    failures: dict[str, int] = field(default_factory=dict)  # requests that got no answer, by exception type
    wall_seconds: float = 0.0  # first request sent -> last answer received
    concurrency: int = 1
    max_in_flight: int = 0  # the most requests this client had outstanding at once
    client_cpu_seconds: float = 0.0  # CPU this process used meanwhile: the client competes with a local server

    @property
    def sent(self) -> int:
        return sum(self.status_counts.values()) + sum(self.failures.values())

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return len(self.latencies) / self.wall_seconds if self.wall_seconds > 0 else 0.0


def check_loopback(url: str) -> URL:
    """The parsed URL, or NotLoopbackError when its host is not this machine's loopback interface."""
    parsed = URL(url)
    if parsed.scheme not in {"http", "https"}:
        raise NotLoopbackError(f"only http(s) URLs are load-tested, got {url!r}")
    host = parsed.host or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise NotLoopbackError(f"load tests run against 127.0.0.1/localhost only, not {host!r}")
    return parsed


def open_client(concurrency: int, timeout: float = 10.0) -> aiohttp.ClientSession:
    """A keep-alive client whose pool holds at most `concurrency` connections (no proxy variables; `run_load` does
    not follow redirects). Call it inside a running event loop, close it with `await client.close()`."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False, raise_for_status=False
    )


def _payload_at(payloads: Payloads, number: int) -> Payload:
    if payloads is None:
        return None
    if callable(payloads):
        return payloads(number)
    return payloads[number % len(payloads)]


async def run_load(
    url: str,
    payloads: Payloads = None,
    *,
    concurrency: int,
    requests: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    timeout: float = 10.0,
    client: aiohttp.ClientSession | None = None,
) -> LoadReport:
    """Send requests to `url` from `concurrency` closed-loop workers and time each one.

    Request number k (warm-up first, then measured ones) carries `payloads[k % len]`, `payloads(k)`, or nothing
    (`None`: GET); with a body it is a JSON POST. Give `requests` (a fixed count) or `duration` (seconds: no new
    request starts after it). `warmup` requests go first through the same workers and connections and are not
    reported. Pass `client` (see `open_client`) to reuse warm connections across runs.
    """
    check_loopback(url)
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if (requests is None) == (duration is None):
        raise ValueError("give exactly one of requests= or duration=")
    if (requests is not None and requests < 0) or (duration is not None and duration <= 0) or warmup < 0:
        raise ValueError("requests and warmup must be >= 0, duration > 0")
    owned = client is None
    http = client or open_client(concurrency, timeout)
    try:
        if warmup:
            await _drive(http, url, payloads, concurrency, first=0, count=warmup, deadline=None)
        return await _drive(http, url, payloads, concurrency, first=warmup, count=requests, deadline=duration)
    finally:
        if owned:
            await http.close()


async def _drive(
    http: aiohttp.ClientSession,
    url: str,
    payloads: Payloads,
    concurrency: int,
    *,
    first: int,
    count: int | None,
    deadline: float | None,
) -> LoadReport:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    next_number = first
    in_flight = most_in_flight = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    stop_at = started + deadline if deadline is not None else None

    def take() -> int | None:
        """The next request number, or None when the run is over (single-threaded event loop: no lock needed)."""
        nonlocal next_number
        if count is not None and next_number >= first + count:
            return None
        if stop_at is not None and time.perf_counter() >= stop_at:
            return None
        next_number += 1
        return next_number - 1

    async def worker() -> None:
        nonlocal in_flight, most_in_flight
        while (number := take()) is not None:
            body = _payload_at(payloads, number)
            data = None if body is None else json.dumps(body).encode()
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            began = time.perf_counter()
            try:
                if data is None:
                    request = http.get(url, allow_redirects=False)
                else:
                    request = http.post(url, data=data, headers=JSON, allow_redirects=False)
                async with request as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] += 1
                continue
            finally:
                in_flight -= 1
            elapsed = time.perf_counter() - began
            statuses[status] += 1
            if 200 <= status < 300:
                latencies.append(elapsed)

    workers = concurrency if count is None else min(concurrency, count)
    await asyncio.gather(*(worker() for _ in range(workers)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    errors = sum(n for status, n in statuses.items() if not 200 <= status < 300) + sum(failures.values())
    return LoadReport(latencies, errors, dict(statuses), dict(failures), wall, concurrency, most_in_flight, cpu)


def load(
    url: str,
    payloads: Payloads = None,
    *,
    concurrency: int,
    requests: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    timeout: float = 10.0,
) -> LoadReport:
    """`run_load` from synchronous code (its own event loop and client)."""
    return asyncio.run(
        run_load(
            url,
            payloads,
            concurrency=concurrency,
            requests=requests,
            duration=duration,
            warmup=warmup,
            timeout=timeout,
        )
    )
