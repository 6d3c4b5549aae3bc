"""Rows (a)-(d) of the serving case: the load runs side by side and the report rows made of them.

(a), (b) and (c) alternate batches of requests between the servers, (d) alternates timed windows; every round draws
fresh bodies (`bodies`), the same batch for each server of the round. Failed requests are counted in the row's note
and left out of latency and throughput (a shed request answers fast and would flatter the latency).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

from benchmarks.cases.serving.bodies import Streams
from benchmarks.cases.serving.interleave import Target, alternate
from benchmarks.cases.serving.servers import Server, Servers, exceptions_in_log, log_summary
from benchmarks.cases.serving.sizes import CASE_NAME, Sizes
from benchmarks.harness import Goal, Result, with_ratio
from benchmarks.load import LoadReport, Payload

FRESH = "bodies drawn fresh every round, the same batch for each server of the round"


@dataclass
class LoadResult(Result):
    """A Result whose throughput is what the load run achieved (2xx answers / wall time of the runs), not
    `rows / median latency`: with 64 requests in flight the median latency says nothing about throughput."""

    achieved: float | None = None

    @property
    def throughput(self) -> float | None:
        return self.achieved


def failures(report: LoadReport) -> str:
    """ "" when every request was answered 2xx, else what went wrong (the figures then cover the 2xx answers only:
    a shed request answers fast and would flatter the latency)."""
    if not report.errors:
        return ""
    answers = ", ".join(f"HTTP {status} x{n}" for status, n in sorted(report.status_counts.items()) if status >= 300)
    unanswered = ", ".join(f"{kind} x{n}" for kind, n in sorted(report.failures.items()))
    what = "; ".join(part for part in (answers, unanswered and f"no answer: {unanswered}") if part)
    return (
        f"**{report.errors:,} of {report.sent:,} requests failed ({report.errors / report.sent:.0%}: {what})**; "
        "latencies and throughput are of the 2xx answers. "
    )


def _result(name: str, report: LoadReport, goals: list[Goal] | None = None, note: str = "") -> LoadResult:
    return LoadResult(
        CASE_NAME,
        name,
        report.latencies or [float("nan")],
        rows=1,
        unit="requests",
        goals=goals or [],
        note=failures(report) + note,
        achieved=report.throughput,
    )


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_answers(server: Server, payload: Payload, candidates: int, attempts: int = 20) -> None:
    """One good answer before any timing: a timed error page, or a degraded answer (no Redis read), would be a lie.
    Retried for a few seconds: `/readyz` speaks for the API worker, the scorer process may still be starting."""
    import httpx

    for _ in range(attempts):
        response = httpx.post(f"{server.url}/predict_purchase", json=payload, timeout=30.0, trust_env=False)
        if response.status_code == 200:
            body = response.json()
            if body.get("degraded") or len(body.get("scores", [])) != candidates:
                raise RuntimeError(f"{server.name}: unexpected answer {response.text[:500]}")
            return
        time.sleep(0.5)
    raise RuntimeError(f"{server.name}: no 200 from /predict_purchase: {response.status_code} {response.text[:500]}")


def measure(sizes: Sizes, servers: Servers, streams: Streams, max_latency_ms: int) -> list[Result]:
    """Rows (a) to (d), in the report's order, after one checked answer per service and request size."""
    for server in (servers.on, servers.off):
        check_answers(server, streams.one.next_batch(1)(0), 1)
        check_answers(server, streams.hundred.next_batch(1)(0), 100)
    single = _single_item(sizes, servers, streams)
    return [*single, *_hundred_items(sizes, servers, streams), *_concurrent(sizes, servers, streams, max_latency_ms)]


def _single_item(sizes: Sizes, servers: Servers, streams: Streams) -> list[Result]:
    """(a) the floor, (b) one candidate on both services and `/recommend`, alternating batches of requests."""
    noop, on, off = servers.noop, servers.on, servers.off
    recommend = streams.recommend_by_kind or {"": streams.recommend}
    single = alternate(
        {
            "noop": Target(f"{noop.url}/ping", streams.ping),
            "off": Target(f"{off.url}/predict_purchase", streams.one),
            "on": Target(f"{on.url}/predict_purchase", streams.one),
            **{f"recommend:{kind}": Target(f"{off.url}/recommend", stream) for kind, stream in recommend.items()},
        },
        concurrency=1,
        rounds=sizes.rounds,
        requests=sizes.per_round,
    )
    floor = _result(
        "(a) BentoML no-op endpoint (floor), c=1",
        single["noop"],
        note="`benchmarks/noop_service.py`: a sync `ping(x: int) -> int`, one worker, access log on (as the service).",
    )
    b_goals = [Goal("median_ms", "<=", 2.5), Goal("p99_ms", "<=", 5), Goal("ratio", "<=", 1.5)]
    b_off = with_ratio(_result("(b) /predict_purchase 1 item, c=1, batching off", single["off"], b_goals), floor)
    b_on = with_ratio(_result("(b) /predict_purchase 1 item, c=1, batching on", single["on"], list(b_goals)), floor)
    b_on.note += (
        f"{sizes.rounds} rounds of {sizes.per_round} requests per server, interleaved with the floor; random users "
        f"with their last session, one random item ({FRESH}); every answer read Redis (checked: degraded=false). "
        "Batching on: the model call goes to the scorer process over HTTP, through BentoML's batching dispatcher."
    )
    return [floor, b_off, b_on, *_recommend_rows(single, floor, list(recommend))]


def _recommend_rows(single: dict[str, LoadReport], floor: Result, kinds: list[str]) -> list[Result]:
    """One `/recommend` row per next-item kind, goal p99 <= 2x the floor's p99 (issue 18's acceptance)."""
    rows = []
    for kind in kinds:
        goal = Goal("p99_ms", "<=", round(2 * floor.p99_ms, 2))
        label = f"kind {kind}" if kind else "next_item"
        row = with_ratio(
            _result(f"/recommend k=10, c=1, {label} (in-process)", single[f"recommend:{kind}"], [goal]), floor
        )
        row.note += (
            f"Users the route sends to this kind, their last sessions ({FRESH}), interleaved with (a), (b) and the "
            "other kinds on the same server: one online read and one ONNX call of the kind's graph. Goal: p99 <= 2x "
            "the floor's p99."
        )
        rows.append(row)
    return rows


def _hundred_items(sizes: Sizes, servers: Servers, streams: Streams) -> list[Result]:
    """(c) 100 candidates per request, the two services alternating."""
    many = alternate(
        {
            "off": Target(f"{servers.off.url}/predict_purchase", streams.hundred),
            "on": Target(f"{servers.on.url}/predict_purchase", streams.hundred),
        },
        concurrency=1,
        rounds=sizes.rounds,
        requests=sizes.per_round_100,
    )
    c_off = _result("(c) /predict_purchase 100 items, c=1, batching off", many["off"], [Goal("p99_ms", "<=", 15)])
    c_on = _result("(c) /predict_purchase 100 items, c=1, batching on", many["on"], [Goal("p99_ms", "<=", 15)])
    c_on.note += (
        f"{len(many['on'].latencies)} requests per server, 100 random items each, servers alternating ({FRESH})."
    )
    return [c_off, c_on]


def _concurrent(sizes: Sizes, servers: Servers, streams: Streams, max_latency_ms: int) -> list[Result]:
    """(d) 64 concurrent clients, one candidate each, alternating timed windows; the no-op shows this box's
    ceiling. The exceptions the services logged meanwhile go into the batching-on row's note."""
    noop, on, off = servers.noop, servers.on, servers.off
    logged = {"on": exceptions_in_log(on.log), "off": exceptions_in_log(off.log)}
    loaded = alternate(
        {
            "noop": Target(f"{noop.url}/ping", streams.ping),
            "off": Target(f"{off.url}/predict_purchase", streams.one),
            "on": Target(f"{on.url}/predict_purchase", streams.one),
        },
        concurrency=64,
        rounds=sizes.windows,
        duration=sizes.window_s,
    )
    nan = float("nan")
    cores = {name: r.client_cpu_seconds / r.wall_seconds for name, r in loaded.items() if r.wall_seconds}
    d_floor = _result(
        "(d) BentoML no-op endpoint, c=64",
        loaded["noop"],
        note=(
            "What BentoML and the client manage at this concurrency on this machine, whatever the endpoint does. The "
            f"load client itself used {cores.get('noop', nan):.2f} / {cores.get('off', nan):.2f} / "
            f"{cores.get('on', nan):.2f} CPU cores (no-op / off / on windows) of the machine's {_cpus()}."
        ),
    )
    d_off = with_ratio(_result("(d) /predict_purchase 1 item, c=64, batching off", loaded["off"]), d_floor)
    d_on = _result("(d) /predict_purchase 1 item, c=64, batching on", loaded["on"])
    d_on.goals = [Goal("throughput", ">=", 3 * loaded["off"].throughput), Goal("p99_ms", "<=", 2 * d_off.p99_ms)]
    with_ratio(d_on, d_off)
    in_logs = {"on": exceptions_in_log(on.log) - logged["on"], "off": exceptions_in_log(off.log) - logged["off"]}
    d_on.note += _concurrent_note(sizes, loaded, d_on, d_off, in_logs, max_latency_ms)
    return [d_floor, d_off, d_on]


def _concurrent_note(
    sizes: Sizes,
    loaded: dict[str, LoadReport],
    d_on: Result,
    d_off: Result,
    in_logs: dict[str, Counter[str]],
    max_latency_ms: int,
) -> str:
    """(d)'s ratios against the goals, the exceptions logged during the windows, and the no-op's ceiling."""
    on, off, noop = loaded["on"].throughput, loaded["off"].throughput, loaded["noop"].throughput
    speedup = on / off if off else float("nan")
    ceiling = noop / off if off else float("nan")
    note = (
        f"Throughput on/off **{speedup:.2f}x** ({on:,.0f} vs {off:,.0f} req/s; goal >= 3x), p99 on/off "
        f"**{d_on.p99_ms / d_off.p99_ms:.2f}x** ({d_on.p99_ms:.1f} vs {d_off.p99_ms:.1f} ms; goal <= 2x), median "
        f"{d_on.median_ms:.1f} vs {d_off.median_ms:.1f} ms: the goals' thresholds are 3x / 2x the batching-off row "
        f"of this run. {sizes.windows} windows of {sizes.window_s:g} s per server, alternating, closed loop ({FRESH})."
        f" Exceptions in the server logs during these windows, batching on: {log_summary(in_logs['on'])}; off: "
        f"{log_summary(in_logs['off'])}. For scale: the no-op endpoint did {ceiling:.1f}x the batching-off throughput "
        "at this concurrency, roughly the ceiling of any endpoint of this framework and client on this machine."
    )
    if any("process is overloaded" in what for what in in_logs["on"]):
        note += (
            " 'process is overloaded' is BentoML's batching dispatcher cancelling a call that has waited longer than "
            f"max_latency_ms (JOURNEY_BATCH_MAX_LATENCY_MS, {max_latency_ms} ms)."
        )
    return note
