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

    config.py        <- SyntheticConfig, SegmentConfig, the defaults (the same as ../synthetic_default.yaml)
    catalogue.py     <- items: categories, prices, Zipf popularity and the draws from them
    simulate.py      <- users, stage walks, items and times per step, bots (the random draws, in a fixed order)
    dataset.py       <- generate(): the events table and its ground truth; transition_counts()
    retailrocket.py  <- write_retailrocket_csv(): the events as RetailRocket's events.csv

This module is the generator's API: callers import from here.
"""

from __future__ import annotations

from journey.datasets.synthetic.config import (
    BOT_SEGMENT,
    DEFAULT_CONFIG_PATH,
    STAGES,
    SegmentConfig,
    SyntheticConfig,
)
from journey.datasets.synthetic.dataset import SyntheticDataset, generate, transition_counts
from journey.datasets.synthetic.retailrocket import write_retailrocket_csv

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
