"""A real `bentoml serve serving.service:Journey` on trained models: the data behind it and the server itself.

- `shop` (session): a synthetic dataset, its features built, applied and materialised (local profile: files +
  SQLite), and the three models trained small and promoted. Built once per session (~1-2 min on 2 cores); every server
  of the session serves these ONNX files.
- `prod_project` (session): the same dataset in a prod project of this session's own (Feast project, offline and
  model-registry schemas in PostgreSQL, keys in Redis), the models registered in its registry; removed afterwards.
  The models are trained once (in `shop`) and their exports registered here rather than retrained: a prod training
  set goes through Feast's PostgreSQL offline store, whose point-in-time join grows ~quadratically with the examples
  (measured here: 1k 6 s, 2k 26 s, 5k 170 s per training set); serving reads the registry and the online store,
  which is what these tests are about.
- `serve(env, tmp)`: starts the server as a subprocess in a process group of its own (BentoML spawns a process per
  service), waits for `/readyz` 200 and always stops the whole group. A failed start names the server's log tail.

`prometheus_client` is imported before anything imports Feast: `import feast` points PROMETHEUS_MULTIPROC_DIR at a
temp dir of its own when unset, and serving.metrics imported after that (the in-process predictors here) would keep
mmap'ed files open in it until exit (ResourceWarnings at shutdown).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import prometheus_client  # noqa: F401  (imported before Feast: see the module docstring)
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.settings import Profile, Settings
from tests.factories.served import register_copy
from tests.integration.conftest import drop_schema
from tests.integration.feature_store.conftest import _reachable, drop_project, skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[3]
BENTOML = Path(sys.executable).with_name("bentoml")
DATASET = "demo"
EVENTS = 30_000  # synthetic events: ~2k users, ~6k sessions over 30 days
MAX_EXAMPLES = 4_000  # per training set: enough for both classes, small enough to train in seconds
READY_TIMEOUT_S = 90.0
# pytest-timeout counts fixture setup: the first test of a session builds `shop` (+ `prod_project`), ~2-4 min on two
# shared cores, over the suite's default 300 s when the machine is busy
SESSION_SETUP_TIMEOUT_S = 900
STOP_TIMEOUT_S = 15.0
ADMIN_TOKEN = "integration-test-admin-token"
MODELS = ("purchase_propensity", "next_action", "next_item")
NEXT_ACTION_CLASSES = ("view", "add_to_cart", "remove_from_cart", "purchase", "exit")


@dataclass(frozen=True)
class Session:
    """A real shopping session of the dataset: who, which items (with prices), and when it last moved."""

    user_id: int
    session_id: str
    items: tuple[tuple[int, float | None], ...]
    last_event: datetime


@dataclass(frozen=True)
class Shop:
    settings: Settings
    env: dict[str, str]  # the JOURNEY_* variables a server needs to serve this data dir
    sessions: tuple[Session, ...]  # recent sessions with several items; tests take distinct ones

    @property
    def request_ts(self) -> int:
        """A request time just after the newest session: the feature rows are fresh for it."""
        return int(max(s.last_event for s in self.sessions).timestamp()) + 60


@dataclass(frozen=True)
class ProdProject:
    settings: Settings
    env: dict[str, str]
    sessions: tuple[Session, ...]


def env_of(settings: Settings) -> dict[str, str]:
    """The JOURNEY_* variables that make a server process see `settings` (connection strings from settings)."""
    env = {
        "JOURNEY_PROFILE": settings.profile.value,
        "JOURNEY_DATA_DIR": str(settings.data_dir),
        "JOURNEY_REPORTS_DIR": str(settings.reports_dir),
        "JOURNEY_FEAST_PROJECT": settings.feast_project,
        "JOURNEY_OFFLINE_SCHEMA": settings.offline_schema,
        "JOURNEY_REGISTRY_SCHEMA": settings.registry_schema,
        "JOURNEY_REDIS_URL": settings.redis_url,
        "JOURNEY_POSTGRES_DSN": settings.postgres_dsn,
    }
    if settings.admin_token is not None:
        env["JOURNEY_ADMIN_TOKEN"] = settings.admin_token.get_secret_value()
    return env


def recent_sessions(events: pa.Table, count: int = 6, min_items: int = 3) -> tuple[Session, ...]:
    """The `count` sessions that ended last among those with at least `min_items` distinct items."""
    ends = events.group_by("session_id").aggregate(
        [("event_timestamp", "max"), ("item_id", "count_distinct"), ("user_id", "min")]
    )
    ends = ends.filter(pc.greater_equal(ends["item_id_count_distinct"], min_items))
    ends = ends.sort_by([("event_timestamp_max", "descending")]).slice(0, count)
    sessions = []
    for row in ends.to_pylist():
        mine = events.filter(pc.equal(events["session_id"], row["session_id"]))
        prices: dict[int, float | None] = {}
        for item, price in zip(mine["item_id"].to_pylist(), mine["price"].to_pylist(), strict=True):
            prices.setdefault(item, price)
        sessions.append(
            Session(
                row["user_id_min"], row["session_id"], tuple(prices.items())[:min_items], row["event_timestamp_max"]
            )
        )
    return tuple(sessions)


def _generate(settings: Settings) -> tuple[Session, ...]:
    from journey.datasets import generate_to_store
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig

    generate_to_store(SyntheticConfig(seed=42).scaled_to(EVENTS), DATASET, settings)
    return recent_sessions(DatasetStore(settings.events_dir).events(DATASET))


def _features_online(settings: Settings) -> None:
    """Offline tables from the dataset, `feast apply`, materialisation up to now, and the journey analysis (its
    chain for `/journey/{user_id}` and the user_profile features, offline and online)."""
    from journey.stores.feature_store import apply, materialize
    from training.analysis.run import run_analysis
    from training.pipeline import build_offline

    build_offline(DATASET, settings)
    apply(settings)
    materialize(settings, datetime.now(UTC))
    run_analysis(DATASET, settings)


@pytest.fixture(scope="session")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    """Local profile: dataset, features online, the three models trained (small) and in production."""
    from journey.registry import Registry
    from training.pipeline import run_training

    root = tmp_path_factory.mktemp("serving-local")
    settings = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    sessions = _generate(settings)
    _features_online(settings)
    for kind in ("propensity", "next-action", "next-item"):
        result = run_training(kind, DATASET, settings, max_examples=MAX_EXAMPLES, actor="integration-test")
        with Registry(settings) as registry:
            registry.promote(result.version.name, result.version.version, "integration-test")
    env = {k: env_of(settings)[k] for k in ("JOURNEY_PROFILE", "JOURNEY_DATA_DIR", "JOURNEY_REPORTS_DIR")}
    return Shop(settings, env, sessions)


@pytest.fixture(scope="session")
def prod_services() -> None:
    """Skip (fail under REQUIRE_SERVICES=1) unless Redis and PostgreSQL answer; before anything is built."""
    probe = Settings()
    if not _reachable(probe.redis_url, 6379):
        skip_or_fail(f"Redis not reachable at {probe.redis_url}")
    if not _reachable(probe.postgres_dsn, 5432):
        skip_or_fail("PostgreSQL not reachable")


@pytest.fixture(scope="session")
def prod_project(prod_services: None, shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProdProject]:
    """Prod profile on the real Redis + PostgreSQL, in a project and schemas of this session's own."""
    from journey.registry import Registry

    name = f"jt_serving_{uuid.uuid4().hex[:8]}"
    root = tmp_path_factory.mktemp("serving-prod")
    settings = Settings(
        profile=Profile.PROD,
        data_dir=root / "data",
        reports_dir=root / "reports",
        feast_project=name,
        offline_schema=name,
        registry_schema=f"{name}_models",
        admin_token=ADMIN_TOKEN,
    )
    try:
        sessions = _generate(settings)
        _features_online(settings)
        for model in MODELS:
            version = register_copy(settings, model, actor="integration-test", source=shop.settings)
            with Registry(settings) as registry:
                registry.promote(model, version.version, "integration-test")
        yield ProdProject(settings, env_of(settings), sessions)
    finally:
        drop_project(settings)  # Redis keys, Feast registry rows, offline schema
        drop_schema(settings, settings.registry_schema)


# ------------------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    client: httpx.Client
    log: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.client.post(path, json=body)

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """`/metrics` as {sample name: [(labels, value), ...]}."""
        from prometheus_client.parser import text_string_to_metric_families

        response = self.client.get("/metrics")
        assert response.status_code == 200, response.text
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    def metric_families(self) -> set[str]:
        from prometheus_client.parser import text_string_to_metric_families

        return {family.name for family in text_string_to_metric_families(self.client.get("/metrics").text)}


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a recycled id of someone else's group: ours is gone
        return False
    return True


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout_s`; reap the leader."""
    pgid = process.pid  # start_new_session=True: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=timeout_s)


@contextlib.contextmanager
def serve(env: Mapping[str, str], tmp: Path, *, timeout_s: float = READY_TIMEOUT_S) -> Iterator[Server]:
    """`bentoml serve serving.service:Journey` on a free port with `env` (JOURNEY_* of this process are dropped)."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"bentoml-{port}.log"
    # this process's JOURNEY_* would leak into the server's settings; PROMETHEUS_* (Feast's import sets them to a
    # temp dir of its own) must not point BentoML's workers at this process's metric files
    full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("JOURNEY_", "PROMETHEUS_"))}
    # Feast's import makes a /tmp/feast_metrics_* dir unless PROMETHEUS_MULTIPROCESS_DIR is set (the name only Feast
    # reads), and a BentoML worker exits without removing it: one leaked dir per server start. Keep it in `tmp`.
    (feast_metrics := tmp / f"feast-metrics-{port}").mkdir()
    full_env |= {
        "PYTHONUNBUFFERED": "1",
        "BENTOML_HOME": str(tmp / "bentoml_home"),
        "PROMETHEUS_MULTIPROCESS_DIR": str(feast_metrics),
        **env,
    }
    command = [str(BENTOML), "serve", "serving.service:Journey", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    client = httpx.Client(base_url=url, timeout=30.0)
    server = Server(url, client, log, process, dict(env))
    try:
        _wait_ready(server, timeout_s)
        yield server
    finally:
        client.close()
        stop_group(process)


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if (code := server.process.poll()) is not None:
            pytest.fail(f"bentoml serve exited with {code} before it was ready; log tail:\n{server.log_tail()}")
        try:
            response = server.client.get("/readyz", timeout=2.0)
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:2000]}"
        time.sleep(0.25)
    pytest.fail(f"{server.url}/readyz not 200 after {timeout_s:.0f} s (last: {last}); log tail:\n{server.log_tail()}")


# -------------------------------------------------------------------------------------------------- redis-server


class RedisServer:
    """A `redis-server` of the test's own (nothing persisted), that a test may kill and start again on its port."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            skip_or_fail("redis-server binary not found")
        self.binary = str(binary)
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        import redis

        self.starts += 1
        log = self.tmp / f"redis-{self.port}-{self.starts}.log"
        command = [self.binary, "--port", str(self.port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, cwd=self.tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.running:
                    pytest.fail(f"redis-server exited: {log.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(redis.exceptions.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        pytest.fail(f"redis-server on port {self.port} did not answer PING in {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no goodbye to clients)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.running:
            stop_group(self.process, timeout_s=5.0)


def later(session: Session, seconds: float) -> str:
    """An ISO timestamp `seconds` after the session's last event (inside the 30 min session timeout)."""
    return (session.last_event + timedelta(seconds=seconds)).isoformat()
