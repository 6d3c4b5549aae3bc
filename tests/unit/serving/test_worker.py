"""serving.worker's start-up helpers that need no deployment (loading itself is covered by the HTTP tests)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from journey.settings import Settings
from serving import worker


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_the_start_up_heap_is_moved_out_of_the_collectors_generations(unfrozen: None) -> None:
    survivor = [object() for _ in range(1000)]

    frozen = worker.freeze_startup_heap()

    assert frozen == gc.get_freeze_count() >= len(survivor)


def test_freezing_can_be_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNEY_GC_FREEZE", "false")
    assert Settings().gc_freeze is False
