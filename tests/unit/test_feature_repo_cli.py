"""`cd feature_repo && feast apply` works as Feast users expect (embedded profile, Feast's own CLI), and
`journey features env` prints the environment with which Feast's CLI sees the active profile's stores."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_feast_cli_applies_the_repo_in_place(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / "data" / "feast").mkdir(parents=True)  # the checkout ships this folder (data/feast/.gitkeep)
    env = {**os.environ, "JOURNEY_DATA_DIR": str(checkout / "data")}
    env.pop("JOURNEY_PROFILE", None)

    def feast(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).with_name("feast")), *args],
            cwd=checkout / "feature_repo",
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    done = feast("apply")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Created feature service purchase_propensity_v1" in done.stdout
    assert (checkout / "data" / "feast" / "registry.db").exists()
    listed = feast("feature-services", "list")
    assert "next_action_v1" in listed.stdout, listed.stdout + listed.stderr


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`start()` points the root handler at CliRunner's stream, closed after the command (as tests/unit/cli do)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_journey_features_env_prints_the_exports_feast_needs_and_a_shell_reads_them_back(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    from cli import app
    from journey.settings import get_settings
    from journey.stores.connections import feast_environment

    monkeypatch.setenv("JOURNEY_PROFILE", "prod")
    monkeypatch.setenv("JOURNEY_ADMIN_TOKEN", "a-real-secret")
    monkeypatch.setenv("JOURNEY_POSTGRES_DSN", "postgresql+psycopg://feast:it%27s%20%24x@pg:5432/features")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["features", "env"])
        expected = feast_environment(get_settings())
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "feast -f prod/feature_store.yaml" in result.stdout
    names = " ".join(f'"${name}"' for name in expected)
    shell = subprocess.run(
        ["bash", "-c", f"{result.stdout}\nprintf '%s\\0' {names}"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    assert dict(zip(expected, shell.stdout.split("\0")[:-1], strict=True)) == expected
    assert expected["JOURNEY_FEAST_PG_PASSWORD"] == "it''s $x"  # YAML's '' escape, read back as it's $x


def test_journey_features_env_says_when_journey_and_the_local_yaml_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    from cli import app
    from journey.settings import get_settings

    monkeypatch.delenv("JOURNEY_PROFILE", raising=False)
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["features", "env"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"export JOURNEY_DATA_DIR={tmp_path}" in result.stdout
    assert f"# note: Journey uses registry.path {tmp_path / 'feast' / 'registry.db'}" in result.stdout
