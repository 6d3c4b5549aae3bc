"""Shared fixtures: isolated settings per test, the real public samples, and service gating.

Integration tests that need a service skip when it is absent on a developer's machine, but fail when
REQUIRE_SERVICES=1 (CI), so a broken service never turns into a silently green run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from journey.settings import Settings, get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = Path(os.environ.get("JOURNEY_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))


def services_required() -> bool:
    return os.environ.get("REQUIRE_SERVICES", "") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip locally; fail under REQUIRE_SERVICES=1."""
    if services_required():
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at a fresh temporary data/reports dir, visible to code that calls get_settings()."""
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JOURNEY_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.delenv("JOURNEY_PROFILE", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real public samples (../shared/datasets); they ship beside every checkout and CI clone."""
    if not SHARED_DATASETS.exists():
        skip_or_fail(f"real samples not found at {SHARED_DATASETS} (set JOURNEY_SHARED_DATASETS)")
    return SHARED_DATASETS
