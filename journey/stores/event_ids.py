"""Exactly-once events: the ledger of event ids already stored, shared by every process and replica of a deployment.

    ledger = open_ledger(settings)        # Redis (prod) or SQLite (local), window settings.event_dedup_window_s
    claims = ledger.claim(ids)            # per id: NEW (claimed for this request), DUPLICATE (stored before),
                                          # IN_FLIGHT (another request is storing it right now)
    ... store the NEW events ...
    ledger.confirm(new_ids)               # stored: a duplicate from now on, for the window
    ledger.release(new_ids)               # not stored (the write failed): a retry may claim them again

Why a claim before the write and a confirmation after it (Kafka's idempotent producer keeps sequence numbers for the
same reason): marking an id as seen before its event is stored would turn a failed write into a lost event (the
client's retry would be acknowledged as a duplicate); marking it after would let two concurrent retries both store
it. A claim is a short lease (`claim_ttl_s`): a process that dies between claim and confirmation leaves an id that
can be claimed again once the lease ends, and a request that meets a live lease reports the event as in flight, to
be retried, rather than guessing. Ids are remembered for `window_s` after they were stored (Segment keeps message
ids for a similar window); a retry later than that is stored again.

Redis: one key per id, `SET NX` with the lease as expiry, then `SET XX` with the window as expiry; atomic per key on
Redis and on Redis Cluster (no multi-key operation). SQLite (the local profile): one table, claims in an immediate
transaction, expired rows purged as they are met.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    import redis

    from journey.settings import Settings

PENDING: Final = b"p"
STORED: Final = b"s"


class Claim(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    IN_FLIGHT = "in_flight"


class EventIdLedger(Protocol):
    window_s: float

    def claim(self, ids: Sequence[str]) -> list[Claim]: ...

    def confirm(self, ids: Sequence[str]) -> None: ...

    def release(self, ids: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class RedisLedger:
    """Ids as keys `<prefix><id>` in Redis: b"p" while claimed, b"s" once stored."""

    def __init__(self, client: redis.Redis[bytes], prefix: str, window_s: float, claim_ttl_s: float) -> None:
        self._redis, self._prefix = client, prefix
        self.window_s, self._lease_ms = window_s, max(1, int(claim_ttl_s * 1000))

    def _key(self, event_id: str) -> str:
        return f"{self._prefix}{event_id}"

    def claim(self, ids: Sequence[str]) -> list[Claim]:
        pipe = self._redis.pipeline(transaction=False)
        for event_id in ids:
            pipe.set(self._key(event_id), PENDING, nx=True, px=self._lease_ms)
        won = pipe.execute()
        lost = [event_id for event_id, ok in zip(ids, won, strict=True) if not ok]
        states = dict(zip(lost, self._redis.mget([self._key(i) for i in lost]), strict=True)) if lost else {}
        return [
            Claim.NEW if ok else (Claim.IN_FLIGHT if states[event_id] == PENDING else Claim.DUPLICATE)
            for event_id, ok in zip(ids, won, strict=True)
        ]

    def confirm(self, ids: Sequence[str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for event_id in ids:
            pipe.set(self._key(event_id), STORED, px=int(self.window_s * 1000))
        pipe.execute()

    def release(self, ids: Sequence[str]) -> None:
        if ids:
            self._redis.delete(*(self._key(i) for i in ids))

    def close(self) -> None:
        self._redis.close()


class SqliteLedger:
    """Ids in one SQLite table (state 'p' or 's', expiry in epoch seconds); safe across processes on one host."""

    def __init__(self, path: Path, window_s: float, claim_ttl_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS event_ids "
            "(event_id TEXT PRIMARY KEY, state TEXT NOT NULL, expires REAL NOT NULL)"
        )
        self.window_s, self._lease_s = window_s, claim_ttl_s

    def claim(self, ids: Sequence[str]) -> list[Claim]:
        now, claims = time.time(), []
        with self._transaction():  # one writer at a time: check and claim are atomic
            for event_id in ids:
                row = self._db.execute(
                    "SELECT state, expires FROM event_ids WHERE event_id = ?", (event_id,)
                ).fetchone()
                if row is not None and row[1] > now:
                    claims.append(Claim.IN_FLIGHT if row[0] == "p" else Claim.DUPLICATE)
                    continue
                self._db.execute("INSERT OR REPLACE INTO event_ids VALUES (?, 'p', ?)", (event_id, now + self._lease_s))
                claims.append(Claim.NEW)
        return claims

    def confirm(self, ids: Sequence[str]) -> None:
        expires = time.time() + self.window_s
        with self._transaction():
            self._db.executemany(
                "UPDATE event_ids SET state = 's', expires = ? WHERE event_id = ?", [(expires, i) for i in ids]
            )
            self._db.execute("DELETE FROM event_ids WHERE expires <= ?", (time.time(),))

    def release(self, ids: Sequence[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM event_ids WHERE event_id = ? AND state = 'p'", [(i,) for i in ids])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE (the write lock first, so a check and the write it decides are atomic), then COMMIT, or
        ROLLBACK when anything raised."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def open_ledger(settings: Settings) -> EventIdLedger:
    """The deployment's ledger: Redis in the prod profile (shared by every replica), SQLite in the local one."""
    from journey.settings import Profile

    window, lease = settings.event_dedup_window_s, settings.event_claim_ttl_s
    if settings.profile == Profile.PROD:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
        return RedisLedger(client, f"journey:{settings.feast_project}:event_id:", window, lease)
    return SqliteLedger(settings.data_dir / "event_ids.sqlite", window, lease)
