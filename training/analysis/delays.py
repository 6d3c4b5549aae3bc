"""Purchases and the views before them: how long after viewing an item a shopper buys it, and in which session.

    purchase_delays(events)   -> PurchaseDelays (per purchase: the user's last and first view of the item before it)

Why it matters: session-scoped labels and funnels only see a purchase in the session of its views. The propensity
label "buys within the session" calls a view negative when the shopper comes back tomorrow to buy; the funnel and
the chain's P(purchase) count the viewing session as one that did not convert, and the buying session as one that
bought without looking. Where a material share of purchases (at least `MATERIAL_SHARE`, and `MATERIAL_COUNT` of
them) come in another session than the last view of their item, the report and the CLI say so, with how many came
more than a day after it, and recommend a longer label window: `journey train propensity --horizon Nd`
(`training/labels.py`, Horizon: a purchase of the item by the same user within that time, any session), N the
smallest of `HORIZONS_DAYS` within which `HORIZON_COVER` of the purchases that follow a view come.

A purchase is matched to views of the same item by the same user at or before it (a view in the same second counts
as before). Buckets, from the last view (and, apart, from the first): in the same session; in another session less
than a day before; 1-7 days; more than 7 days; no view of the item before (bought straight from the cart or a link).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from journey.stages import PURCHASE_CODE, VIEW_CODE, SessionEvents

BUCKETS: Final = ("same session", "another session, < 1 day", "1-7 days", "> 7 days", "no view before")
MATERIAL_SHARE: Final = 0.10  # purchases in another session than their last view that the report calls material
MATERIAL_COUNT: Final = 5  # ... and at least this many of them (2 of 14 is 14%, and says little)
HORIZONS_DAYS: Final = (1, 7, 14, 30)  # the --horizon values recommended (the smallest covering HORIZON_COVER)
HORIZON_COVER: Final = 0.9
_US_PER_HOUR: Final = 3_600_000_000
_SAME, _DAY, _WEEK, _LATER, _NONE = range(len(BUCKETS))


@dataclass(frozen=True)
class PurchaseDelays:
    """Per purchase (in session order): bucket and hours since the last / first view of its item (NaN: none)."""

    last_bucket: np.ndarray  # int, index into BUCKETS
    first_bucket: np.ndarray
    last_hours: np.ndarray  # float64, NaN without a view before
    first_hours: np.ndarray

    @property
    def purchases(self) -> int:
        return int(self.last_bucket.size)

    def counts(self, which: str = "last") -> list[int]:
        buckets = self.last_bucket if which == "last" else self.first_bucket
        return [int(n) for n in np.bincount(buckets, minlength=len(BUCKETS))]

    def later_share(self) -> float:
        """Share of all purchases more than a day after the last view of their item (another session)."""
        return float(np.isin(self.last_bucket, (_WEEK, _LATER)).mean()) if self.purchases else 0.0

    def other_session_share(self) -> float:
        """Share of all purchases whose item was last viewed in another session: invisible to session labels."""
        return float(np.isin(self.last_bucket, (_DAY, _WEEK, _LATER)).mean()) if self.purchases else 0.0

    def material(self) -> bool:
        """A material share of purchases came in another session than the last view of their item."""
        return self.other_session() >= MATERIAL_COUNT and self.other_session_share() >= MATERIAL_SHARE

    def other_session(self) -> int:
        return int(np.isin(self.last_bucket, (_DAY, _WEEK, _LATER)).sum())

    def horizon_days(self) -> int:
        """The smallest HORIZONS_DAYS value within which HORIZON_COVER of viewed purchases follow their last view."""
        hours = self.last_hours[~np.isnan(self.last_hours)]
        if not hours.size:
            return HORIZONS_DAYS[0]
        needed = float(np.quantile(hours, HORIZON_COVER)) / 24
        return next((d for d in HORIZONS_DAYS if d >= needed), HORIZONS_DAYS[-1])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"purchases": self.purchases}
        for which, hours in (("last", self.last_hours), ("first", self.first_hours)):
            viewed = hours[~np.isnan(hours)]
            out[f"from_{which}_view"] = dict(zip(BUCKETS, self.counts(which), strict=True))
            out[f"hours_from_{which}_view_median"] = float(np.median(viewed)) if viewed.size else None
            out[f"hours_from_{which}_view_p90"] = float(np.quantile(viewed, 0.9)) if viewed.size else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "later_than_a_day_share": self.later_share(),
            "other_session_share": self.other_session_share(),
            "material": self.material(),
            "material_share": MATERIAL_SHARE,
            "recommended_horizon": f"{self.horizon_days()}d" if self.material() else None,
        }

    def note(self) -> str | None:
        """What the report and the CLI say when delayed purchases are material; None otherwise."""
        if not self.material():
            return None
        elsewhere = np.isin(self.last_bucket, (_DAY, _WEEK, _LATER))
        horizon = self.horizon_days()
        return (
            f"{int(elsewhere.sum()):,} of {self.purchases:,} purchases ({self.other_session_share():.0%}) come in "
            f"another session than the last view of their item, {self.later_share():.0%} more than a day after it "
            f"(median {_duration(float(np.median(self.last_hours[elsewhere])))}): session-scoped labels (propensity "
            "'buys within the session') and the session funnels miss them; train with `journey train propensity "
            f"--horizon {horizon}d` ({HORIZON_COVER:.0%} of the purchases that follow a view come within "
            f"{_duration(24 * horizon)} of it; views in the data's last {_duration(24 * horizon)} are then censored)"
        )


def _duration(hours: float) -> str:
    if hours % 24 == 0:
        return "1 day" if hours == 24 else f"{hours / 24:.0f} days"
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def _bucket(hours: np.ndarray, same_session: np.ndarray) -> np.ndarray:
    bucket = np.select(
        [np.isnan(hours), same_session, hours < 24, hours <= 24 * 7], [_NONE, _SAME, _DAY, _WEEK], _LATER
    )
    result: np.ndarray = bucket.astype(np.int64)
    return result


def _pair_codes(events: SessionEvents, rows: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(user, item) of `rows` as codes into users x items (the purchases' own); -1 where either is not among them."""
    u = np.clip(np.searchsorted(users, events.user[rows]), 0, users.size - 1)
    i = np.clip(np.searchsorted(items, events.item[rows]), 0, items.size - 1)
    known = (users[u] == events.user[rows]) & (items[i] == events.item[rows])
    result: np.ndarray = np.where(known, u * items.size + i, -1)
    return result


def purchase_delays(events: SessionEvents) -> PurchaseDelays:
    """Each purchase against the user's views of the same item at or before it (rows in session order)."""
    bought = np.flatnonzero(events.event_type == PURCHASE_CODE)
    if not bought.size:
        empty = np.empty(0)
        return PurchaseDelays(empty.astype(np.int64), empty.astype(np.int64), empty, empty)
    users, items = np.unique(events.user[bought]), np.unique(events.item[bought])
    spot = np.clip(np.searchsorted(users, events.session_user), 0, users.size - 1)
    buyer = np.repeat(users[spot] == events.session_user, events.lengths)  # per session first: 5x fewer searches
    views = np.flatnonzero((events.event_type == VIEW_CODE) & buyer)
    view_key = _pair_codes(events, views, users, items)
    views, view_key = views[view_key >= 0], view_key[view_key >= 0]  # only views of an item its user bought
    rows = np.r_[views, bought]
    key = np.r_[view_key, _pair_codes(events, bought, users, items)]
    is_view = np.r_[np.ones(views.size, bool), np.zeros(bought.size, bool)]
    order = np.lexsort((~is_view, events.ts_us[rows], key))  # by pair, time; a view before a purchase at a tie
    rows, key, is_view = rows[order], key[order], is_view[order]
    position = np.arange(rows.size)
    last = np.maximum.accumulate(np.where(is_view, position, -1))
    group_start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    group = np.cumsum(np.r_[True, key[1:] != key[:-1]]) - 1
    first = np.minimum.reduceat(np.where(is_view, position, rows.size), group_start)[group]
    at = np.flatnonzero(~is_view)
    has_view = (last[at] >= 0) & (key[np.maximum(last[at], 0)] == key[at])
    out = []
    for view_pos in (last[at], first[at]):
        view_pos = np.where(has_view, view_pos, at)
        hours = np.where(has_view, (events.ts_us[rows[at]] - events.ts_us[rows[view_pos]]) / _US_PER_HOUR, np.nan)
        same = has_view & (events.session[rows[view_pos]] == events.session[rows[at]])
        out.append((_bucket(hours, same), hours))
    back = np.argsort(rows[at], kind="stable")  # session order of the purchases
    (last_bucket, last_hours), (first_bucket, first_hours) = out
    return PurchaseDelays(last_bucket[back], first_bucket[back], last_hours[back], first_hours[back])
