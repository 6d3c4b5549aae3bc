"""Factories for online-store tests: deterministic feature rows and the equality check against Feast."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from journey import contracts as c
from serving.features import OnlineFeatureReader

NOW = datetime.now(UTC).replace(microsecond=0)
REQUEST_TS = 1_795_000_000  # a Thursday, 08:26 UTC


def frame(key: str, keys: list[Any], features: dict[str, c.FeatureType], stamp: datetime) -> pd.DataFrame:
    """Deterministic rows; every third float NaN (Feast stores it as missing, reads it back as None)."""
    n = len(keys)
    data: dict[str, Any] = {key: keys, c.SNAPSHOT_TIMESTAMP: [stamp] * n, c.CREATED_TIMESTAMP: [stamp] * n}
    for j, (name, kind) in enumerate(features.items()):
        if kind == "int64":
            data[name] = np.arange(n, dtype=np.int64) * (j + 1)
        elif kind == "float64":
            data[name] = np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * 1.25 + j)
        elif kind == "int64_list":
            data[name] = [list(range(i % 4)) for i in range(n)]  # includes the empty list
        else:
            data[name] = [["view", "add_to_cart"][: i % 3] for i in range(n)]
    return pd.DataFrame(data)


def typed(columns: dict[str, list[Any]]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Keys in order, values with their types: `1 == 1.0 == True` must not pass for equal."""
    return [(k, [(type(v).__name__, v) for v in values]) for k, values in columns.items()]


def assert_same_as_feast(store: Any, service: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    ours = OnlineFeatureReader(store, service).read(rows)
    feast = store.get_online_features(features=store.get_feature_service(service), entity_rows=rows).to_dict()
    assert typed(ours) == typed(feast)
    return ours


def propensity_row(user: Any, item: Any, price: Any = 19.5, ts: Any = REQUEST_TS) -> dict[str, Any]:
    return {
        c.USER: user,
        c.ITEM: item,
        c.SESSION: f"s{user}",
        "candidate_price": price,
        "request_ts": ts,
        "candidate_item_id": item,
    }
