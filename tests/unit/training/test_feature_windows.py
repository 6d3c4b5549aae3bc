"""The NumPy windows of the batch features, checked against their SQL definition (the behaviour of whole feature
tables is tested in test_features.py)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from training.feature_windows import ntiles


def test_rfm_quintiles_are_sql_ntile_over_value_then_user() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"day": rng.integers(0, 4, 500), "value": rng.integers(0, 6, 500).astype(float)})
    frame["user_id"] = np.arange(500)
    expected = duckdb.sql(
        "SELECT ntile(5) OVER (PARTITION BY day ORDER BY value, user_id) AS tile FROM frame ORDER BY user_id"
    ).fetchnumpy()["tile"]
    (tiles,) = ntiles(frame["day"].to_numpy(), [frame["value"].to_numpy()])
    assert tiles.tolist() == expected.tolist()
