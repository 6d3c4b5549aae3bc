"""Synthetic shopper journeys with known ground truth, so every estimator (stages, transitions, bots) can be graded.

Users have a latent segment (its own Markov chain over `STAGES`, initial stage, intent, session rate) and a preferred
category. Each session walks its chain until `exit`; every other step emits one event, following the rules that
stage inference inverts later:

    discovery      view of an item new to the session (Zipf popularity, biased toward the preferred category)
    consideration  repeat view / add_to_cart of an item seen earlier in the session, or remove_from_cart of the
                   most recently carted item; with nothing seen yet it is add_to_cart of a new item (a view of a new
                   item would read as discovery). A repeat view mostly goes back to the item viewed last, an add
                   right after a view adds the item just viewed, and an add is likelier right after a repeat view
                   (`p_repeat_last_item`, `p_add_after_repeat_view`): shoppers look twice, then cart
    purchase       the item on top of the cart (a purchase does not empty the cart), else the last item seen,
                   else a new one
    post_purchase  view of any item (popularity-drawn, may repeat; it does not count as "seen")

Which event a step emits depends on the session so far (what was seen, carted, viewed last); which stage comes next
never does: the stage walk is exactly the segment's first-order chain.

The default segments (`DEFAULT_SEGMENTS`, the same as `synthetic_default.yaml`) give the events structure beyond
their last type, as real shops have: browsing mostly goes on browsing, but a shopper back at an item seen before
(consideration) carts it, buys or leaves rather than browsing on, and views after a purchase are mostly followed by
leaving; browsers, deal seekers and loyal buyers convert ~3%, ~9% and ~23% of their sessions (~9.7% overall).

Bot sessions (one per bot user, segment "bot") are `bot_views` views (default 20-120) of uniform random items
`bot_gap_s` apart (default 0.5-2 s), labelled discovery. Times are whole milliseconds: gaps stay below the session
timeout and a user's sessions are at least the timeout apart, so `journey.sessions.sessionise` recovers the
generated sessions exactly.

All sessions walk in parallel (one numpy step per event position), items are assigned afterwards with cumulative
counts and sorts: no Python object per event. On two slow cores 2M events take ~1.2 s and 10M ~10 s (~2 GB peak).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from journey.errors import ConfigError
from journey.events import EVENT_SCHEMA, EVENT_TYPES
from journey.sessions import stable_argsort, user_time_order

__all__ = [
    "BOT_SEGMENT",
    "DEFAULT_CONFIG_PATH",
    "STAGES",
    "SegmentConfig",
    "SyntheticConfig",
    "SyntheticDataset",
    "generate",
    "transition_counts",
    "write_retailrocket_csv",
]

STAGES: tuple[str, ...] = ("discovery", "consideration", "purchase", "post_purchase", "exit")
EXIT = 4
BOT_SEGMENT = "bot"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("synthetic_default.yaml")
_TOL = 1e-9
_MS_PER_DAY = 86_400_000
_ZIPF_REDRAWS, _MAX_REDRAWS = 8, 64  # then uniform redraws; a session longer than the catalogue keeps duplicates

# What each step did; items are resolved per action after the walk.
(FRESH_VIEW, REPEAT_VIEW, ADD_SEEN, ADD_FRESH, REMOVE, BUY_CART, BUY_SEEN, BUY_FRESH, POST_VIEW, BOT_VIEW) = range(10)
_TYPE_OF = np.array([0, 0, 1, 1, 2, 3, 3, 3, 0, 0], dtype=np.int8)  # index into EVENT_TYPES
_IS_FRESH = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=np.int32)  # draws an item new to the session
_CART_DELTA = np.array([0, 0, 1, 1, -1, 0, 0, 0, 0, 0], dtype=np.int32)
_IS_SEEN = np.array([1, 1, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)  # candidates for "last item seen"
_RR_EVENT = pa.array(["view", "addtocart", None, "transaction"], pa.string())  # by EVENT_TYPES; None = skipped


def _check_distribution(row: tuple[float, ...], what: str) -> None:
    if len(row) != len(STAGES):
        raise ValueError(f"{what} has {len(row)} values, needs {len(STAGES)} (one per stage {list(STAGES)})")
    if min(row) < 0:
        raise ValueError(f"{what} has a negative probability: {list(row)}")
    if abs(sum(row) - 1.0) > _TOL:
        raise ValueError(f"{what} sums to {sum(row):.12g}, must sum to 1")


class SegmentConfig(BaseModel):
    """One latent shopper type: how its sessions start and move between stages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    share: float = Field(ge=0, le=1, description="Fraction of users in this segment.")
    sessions_per_user: float = Field(ge=0, description="Mean of the Poisson number of sessions beyond the first.")
    intent: float = Field(ge=0, le=1, description="Probability that a new item is from the preferred category.")
    initial: tuple[float, ...] = Field(description="First-stage probabilities over STAGES (exit must be 0).")
    transitions: tuple[tuple[float, ...], ...] = Field(description="5x5 stage transition matrix, rows = from.")

    @field_validator("initial")
    @classmethod
    def _initial_ok(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        _check_distribution(v, "initial distribution")
        if v[EXIT] != 0:
            raise ValueError("a session cannot start in exit: its initial probability must be 0")
        return v

    @field_validator("transitions")
    @classmethod
    def _transitions_ok(cls, v: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
        if len(v) != len(STAGES):
            raise ValueError(f"must be {len(STAGES)}x{len(STAGES)} (rows/columns {list(STAGES)}), got {len(v)} rows")
        for stage, row in zip(STAGES, v, strict=True):
            _check_distribution(row, f"row {stage!r}")
        if v[EXIT][EXIT] != 1:
            raise ValueError("exit must be absorbing: its row must be [0, 0, 0, 0, 1]")
        reach = np.zeros(len(STAGES), dtype=bool)
        reach[EXIT] = True
        for _ in STAGES:
            reach |= (np.asarray(v)[:, reach] > 0).any(axis=1)
        if not reach.all():
            stuck = [s for s, ok in zip(STAGES, reach, strict=True) if not ok]
            raise ValueError(f"exit is unreachable from {stuck}: sessions there would never end")
        return v

    def expected_events_per_session(self) -> float:
        """Mean walk length before exit (fundamental matrix of the absorbing chain), ignoring the length cap."""
        q = np.asarray(self.transitions)[:EXIT, :EXIT]
        visits = np.linalg.solve(np.eye(EXIT) - q.T, np.asarray(self.initial)[:EXIT])
        return float(visits.sum())


def _segment(share: float, rate: float, intent: float, initial: list[float], rows: list[list[float]]) -> SegmentConfig:
    return SegmentConfig(
        share=share,
        sessions_per_user=rate,
        intent=intent,
        initial=tuple(initial),
        transitions=tuple(tuple(r) for r in rows),
    )


_EXIT_ROW = [0.0, 0.0, 0.0, 0.0, 1.0]
DEFAULT_SEGMENTS: dict[str, SegmentConfig] = {
    "browser": _segment(
        0.55,
        1.5,
        0.4,
        [0.95, 0.05, 0, 0, 0],
        [
            [0.75, 0.09, 0.002, 0.0, 0.158],
            [0.08, 0.28, 0.04, 0.0, 0.60],
            [0, 0, 0, 0.30, 0.70],
            [0, 0, 0, 0.25, 0.75],
            _EXIT_ROW,
        ],
    ),
    "deal_seeker": _segment(
        0.30,
        3.0,
        0.6,
        [0.90, 0.10, 0, 0, 0],
        [
            [0.75, 0.15, 0.005, 0.0, 0.095],
            [0.06, 0.38, 0.065, 0.0, 0.495],
            [0, 0, 0, 0.35, 0.65],
            [0, 0, 0, 0.25, 0.75],
            _EXIT_ROW,
        ],
    ),
    "loyal_buyer": _segment(
        0.15,
        4.0,
        0.85,
        [0.75, 0.25, 0, 0, 0],
        [
            [0.67, 0.22, 0.01, 0.0, 0.10],
            [0.05, 0.42, 0.15, 0.0, 0.38],
            [0, 0, 0, 0.45, 0.55],
            [0, 0, 0, 0.30, 0.70],
            _EXIT_ROW,
        ],
    ),
}
DEFAULT_HOURLY = (
    0.25,
    0.15,
    0.10,
    0.08,
    0.08,
    0.10,
    0.20,
    0.35,
    0.50,
    0.60,
    0.65,
    0.70,
    0.75,
    0.70,
    0.65,
    0.65,
    0.70,
    0.80,
    0.95,
    1.00,
    1.00,
    0.90,
    0.70,
    0.45,
)


class SyntheticConfig(BaseModel):
    """Everything that shapes a synthetic dataset; the same config and seed give the same tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(42, ge=0)
    n_users: int = Field(20_000, gt=0, description="Human users; bot users come on top (see bot_share).")
    n_items: int = Field(20_000, gt=0)
    n_categories: int = Field(50, gt=0)
    days: int = Field(30, gt=0, description="Sessions start within this many days from start_date.")
    start_date: date = Field(date(2026, 9, 1), description="Day 0, midnight UTC (fixed, so output is reproducible).")
    segments: dict[str, SegmentConfig] = Field(default_factory=lambda: dict(DEFAULT_SEGMENTS))
    zipf_exponent: float = Field(1.1, gt=0, description="Item popularity ~ 1 / rank**exponent.")
    price_median: float = Field(25.0, gt=0)
    price_category_sigma: float = Field(0.8, ge=0, description="Spread of the categories' log median prices.")
    price_item_sigma: float = Field(0.5, ge=0, description="Spread of log prices within a category.")
    p_add_to_cart: float = Field(
        0.15, ge=0, le=1, description="Consideration step -> add_to_cart (see p_add_after_repeat_view)."
    )
    p_remove_from_cart: float = Field(0.06, ge=0, le=1, description="-> remove_from_cart (needs a non-empty cart).")
    p_add_after_repeat_view: float = Field(
        0.60, ge=0, le=1, description="Instead of p_add_to_cart right after a repeat view (a second look)."
    )
    p_repeat_last_item: float = Field(
        0.70, ge=0, le=1, description="A repeat view goes back to the item viewed last (else to any seen item)."
    )
    hourly_profile: tuple[float, ...] = Field(DEFAULT_HOURLY, description="Relative session starts per UTC hour.")
    gap_median_s: float = Field(40.0, gt=0, description="Median log-normal gap between events of a session.")
    gap_sigma: float = Field(1.1, ge=0)
    gap_min_s: float = Field(0.5, ge=0.001)
    gap_max_s: float = Field(1500.0, gt=0, description="Gaps are clipped here; must stay below the timeout.")
    session_timeout_s: int = Field(1800, gt=0, description="Sessionisation timeout the data is built for.")
    session_gap_extra_mean_s: float = Field(3600.0, ge=0, description="Mean extra pause beyond the timeout.")
    bot_share: float = Field(0.005, ge=0, lt=0.5, description="Fraction of all sessions that are bots.")
    bot_views: tuple[int, int] = Field((20, 120), description="Min and max views per bot session.")
    bot_gap_s: tuple[float, float] = Field((0.5, 2.0), description="Min and max gap between bot views.")
    max_events_per_session: int = Field(200, gt=0, description="Walks are forced to exit here (truncated).")

    @field_validator("segments")
    @classmethod
    def _segments_ok(cls, v: dict[str, SegmentConfig]) -> dict[str, SegmentConfig]:
        if not v:
            raise ValueError("at least one segment is needed")
        if BOT_SEGMENT in v:
            raise ValueError(f"{BOT_SEGMENT!r} is reserved for bot users")
        total = sum(s.share for s in v.values())
        if abs(total - 1.0) > _TOL:
            raise ValueError(f"shares sum to {total:.12g}, must sum to 1")
        return v

    @field_validator("hourly_profile")
    @classmethod
    def _hourly_ok(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) != 24 or min(v) < 0 or sum(v) <= 0:
            raise ValueError(f"needs 24 non-negative weights with a positive sum, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        checks = [
            (self.n_categories <= self.n_items, "n_categories must not exceed n_items"),
            (
                max(self.p_add_to_cart, self.p_add_after_repeat_view) + self.p_remove_from_cart <= 1,
                "p_add_to_cart (and p_add_after_repeat_view) + p_remove_from_cart must be <= 1",
            ),
            (
                self.gap_min_s <= self.gap_max_s < self.session_timeout_s,
                "need gap_min_s <= gap_max_s < session_timeout_s, or sessionisation would split sessions",
            ),
            (1 <= self.bot_views[0] <= self.bot_views[1], "bot_views must be [min, max] with 1 <= min <= max"),
            (
                0.001 <= self.bot_gap_s[0] <= self.bot_gap_s[1] < self.session_timeout_s,
                "bot_gap_s must be [min, max] with 0.001 <= min <= max < session_timeout_s",
            ),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def from_yaml(cls, path: Path) -> SyntheticConfig:
        """Load a config file (missing keys take defaults); every problem names the file and the field path."""
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read generator config: {exc}", path=str(path)) from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError("generator config must be a YAML mapping", path=str(path))
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(problems, path=str(path)) from exc

    def expected_events_per_user(self) -> float:
        """Mean events per human user, bot events included (they scale with the human sessions)."""
        sessions = sum(s.share * (1 + s.sessions_per_user) for s in self.segments.values())
        human = sum(
            s.share * (1 + s.sessions_per_user) * s.expected_events_per_session() for s in self.segments.values()
        )
        bots = sessions * self.bot_share / (1 - self.bot_share) * (self.bot_views[0] + self.bot_views[1]) / 2
        return human + bots

    def scaled_to(self, n_events: int) -> SyntheticConfig:
        """The same config with n_users set so that about `n_events` events come out (benchmarks, scale tests)."""
        return self.model_copy(update={"n_users": max(1, round(n_events / self.expected_events_per_user()))})


@dataclass(frozen=True)
class SyntheticDataset:
    """Events plus the truth behind them; `event_stage` is aligned with the rows of `events`."""

    events: pa.Table  # EVENT_SCHEMA, sorted by event_timestamp
    event_stage: pa.DictionaryArray  # stage name per event (dictionary<int8, string>)
    sessions: pa.Table  # session_id, user_id, segment, is_bot, start, end, n_events, purchased, truncated, stages
    users: pa.Table  # user_id, segment, preferred_category (null for bots), is_bot
    items: pa.Table  # item_id, category_id, price, popularity_rank (1 = most popular)
    config: SyntheticConfig


@dataclass(frozen=True)
class _Catalogue:
    """Items plus the cumulative Zipf weights that let one searchsorted draw from any category or all of them."""

    category: np.ndarray  # per item, 0-based
    price: np.ndarray
    rank: np.ndarray  # 0 = most popular
    order: np.ndarray  # items sorted by (category, rank)
    cum: np.ndarray  # cumulative weight along `order`
    cat_lo: np.ndarray  # weight before each category's block
    cat_w: np.ndarray  # each category's total weight
    cat_start: np.ndarray  # block bounds in `order`
    cat_end: np.ndarray

    @classmethod
    def build(cls, cfg: SyntheticConfig, rng: np.random.Generator) -> _Catalogue:
        n, k = cfg.n_items, cfg.n_categories
        category = np.concatenate([np.arange(k), rng.integers(k, size=n - k)])  # no category is empty
        rank = rng.permutation(n)
        log_median = np.log(cfg.price_median) + cfg.price_category_sigma * rng.standard_normal(k)
        raw_price = np.exp(log_median[category] + cfg.price_item_sigma * rng.standard_normal(n))
        price = np.maximum(np.round(raw_price, 2), 0.01)
        order = np.lexsort((rank, category))
        cum = np.cumsum((rank[order] + 1.0) ** -cfg.zipf_exponent)
        cat_end = np.cumsum(np.bincount(category, minlength=k))
        cat_start = cat_end - np.bincount(category, minlength=k)
        cat_hi = cum[cat_end - 1]
        cat_lo = np.where(cat_start > 0, cum[np.maximum(cat_start - 1, 0)], 0.0)
        return cls(category, price, rank, order, cum, cat_lo, cat_hi - cat_lo, cat_start, cat_end)

    def draw(self, rng: np.random.Generator, pref: np.ndarray, p_pref: np.ndarray) -> np.ndarray:
        """Zipf-popular items; each draw comes from its preferred category with probability `p_pref`."""
        use = rng.random(pref.size) < p_pref
        lo = np.where(use, self.cat_lo[pref], 0.0)
        width = np.where(use, self.cat_w[pref], self.cum[-1])
        idx = np.searchsorted(self.cum, lo + rng.random(pref.size) * width, side="right")
        first = np.where(use, self.cat_start[pref], 0)
        last = np.where(use, self.cat_end[pref], self.cum.size) - 1
        return np.asarray(self.order[np.clip(idx, first, last)], dtype=np.int64)


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
    rng: np.random.Generator, cat: _Catalogue, sess: np.ndarray, pref: np.ndarray, intent: np.ndarray
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
    cat: _Catalogue,
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
        rng.integers(cfg.days, size=n) * _MS_PER_DAY
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


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64) * 1000).view(pa.timestamp("us", tz="UTC"))


def _stage_labels(codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(STAGES, pa.string()))


@dataclass(frozen=True)
class _Flat:
    """Every session (humans, then bots) and its events in session order: what the output tables are cut from."""

    sess_user: np.ndarray
    sess_segment: pa.Array
    start: np.ndarray  # unix ms
    lengths: np.ndarray
    truncated: np.ndarray
    stage: np.ndarray
    action: np.ndarray
    items: np.ndarray
    offset_ms: np.ndarray


def _events_table(flat: _Flat, session_ids: pa.Array, cat: _Catalogue) -> tuple[pa.Table, np.ndarray]:
    sess = np.repeat(np.arange(flat.lengths.size), flat.lengths)
    ts = flat.start[sess] + flat.offset_ms
    order = stable_argsort(ts)  # stable: a session's own events keep their order on ties
    sess, items = sess[order], flat.items[order]
    columns = [
        pc.binary_join_element_wise("syn-", pc.cast(pa.array(np.arange(order.size)), pa.string()), ""),
        pa.array(flat.sess_user[sess] + 1),
        session_ids.take(pa.array(sess)),
        pa.array(items + 1),
        pa.array(EVENT_TYPES, pa.string()).take(pa.array(_TYPE_OF[flat.action[order]])),
        _timestamps(ts[order]),
        pa.array(cat.price[items]),
        pa.array(cat.category[items] + 1),
    ]
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA), order


def _sessions_table(flat: _Flat, session_ids: pa.Array) -> pa.Table:
    sess = np.repeat(np.arange(flat.lengths.size), flat.lengths)
    ends = np.cumsum(flat.lengths)
    bought = np.bincount(sess[_TYPE_OF[flat.action] == 3], minlength=flat.lengths.size) > 0
    return pa.table(
        {
            "session_id": session_ids,
            "user_id": pa.array(flat.sess_user + 1),
            "segment": flat.sess_segment,
            "is_bot": pa.array(flat.sess_segment.to_numpy(zero_copy_only=False) == BOT_SEGMENT),
            "start": _timestamps(flat.start),
            "end": _timestamps(flat.start + flat.offset_ms[ends - 1]),
            "n_events": pa.array(flat.lengths),
            "purchased": pa.array(bought),
            "truncated": pa.array(flat.truncated),
            "stages": pa.ListArray.from_arrays(pa.array(np.append(0, ends), pa.int32()), _stage_labels(flat.stage)),
        }
    )


def generate(config: SyntheticConfig, progress: Callable[[int], None] | None = None) -> SyntheticDataset:
    """Generate a dataset; `progress` gets the running number of human events walked (bots come at the end)."""
    cfg, rng = config, np.random.default_rng(config.seed)
    cat = _Catalogue.build(cfg, rng)
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
        [_session_starts(cfg, rng, counts, durations), rng.integers(cfg.days * _MS_PER_DAY, size=n_bots)]
    )
    flat = _Flat(
        sess_user=np.concatenate([owner, cfg.n_users + np.arange(n_bots)]),
        sess_segment=names.take(pa.array(np.concatenate([user_seg[owner], np.full(n_bots, len(segs))]))),
        start=day0 * 1000 + starts,
        lengths=lengths,
        truncated=np.concatenate([walks.truncated, np.zeros(n_bots, dtype=bool)]),
        stage=np.concatenate([walks.stage, np.zeros(n_bot_events, dtype=np.int8)]),
        action=np.concatenate([walks.action, np.full(n_bot_events, BOT_VIEW, dtype=np.int8)]),
        items=np.concatenate([human_items, rng.integers(cfg.n_items, size=n_bot_events)]),
        offset_ms=offset_ms,
    )
    session_ids = pc.binary_join_element_wise(
        pc.cast(pa.array(flat.sess_user + 1), pa.string()), pc.cast(pa.array(flat.start), pa.string()), "-"
    )
    events, order = _events_table(flat, session_ids, cat)
    if progress is not None:
        progress(events.num_rows)
    is_bot_user = np.arange(cfg.n_users + n_bots) >= cfg.n_users
    users = pa.table(
        {
            "user_id": pa.array(np.arange(cfg.n_users + n_bots) + 1),
            "segment": names.take(pa.array(np.append(user_seg, np.full(n_bots, len(segs))))),
            "preferred_category": pa.array(np.append(user_pref + 1, np.zeros(n_bots, np.int64)), mask=is_bot_user),
            "is_bot": pa.array(is_bot_user),
        }
    )
    items = pa.table(
        {
            "item_id": pa.array(np.arange(cfg.n_items) + 1),
            "category_id": pa.array(cat.category + 1),
            "price": pa.array(cat.price),
            "popularity_rank": pa.array(cat.rank + 1),
        }
    )
    return SyntheticDataset(
        events=events,
        event_stage=_stage_labels(flat.stage[order]),
        sessions=_sessions_table(flat, session_ids),
        users=users,
        items=items,
        config=cfg,
    )


def _stage_codes(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    codes = pc.index_in(pc.cast(values, pa.string()), value_set=pa.array(STAGES, pa.string()))
    if codes.null_count:
        raise ValueError(f"unknown stage labels; expected {list(STAGES)}")
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)


def transition_counts(dataset: SyntheticDataset, segment: str | None = None) -> np.ndarray:
    """Ground-truth 5x5 counts (rows = from, in STAGES order) of human sessions, each walk's final ->exit included."""
    sessions = dataset.sessions
    keep = ~np.asarray(sessions["is_bot"].to_numpy(), dtype=bool)
    if segment is not None:
        if segment not in dataset.config.segments:
            raise ValueError(f"unknown segment {segment!r}; known: {list(dataset.config.segments)}")
        keep &= np.asarray(pc.equal(sessions["segment"], segment).to_numpy(), dtype=bool)
    lengths = np.asarray(pc.list_value_length(sessions["stages"]).to_numpy(), dtype=np.int64)
    src = _stage_codes(pc.list_flatten(sessions["stages"]))
    dst = np.append(src[1:], EXIT)
    dst[np.cumsum(lengths)[lengths > 0] - 1] = EXIT
    mask = np.repeat(keep, lengths)
    n = len(STAGES)
    return np.bincount(src[mask] * n + dst[mask], minlength=n * n).reshape(n, n)


def write_retailrocket_csv(events: pa.Table, path: Path) -> Path:
    """Write events as RetailRocket's `events.csv` (gzip if the name ends in .gz), for import tests and benchmarks.

    RetailRocket has no remove-from-cart event, so `remove_from_cart` rows are left out (in the rare case that the
    two gaps around one add up to the timeout, re-sessionising the file splits that session). `transactionid` is
    empty except on transactions, numbered 1, 2, ... in file order (the source's ids are opaque integers too).
    """
    codes = pc.index_in(events["event_type"], value_set=pa.array(EVENT_TYPES, pa.string()))
    rows = events.filter(pc.not_equal(codes, EVENT_TYPES.index("remove_from_cart")))
    kinds = _RR_EVENT.take(pc.index_in(rows["event_type"], value_set=pa.array(EVENT_TYPES, pa.string())))
    buy = np.asarray(pc.equal(rows["event_type"], "purchase").to_numpy(), dtype=bool)
    stamps = pc.cast(rows["event_timestamp"], pa.int64()).to_numpy() // 1000
    table = pa.table(
        {
            "timestamp": pa.array(stamps),
            "visitorid": rows["user_id"],
            "event": kinds,
            "itemid": rows["item_id"],
            "transactionid": pa.array(np.cumsum(buy), mask=~buy),
        }
    )
    path = Path(path)
    sink = pa.CompressedOutputStream(str(path), "gzip") if path.name.endswith(".gz") else pa.OSFile(str(path), "wb")
    with sink:
        sink.write(b"timestamp,visitorid,event,itemid,transactionid\n")  # pyarrow would quote the header names
        pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False, quoting_style="none"))
    return path
