"""Journey analysis of 2M synthetic events (issue 7 goal: <= 60 s on 2 cores) vs reading + sessionising them.

The candidate is what `journey analyze --no-features` does: read the stored dataset, order it by session, assign
stages, build user profiles and k-means segments, estimate the chains (all, per segment, per category), funnels,
paths and time to convert, write the chain artifact, and render the report with its six plots. The baseline reads
the same stored events and sessionises them (`journey.sessions.sessionise`): the floor of any analysis of them.
The Feast write of the profiles is left out (it is a feature-store write, measured by the feature_store case).

The goal is stated at 2M events, so `--quick` keeps the 2M events and only runs once (no warm-up).
"""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.harness import Case, Goal, Result, interleaved, with_ratio
from journey.settings import Profile, Settings, get_settings

CASE_NAME = "journey_analysis"
DATASET = "bench"
EVENTS = 2_000_000


def _read_and_sessionise(settings: Settings) -> int:
    from journey.datasets.store import DatasetStore
    from journey.sessions import sessionise

    events = DatasetStore(settings.events_dir).events(DATASET, ["user_id", "event_timestamp"])
    ts = pc.cast(events["event_timestamp"], pa.int64()).to_numpy()
    return sessionise(events["user_id"].to_numpy(), ts, settings.session_timeout_s * 1_000_000).count


def run(quick: bool) -> list[Result]:
    from journey.datasets.store import DatasetStore
    from journey.datasets.synthetic import SyntheticConfig, generate
    from training.analysis.run import run_analysis

    root = get_settings().data_dir / "bench" / CASE_NAME
    shutil.rmtree(root, ignore_errors=True)
    settings = Settings(profile=Profile.LOCAL, data_dir=root / "data", reports_dir=root / "reports")
    data = generate(SyntheticConfig(seed=7).scaled_to(EVENTS))
    rows = data.events.num_rows
    DatasetStore(settings.events_dir).write(DATASET, data.events, source={"kind": "synthetic", "bench": CASE_NAME})
    del data
    stages: dict[str, float] = {}

    def analyse() -> None:
        result = run_analysis(DATASET, settings, write_features=False)
        stages.update({**result.analysis.seconds, **result.seconds})

    timings = interleaved(
        {"read + sessionise": lambda: _read_and_sessionise(settings), "full analysis + report": analyse},
        repetitions=1 if quick else 3,
        warmup=0 if quick else 1,
    )
    baseline = Result(CASE_NAME, "read + sessionise", timings["read + sessionise"], rows=rows, unit="events")
    candidate = with_ratio(
        Result(
            CASE_NAME,
            "full analysis + report",
            timings["full analysis + report"],
            rows=rows,
            unit="events",
            goals=[Goal("median_ms", "<=", 60_000)],
            note=f"{rows:,} synthetic events; last run's seconds: {stages}",
        ),
        baseline,
    )
    shutil.rmtree(root, ignore_errors=True)
    return [baseline, candidate]


CASE = Case(CASE_NAME, "Journey analysis (stages, chains, segments, report) of 2M events vs read + sessionise", run)
