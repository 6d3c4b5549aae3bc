"""Event import (parse + validate + sessionise) vs a plain `pyarrow.csv.read_csv` of the same RetailRocket file.

Goal (Foundation issue): >= 1M events/s and <= 2x the plain read.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pcsv

from benchmarks.harness import Case, Goal, Result, interleaved, with_ratio
from journey.datasets.formats import RETAILROCKET
from journey.datasets.importer import import_events
from journey.settings import get_settings


def retailrocket_file(events: int, seed: int = 7) -> Path:
    """A synthetic log in RetailRocket format, generated once and cached under the data dir."""
    from journey.datasets.synthetic import SyntheticConfig, generate, write_retailrocket_csv

    path = get_settings().data_dir / "bench" / f"retailrocket_{events}_{seed}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        data = generate(SyntheticConfig(seed=seed).scaled_to(events))
        write_retailrocket_csv(data.events, path)
    return path


def run(quick: bool) -> list[Result]:
    target = 200_000 if quick else 2_000_000
    path = retailrocket_file(target)
    timeout = get_settings().session_timeout_s
    rows = import_events(path, RETAILROCKET, session_timeout_s=timeout).events.num_rows
    timings = interleaved(
        {
            "pyarrow.csv.read_csv": lambda: pcsv.read_csv(path),
            "import+validate+sessionise": lambda: import_events(path, RETAILROCKET, session_timeout_s=timeout),
        },
        repetitions=3 if quick else 7,
    )
    baseline = Result("event_import", "pyarrow.csv.read_csv", timings["pyarrow.csv.read_csv"], rows=rows, unit="events")
    candidate = with_ratio(
        Result(
            "event_import",
            "import+validate+sessionise",
            timings["import+validate+sessionise"],
            rows=rows,
            unit="events",
            goals=[Goal("throughput", ">=", 1_000_000), Goal("ratio", "<=", 2.0)],
            note=f"{rows:,} synthetic events in RetailRocket CSV format ({path.stat().st_size / 1e6:.0f} MB)",
        ),
        baseline,
    )
    return [baseline, candidate]


CASE = Case("event_import", "RetailRocket CSV -> canonical events vs plain pyarrow CSV read", run)
