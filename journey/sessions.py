"""Sessionisation: cut each user's time-ordered events into sessions at a gap of inactivity.

Rule: a gap of **at least** `timeout` between two consecutive events of the same user starts a new session (a
session has expired once `timeout` of inactivity has passed, so an event exactly `timeout` later opens a new one).
Events with equal timestamps stay in one session. Input order does not matter.

Shared by batch imports and the online `/events` path so both cut sessions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_ROW_BITS_LIMIT = 64


def _bits(n: int) -> int:
    return max(int(n).bit_length(), 1)


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative-able integers, packing (key, position) into one uint64 when it fits.

    numpy's SIMD `np.sort` on uint64 is ~8x faster than `np.argsort` on this machine; with the row position in the
    low bits the sorted keys carry the permutation and ties keep input order (stability for free).
    """
    n = keys.size
    if n == 0:
        return np.empty(0, dtype=np.int64)
    lo = int(keys.min())
    span = int(keys.max()) - lo
    row_bits = _bits(n - 1)
    if _bits(span) + row_bits > _ROW_BITS_LIMIT:
        return np.argsort(keys, kind="stable")
    packed = (keys - lo).astype(np.uint64) << np.uint64(row_bits)
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64((1 << row_bits) - 1)).astype(np.int64)


def user_time_order(user_ids: np.ndarray, ts_us: np.ndarray) -> np.ndarray:
    """Permutation ordering rows by (user, time), keeping input order for ties."""
    if ts_us.size > 1 and not bool((ts_us[1:] >= ts_us[:-1]).all()):
        by_time = stable_argsort(ts_us)
        result: np.ndarray = by_time[stable_argsort(user_ids[by_time])]
        return result
    return stable_argsort(user_ids)  # logs are usually time-ordered already: one pass suffices


@dataclass(frozen=True)
class Sessions:
    """Per-row session number plus one row per session (its user and start time)."""

    row_session: np.ndarray  # int64, index into the per-session arrays, in input row order
    user_id: np.ndarray  # int64 per session
    start_us: np.ndarray  # int64 per session, first event time
    end_us: np.ndarray  # int64 per session, last event time

    @property
    def count(self) -> int:
        return int(self.user_id.size)

    def session_ids(self) -> pa.DictionaryArray:
        """Stable, readable ids `"<user_id>-<start unix ms>"`, dictionary-encoded so rows share the strings."""
        names = pc.binary_join_element_wise(
            pc.cast(pa.array(self.user_id), pa.string()),
            pc.cast(pa.array(self.start_us // 1000), pa.string()),
            "-",
        )
        return pa.DictionaryArray.from_arrays(pa.array(self.row_session, pa.int32()), names)


def sessionise(user_ids: np.ndarray, ts_us: np.ndarray, timeout_us: int) -> Sessions:
    """Assign every event to a session of its user; `ts_us` are UTC microseconds."""
    if timeout_us <= 0:
        raise ValueError(f"timeout must be positive, got {timeout_us}")
    user_ids = np.asarray(user_ids, dtype=np.int64)
    ts_us = np.asarray(ts_us, dtype=np.int64)
    n = user_ids.size
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return Sessions(empty, empty, empty, empty)
    order = user_time_order(user_ids, ts_us)
    u = user_ids[order]
    t = ts_us[order]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    starts[1:] = (u[1:] != u[:-1]) | ((t[1:] - t[:-1]) >= timeout_us)
    sorted_session = np.cumsum(starts) - 1
    row_session = np.empty(n, dtype=np.int64)
    row_session[order] = sorted_session
    first = np.flatnonzero(starts)
    last = np.append(first[1:] - 1, n - 1)
    return Sessions(row_session=row_session, user_id=u[first], start_us=t[first], end_us=t[last])
