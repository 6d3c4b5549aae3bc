"""The generator's output: `generate` cuts the simulation into the events table and the truth behind it
(per-event stage, sessions, users, items), and `transition_counts` reads the true stage transitions back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.synthetic.catalogue import Catalogue
from journey.datasets.synthetic.config import BOT_SEGMENT, EXIT, STAGES, SyntheticConfig
from journey.datasets.synthetic.simulate import TYPE_OF, Simulation, simulate
from journey.events import EVENT_SCHEMA, EVENT_TYPES
from journey.sessions import stable_argsort


@dataclass(frozen=True)
class SyntheticDataset:
    """Events plus the truth behind them; `event_stage` is aligned with the rows of `events`."""

    events: pa.Table  # EVENT_SCHEMA, sorted by event_timestamp
    event_stage: pa.DictionaryArray  # stage name per event (dictionary<int8, string>)
    sessions: pa.Table  # session_id, user_id, segment, is_bot, start, end, n_events, purchased, truncated, stages
    users: pa.Table  # user_id, segment, preferred_category (null for bots), is_bot
    items: pa.Table  # item_id, category_id, price, popularity_rank (1 = most popular)
    config: SyntheticConfig


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ms, dtype=np.int64) * 1000).view(pa.timestamp("us", tz="UTC"))


def _stage_labels(codes: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(STAGES, pa.string()))


def _events_table(sim: Simulation, session_ids: pa.Array, cat: Catalogue) -> tuple[pa.Table, np.ndarray]:
    sess = np.repeat(np.arange(sim.lengths.size), sim.lengths)
    ts = sim.start[sess] + sim.offset_ms
    order = stable_argsort(ts)  # stable: a session's own events keep their order on ties
    sess, items = sess[order], sim.items[order]
    columns = [
        pc.binary_join_element_wise("syn-", pc.cast(pa.array(np.arange(order.size)), pa.string()), ""),
        pa.array(sim.sess_user[sess] + 1),
        session_ids.take(pa.array(sess)),
        pa.array(items + 1),
        pa.array(EVENT_TYPES, pa.string()).take(pa.array(TYPE_OF[sim.action[order]])),
        _timestamps(ts[order]),
        pa.array(cat.price[items]),
        pa.array(cat.category[items] + 1),
    ]
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA), order


def _sessions_table(sim: Simulation, session_ids: pa.Array) -> pa.Table:
    sess = np.repeat(np.arange(sim.lengths.size), sim.lengths)
    ends = np.cumsum(sim.lengths)
    bought = np.bincount(sess[TYPE_OF[sim.action] == 3], minlength=sim.lengths.size) > 0
    return pa.table(
        {
            "session_id": session_ids,
            "user_id": pa.array(sim.sess_user + 1),
            "segment": sim.sess_segment,
            "is_bot": pa.array(sim.sess_segment.to_numpy(zero_copy_only=False) == BOT_SEGMENT),
            "start": _timestamps(sim.start),
            "end": _timestamps(sim.start + sim.offset_ms[ends - 1]),
            "n_events": pa.array(sim.lengths),
            "purchased": pa.array(bought),
            "truncated": pa.array(sim.truncated),
            "stages": pa.ListArray.from_arrays(pa.array(np.append(0, ends), pa.int32()), _stage_labels(sim.stage)),
        }
    )


def _users_table(cfg: SyntheticConfig, sim: Simulation) -> pa.Table:
    is_bot_user = np.arange(cfg.n_users + sim.n_bots) >= cfg.n_users
    return pa.table(
        {
            "user_id": pa.array(np.arange(cfg.n_users + sim.n_bots) + 1),
            "segment": sim.user_segment,
            "preferred_category": pa.array(
                np.append(sim.user_pref + 1, np.zeros(sim.n_bots, np.int64)), mask=is_bot_user
            ),
            "is_bot": pa.array(is_bot_user),
        }
    )


def _items_table(cfg: SyntheticConfig, cat: Catalogue) -> pa.Table:
    return pa.table(
        {
            "item_id": pa.array(np.arange(cfg.n_items) + 1),
            "category_id": pa.array(cat.category + 1),
            "price": pa.array(cat.price),
            "popularity_rank": pa.array(cat.rank + 1),
        }
    )


def generate(config: SyntheticConfig, progress: Callable[[int], None] | None = None) -> SyntheticDataset:
    """Generate a dataset; `progress` gets the running number of human events walked (bots come at the end)."""
    cfg, rng = config, np.random.default_rng(config.seed)
    cat = Catalogue.build(cfg, rng)
    sim = simulate(cfg, rng, cat, progress)
    session_ids = pc.binary_join_element_wise(
        pc.cast(pa.array(sim.sess_user + 1), pa.string()), pc.cast(pa.array(sim.start), pa.string()), "-"
    )
    events, order = _events_table(sim, session_ids, cat)
    if progress is not None:
        progress(events.num_rows)
    return SyntheticDataset(
        events=events,
        event_stage=_stage_labels(sim.stage[order]),
        sessions=_sessions_table(sim, session_ids),
        users=_users_table(cfg, sim),
        items=_items_table(cfg, cat),
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
