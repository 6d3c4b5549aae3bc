"""The HTTP service end to end, prod profile: real `bentoml serve` processes on loopback, a real Redis and PostgreSQL.

Measured side by side in one run (the serving issue's acceptance; goals in brackets):

- (a) the floor: a BentoML no-op endpoint (`benchmarks/noop_service.py`), one request at a time;
- (b) `/predict_purchase`, 1 candidate, concurrency 1, on the service with adaptive batching off and on
  [p50 <= 2.5 ms, p99 <= 5 ms, median <= 1.5x the floor];
- (c) `/predict_purchase`, 100 candidates, concurrency 1, batching off and on [p99 <= 15 ms];
- (d) `/predict_purchase`, 1 candidate, 64 concurrent clients, batching on vs off [throughput >= 3x, p99 <= 2x];
- `/recommend`, k=10, concurrency 1, one row per next-item kind (gru4rec, sasrec, popularity, markov, covisitation,
  sknn: each a registered version, routed evenly, users drawn among those the route sends to it) [p99 <= 2x the
  floor's p99];
- (e) cold start: `bentoml serve` launched -> `GET /readyz` 200 with Feast and every model loaded [<= 5 s], next
  to the no-op service's cold start and the import times that make it up.

The modules, in the order the case uses them: `deployment` (the throw-away prod deployment), `cold_start` (e),
`servers` (`bentoml serve` process groups), `bodies` (request bodies drawn fresh per round), `interleave` (A B C
rounds of load runs), `rows` (a)-(d). Latencies are measured by `benchmarks.load` (closed loop, keep-alive) on the
same cores as the servers: client time is in every figure, the floor's included, which is why the ratio to the floor
is the figure to trust.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from benchmarks.cases.serving.bodies import Streams
from benchmarks.cases.serving.cold_start import cold_start_rows, cold_starts, import_times
from benchmarks.cases.serving.deployment import deployment
from benchmarks.cases.serving.rows import measure
from benchmarks.cases.serving.servers import serving
from benchmarks.cases.serving.sizes import CASE_NAME, FULL, QUICK
from benchmarks.harness import Case, Result


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
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
    """Deployment -> (e) cold starts one at a time -> the three servers -> rows (a)-(d), then (e)'s rows."""
    sizes = QUICK if quick else FULL
    with terminated_cleanly(), deployment(sizes) as dep:
        logs = dep.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        starts = cold_starts(dep.env, logs)
        with serving(dep.env, logs) as servers:
            imports = import_times(dep.env)
            rows = measure(sizes, servers, Streams.of(dep.shop), dep.settings.batch_max_latency_ms)
            return [*rows, *cold_start_rows(dep.setup_note, servers.on, imports, starts)]


CASE = Case(
    CASE_NAME,
    "BentoML service, prod profile: no-op floor, /predict_purchase 1 and 100 items, c=64 batching on/off, cold start",
    run,
)
