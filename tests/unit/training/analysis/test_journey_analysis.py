"""Journey analysis: estimated chains against the generator's known matrices, funnels, the batch SQL's stages, and
the report on synthetic, degenerate and real data."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journey.chain_artifact import JourneyArtifact
from journey.contracts import STAGES
from journey.datasets.formats import BUILTIN_FORMATS
from journey.datasets.importer import import_events
from journey.datasets.synthetic import SyntheticConfig, SyntheticDataset, generate, transition_counts
from journey.errors import InvalidInputError
from journey.events import EVENT_SCHEMA
from journey.stages import STAGE_STATES, assign_stages, first_occurrence, session_order
from training.analysis.journey import analyze_events, group_stats
from training.analysis.plots import PLOTS
from training.analysis.report import write_report
from training.analysis.results import GroupStats, JourneyAnalysis
from training.features import compute_user_activity

MIN_SESSIONS = 150_000  # the acceptance asks for >= 100k sessions
ENOUGH = 10_000  # transitions out of a stage before its row is compared: sd <= 0.005 per entry, 0.02 is 4 sd
TOLERANCE = 0.02
REAL = {  # format, file under ../shared/datasets
    "retailrocket": "retailrocket_sample/events.csv.gz",
    "rees46": "rees46_2019-Oct_head.csv.gz",
    "taobao": "taobao_userbehavior_head/UserBehavior_head.csv.gz",
}


def sized(config: SyntheticConfig, sessions: int) -> SyntheticConfig:
    """The config (whatever its segments) with enough users for `sessions` human sessions on average."""
    per_user = sum(s.share * (1 + s.sessions_per_user) for s in config.segments.values())
    return config.model_copy(update={"n_users": math.ceil(sessions / per_user * 1.05)})


@pytest.fixture(scope="module")
def large() -> SyntheticDataset:
    return generate(sized(SyntheticConfig(seed=17), MIN_SESSIONS))


@pytest.fixture(scope="module")
def by_segment(large: SyntheticDataset) -> dict[str, GroupStats]:
    """Chains estimated from the events alone, grouped by the generator's (hidden) segment of each session."""
    ordered = session_order(large.events)
    stages = assign_stages(ordered.session, ordered.item, ordered.event_type)
    names = list(large.config.segments)
    truth = dict(zip(large.sessions["session_id"].to_pylist(), large.sessions["segment"].to_pylist(), strict=True))
    segment_of = np.array([truth[s] for s in ordered.session_ids.to_pylist()], dtype=object)
    group = np.array([names.index(s) if s in names else -1 for s in segment_of], dtype=np.int64)
    pooled = group_stats(ordered, stages, np.where(group >= 0, 0, -1), ["humans"])
    return {"humans": pooled[0], **dict(zip(names, group_stats(ordered, stages, group, names), strict=True))}


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
def test_the_synthetic_data_has_enough_sessions(large: SyntheticDataset) -> None:
    assert int((~large.sessions["is_bot"].to_numpy(zero_copy_only=False)).sum()) >= 100_000


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
def test_pooled_estimate_equals_the_ground_truth_counts(
    large: SyntheticDataset, by_segment: dict[str, GroupStats]
) -> None:
    estimated = by_segment["humans"].stages
    truth = transition_counts(large)
    assert estimated.counts is not None and np.array_equal(estimated.counts, truth)
    expected = truth[:4] / truth[:4].sum(axis=1, keepdims=True)
    assert np.abs(estimated.transitions[:4] - expected).max() <= TOLERANCE


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
@pytest.mark.parametrize("segment", list(SyntheticConfig().segments))
def test_estimated_matrix_matches_each_segments_known_matrix(by_segment: dict[str, GroupStats], segment: str) -> None:
    estimated = by_segment[segment].stages
    known = np.asarray(SyntheticConfig(seed=17).segments[segment].transitions)
    assert estimated.counts is not None
    rows = estimated.counts.sum(axis=1)
    checked = rows >= ENOUGH
    assert checked.sum() >= 2, f"too little data for {segment}: {rows}"
    error = np.abs(estimated.transitions[checked] - known[checked]).max()
    assert error <= TOLERANCE, f"{segment}: max abs error {error:.4f} on rows {np.flatnonzero(checked)}"


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
@pytest.mark.parametrize("segment", list(SyntheticConfig().segments))
def test_estimated_matches_the_segments_ground_truth_counts_exactly(
    large: SyntheticDataset, by_segment: dict[str, GroupStats], segment: str
) -> None:
    counts = by_segment[segment].stages.counts
    assert counts is not None and np.array_equal(counts, transition_counts(large, segment))


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
@pytest.mark.parametrize("segment", list(SyntheticConfig().segments))
def test_estimated_initial_stage_matches_each_segment(by_segment: dict[str, GroupStats], segment: str) -> None:
    known = np.asarray(SyntheticConfig(seed=17).segments[segment].initial)
    assert np.abs(by_segment[segment].stages.initial - known).max() <= TOLERANCE


@pytest.mark.slow  # 150k synthetic sessions, generated and analysed once per module (~5 s)
def test_funnel_and_time_to_convert_agree_with_the_sessions_truth(
    large: SyntheticDataset, by_segment: dict[str, GroupStats]
) -> None:
    humans = large.sessions.filter(pc.invert(large.sessions["is_bot"]))
    funnel = by_segment["humans"].funnel
    assert funnel.sessions == humans.num_rows
    assert funnel.reached[STAGES.index("purchase")] == int(pc.sum(humans["purchased"]).as_py())
    assert list(funnel.reached) == sorted(funnel.reached, reverse=True)
    ttc = by_segment["humans"].time_to_convert
    assert ttc.seconds.size == funnel.reached[2] and (ttc.seconds >= 0).all() and (ttc.events >= 0).all()


# ------------------------------------------------------------------------------------- the batch SQL's stage rule


def test_user_activity_journey_stage_agrees_except_for_views_of_items_only_carted_before() -> None:
    data = generate(SyntheticConfig(n_users=1_500, n_items=2_000, days=6, seed=9))
    snapshots = compute_user_activity(data.events)
    active = np.zeros(snapshots.num_rows, dtype=bool)
    for column in ("views_1d", "carts_1d", "removes_1d", "purchases_1d"):
        active |= snapshots[column].to_numpy() > 0
    sql = {
        (u, ts.date() - timedelta(days=1)): s
        for u, ts, s in zip(
            snapshots["user_id"].to_pylist(),
            snapshots["event_timestamp"].to_pylist(),
            snapshots["journey_stage"].to_pylist(),
            strict=True,
        )
    }
    ordered = session_order(data.events)
    stages = assign_stages(ordered.session, ordered.item, ordered.event_type)
    frame = pa.table(
        {
            "u": ordered.user,
            "day": ordered.ts_us // 86_400_000_000,
            "ts": ordered.ts_us,
            "eid": data.events["event_id"].take(pa.array(ordered.row)),
            "stage": stages,
            "type": ordered.event_type,
            "item": ordered.item,
            "session": ordered.session,
        }
    ).to_pandas()
    views = np.flatnonzero(ordered.event_type == 0)
    viewed_before = np.zeros(ordered.n_events, dtype=bool)
    viewed_before[views] = ~first_occurrence(ordered.session[views], ordered.item[views])
    frame["viewed_before"] = viewed_before
    last = frame.sort_values(["u", "ts", "eid"]).groupby(["u", "day"]).tail(1)
    checked = corner = 0
    for row in last.itertuples():
        day = datetime.fromtimestamp(row.day * 86_400, UTC).date()
        if (row.u, day) not in sql:
            continue
        checked += 1
        ours, theirs = int(row.stage), int(sql[(row.u, day)])
        if ours != theirs:  # the one documented difference: a first view of an item carted (not viewed) before
            assert (row.type, ours, theirs, row.viewed_before) == (0, 1, 0, False), row
            corner += 1
    assert checked > 2_000 and corner < checked * 0.05


# ------------------------------------------------------------------------------------------- analysis and report


def views_only(sessions: int = 60, users: int = 20) -> pa.Table:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    rows = [(s, k) for s in range(sessions) for k in range(3)]
    return pa.table(
        {
            "event_id": [f"e{s}-{k}" for s, k in rows],
            "user_id": [s % users for s, _ in rows],
            "session_id": [f"s{s}" for s, _ in rows],
            "item_id": [(s * 7 + k) % 40 for s, k in rows],
            "event_type": ["view"] * len(rows),
            "event_timestamp": [start + timedelta(hours=3 * s, minutes=k) for s, k in rows],
            "price": [None] * len(rows),
            "category_id": [None] * len(rows),
        },
        schema=EVENT_SCHEMA,
    )


@pytest.fixture(scope="module")
def demo() -> JourneyAnalysis:
    data = generate(SyntheticConfig(n_users=4_000, n_items=3_000, days=10, seed=3))
    return analyze_events(data.events, dataset="demo", seed=1)


def assert_complete_report(analysis: JourneyAnalysis, out_dir: Path) -> str:
    report, page = write_report(analysis, out_dir)
    text = report.read_text(encoding="utf-8")
    for plot in PLOTS:
        png = out_dir / f"{plot}.png"
        assert png.stat().st_size > 5_000, plot
        assert f"({plot}.png)" in text and f"'{plot}.png'" in page.read_text(encoding="utf-8")
    json.loads((out_dir / "analysis.json").read_text(encoding="utf-8"))
    JourneyArtifact.load(out_dir / "chain.json")
    return text


def test_analysis_is_complete_serialisable_and_reproducible(demo: JourneyAnalysis) -> None:
    assert demo.profiles.k >= 2 and len(demo.segments) == demo.profiles.k
    assert {s.name for s in demo.profiles.segments} and len({s.name for s in demo.profiles.segments}) == demo.profiles.k
    assert sum(g.sessions for g in demo.segments) == demo.overall.sessions
    assert len(demo.categories) == 5 and all(g.sessions > 0 for g in demo.categories)
    assert demo.paths.columns[0].sum() == demo.overall.sessions
    assert "NaN" not in json.dumps(demo.artifact().to_dict())
    data = generate(SyntheticConfig(n_users=4_000, n_items=3_000, days=10, seed=3))
    again = analyze_events(data.events, dataset="demo", seed=1)
    assert np.array_equal(again.profiles.segment, demo.profiles.segment)
    assert [s.name for s in again.profiles.segments] == [s.name for s in demo.profiles.segments]


def test_conversion_probability_is_highest_where_the_data_buys(demo: JourneyAnalysis) -> None:
    conversion = demo.overall.conversion()
    p = conversion["purchase_probability"]
    assert 0 < p["discovery"] < p["consideration"] < 1
    assert conversion["new_session_conversion"] == pytest.approx(conversion["observed_conversion"], abs=0.01)
    best = demo.segments[0].conversion()["purchase_probability"]["discovery"]
    assert best == max(g.conversion()["purchase_probability"]["discovery"] for g in demo.segments)


def test_report_renders_every_plot_on_synthetic_data(demo: JourneyAnalysis, tmp_path: Path) -> None:
    text = assert_complete_report(demo, tmp_path)
    assert "## Funnel" in text and "## User segments" in text and "category " in text


def test_report_without_purchases_or_categories_says_so_and_still_plots(tmp_path: Path) -> None:
    analysis = analyze_events(views_only(), dataset="lookers")
    assert analysis.overall.time_to_convert.seconds.size == 0
    text = assert_complete_report(analysis, tmp_path)
    assert "no session purchases" in text and "No category information" in text


def test_a_single_user_gets_one_segment_and_a_note(tmp_path: Path) -> None:
    analysis = analyze_events(views_only(sessions=4, users=1), dataset="one")
    assert analysis.profiles.k == 1 and analysis.profiles.segments[0].name == "all shoppers"
    assert any("one segment" in note for note in analysis.notes)
    assert_complete_report(analysis, tmp_path)


def test_no_events_is_an_input_error_naming_the_dataset() -> None:
    with pytest.raises(InvalidInputError, match="'empty'"):
        analyze_events(EVENT_SCHEMA.empty_table(), dataset="empty")


@pytest.mark.parametrize("name", sorted(REAL))
def test_report_renders_every_plot_on_each_real_sample(shared_datasets: Path, tmp_path: Path, name: str) -> None:
    events = import_events(shared_datasets / REAL[name], BUILTIN_FORMATS[name], session_timeout_s=1800).events
    analysis = analyze_events(events, dataset=name)
    assert analysis.overall.events == events.num_rows
    assert analysis.overall.funnel.reached[STAGES.index("purchase")] > 0  # every sample has purchases
    text = assert_complete_report(analysis, tmp_path / name)
    assert set(STAGE_STATES) == set(analysis.overall.stages.states)
    # RetailRocket and REES46 have one session per user (median): segments on in-session behaviour, and say so
    one_session = name in ("retailrocket", "rees46")
    assert (analysis.profiles.basis == "in_session") == one_session
    assert any("in-session behaviour only" in note for note in analysis.notes) == one_session
    assert "Clustered on (" in text and "## Purchases and the views before them" in text
    # Taobao's shoppers come back to buy: a quarter of its purchases follow their last view in another session
    delays = analysis.delays
    assert delays is not None and delays.purchases >= analysis.overall.funnel.reached[STAGES.index("purchase")]
    assert delays.material() == (name == "taobao")
    assert ("--horizon 1d" in text) == (name == "taobao")
