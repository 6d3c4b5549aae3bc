"""`make soak`: mixed traffic for minutes against a prod-profile deployment, and a report of what drifted.

    python -m benchmarks.soak [--minutes 10] [--window-s 30]  -> reports/soak/soak.{md,json,png}

The deployment is the serving case's (benchmarks/cases/serving/deployment.py: its own Feast project and schemas on
the real Redis and PostgreSQL, the three models trained and promoted, every next-item kind routed on /recommend),
served by one `bentoml serve` in its default configuration. Each window drives `/predict_purchase`,
`/predict_next_action`, `/recommend` and `/events` (fresh events: the online and offline stores grow as in
production) at once, closed loop, CONCURRENCY clients each, with bodies drawn fresh every window; after it the RSS of
every process of the server is read. The verdict (issue 19's soak acceptance): RSS growth after the warm-up windows
<= 10%, p99 drift (the last three windows against the first three after warm-up, per endpoint) <= 20%, no error.
Not part of `make test` or `make bench`: it takes the minutes it is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from benchmarks.cases.serving import terminated_cleanly
from benchmarks.cases.serving.bodies import RequestStream, Streams
from benchmarks.cases.serving.deployment import Shop, deployment
from benchmarks.cases.serving.servers import SERVICE, launch, stop, wait_ready
from benchmarks.cases.serving.sizes import FULL
from benchmarks.load import LoadReport, Payload, open_client, run_load
from journey.settings import get_settings

CONCURRENCY: Final = 2  # clients per endpoint: 8 in flight in all, past the 2-core box's saturation
WARMUP_WINDOWS: Final = 2
ENDPOINTS: Final = ("predict_purchase", "predict_next_action", "recommend", "events")
GOALS: Final = {"rss_growth": 0.10, "p99_drift": 0.20, "errors": 0}


@dataclass
class Window:
    started_s: float  # since the first window began
    throughput: dict[str, float]  # 2xx answers per second, per endpoint
    p50_ms: dict[str, float]
    p99_ms: dict[str, float]
    errors: dict[str, int]
    rss_mb: dict[str, float]  # per process of the server (supervisor and workers)


def event_bodies(shop: Shop) -> Any:
    """`/events`: one fresh view per request, in a random user's last session, stamped a second ago."""

    def draw(rng: np.random.Generator, n: int) -> list[Payload]:
        users = rng.integers(0, len(shop.users), n).tolist()
        items = rng.integers(0, len(shop.items), n).tolist()
        stamp = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        return [
            {
                "events": [
                    {
                        "event_id": f"soak-{uuid.uuid4().hex}",
                        "user_id": shop.users[u],
                        "session_id": shop.sessions[u],
                        "item_id": shop.items[i],
                        "event_type": "view",
                        "event_timestamp": stamp,
                    }
                ]
            }
            for u, i in zip(users, items, strict=True)
        ]

    return draw


def next_action_bodies(shop: Shop) -> Any:
    def draw(rng: np.random.Generator, n: int) -> list[Payload]:
        users = rng.integers(0, len(shop.users), n).tolist()
        return [{"user_id": shop.users[u], "session_id": shop.sessions[u]} for u in users]

    return draw


def _rss_mb(pid: int) -> dict[str, float]:
    """RSS of the server's process and all its descendants (BentoML's supervisor, and workers that live in
    sessions of their own), by command and pid; `ps` reads them (procps, on every Linux host this runs on)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,rss=,comm="], capture_output=True, text=True, check=False)
    rows = [line.split(None, 3) for line in out.stdout.splitlines()]
    children: dict[str, list[list[str]]] = {}
    for row in rows:
        children.setdefault(row[1], []).append(row)
    rss, todo = {}, [row for row in rows if row[0] == str(pid)]
    while todo:
        row = todo.pop()
        rss[f"{row[3]}:{row[0]}"] = int(row[2]) / 1024
        todo += children.get(row[0], [])
    return rss


async def _window(url: str, streams: dict[str, RequestStream], seconds: float) -> dict[str, LoadReport]:
    clients = {name: open_client(CONCURRENCY, timeout=30.0) for name in streams}
    try:
        runs = [
            run_load(
                f"{url}/{name}",
                streams[name].next_batch(int(seconds * 400)),
                concurrency=CONCURRENCY,
                duration=seconds,
                client=clients[name],
            )
            for name in ENDPOINTS
        ]
        return dict(zip(ENDPOINTS, await asyncio.gather(*runs), strict=True))
    finally:
        for client in clients.values():
            await client.close()


def _summary(report: LoadReport) -> tuple[float, float, float, int]:
    ms = np.asarray(report.latencies) * 1000 if report.latencies else np.asarray([np.nan])
    return report.throughput, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), report.errors


def soak(minutes: float, window_s: float, echo: Any = print) -> dict[str, Any]:
    """Build the deployment, serve it, drive the windows, and return the figures with the verdict."""
    windows: list[Window] = []
    with terminated_cleanly(), deployment(FULL, echo) as dep:  # SIGTERM still removes the deployment
        logs = dep.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        server = launch("soak", SERVICE, dep.env, logs)
        try:
            wait_ready(server)
            base = Streams.of(dep.shop)
            streams = {
                "predict_purchase": base.one,
                "predict_next_action": RequestStream(next_action_bodies(dep.shop), seed=11),
                "recommend": base.recommend,
                "events": RequestStream(event_bodies(dep.shop), seed=12),
            }
            began = time.perf_counter()
            count = max(WARMUP_WINDOWS + 6, round(minutes * 60 / window_s))
            for number in range(count):
                started = time.perf_counter() - began
                reports = asyncio.run(_window(server.url, streams, window_s))
                figures = {name: _summary(r) for name, r in reports.items()}
                window = Window(
                    round(started, 1),
                    {n: f[0] for n, f in figures.items()},
                    {n: f[1] for n, f in figures.items()},
                    {n: f[2] for n, f in figures.items()},
                    {n: f[3] for n, f in figures.items()},
                    _rss_mb(server.process.pid),
                )
                windows.append(window)
                echo(
                    f"   window {number + 1}/{count}: "
                    + ", ".join(f"{n} p99 {window.p99_ms[n]:.1f} ms" for n in ENDPOINTS)
                    + f"; RSS {sum(window.rss_mb.values()):.0f} MB; errors {sum(window.errors.values())}"
                )
        finally:
            stop(server)
    return {"minutes": minutes, "window_s": window_s, "windows": [asdict(w) for w in windows], **_verdict(windows)}


def _verdict(windows: list[Window]) -> dict[str, Any]:
    """RSS growth after warm-up, p99 drift per endpoint (last three windows / first three after warm-up), errors."""
    steady = windows[WARMUP_WINDOWS:]
    rss = [sum(w.rss_mb.values()) for w in steady]
    growth = (max(rss[-3:]) - rss[0]) / rss[0]
    drift = {
        name: statistics.median(w.p99_ms[name] for w in steady[-3:])
        / statistics.median(w.p99_ms[name] for w in steady[:3])
        - 1
        for name in ENDPOINTS
    }
    errors = sum(sum(w.errors.values()) for w in windows)
    met = {
        "rss_growth": growth <= GOALS["rss_growth"],
        "p99_drift": max(drift.values()) <= GOALS["p99_drift"],
        "errors": errors == GOALS["errors"],
    }
    return {"rss_growth": growth, "p99_drift": drift, "errors": errors, "goals": GOALS, "met": met}


def write_report(result: dict[str, Any], out_dir: Path) -> Path:
    """soak.json, soak.png (p99 per endpoint and RSS over time) and soak.md; returns the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    windows = result["windows"]
    minutes = [w["started_s"] / 60 for w in windows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for name in ENDPOINTS:
        top.plot(minutes, [w["p99_ms"][name] for w in windows], marker="o", label=name)
    top.set_ylabel("p99 ms")
    top.legend()
    top.set_title("Soak: p99 per endpoint and server RSS per window")
    bottom.plot(minutes, [sum(w["rss_mb"].values()) for w in windows], marker="o", color="black")
    bottom.set_ylabel("RSS, all server processes (MB)")
    bottom.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(out_dir / "soak.png", dpi=110)
    plt.close(fig)
    lines = [
        f"# Soak: {result['minutes']:g} minutes, windows of {result['window_s']:g} s",
        "",
        f"- RSS growth after {WARMUP_WINDOWS} warm-up windows: **{result['rss_growth']:+.1%}** (goal <= +10%)",
        "- p99 drift, last three windows vs first three after warm-up: "
        + ", ".join(f"{n} **{d:+.1%}**" for n, d in result["p99_drift"].items())
        + " (goal <= +20%)",
        f"- errors (non-2xx or no answer): **{result['errors']}** (goal 0)",
        f"- met: {json.dumps(result['met'])}",
        "",
        "| window start (min) | " + " | ".join(f"{n} req/s, p50 / p99 ms" for n in ENDPOINTS) + " | RSS MB | errors |",
        "|---" * (len(ENDPOINTS) + 3) + "|",
    ]
    for w in windows:
        cells = [f"{w['throughput'][n]:.0f}, {w['p50_ms'][n]:.1f} / {w['p99_ms'][n]:.1f}" for n in ENDPOINTS]
        rss = sum(w["rss_mb"].values())
        lines.append(
            f"| {w['started_s'] / 60:.1f} | " + " | ".join(cells) + f" | {rss:.0f} | {sum(w['errors'].values())} |"
        )
    lines += ["", "![soak](soak.png)", ""]
    path = out_dir / "soak.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="How long to drive traffic (default 10).")
    parser.add_argument("--window-s", type=float, default=30.0, help="Seconds per measured window (default 30).")
    args = parser.parse_args()
    result = soak(args.minutes, args.window_s)
    path = write_report(result, get_settings().reports_dir / "soak")
    print(path.read_text(encoding="utf-8"))
    print(f"report written to {path} (and soak.json, soak.png beside it)")


if __name__ == "__main__":
    main()
