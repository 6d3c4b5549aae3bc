"""A real Prometheus of the test's own, with the repo's config and rules, scraping a real Journey service.

The service and its trained models come from tests/integration/serving/conftest.py (`shop`, `serve`): imported here,
not copied, so the live observability test runs the same `bentoml serve` launcher as the serving tests. (Imported
fixtures get their own instance: with both folders in one run, `shop` is built once for each.)

`run_prometheus(target, tmp)` loads infra/prometheus/prometheus.yml with three changes only: the journey job scrapes
`target`, the scrape and rule-evaluation intervals are short, and rule file paths are absolute. It listens on a free
loopback port, keeps its TSDB in `tmp`, and is always stopped (process group, then reaped).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.feature_store.conftest import skip_or_fail
from tests.integration.serving.conftest import (  # noqa: F401  (`shop` is re-registered here as a fixture)
    free_port,
    shop,
    stop_group,
)
from tests.unit.infra.files import PROMETHEUS_DIR

READY_TIMEOUT_S = 30.0


@dataclass
class Prometheus:
    url: str
    client: httpx.Client
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (`/api/v1/query`); a query Prometheus refuses fails the test with its error."""
        response = self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            pytest.fail(f"Prometheus refused {expr!r}: {body.get('error', response.text)}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def finite(self, expr: str) -> list[dict[str, Any]]:
        """The series of `expr` with a finite value (NaN: a ratio or quantile over no observations)."""
        return [s for s in self.query(expr) if math.isfinite(float(s["value"][1]))]

    def rules(self) -> list[dict[str, Any]]:
        body = self.client.get("/api/v1/rules").json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def wait_for(self, expr: str, predicate: Any, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll an instant query until `predicate(result)` holds; fail with the last result and the log tail."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.5)
        pytest.fail(f"{expr!r} did not reach the expected state in {timeout_s} s: {result}\n{self.log_tail()}")


def prometheus_config(target: str, self_target: str, interval: str) -> dict[str, Any]:
    """infra/prometheus/prometheus.yml scraping `target` as job journey, at `interval`, rules by absolute path."""
    config: dict[str, Any] = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"] |= {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval}
    config["rule_files"] = [str(PROMETHEUS_DIR / pattern) for pattern in config["rule_files"]]
    for job in config["scrape_configs"]:
        job.pop("scrape_timeout", None)  # must not exceed the short interval
        job["static_configs"][0]["targets"] = [target if job["job_name"] == "journey" else self_target]
    return config


@contextlib.contextmanager
def run_prometheus(target: str, tmp: Path, *, interval: str = "1s") -> Iterator[Prometheus]:
    """Prometheus on a free loopback port scraping `target` (host:port) every `interval`, rules evaluated as often."""
    binary = shutil.which("prometheus")
    if binary is None:
        skip_or_fail("prometheus binary not found (Debian's prometheus package: `make install` as root)")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"127.0.0.1:{port}"
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(target, address, interval)), encoding="utf-8")
    log = tmp / "prometheus.log"
    command = [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = httpx.Client(base_url=f"http://{address}", timeout=10.0)
    prometheus = Prometheus(f"http://{address}", client, process, log)
    try:
        _wait_ready(prometheus)
        yield prometheus
    finally:
        client.close()
        stop_group(process)


def _wait_ready(prometheus: Prometheus) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if (code := prometheus.process.poll()) is not None:
            pytest.fail(f"prometheus exited with {code}; log:\n{prometheus.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if prometheus.client.get("/-/ready", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"prometheus not ready after {READY_TIMEOUT_S} s; log:\n{prometheus.log_tail()}")
