"""The simulation: draw users, walk every session's stage chain, resolve each step to an item and a time, add the
bots. All sessions walk in parallel (one numpy step per event position); no Python object per event.

The random draws come in one fixed order, so the same config and seed give the same bytes: reorder nothing here
without accepting that every generated dataset changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from journey.datasets.synthetic.catalogue import Catalogue
from journey.datasets.synthetic.config import BOT_SEGMENT, EXIT, SyntheticConfig
from journey.sessions import stable_argsort, user_time_order

MS_PER_DAY = 86_400_000
_ZIPF_REDRAWS, _MAX_REDRAWS = 8, 64  # then uniform redraws; a session longer than the catalogue keeps duplicates

# What each step did; items are resolved per action after the walk.
(FRESH_VIEW, REPEAT_VIEW, ADD_SEEN, ADD_FRESH, REMOVE, BUY_CART, BUY_SEEN, BUY_FRESH, POST_VIEW, BOT_VIEW) = range(10)
TYPE_OF = np.array([0, 0, 1, 1, 2, 3, 3, 3, 0, 0], dtype=np.int8)  # index into EVENT_TYPES
_IS_FRESH = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=np.int32)  # draws an item new to the session
_CART_DELTA = np.array([0, 0, 1, 1, -1, 0, 0, 0, 0, 0], dtype=np.int32)
_IS_SEEN = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)  # candidates for "last item seen"


@dataclass(frozen=True)
class _Walks:
    """Per-event stage and action of all human sessions, laid out session after session."""

    lengths: np.ndarray
    stage: np.ndarray  # int8
    action: np.ndarray  # int8
    truncated: np.ndarray  # bool per session


def _actions(
    rng: np.random.Generator,
    stage: np.ndarray,
    seen: np.ndarray,
    carted: np.ndarray,
    second_look: np.ndarray,
    cfg: SyntheticConfig,
) -> np.ndarray:
    u = rng.random(stage.size)
    p_add = np.where(second_look, cfg.p_add_after_repeat_view, cfg.p_add_to_cart)
    p_rem = p_add + cfg.p_remove_from_cart
    consider = np.select([~seen, u < p_add, (u < p_rem) & carted], [ADD_FRESH, ADD_SEEN, REMOVE], REPEAT_VIEW)
    buy = np.select([carted, seen], [BUY_CART, BUY_SEEN], BUY_FRESH)
    return np.select([stage == 0, stage == 1, stage == 2], [FRESH_VIEW, consider, buy], POST_VIEW).astype(np.int8)


def _walk(
    cfg: SyntheticConfig, rng: np.random.Generator, seg: np.ndarray, progress: Callable[[int], None] | None
) -> _Walks:
    """Walk every session's chain at once: one vectorised step per event position until all have exited."""
    segs = list(cfg.segments.values())
    init = np.cumsum([s.initial for s in segs], axis=1)[:, : EXIT - 1]  # exit has probability 0 at the start
    trans = np.cumsum([s.transitions for s in segs], axis=2)[:, :, :EXIT]  # rounding can only favour exit
    n = seg.size
    active = np.arange(n)
    stage = (rng.random(n)[:, None] > init[seg]).sum(axis=1).astype(np.int8)
    seen = np.zeros(n, dtype=np.int32)
    cart = np.zeros(n, dtype=np.int32)
    last = np.full(n, -1, dtype=np.int8)
    truncated = np.zeros(n, dtype=bool)
    steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    done = 0
    for step in range(cfg.max_events_per_session):
        action = _actions(rng, stage, seen > 0, cart > 0, last == REPEAT_VIEW, cfg)
        last = action
        seen += _IS_FRESH[action]
        cart += _CART_DELTA[action]
        steps.append((active, stage, action))
        done += active.size
        if progress is not None:
            progress(done)
        nxt = (rng.random(active.size)[:, None] > trans[seg, stage]).sum(axis=1).astype(np.int8)
        keep = nxt != EXIT
        if step == cfg.max_events_per_session - 1:
            truncated[active[keep]] = True
            break
        active, stage, seg, seen, cart, last = active[keep], nxt[keep], seg[keep], seen[keep], cart[keep], last[keep]
        if not active.size:
            break
    lengths = np.zeros(n, dtype=np.int64)
    for act, _, _ in steps:
        lengths[act] += 1
    offsets = np.cumsum(lengths) - lengths
    ev_stage = np.empty(done, dtype=np.int8)
    ev_action = np.empty(done, dtype=np.int8)
    for step, (act, st, ac) in enumerate(steps):
        ev_stage[offsets[act] + step] = st
        ev_action[offsets[act] + step] = ac
    return _Walks(lengths, ev_stage, ev_action, truncated)


def _later_duplicates(sess: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Positions whose (session, item) occurred at an earlier position: the later draws are the ones to redo."""
    key = sess * n_items + items
    order = stable_argsort(key)
    ordered = key[order]
    return np.asarray(order[1:][ordered[1:] == ordered[:-1]])


def _draw_new(
    rng: np.random.Generator, cat: Catalogue, sess: np.ndarray, pref: np.ndarray, intent: np.ndarray
) -> np.ndarray:
    """Items new to their session: draw all, then redraw only the repeats (in the sessions that had any)."""
    items = cat.draw(rng, pref[sess], intent[sess])
    check = np.arange(sess.size)
    flagged = np.zeros(pref.size, dtype=bool)
    for attempt in range(_MAX_REDRAWS):
        dup = check[_later_duplicates(sess[check], items[check], cat.price.size)]
        if not dup.size:
            break
        if attempt < _ZIPF_REDRAWS:
            items[dup] = cat.draw(rng, pref[sess[dup]], intent[sess[dup]])
        else:
            items[dup] = rng.integers(cat.price.size, size=dup.size)
        flagged[:] = False
        flagged[sess[dup]] = True
        check = np.flatnonzero(flagged[sess])
    return items


def _segment_cumsum(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running sums restarting at every change of `group` (which is sorted)."""
    total = np.cumsum(values)
    starts = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
    base = (total - values)[starts]
    return np.asarray(total - np.repeat(base, np.diff(np.append(starts, group.size))))


def _assign_items(
    rng: np.random.Generator,
    cat: Catalogue,
    walks: _Walks,
    pref: np.ndarray,
    intent: np.ndarray,
    p_repeat_last: float,
) -> np.ndarray:
    """Resolve every action to an item, in dependency order: new -> seen (repeat views: any seen item or the one
    viewed last; adds: the item on screen after a view, else any seen) -> cart -> last seen."""
    action, n = walks.action, walks.action.size
    sess = np.repeat(np.arange(walks.lengths.size), walks.lengths)
    items = np.full(n, -1, dtype=np.int64)
    fresh = _IS_FRESH[action].astype(bool)
    items[fresh] = _draw_new(rng, cat, sess[fresh], pref, intent)
    post = np.flatnonzero(action == POST_VIEW)
    items[post] = cat.draw(rng, pref[sess[post]], intent[sess[post]])
    # repeat views and adds pick uniformly among the session's new items so far
    before = np.cumsum(fresh) - fresh
    base = before[np.cumsum(walks.lengths) - walks.lengths]
    pick = np.flatnonzero((action == REPEAT_VIEW) | (action == ADD_SEEN))
    known = before[pick] - base[sess[pick]]
    items[pick] = items[fresh][base[sess[pick]] + (rng.random(pick.size) * known).astype(np.int64)]
    # ... except that some repeat views go back to the item viewed last (the anchor: the latest view that is not
    # itself such a return), when the session has viewed one
    is_view = (action == FRESH_VIEW) | (action == REPEAT_VIEW)
    back = (action == REPEAT_VIEW) & (rng.random(n) < p_repeat_last)
    anchor = np.maximum.accumulate(np.where(is_view & ~back, np.arange(n), -1))
    start = (np.cumsum(walks.lengths) - walks.lengths)[sess]
    back &= np.concatenate(([-1], anchor[:-1])) >= start
    back_at = np.flatnonzero(back)
    items[back_at] = items[anchor[back_at - 1]]
    # ... and an add right after a view adds the item just viewed (the one on screen)
    on_screen = np.flatnonzero(action == ADD_SEEN)
    on_screen = on_screen[is_view[on_screen - 1]]
    items[on_screen] = items[on_screen - 1]
    # the cart is a stack: a remove/purchase at depth d takes the latest add that reached depth d
    cartish = np.flatnonzero((_CART_DELTA[action] != 0) | (action == BUY_CART))
    delta = _CART_DELTA[action[cartish]]
    level = _segment_cumsum(delta, sess[cartish]) + (delta < 0)
    span = int(level.max(initial=0)) + 1
    order = stable_argsort(sess[cartish] * span + level)
    ordered = cartish[order]
    is_add = delta[order] > 0
    last_add = np.maximum.accumulate(np.where(is_add, np.arange(ordered.size), 0))
    items[ordered[~is_add]] = items[ordered[last_add[~is_add]]]
    buy_seen = np.flatnonzero(action == BUY_SEEN)
    last_seen = np.maximum.accumulate(np.where(_IS_SEEN[action], np.arange(n), 0))
    items[buy_seen] = items[last_seen[buy_seen]]
    return items


def _event_offsets(cfg: SyntheticConfig, rng: np.random.Generator, lengths: np.ndarray, n_human: int) -> np.ndarray:
    """Milliseconds from its session's start for every event; gaps are whole ms below the timeout."""
    total = int(lengths.sum())
    gaps = np.empty(total, dtype=np.int64)
    hi = int(cfg.gap_max_s * 1000)  # floor: a rounded-up gap could reach the timeout
    lo = min(round(cfg.gap_min_s * 1000), hi)
    draws = cfg.gap_median_s * 1000 * np.exp(cfg.gap_sigma * rng.standard_normal(n_human))
    gaps[:n_human] = np.clip(np.rint(draws), lo, hi)
    bot_hi = int(cfg.bot_gap_s[1] * 1000)
    gaps[n_human:] = rng.integers(min(round(cfg.bot_gap_s[0] * 1000), bot_hi), bot_hi + 1, size=total - n_human)
    first = np.cumsum(lengths) - lengths
    gaps[first] = 0
    running = np.cumsum(gaps)
    return np.asarray(running - np.repeat(running[first], lengths))


def _session_starts(
    cfg: SyntheticConfig, rng: np.random.Generator, counts: np.ndarray, durations: np.ndarray
) -> np.ndarray:
    """Human session starts (ms from day 0): hour-of-day weighted, then pushed so a user's sessions never touch."""
    n = int(counts.sum())
    hours = np.asarray(cfg.hourly_profile) / sum(cfg.hourly_profile)
    nominal = (
        rng.integers(cfg.days, size=n) * MS_PER_DAY
        + rng.choice(24, size=n, p=hours) * 3_600_000
        + rng.integers(3_600_000, size=n)
    )
    start = nominal[user_time_order(np.repeat(np.arange(counts.size), counts), nominal)]
    pause = cfg.session_timeout_s * 1000 + rng.exponential(cfg.session_gap_extra_mean_s * 1000, n).astype(np.int64)
    first = np.cumsum(counts) - counts
    for k in range(1, int(counts.max(initial=0))):
        idx = first[counts > k] + k
        start[idx] = np.maximum(start[idx], start[idx - 1] + durations[idx - 1] + pause[idx])
    return np.asarray(start)


@dataclass(frozen=True)
class Simulation:
    """Every user and session (humans, then bots) and the sessions' events in session order: what the output tables
    are cut from."""

    user_segment: pa.Array  # segment name per user, bots last
    user_pref: np.ndarray  # preferred category (0-based) per human user
    n_bots: int
    sess_user: np.ndarray
    sess_segment: pa.Array
    start: np.ndarray  # unix ms
    lengths: np.ndarray
    truncated: np.ndarray
    stage: np.ndarray
    action: np.ndarray
    items: np.ndarray
    offset_ms: np.ndarray


def simulate(
    cfg: SyntheticConfig, rng: np.random.Generator, cat: Catalogue, progress: Callable[[int], None] | None
) -> Simulation:
    """Users with a segment and a preferred category, their sessions walked, timed and given items, then the bots;
    `progress` gets the running number of human events walked."""
    segs = list(cfg.segments.values())
    names = pa.array([*cfg.segments, BOT_SEGMENT], pa.string())
    shares = np.array([s.share for s in segs])
    user_seg = rng.choice(len(segs), size=cfg.n_users, p=shares / shares.sum())
    user_pref = rng.choice(cfg.n_categories, size=cfg.n_users, p=cat.cat_w / cat.cat_w.sum())
    counts = 1 + rng.poisson(np.array([s.sessions_per_user for s in segs])[user_seg])
    owner = np.repeat(np.arange(cfg.n_users), counts)
    walks = _walk(cfg, rng, user_seg[owner], progress)
    intent = np.array([s.intent for s in segs])[user_seg[owner]]
    human_items = _assign_items(rng, cat, walks, user_pref[owner], intent, cfg.p_repeat_last_item)
    n_bots = round(owner.size * cfg.bot_share / (1 - cfg.bot_share))
    bot_lengths = rng.integers(cfg.bot_views[0], cfg.bot_views[1] + 1, size=n_bots)
    n_bot_events = int(bot_lengths.sum())
    lengths = np.concatenate([walks.lengths, bot_lengths])
    offset_ms = _event_offsets(cfg, rng, lengths, walks.action.size)
    durations = offset_ms[np.cumsum(walks.lengths) - 1]
    day0 = int(datetime(cfg.start_date.year, cfg.start_date.month, cfg.start_date.day, tzinfo=UTC).timestamp())
    starts = np.concatenate(
        [_session_starts(cfg, rng, counts, durations), rng.integers(cfg.days * MS_PER_DAY, size=n_bots)]
    )
    return Simulation(
        user_segment=names.take(pa.array(np.append(user_seg, np.full(n_bots, len(segs))))),
        user_pref=user_pref,
        n_bots=n_bots,
        sess_user=np.concatenate([owner, cfg.n_users + np.arange(n_bots)]),
        sess_segment=names.take(pa.array(np.concatenate([user_seg[owner], np.full(n_bots, len(segs))]))),
        start=day0 * 1000 + starts,
        lengths=lengths,
        truncated=np.concatenate([walks.truncated, np.zeros(n_bots, dtype=bool)]),
        stage=np.concatenate([walks.stage, np.zeros(n_bot_events, dtype=np.int8)]),
        action=np.concatenate([walks.action, np.full(n_bot_events, BOT_VIEW, dtype=np.int8)]),
        items=np.concatenate([human_items, rng.integers(cfg.n_items, size=n_bot_events)]),  # the last draw
        offset_ms=offset_ms,
    )
