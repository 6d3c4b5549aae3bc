"""Journey stages: which stage each event puts its shopper in, judged on the earlier events of its session.

The rules, applied in this order (the ones the synthetic generator walks, so it can grade them):

    purchase        a purchase event
    post_purchase   any other event after a purchase in the same session
    discovery       a view of an item that no earlier event of the session touched (view, cart change or purchase)
    consideration   everything else: a repeat view, an add_to_cart (even of a new item), a remove_from_cart

Exit is not a stage: it is what follows a session's last event (`journey.chain` adds it as the chain's terminal
state). Events are taken in session order: time, then `event_id` for ties (the order `training/features.py` uses).

One difference from `_USER_STAGE_SQL` in `training/features.py` (`user_activity.journey_stage`): that query calls a
view a repeat only when the item was *viewed* before, so a view of an item that was only carted earlier (a session
that starts with an add_to_cart) is `discovery` there and `consideration` here. The generator counts a carted item as
seen, and these rules recover its ground truth exactly. The SQL keeps its rule: `journey_stage` is a feature of the
published purchase_propensity_v1 / next_action_v1 services, whose meaning must not move under registered models.

Everything here is vectorised (numpy + pyarrow, no loop per event) and imports neither Feast nor torch, so the batch
analysis, the feature computation and the online path (`stage_of_last_event`) share the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.contracts import STAGES
from journey.events import EVENT_TYPES
from journey.sessions import stable_argsort, user_time_order

DISCOVERY: Final = STAGES.index("discovery")
CONSIDERATION: Final = STAGES.index("consideration")
PURCHASE: Final = STAGES.index("purchase")
POST_PURCHASE: Final = STAGES.index("post_purchase")
EXIT: Final = len(STAGES)  # the terminal state's code in chains over stages (one past the last stage)
STAGE_STATES: Final = (*STAGES, "exit")

VIEW_CODE: Final = EVENT_TYPES.index("view")
PURCHASE_CODE: Final = EVENT_TYPES.index("purchase")
NO_CATEGORY: Final = -1


def event_type_codes(values: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """Event type names -> int8 indices into EVENT_TYPES; an unknown name is a ValueError naming it."""
    arr = pa.array(values, pa.string()) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    codes = pc.index_in(pc.cast(arr, pa.string()), value_set=pa.array(EVENT_TYPES, pa.string()))
    if codes.null_count:
        unknown = pc.filter(arr, pc.is_null(codes))[0].as_py()
        raise ValueError(f"unknown event type {unknown!r}; known: {list(EVENT_TYPES)}")
    return np.asarray(pc.fill_null(codes, 0).to_numpy(zero_copy_only=False), dtype=np.int8)


def _np(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(arr.to_numpy(zero_copy_only=False))


@dataclass(frozen=True)
class SessionEvents:
    """Events as numpy columns in session order: rows of one session are contiguous, in (time, event_id) order.

    `session` holds codes 0..n_sessions-1 (non-decreasing); `session_ids[code]` is the original id and `row[i]` the
    input row that ordered row i came from, so results can be mapped back to the table.
    """

    session: np.ndarray  # int64
    user: np.ndarray  # int64
    item: np.ndarray  # int64
    event_type: np.ndarray  # int8, index into EVENT_TYPES
    ts_us: np.ndarray  # int64, UTC microseconds
    price: np.ndarray  # float64, NaN when unknown
    category: np.ndarray  # int64, NO_CATEGORY when unknown
    session_ids: pa.Array  # string per session code
    row: np.ndarray  # int64, input row of each ordered row

    @property
    def n_events(self) -> int:
        return int(self.session.size)

    @property
    def n_sessions(self) -> int:
        return len(self.session_ids)

    @cached_property
    def starts(self) -> np.ndarray:
        """First row of each session."""
        return np.flatnonzero(np.r_[True, self.session[1:] != self.session[:-1]]) if self.n_events else _EMPTY

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(np.r_[self.starts, self.n_events])

    @cached_property
    def last(self) -> np.ndarray:
        """Last row of each session."""
        result: np.ndarray = self.starts + self.lengths - 1
        return result

    @cached_property
    def session_user(self) -> np.ndarray:
        """The user of each session (its first event's: a session belongs to one shopper)."""
        return self.user[self.starts] if self.n_events else _EMPTY


_EMPTY = np.empty(0, dtype=np.int64)


def session_order(events: pa.Table) -> SessionEvents:
    """Canonical events -> `SessionEvents`; ties in time are ordered by `event_id` (as the batch features do)."""
    n = events.num_rows
    encoded = pc.dictionary_encode(pc.cast(events["session_id"], pa.string()).combine_chunks())
    codes = _np(encoded.indices).astype(np.int64)
    ts = _np(pc.cast(events["event_timestamp"], pa.int64())).astype(np.int64)
    order = user_time_order(codes, ts) if n else _EMPTY
    order = _break_ties_by_event_id(order, codes, ts, events["event_id"])
    # renumber sessions in their sorted order, so codes are 0..S-1 and non-decreasing
    sorted_codes = codes[order]
    new_session = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if n else np.empty(0, dtype=bool)
    session = np.cumsum(new_session) - 1
    first_code = sorted_codes[new_session]
    take = pa.array(order)
    return SessionEvents(
        session=session.astype(np.int64),
        user=_np(events["user_id"].take(take)).astype(np.int64),
        item=_np(events["item_id"].take(take)).astype(np.int64),
        event_type=event_type_codes(events["event_type"].take(take)),
        ts_us=ts[order],
        price=_np(pc.fill_null(pc.cast(events["price"].take(take), pa.float64()), np.nan)).astype(np.float64),
        category=_np(pc.fill_null(events["category_id"].take(take), NO_CATEGORY)).astype(np.int64),
        session_ids=encoded.dictionary.take(pa.array(first_code)),
        row=order,
    )


def _break_ties_by_event_id(
    order: np.ndarray, codes: np.ndarray, ts: np.ndarray, event_ids: pa.ChunkedArray | pa.Array
) -> np.ndarray:
    """Reorder only the runs of rows that share (session, time) by event id: usually few or none."""
    if order.size < 2:
        return order
    s, t = codes[order], ts[order]
    tie = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    if not tie.any():
        return order
    tied = np.zeros(order.size, dtype=bool)
    tied[1:] |= tie
    tied[:-1] |= tie
    idx = np.flatnonzero(tied)
    sub = pa.table({"s": s[idx], "t": t[idx], "e": pc.cast(event_ids, pa.string()).take(pa.array(order[idx]))})
    sub_order = _np(pc.sort_indices(sub, [("s", "ascending"), ("t", "ascending"), ("e", "ascending")]))
    out = order.copy()
    out[idx] = order[idx][sub_order]  # the subset is already grouped by (s, t): groups keep their slots
    return out


def first_occurrence(session: np.ndarray, item: np.ndarray) -> np.ndarray:
    """True where (session, item) occurs for the first time, for rows in session order."""
    n = session.size
    if n == 0:
        return np.empty(0, dtype=bool)
    low, high = int(item.min()), int(item.max())
    span = high - low + 1
    if (int(session.max()) + 1) * span >= 1 << 62:  # ids too sparse to pack: rank them first (a sort, ~0.3 s per 2M)
        _, dense = np.unique(item, return_inverse=True)
        span, item_key = int(dense.max()) + 1, dense.reshape(-1)
    else:
        item_key = item - low
    key = session.astype(np.int64) * span + item_key
    order = stable_argsort(key)  # stable: the earliest row of each key comes first
    ordered = key[order]
    first = np.ones(n, dtype=bool)
    first[order[1:]] = ordered[1:] != ordered[:-1]
    return first


def _group_starts(session: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, session[1:] != session[:-1]])


def events_before(flags: np.ndarray, session: np.ndarray) -> np.ndarray:
    """How many earlier rows of the same session have `flags` set (rows in session order)."""
    if flags.size == 0:
        return np.empty(0, dtype=np.int64)
    flags = flags.astype(np.int64)
    before = np.cumsum(flags) - flags
    starts = _group_starts(session)
    base = np.repeat(before[starts], np.diff(np.r_[starts, flags.size]))
    result: np.ndarray = before - base
    return result


def assign_stages(session: np.ndarray, item: np.ndarray, event_type: np.ndarray) -> np.ndarray:
    """Stage ordinal (index into STAGES) of every event; rows must be in session order (see module docstring)."""
    if not session.size == item.size == event_type.size:
        raise ValueError(f"columns differ in length: {session.size}, {item.size}, {event_type.size}")
    is_purchase = event_type == PURCHASE_CODE
    fresh_view = (event_type == VIEW_CODE) & first_occurrence(session, item)
    stage = np.where(fresh_view, DISCOVERY, CONSIDERATION).astype(np.int8)
    stage[events_before(is_purchase, session) > 0] = POST_PURCHASE
    stage[is_purchase] = PURCHASE
    return stage


def stage_of_last_event(
    event_types: Sequence[str], item_ids: Sequence[int], session_purchases: int | None = None
) -> int | None:
    """Stage ordinal of a session's newest event, from its last events (oldest first), or None when there are none.

    For the online path: `session_activity` keeps only the last LAST_N_EVENTS events, so `session_purchases` (the
    whole session's purchase count) tells a post-purchase event whose purchase fell out of the window. An item first
    seen before the window still reads as new (discovery): the window cannot know better.
    """
    if len(event_types) != len(item_ids):
        raise ValueError(f"{len(event_types)} event types but {len(item_ids)} item ids: the lists must be aligned")
    if not event_types:
        return None
    codes = event_type_codes(list(event_types))
    items = np.asarray(item_ids, dtype=np.int64)
    stages = assign_stages(np.zeros(codes.size, dtype=np.int64), items, codes)
    last = int(stages[-1])
    purchases_in_window = int((codes[:-1] == PURCHASE_CODE).sum())
    if last != PURCHASE and session_purchases is not None and session_purchases > purchases_in_window:
        return POST_PURCHASE
    return last
