"""Schemathesis against a real `bentoml serve`, local and prod profiles (issue 19.3): requests generated from the
service's own OpenAPI document (`/docs.json`, completed by serving.openapi), schema-valid and schema-violating,
bounded in examples per operation (schemathesis.toml beside this file). Every check Schemathesis runs by default
must hold: no 5xx; every status and body as documented; nulls, wrong types and unknown fields refused; schema-valid
requests accepted. The one exception (by design, /events' per-row rejects) is in the config file with its reason.

Run as Schemathesis' own CLI, as a user would in their CI; its report (failures with a curl line to replay each)
is the assertion message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving.conftest import SESSION_SETUP_TIMEOUT_S, Server, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(SESSION_SETUP_TIMEOUT_S)]

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = "20261205"  # a fixed seed: the same requests every run, so a failure reproduces


@pytest.fixture(scope="module", params=["local", "prod"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of the profile under test (the prod one on the real Redis and PostgreSQL)."""
    if request.param == "local":
        env = request.getfixturevalue("shop").env
    else:
        env = request.getfixturevalue("prod_project").env
    with serve(env, tmp_path_factory.mktemp(f"serve-fuzz-{request.param}")) as server:
        yield server


def test_every_generated_request_gets_a_documented_answer_and_no_server_error(fuzzed: Server, tmp_path: Path) -> None:
    command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "--no-color", "run", f"{fuzzed.url}/docs.json"]
    command += ["--seed", SEED, "--report-dir", str(tmp_path)]
    # in tmp_path: Schemathesis keeps a cache (.schemathesis/) in its working directory
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)

    assert run.returncode == 0, f"schemathesis found failures:\n{run.stdout[-12000:]}\n{run.stderr[-2000:]}"
    assert re.search(r"Operations:\s+(\d+) selected / \1 total", run.stdout), run.stdout[:2000]  # none left out
