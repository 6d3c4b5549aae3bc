"""The generator's events written as RetailRocket's events.csv, for import tests and benchmarks."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from journey.datasets.synthetic import SyntheticConfig, SyntheticDataset, generate, write_retailrocket_csv


@pytest.fixture(scope="module")
def tiny() -> SyntheticDataset:
    return generate(SyntheticConfig(n_users=1_500, n_items=2_000))


def counts(column: pa.ChunkedArray) -> dict[str, int]:
    return {row["values"]: row["counts"] for row in pc.value_counts(column).to_pylist()}


@pytest.mark.parametrize("name", ["events.csv", "events.csv.gz"])
def test_retailrocket_csv_round_trips_the_event_counts(tiny: SyntheticDataset, tmp_path: Path, name: str) -> None:
    path = write_retailrocket_csv(tiny.events, tmp_path / name)
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        assert fh.readline() == "timestamp,visitorid,event,itemid,transactionid\n"
    got = counts(pcsv.read_csv(path)["event"])
    want = counts(tiny.events["event_type"])
    assert want["remove_from_cart"] > 0
    assert got == {"view": want["view"], "addtocart": want["add_to_cart"], "transaction": want["purchase"]}


def test_retailrocket_csv_numbers_only_transactions(tiny: SyntheticDataset, tmp_path: Path) -> None:
    table = pcsv.read_csv(write_retailrocket_csv(tiny.events, tmp_path / "events.csv"))
    is_tx = pc.equal(table["event"], "transaction")
    ids = table.filter(is_tx)["transactionid"].to_numpy()
    assert table.filter(pc.invert(is_tx))["transactionid"].null_count == table.num_rows - len(ids)
    assert (ids == np.arange(1, len(ids) + 1)).all()
    first_ms = tiny.events["event_timestamp"][0].value // 1000
    assert table["timestamp"][0].as_py() == first_ms
