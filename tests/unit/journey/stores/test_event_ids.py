"""The event-id ledger on both backends (SQLite, and the real Redis of the prod profile): new ids are claimed once,
stored ids are duplicates for the window, a failed write releases its ids, a live claim is in flight, an expired
one can be claimed again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from journey.settings import Profile, Settings
from journey.stores.event_ids import Claim, EventIdLedger, RedisLedger, SqliteLedger, open_ledger
from tests.conftest import skip_or_fail

NEW, DUPLICATE, IN_FLIGHT = Claim.NEW, Claim.DUPLICATE, Claim.IN_FLIGHT
Make = Callable[..., EventIdLedger]  # make(window_s=60, lease_s=30) -> a fresh ledger on the parametrised backend


def _redis(window_s: float, lease_s: float) -> RedisLedger:
    import redis

    client = redis.Redis.from_url(Settings().redis_url, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis: {exc}")
    return RedisLedger(client, f"journey:test-{uuid.uuid4().hex[:8]}:event_id:", window_s, lease_s)


@pytest.fixture(params=["sqlite", "redis"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    made: list[EventIdLedger] = []

    def factory(window_s: float = 60.0, lease_s: float = 30.0) -> EventIdLedger:
        if request.param == "sqlite":
            ledger: EventIdLedger = SqliteLedger(tmp_path / f"ids-{len(made)}.sqlite", window_s, lease_s)
        else:
            ledger = _redis(window_s, lease_s)
        made.append(ledger)
        return ledger

    yield factory
    for ledger in made:
        ledger.close()


def test_new_ids_are_claimed_and_once_stored_are_duplicates(make: Make) -> None:
    ledger = make()

    assert ledger.claim(["a", "b"]) == [NEW, NEW]
    ledger.confirm(["a", "b"])
    assert ledger.claim(["a", "c", "b"]) == [DUPLICATE, NEW, DUPLICATE]


def test_an_id_claimed_by_a_request_still_storing_it_is_in_flight(make: Make) -> None:
    ledger = make()

    assert ledger.claim(["a"]) == [NEW]
    assert ledger.claim(["a"]) == [IN_FLIGHT]


def test_released_ids_can_be_claimed_again_so_a_failed_write_loses_nothing(make: Make) -> None:
    ledger = make()
    ledger.claim(["a", "b"])

    ledger.release(["a", "b"])

    assert ledger.claim(["a", "b"]) == [NEW, NEW]


def test_a_claim_left_by_a_dead_process_expires_with_its_lease(make: Make) -> None:
    ledger = make(lease_s=0.2)
    ledger.claim(["a"])

    time.sleep(0.4)

    assert ledger.claim(["a"]) == [NEW]


def test_a_stored_id_is_forgotten_after_the_window(make: Make) -> None:
    ledger = make(window_s=0.3)
    ledger.claim(["a"])
    ledger.confirm(["a"])

    time.sleep(0.5)

    assert ledger.claim(["a"]) == [NEW]


def test_two_ledgers_on_one_store_see_each_others_ids(tmp_path: Path) -> None:
    first, second = (SqliteLedger(tmp_path / "ids.sqlite", 60, 30) for _ in range(2))  # two workers of one host
    try:
        first.claim(["a"])
        first.confirm(["a"])
        assert second.claim(["a", "b"]) == [DUPLICATE, NEW]
    finally:
        first.close()
        second.close()


def test_the_profile_picks_the_backend(settings: Settings) -> None:
    local = open_ledger(settings)
    prod = open_ledger(settings.model_copy(update={"profile": Profile.PROD}))
    try:
        assert isinstance(local, SqliteLedger) and isinstance(prod, RedisLedger)
        assert local.window_s == settings.event_dedup_window_s == 7 * 86_400
    finally:
        local.close()
        prod.close()
