"""Training frames of the session models without Feast: labelled entities joined with the session state at t.

The Feast path (point in time through the offline store) is tested in test_datasets.py; the trainers' tests need the
same columns fast. The state is `journey.session_features.session_rows` (what the offline store holds), joined as
Feast joins it: the newest state of the session at or before the entity row's time.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey.datasets.synthetic import SyntheticConfig, generate
from journey.session_features import session_rows


def session_training_frame(entities_of: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """`entities_of(events, seed=0)` of a small synthetic shop (8 days), each row with its session's state at t."""
    config = SyntheticConfig(n_users=250, n_items=400, days=8, seed=3)
    events = generate(config).events
    # the 8 configured days only: a few users' last sessions spill into a 9th day, whose handful of examples would
    # be the whole test split of the day-based time split
    end = pd.Timestamp(config.start_date, tz="UTC") + pd.Timedelta(days=config.days)
    events = events.filter(pc.less(events["event_timestamp"], pa.scalar(end, pa.timestamp("us", tz="UTC"))))
    entities = entities_of(events, seed=0)
    states = session_rows(events).to_pandas().drop(columns=["user_id", "created"])
    for frame in (entities, states):
        frame["event_timestamp"] = frame["event_timestamp"].astype("datetime64[ns, UTC]")
    return pd.merge_asof(
        entities.sort_values("event_timestamp", kind="stable"),
        states.sort_values("event_timestamp", kind="stable"),
        on="event_timestamp",
        by="session_id",
        direction="backward",  # the state after every session event at or before t
    ).sort_values("row_id", ignore_index=True)
