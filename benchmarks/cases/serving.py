"""The HTTP service end to end, prod profile: real `bentoml serve` processes on loopback, a real Redis and PostgreSQL.

Measured side by side in one run (the serving issue's acceptance; goals in brackets):

- (a) the floor: a BentoML no-op endpoint (`benchmarks/noop_service.py`), one request at a time;
- (b) `/predict_purchase`, 1 candidate, concurrency 1, on the service with adaptive batching off and on
  [p50 <= 2.5 ms, p99 <= 5 ms, median <= 1.5x the floor];
- (c) `/predict_purchase`, 100 candidates, concurrency 1, batching off and on [p99 <= 15 ms];
- (d) `/predict_purchase`, 1 candidate, 64 concurrent clients, batching on vs off [throughput >= 3x, p99 <= 2x];
- (e) cold start: `bentoml serve` launched -> `GET /readyz` 200 with Feast and every model loaded [<= 5 s], next
  to the no-op service's cold start and the import times that make it up.

Set-up: a throw-away prod-profile deployment (own Feast project, offline schema, registry schema, data dir and
BentoML home) with a small synthetic shop: features built, `feast apply`, materialised to Redis, the three models
trained, registered and promoted. Everything is removed at the end (servers' process groups, Redis keys, registry
rows, the schemas). Latencies are measured by `benchmarks.load` (closed loop, keep-alive) on the same 2 cores as the
servers: client time is in every figure, the floor's included, which is why the ratio to the floor is the figure to
trust. (a), (b) and (c) alternate batches of requests between the servers, (d) alternates timed windows, so noise
from other work on the machine hits every server alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.harness import Case, Goal, Result, with_ratio
from benchmarks.load import LoadReport, Payload, open_client, run_load
from journey.settings import PROJECT_ROOT, Profile, Settings, get_settings, use_settings

if TYPE_CHECKING:
    from training.pipeline import ModelKind

CASE_NAME = "serving"
DATASET = "bench_serving"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
SERVICE = "serving.service:Journey"
NOOP_SERVICE = "benchmarks.noop_service:Noop"


@dataclass(frozen=True)
class Sizes:
    """How much of everything: `--quick` is a smoke run, the default is what `make bench` reports."""

    events: int
    max_examples: int
    rounds: int  # (a)(b)(c): rounds of the interleaving
    per_round: int  # (a)(b): requests per server per round
    per_round_100: int  # (c)
    windows: int  # (d): timed windows per server
    window_s: float  # (d): seconds per window


QUICK = Sizes(events=40_000, max_examples=10_000, rounds=10, per_round=40, per_round_100=10, windows=2, window_s=3.0)
FULL = Sizes(events=60_000, max_examples=20_000, rounds=25, per_round=120, per_round_100=30, windows=4, window_s=5.0)


@dataclass
class LoadResult(Result):
    """A Result whose throughput is what the load run achieved (2xx answers / wall time of the runs), not
    `rows / median latency`: with 64 requests in flight the median latency says nothing about throughput."""

    achieved: float | None = None

    @property
    def throughput(self) -> float | None:
        return self.achieved


# ------------------------------------------------------------------------------------------------ the deployment


@dataclass(frozen=True)
class Shop:
    """Entities requests are drawn from: each user's last session (with its last event time) and the items."""

    users: list[int]
    sessions: list[str]
    request_ts: list[int]
    items: list[int]
    prices: list[float]


@dataclass
class Deployment:
    settings: Settings
    env: dict[str, str]  # the JOURNEY_* variables a server process of this deployment needs
    root: Path
    shop: Shop
    setup_note: str = ""


def _shop(events: Any) -> Shop:
    frame = events.select(["user_id", "session_id", "item_id", "event_timestamp", "price"]).to_pandas()
    last = frame.sort_values("event_timestamp").groupby("user_id").tail(1)
    items = frame.dropna(subset=["price"]).drop_duplicates("item_id")
    return Shop(
        users=last["user_id"].astype(int).tolist(),
        sessions=last["session_id"].astype(str).tolist(),
        request_ts=[int(stamp.timestamp()) + 60 for stamp in last["event_timestamp"]],  # a minute after the last event
        items=items["item_id"].astype(int).tolist(),
        prices=items["price"].astype(float).round(2).tolist(),
    )


def _drop_schemas(settings: Settings, *schemas: str) -> None:
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    dsn = make_url(settings.postgres_dsn).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _teardown_feast(settings: Settings) -> None:
    from journey.stores.feature_store import open_store, teardown_project

    teardown_project(open_store(settings))


@contextlib.contextmanager
def deployment(sizes: Sizes, echo: Callable[[str], None] = print) -> Iterator[Deployment]:
    """A prod-profile deployment of its own, trained and materialised; removed on exit whatever happened."""
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig, generate
    from journey.registry import Registry
    from journey.stores.feature_store import apply, materialize
    from journey.stores.offline import OfflineTables
    from training.pipeline import build_offline, run_training

    base = get_settings()
    name = f"bench_serving_{uuid.uuid4().hex[:8]}"
    root = base.data_dir / "bench" / name
    token = base.admin_token.get_secret_value() if base.profile.value == "prod" and base.admin_token else ""
    env = {
        "JOURNEY_PROFILE": "prod",
        "JOURNEY_FEAST_PROJECT": name,
        "JOURNEY_OFFLINE_SCHEMA": name,
        "JOURNEY_REGISTRY_SCHEMA": f"{name}_reg",
        "JOURNEY_REGISTRY_URL": base.postgres_dsn,  # never a registry configured elsewhere (it would be promoted in)
        "JOURNEY_DATA_DIR": str(root / "data"),
        "JOURNEY_REPORTS_DIR": str(root / "reports"),
        "JOURNEY_ADMIN_TOKEN": token or f"bench-{uuid.uuid4().hex}",
        "JOURNEY_REDIS_URL": base.redis_url,
        "JOURNEY_POSTGRES_DSN": base.postgres_dsn,
    }
    settings = Settings(
        profile=Profile.PROD,
        feast_project=name,
        offline_schema=name,
        registry_schema=f"{name}_reg",
        registry_url=env["JOURNEY_REGISTRY_URL"],
        data_dir=root / "data",
        reports_dir=root / "reports",
        admin_token=env["JOURNEY_ADMIN_TOKEN"],
        redis_url=base.redis_url,
        postgres_dsn=base.postgres_dsn,
    )
    with contextlib.ExitStack() as cleanup:  # callbacks run last-in first-out, each even if another one raised
        cleanup.callback(_drop_schemas, settings, settings.offline_schema, settings.registry_schema)
        cleanup.callback(lambda: OfflineTables(settings).drop_all())
        cleanup.callback(_teardown_feast, settings)
        try:
            began = time.perf_counter()
            data = generate(SyntheticConfig(seed=7).scaled_to(sizes.events))
            DatasetStore(settings.events_dir).write(
                DATASET, data.events, source={"kind": "synthetic", "bench": CASE_NAME}
            )
            with use_settings(settings):  # the feature repo's modules read get_settings()
                echo(f"   set-up: {data.events.num_rows:,} events -> features, feast apply, materialise")
                build_offline(DATASET, settings)
                apply(settings)
                materialize(settings, datetime.now(UTC) + timedelta(minutes=1))
                versions: dict[str, int] = {}
                kinds: tuple[ModelKind, ...] = ("propensity", "next-action", "next-item")
                for kind in kinds:
                    echo(f"   set-up: training {kind} ({sizes.max_examples:,} examples at most)")
                    trained = run_training(kind, DATASET, settings, max_examples=sizes.max_examples, actor="bench")
                    versions[trained.version.name] = trained.version.version
                with Registry(settings) as registry:
                    for model, version in versions.items():
                        registry.promote(model, version, actor="bench")
            note = (
                f"{data.events.num_rows:,} synthetic events, the three models trained on <= {sizes.max_examples:,} "
                f"examples and promoted; set-up {time.perf_counter() - began:.0f} s"
            )
            yield Deployment(settings, env, root, _shop(data.events), note)
        except BaseException:
            echo(f"   serving bench failed: its files (server logs among them) are kept in {root}")
            raise
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------- the servers


@dataclass
class Server:
    """One `bentoml serve` process group on loopback and the log it writes."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    launched: float  # perf_counter just before the launch
    ready_s: float | None = None
    readyz: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _bentoml() -> str:
    """The `bentoml` script of this interpreter's environment (not whatever `bentoml` is first on PATH)."""
    script = Path(sys.executable).parent / "bentoml"
    return str(script) if script.exists() else "bentoml"


def launch(name: str, target: str, env: dict[str, str], logs: Path) -> Server:
    """Start `bentoml serve target` in a session of its own, so the whole process group can be stopped."""
    port = _free_port()
    home = logs / f"{name}-bentoml-home"  # each server its own: BentoML wipes BENTOML_HOME's prometheus dir at start
    home.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    full_env = {**os.environ, **env, "BENTOML_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    command = [_bentoml(), "serve", target, "--host", HOST, "--port", str(port)]
    with log.open("wb") as out:
        launched = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(name, port, process, log, launched)


def wait_ready(server: Server, timeout_s: float = READY_TIMEOUT_S) -> float:
    """Seconds from launch to the first `GET /readyz` 200 (polled every 25 ms); the body is kept (Journey's says
    which models answer and how long loading took)."""
    import httpx

    deadline = server.launched + timeout_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.perf_counter() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited with {server.process.returncode}: see {server.log}")
            try:
                response = client.get(f"{server.url}/readyz")
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                server.ready_s = time.perf_counter() - server.launched
                with contextlib.suppress(ValueError):
                    server.readyz = response.json()
                return server.ready_s
            time.sleep(0.025)
    raise TimeoutError(f"{server.name} not ready after {timeout_s:.0f} s: see {server.log}")


def stop(server: Server) -> None:
    """SIGTERM to the server's process group, SIGKILL after 15 s: nothing of it outlives the bench."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):  # workers that outlived their supervisor
        os.killpg(server.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)


# ------------------------------------------------------------------------------------------------- measurements


def _merge(reports: list[LoadReport]) -> LoadReport:
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


@dataclass(frozen=True)
class Target:
    url: str
    payload: Callable[[int], Payload]


async def _alternate(
    targets: dict[str, Target], *, concurrency: int, rounds: int, requests: int | None, duration: float | None
) -> dict[str, LoadReport]:
    """`rounds` times, one load run per target in turn (A B C A B C ...), on connections kept across rounds; the
    first round is preceded by a warm-up per target."""
    clients = {name: open_client(concurrency, timeout=30.0) for name in targets}
    runs: dict[str, list[LoadReport]] = {name: [] for name in targets}
    try:
        for name, target in targets.items():
            await run_load(
                target.url, target.payload, concurrency=concurrency, requests=2 * concurrency + 10, client=clients[name]
            )
        for _ in range(rounds):
            for name, target in targets.items():
                report = await run_load(
                    target.url,
                    target.payload,
                    concurrency=concurrency,
                    requests=requests,
                    duration=duration,
                    client=clients[name],
                )
                runs[name].append(report)
    finally:
        for client in clients.values():
            await client.close()
    return {name: _merge(reports) for name, reports in runs.items()}


def alternate(
    targets: dict[str, Target],
    *,
    concurrency: int,
    rounds: int,
    requests: int | None = None,
    duration: float | None = None,
) -> dict[str, LoadReport]:
    return asyncio.run(
        _alternate(targets, concurrency=concurrency, rounds=rounds, requests=requests, duration=duration)
    )


def _purchase_payloads(shop: Shop, candidates: int, seed: int) -> Callable[[int], Payload]:
    """Request k: a random user with their last session, `candidates` random items with their prices."""
    rng = np.random.default_rng(seed)
    n = 4096
    users = rng.integers(0, len(shop.users), n)
    picks = rng.integers(0, len(shop.items), (n, candidates))
    bodies = [
        {
            "user_id": shop.users[u],
            "session_id": shop.sessions[u],
            "request_ts": shop.request_ts[u],
            "items": [{"item_id": shop.items[i], "price": shop.prices[i]} for i in row],
        }
        for u, row in zip(users.tolist(), picks.tolist(), strict=True)
    ]
    return lambda k: bodies[k % n]


def _recommend_payloads(shop: Shop, seed: int) -> Callable[[int], Payload]:
    """Request k: a random user's last session, ten items asked for."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, len(shop.users), 4096).tolist()
    bodies = [{"user_id": shop.users[u], "session_id": shop.sessions[u], "k": 10} for u in users]
    return lambda k: bodies[k % len(bodies)]


def _check_answers(server: Server, payload: Payload, candidates: int, attempts: int = 20) -> None:
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


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


_EXCEPTION_LINE = re.compile(r"^(?:[a-z_][\w]*\.)*([A-Z]\w*(?:Error|Exception|Unavailable|Timeout)\w*)(?::\s*(.*))?$")


_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT")  # BentoML's log records start with an ISO timestamp


def exceptions_in_log(log: Path) -> Counter[str]:
    """The final exception of every traceback in a server log, as `Type: message`, counted (chained causes are left
    out). The client only sees a status code; the log says which process failed and why."""
    seen: Counter[str] = Counter()
    pending: str | None = None
    with log.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if match := _EXCEPTION_LINE.match(line.rstrip()):
                if pending is not None:
                    seen[pending] += 1
                kind, message = match.groups()
                pending = f"{kind}: {message[:80]}" if message else kind
            elif line.startswith(("During handling of the above exception", "The above exception was the direct")):
                pending = None  # a cause: the exception that follows is the one the call failed with
            elif pending is not None and _LOG_RECORD.match(line):
                seen[pending] += 1
                pending = None
    if pending is not None:
        seen[pending] += 1
    return seen


def _log_summary(seen: Counter[str]) -> str:
    return ", ".join(f"`{what}` x{n:,}" for what, n in seen.most_common(4)) or "none"


COLD_STARTS = 3  # (e) samples of each server, alternating
# (e) what the start-up imports cost in a fresh interpreter: the service module (paid by BentoML's supervisor and again
# by the worker), the no-op's, and Feast imported plainly vs as the worker does (serving.lean_feast)
IMPORTS = {
    "serving.service": "import serving.service",
    "benchmarks.noop_service": "import benchmarks.noop_service",
    "feast": "import feast",
    "feast (lean)": "from serving.lean_feast import import_feast; import_feast()",
}


@dataclass(frozen=True)
class ColdStarts:
    noop_s: list[float]
    service_s: list[float]
    phases: list[dict[str, float]]  # the service's `startup_phases` of /readyz, per start


def _cold_starts(dep: Deployment, logs: Path, rounds: int) -> ColdStarts:
    """`bentoml serve` -> first 200 of `/readyz`, no-op and Journey (the default configuration) alternating."""
    out = ColdStarts([], [], [])
    for i in range(rounds):
        for name, target, env, into in (
            (f"cold-noop-{i}", NOOP_SERVICE, {}, out.noop_s),
            (f"cold-journey-{i}", SERVICE, dep.env, out.service_s),
        ):
            server = launch(name, target, env, logs)
            try:
                into.append(wait_ready(server))
                if target == SERVICE:
                    out.phases.append(dict(server.readyz.get("startup_phases") or {}))
            finally:
                stop(server)
    return out


def _import_seconds(statement: str, env: dict[str, str]) -> float:
    """`statement` in a fresh interpreter (what each BentoML process pays), timed inside it."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _terminated_cleanly() -> Iterator[None]:
    """SIGTERM (`timeout`, a CI runner) raises SystemExit here, so the `finally` blocks stop the servers (they run
    in sessions of their own: nothing else would) and drop the schemas, instead of the process just vanishing."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with _terminated_cleanly(), deployment(sizes) as dep:
        logs = dep.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        servers: list[Server] = []
        try:
            # (e) cold starts, one at a time so no start competes with another, floor and service alternating
            starts = _cold_starts(dep, logs, COLD_STARTS)
            noop = launch("noop", NOOP_SERVICE, {}, logs)
            servers.append(noop)
            wait_ready(noop)
            on = launch("batching-on", SERVICE, {**dep.env, "JOURNEY_ADAPTIVE_BATCHING": "true"}, logs)
            servers.append(on)
            wait_ready(on)
            off = launch("batching-off", SERVICE, {**dep.env, "JOURNEY_ADAPTIVE_BATCHING": "false"}, logs)
            servers.append(off)
            wait_ready(off)
            imports = {name: _import_seconds(code, dep.env) for name, code in IMPORTS.items()}
            return _measure(sizes, dep, noop, on, off, imports, starts)
        finally:
            for server in reversed(servers):
                stop(server)


def _measure(
    sizes: Sizes,
    dep: Deployment,
    noop: Server,
    on: Server,
    off: Server,
    imports: dict[str, float],
    starts: ColdStarts,
) -> list[Result]:
    one, hundred = _purchase_payloads(dep.shop, 1, seed=1), _purchase_payloads(dep.shop, 100, seed=2)
    for server in (on, off):
        _check_answers(server, one(0), 1)
        _check_answers(server, hundred(0), 100)

    # (a) + (b): the floor and a single candidate on both services, alternating batches of requests
    single = alternate(
        {
            "noop": Target(f"{noop.url}/ping", lambda k: {"x": k}),
            "off": Target(f"{off.url}/predict_purchase", one),
            "on": Target(f"{on.url}/predict_purchase", one),
            "recommend": Target(f"{off.url}/recommend", _recommend_payloads(dep.shop, seed=3)),
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
        "with their last session, one random item; every answer read Redis (checked: degraded=false). Batching on: "
        "the model call goes to the scorer process over HTTP, through BentoML's batching dispatcher."
    )

    recommend = with_ratio(_result("/recommend k=10, c=1 (next_item, in-process)", single["recommend"]), floor)
    recommend.note += (
        "Random users' last sessions, interleaved with (a) and (b): one online read and one ONNX call of the next-item "
        "graph (GRU, softmax over the vocabulary, TopK). Not a goal of the issue: for scale beside (b)."
    )

    # (c) 100 candidates per request
    many = alternate(
        {"off": Target(f"{off.url}/predict_purchase", hundred), "on": Target(f"{on.url}/predict_purchase", hundred)},
        concurrency=1,
        rounds=sizes.rounds,
        requests=sizes.per_round_100,
    )
    c_off = _result("(c) /predict_purchase 100 items, c=1, batching off", many["off"], [Goal("p99_ms", "<=", 15)])
    c_on = _result("(c) /predict_purchase 100 items, c=1, batching on", many["on"], [Goal("p99_ms", "<=", 15)])
    c_on.note += f"{len(many['on'].latencies)} requests per server, 100 random items each, servers alternating."

    # (d) 64 concurrent clients, one candidate each, alternating timed windows; the no-op shows this box's ceiling
    logged = {"on": exceptions_in_log(on.log), "off": exceptions_in_log(off.log)}
    loaded = alternate(
        {
            "noop": Target(f"{noop.url}/ping", lambda k: {"x": k}),
            "off": Target(f"{off.url}/predict_purchase", one),
            "on": Target(f"{on.url}/predict_purchase", one),
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
    off_median, off_p99, on_median, on_p99 = d_off.median_ms, d_off.p99_ms, d_on.median_ms, d_on.p99_ms
    speedup = loaded["on"].throughput / loaded["off"].throughput if loaded["off"].throughput else float("nan")
    d_on.goals = [Goal("throughput", ">=", 3 * loaded["off"].throughput), Goal("p99_ms", "<=", 2 * off_p99)]
    with_ratio(d_on, d_off)
    d_on.note += (
        f"Throughput on/off **{speedup:.2f}x** ({loaded['on'].throughput:,.0f} vs {loaded['off'].throughput:,.0f} "
        f"req/s; goal >= 3x), p99 on/off **{on_p99 / off_p99:.2f}x** ({on_p99:.1f} vs {off_p99:.1f} ms; goal <= 2x), "
        f"median {on_median:.1f} vs {off_median:.1f} ms: the goals' thresholds are 3x / 2x the batching-off row of "
        f"this run. {sizes.windows} windows of {sizes.window_s:g} s per server, alternating, closed loop."
    )
    ceiling = loaded["noop"].throughput / loaded["off"].throughput if loaded["off"].throughput else float("nan")
    in_logs = {"on": exceptions_in_log(on.log) - logged["on"], "off": exceptions_in_log(off.log) - logged["off"]}
    d_on.note += (
        f" Exceptions in the server logs during these windows, batching on: {_log_summary(in_logs['on'])}; off: "
        f"{_log_summary(in_logs['off'])}. For scale: the no-op endpoint did {ceiling:.1f}x the batching-off throughput "
        "at this concurrency, roughly the ceiling of any endpoint of this framework and client on this machine."
    )
    if any("process is overloaded" in what for what in in_logs["on"]):
        d_on.note += (
            " 'process is overloaded' is BentoML's batching dispatcher cancelling a call that has waited longer than "
            f"max_latency_ms (JOURNEY_BATCH_MAX_LATENCY_MS, {dep.settings.batch_max_latency_ms} ms)."
        )

    return [
        floor, b_off, b_on, recommend, c_off, c_on, d_floor, d_off, d_on, *_cold_start(dep, on, off, imports, starts)
    ]  # fmt: skip


def _cold_start(
    dep: Deployment, on: Server, off: Server, imports: dict[str, float], starts: ColdStarts
) -> list[Result]:
    assert on.ready_s is not None and off.ready_s is not None
    base = Result(
        CASE_NAME,
        "(e) cold start, no-op service -> /readyz 200",
        starts.noop_s,
        note="`bentoml serve` launched -> first 200 (polled every 25 ms): BentoML's own start-up, nothing of Journey.",
    )
    phases = "; ".join(", ".join(f"{k} {v:.2f} s" for k, v in p.items()) for p in starts.phases)
    note = (
        f"`bentoml serve {SERVICE}` (default configuration: adaptive batching off) -> `/readyz` 200 (Feast store + "
        f"the three models loaded), {len(starts.service_s)} starts alternating with the no-op's. `ServingState.load` "
        f"phases in the worker, per start: {phases}. With batching on (a second worker process, the scorer, starts "
        f"at the same time): {on.ready_s:.1f} s. Imports in a fresh interpreter: "
        + ", ".join(f"`{k}` {v:.2f} s" for k, v in imports.items())
        + f" (the service module is paid by the supervisor, then by the worker; Feast only by the worker, lean). "
        f"{dep.setup_note}."
    )
    service = Result(
        CASE_NAME,
        "(e) cold start, Journey prod service -> /readyz 200",
        starts.service_s,
        goals=[Goal("median_ms", "<=", 5000)],
        note=note,
    )
    return [base, with_ratio(service, base)]


CASE = Case(
    CASE_NAME,
    "BentoML service, prod profile: no-op floor, /predict_purchase 1 and 100 items, c=64 batching on/off, cold start",
    run,
)
