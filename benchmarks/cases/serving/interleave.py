"""Load runs against several servers in turn (A B C A B C ...), on connections kept across rounds, each round on a
fresh batch of request bodies that every server of the round shares (see `bodies`).

Interleaved so that noise from other work on the machine (the client shares its cores with the servers) hits every
server alike; one client per server so that no server's connections are warmed or queued by another's traffic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from benchmarks.cases.serving.bodies import Batch, RequestStream
from benchmarks.load import LoadReport, open_client, run_load

FIRST_WINDOW_BODIES = 4096  # bodies drawn ahead for a timed window before any window has said how many it needs


@dataclass(frozen=True)
class Target:
    """A URL and the stream its bodies come from; targets that share a stream get the same batch in each round."""

    url: str
    stream: RequestStream


def merge(reports: list[LoadReport]) -> LoadReport:
    """Several load runs of one target as one report: latencies pooled, counts and times summed."""
    statuses: dict[int, int] = {}
    failures: dict[str, int] = {}
    for report in reports:
        for status, n in report.status_counts.items():
            statuses[status] = statuses.get(status, 0) + n
        for kind, n in report.failures.items():
            failures[kind] = failures.get(kind, 0) + n
    return LoadReport(
        latencies=[s for r in reports for s in r.latencies],
        errors=sum(r.errors for r in reports),
        status_counts=statuses,
        failures=failures,
        wall_seconds=sum(r.wall_seconds for r in reports),
        concurrency=reports[0].concurrency,
        max_in_flight=max(r.max_in_flight for r in reports),
        client_cpu_seconds=sum(r.client_cpu_seconds for r in reports),
    )


def draw_round(targets: dict[str, Target], size: int) -> dict[str, Batch]:
    """One new batch per distinct stream, drawn before the round starts (outside every timing), handed to each
    target of that stream."""
    batches: dict[int, Batch] = {}
    for target in targets.values():
        if id(target.stream) not in batches:
            batches[id(target.stream)] = target.stream.next_batch(size)
    return {name: batches[id(target.stream)] for name, target in targets.items()}


async def _alternate(
    targets: dict[str, Target], *, concurrency: int, rounds: int, requests: int | None, duration: float | None
) -> dict[str, LoadReport]:
    """`rounds` times, one load run per target in turn, on connections kept across rounds; the first round is
    preceded by a warm-up per target (on a batch of its own, never measured)."""
    clients = {name: open_client(concurrency, timeout=30.0) for name in targets}
    runs: dict[str, list[LoadReport]] = {name: [] for name in targets}
    warmup = 2 * concurrency + 10
    most_sent = 0  # the most requests one timed window sent so far: how many bodies the next round draws ahead
    try:
        for name, batch in draw_round(targets, warmup).items():
            await run_load(targets[name].url, batch, concurrency=concurrency, requests=warmup, client=clients[name])
        for _ in range(rounds):
            size = requests if requests is not None else max(FIRST_WINDOW_BODIES, most_sent + most_sent // 2)
            for name, batch in draw_round(targets, size).items():
                report = await run_load(
                    targets[name].url,
                    batch,
                    concurrency=concurrency,
                    requests=requests,
                    duration=duration,
                    client=clients[name],
                )
                runs[name].append(report)
                most_sent = max(most_sent, report.sent)
    finally:
        for client in clients.values():
            await client.close()
    return {name: merge(reports) for name, reports in runs.items()}


def alternate(
    targets: dict[str, Target],
    *,
    concurrency: int,
    rounds: int,
    requests: int | None = None,
    duration: float | None = None,
) -> dict[str, LoadReport]:
    """`_alternate` from synchronous code: give `requests` per server per round, or `duration` seconds per window."""
    return asyncio.run(
        _alternate(targets, concurrency=concurrency, rounds=rounds, requests=requests, duration=duration)
    )
