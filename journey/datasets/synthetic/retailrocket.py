"""RetailRocket's `events.csv` written from canonical events: the generator's data run through the real importer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from journey.events import EVENT_TYPES

_RR_EVENT = pa.array(["view", "addtocart", None, "transaction"], pa.string())  # by EVENT_TYPES; None = skipped


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
