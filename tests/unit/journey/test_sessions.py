from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from journey.events import to_utc_micros
from journey.sessions import sessionise, stable_argsort

MIN = 60 * 1_000_000
TIMEOUT = 30 * MIN


def cut(users: list[int], minutes: list[float]) -> list[int]:
    ts = (np.array(minutes) * MIN).astype(np.int64)
    return sessionise(np.array(users), ts, TIMEOUT).row_session.tolist()


def test_a_gap_of_exactly_the_timeout_starts_a_new_session() -> None:
    assert cut([1, 1], [0, 30]) == [0, 1]


def test_a_gap_just_under_the_timeout_stays_in_the_session() -> None:
    ts = np.array([0, TIMEOUT - 1], dtype=np.int64)
    assert sessionise(np.array([1, 1]), ts, TIMEOUT).row_session.tolist() == [0, 0]


def test_out_of_order_events_are_sessionised_by_time() -> None:
    # the event at minute 10 arrives last but belongs between 0 and 35 (each gap < 30 min)
    assert cut([1, 1, 1], [0, 35, 10]) == [0, 0, 0]
    assert cut([1, 1, 1], [50, 0, 10]) == [1, 0, 0]


def test_users_never_share_a_session() -> None:
    assert cut([1, 2, 1], [0, 1, 2]) == [0, 1, 0]


def test_equal_timestamps_share_a_session() -> None:
    assert cut([3, 3, 3], [5, 5, 5]) == [0, 0, 0]


def test_session_ids_are_user_and_start_millis() -> None:
    sessions = sessionise(np.array([7, 7]), np.array([1_000_000, 1_000_000 + 31 * MIN]), TIMEOUT)
    assert sessions.session_ids().to_pylist() == ["7-1000", f"7-{1000 + 31 * 60_000}"]


def test_naive_and_aware_timestamps_of_the_same_instant_sessionise_alike() -> None:
    naive = to_utc_micros(pa.array(["2026-03-01 10:00:00", "2026-03-01 10:20:00"], pa.string()).cast(pa.timestamp("s")))
    aware = to_utc_micros(
        pa.array(["2026-03-01 11:00:00+01:00", "2026-03-01 11:20:00+01:00"]).cast(pa.timestamp("s", tz="+01:00"))
    )
    assert naive.to_pylist() == aware.to_pylist()
    n = sessionise(np.array([1, 1]), naive.cast(pa.int64()).to_numpy(), TIMEOUT)
    a = sessionise(np.array([1, 1]), aware.cast(pa.int64()).to_numpy(), TIMEOUT)
    assert n.session_ids().to_pylist() == a.session_ids().to_pylist()


def test_stable_argsort_matches_numpy_and_keeps_ties_in_order() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(-5, 5, 1000)
    assert stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()


def test_stable_argsort_falls_back_when_keys_are_too_wide() -> None:
    keys = np.array([2**62, -(2**62), 0, 2**62], dtype=np.int64)
    assert stable_argsort(keys).tolist() == [1, 2, 0, 3]


events = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6 * 60 * 60)), min_size=1, max_size=60)


def _sessions(rows: list[tuple[int, int]]):
    users = np.array([u for u, _ in rows], dtype=np.int64)
    ts = np.array([t for _, t in rows], dtype=np.int64) * 1_000_000
    return users, ts, sessionise(users, ts, TIMEOUT)


@settings(max_examples=200, deadline=None)
@given(events)
def test_gaps_inside_sessions_are_below_and_between_sessions_at_least_the_timeout(rows) -> None:
    users, ts, s = _sessions(rows)
    for sid in range(s.count):
        t = np.sort(ts[s.row_session == sid])
        assert (np.diff(t) < TIMEOUT).all()
        assert s.start_us[sid] == t[0] and s.end_us[sid] == t[-1]
    for user in np.unique(users):
        ids = [i for i in range(s.count) if s.user_id[i] == user]
        spans = sorted((s.start_us[i], s.end_us[i]) for i in ids)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start - end >= TIMEOUT


@settings(max_examples=200, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_sessions_do_not_depend_on_input_order(rows, rnd) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    _, _, a = _sessions(rows)
    _, _, b = _sessions(shuffled)
    assert sorted(zip(a.user_id.tolist(), a.start_us.tolist(), strict=True)) == sorted(
        zip(b.user_id.tolist(), b.start_us.tolist(), strict=True)
    )


@settings(max_examples=200, deadline=None)
@given(events)
def test_session_count_is_users_plus_long_gaps(rows) -> None:
    users, ts, s = _sessions(rows)
    expected = 0
    for user in np.unique(users):
        t = np.sort(ts[users == user])
        expected += 1 + int((np.diff(t) >= TIMEOUT).sum())
    assert s.count == expected
    assert s.row_session.min() == 0 and s.row_session.max() == s.count - 1
