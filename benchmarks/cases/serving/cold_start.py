"""Row (e) of the serving case: `bentoml serve` launched -> first `GET /readyz` 200, the no-op service and the
Journey service alternating, and the import times that make up a start.

One start at a time, before the measured servers run, so that no start competes with another server for the cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cases.serving.servers import NOOP_SERVICE, SERVICE, Server, launch, stop, wait_ready
from benchmarks.cases.serving.sizes import CASE_NAME
from benchmarks.harness import Goal, Result, with_ratio
from journey.settings import PROJECT_ROOT

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


def cold_starts(env: dict[str, str], logs: Path, rounds: int = COLD_STARTS) -> ColdStarts:
    """`bentoml serve` -> first 200 of `/readyz`, no-op and Journey (the default configuration) alternating, every
    server stopped once it answers."""
    out = ColdStarts([], [], [])
    for i in range(rounds):
        for name, target, server_env, into in (
            (f"cold-noop-{i}", NOOP_SERVICE, {}, out.noop_s),
            (f"cold-journey-{i}", SERVICE, env, out.service_s),
        ):
            server = launch(name, target, server_env, logs)
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


def import_times(env: dict[str, str]) -> dict[str, float]:
    """Seconds per entry of `IMPORTS`, each in a fresh interpreter with the deployment's environment."""
    return {name: _import_seconds(code, env) for name, code in IMPORTS.items()}


def cold_start_rows(setup_note: str, on: Server, imports: dict[str, float], starts: ColdStarts) -> list[Result]:
    """The no-op's starts as the baseline, the Journey service's against it (goal: median <= 5 s)."""
    assert on.ready_s is not None
    base = Result(
        CASE_NAME,
        "(e) cold start, no-op service -> /readyz 200",
        starts.noop_s,
        note="`bentoml serve` launched -> first 200 (polled every 25 ms): BentoML's own start-up, nothing of Journey.",
    )
    phases = "; ".join(", ".join(f"{k} {v:.2f} s" for k, v in p.items()) for p in starts.phases)
    note = (
        f"`bentoml serve {SERVICE}` (default configuration: adaptive batching off) -> `/readyz` 200 (Feast store + "
        f"the three models loaded), {len(starts.service_s)} starts alternating with the no-op's. `Worker.start` "
        f"phases in the worker, per start: {phases}. With batching on (a second worker process, the scorer, starts "
        f"at the same time): {on.ready_s:.1f} s. Imports in a fresh interpreter: "
        + ", ".join(f"`{k}` {v:.2f} s" for k, v in imports.items())
        + f" (the service module is paid by the supervisor, then by the worker; Feast only by the worker, lean). "
        f"{setup_note}."
    )
    service = Result(
        CASE_NAME,
        "(e) cold start, Journey prod service -> /readyz 200",
        starts.service_s,
        goals=[Goal("median_ms", "<=", 5000)],
        note=note,
    )
    return [base, with_ratio(service, base)]
