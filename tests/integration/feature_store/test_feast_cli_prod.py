"""Feast's own CLI on the prod profile, with nothing but `prod/feature_store.yaml` and the environment that
`journey features env` prints: `feast serve` answers a feature service with the values Journey's serving reader
reads from the same Redis; `feast apply` of that YAML registers what Journey's apply registers, and is refused before
it registers anything under the local profile's environment."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from journey import contracts as c
from journey.settings import Profile, Settings, get_settings
from journey.stores.connections import feast_environment
from journey.stores.feature_store import FEATURE_REPO, FEATURE_STORE_YAML, apply, opened_store
from serving.features import OnlineFeatureReader
from tests.factories.online import NOW, frame, propensity_row, typed
from tests.integration.feature_store.conftest import drop_project

pytestmark = pytest.mark.integration

FEAST = Path(sys.executable).with_name("feast")
PROD_YAML = FEATURE_STORE_YAML[Profile.PROD]
BATCH_VIEWS = (c.USER_ACTIVITY, c.ITEM_POPULARITY, c.SESSION_ACTIVITY, c.USER_PROFILE)
START_DEADLINE_S = 120.0  # `import feast` alone takes ~10 s on a 2-core machine; gunicorn then forks its worker


def feast_cli_environment(settings: Settings) -> dict[str, str]:
    """A Feast user's shell: no JOURNEY_* variable but those `journey features env` prints for `settings`."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("JOURNEY_")}
    return inherited | feast_environment(settings)


def feast(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FEAST), "-c", str(FEATURE_REPO), "-f", str(PROD_YAML), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def store(prod_store: Any) -> Any:
    """A few users, items and sessions in the module's project, written with Feast's own write path."""
    prod_store.write_to_online_store(c.USER_ACTIVITY, frame(c.USER, list(range(6)), c.USER_ACTIVITY_FEATURES, NOW))
    items = frame(c.ITEM, list(range(12)), c.ITEM_POPULARITY_FEATURES, NOW - timedelta(hours=1))
    prod_store.write_to_online_store(c.ITEM_POPULARITY, items)
    sessions = frame(c.SESSION, [f"s{u}" for u in range(6)], c.SESSION_ACTIVITY_FEATURES, NOW - timedelta(minutes=5))
    sessions[c.USER] = np.arange(6)
    prod_store.write_to_online_store(c.SESSION_ACTIVITY, sessions)
    return prod_store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"feast serve exited with {server.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.25)
    pytest.fail(f"feast serve not healthy after {START_DEADLINE_S:.0f} s:\n{log.read_text(errors='replace')[-4000:]}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    """gunicorn's arbiter and its worker share the process group the server was started in: end them all."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def feast_server(store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`feast -f prod/feature_store.yaml serve` as a Feast user starts it; stopped (process group) afterwards."""
    port, log = _free_port(), tmp_path_factory.mktemp("feast_serve") / "serve.log"
    command = [str(FEAST), "-c", str(FEATURE_REPO), "-f", str(PROD_YAML), "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log"]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            env=feast_cli_environment(get_settings()),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_healthy(url, server, log)
        yield url
    finally:
        _stop(server)


def test_feast_serve_answers_purchase_propensity_with_the_values_serving_reads(store: Any, feast_server: str) -> None:
    rows = [propensity_row(1, 2), propensity_row(4, 7, 3.5), propensity_row(999, 99_999)]  # the last: unknown
    body = {"feature_service": c.PURCHASE_PROPENSITY_V1, "entities": {key: [r[key] for r in rows] for key in rows[0]}}
    response = httpx.post(f"{feast_server}/get-online-features", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    names, results = answer["metadata"]["feature_names"], answer["results"]
    served = {name: result["values"] for name, result in zip(names, results, strict=True)}

    ours = OnlineFeatureReader(store, c.PURCHASE_PROPENSITY_V1).read(rows)
    # by name: Feast orders a view's features by iterating a set, which differs between processes
    assert typed(dict(sorted(served.items()))) == typed(dict(sorted(ours.items())))
    assert served["views_1d"][:2] == [1, 4] and served["item_category_id"][:2] == [14, 49]  # real values, not Nones
    assert served["session_events"][2] is None


def _definitions(settings: Settings) -> dict[str, dict[str, Any]]:
    """The registered batch sources and views of the project, by name (Feast's equality: definitions only)."""
    with opened_store(settings) as store:
        sources = {s.name: s for s in store.list_data_sources() if s.name.endswith("_source")}
        return {"sources": sources, "views": {v.name: v for v in store.list_feature_views()}}


def test_feast_apply_of_the_prod_yaml_refuses_parquet_sources_and_agrees_with_journeys_apply(
    prod_env: dict[str, str], tmp_path: Path
) -> None:
    """The finding this guards: `feast -f prod/feature_store.yaml apply` without JOURNEY_PROFILE=prod used to put
    Parquet sources into the prod project. With the printed environment it registers the definitions Journey's
    apply registers: applying them again from Journey leaves them equal."""
    name = f"jt_feast_apply_{uuid.uuid4().hex[:8]}"
    settings = get_settings().model_copy(update={"feast_project": name, "offline_schema": name})
    try:
        local = feast_cli_environment(settings) | {"JOURNEY_PROFILE": "local", "JOURNEY_DATA_DIR": str(tmp_path)}
        refused = feast("apply", env=local)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert re.search(r"\w+_source is a file source .* offline store is 'postgres'", refused.stderr), refused.stderr
        with opened_store(settings) as store:  # (opening a SQL registry records the project name itself)
            assert (store.list_data_sources(), store.list_entities(), store.list_feature_views()) == ([], [], [])

        applied = feast("apply", env=feast_cli_environment(settings))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        by_feast = _definitions(settings)
        tables = {name: source.get_table_query_string() for name, source in by_feast["sources"].items()}
        assert tables == {f"{view}_source": f"{name}.{view}" for view in BATCH_VIEWS}  # PostgreSQL tables
        apply(settings)
        assert _definitions(settings) == by_feast
    finally:
        drop_project(settings)
