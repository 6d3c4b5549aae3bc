"""`bentoml serve` processes for the serving case: launched in process groups of their own on loopback, polled until
`/readyz` answers 200, stopped by process group, and their logs read for the exceptions behind failed requests.

A process group each, because BentoML's supervisor forks workers (and, with batching on, the scorer service):
stopping only the supervisor could leave a worker holding a port and a core for the rest of the bench.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journey.settings import PROJECT_ROOT

HOST = "127.0.0.1"
READY_TIMEOUT_S = 180.0
SERVICE = "serving.service:Journey"
NOOP_SERVICE = "benchmarks.noop_service:Noop"


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


@dataclass(frozen=True)
class Servers:
    """The three measured side by side: the no-op floor and the Journey service with adaptive batching on and off."""

    noop: Server
    on: Server
    off: Server


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


@contextlib.contextmanager
def serving(env: dict[str, str], logs: Path) -> Iterator[Servers]:
    """The no-op, batching-on and batching-off servers, started one after another (each ready before the next
    starts, so no start competes with another) and all stopped on exit, last started first."""
    started: list[Server] = []

    def start(name: str, target: str, server_env: dict[str, str]) -> Server:
        server = launch(name, target, server_env, logs)
        started.append(server)
        wait_ready(server)
        return server

    try:
        noop = start("noop", NOOP_SERVICE, {})
        on = start("batching-on", SERVICE, {**env, "JOURNEY_ADAPTIVE_BATCHING": "true"})
        off = start("batching-off", SERVICE, {**env, "JOURNEY_ADAPTIVE_BATCHING": "false"})
        yield Servers(noop, on, off)
    finally:
        for server in reversed(started):
            stop(server)


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


def log_summary(seen: Counter[str]) -> str:
    """The four most frequent exceptions, for a row's note."""
    return ", ".join(f"`{what}` x{n:,}" for what, n in seen.most_common(4)) or "none"
