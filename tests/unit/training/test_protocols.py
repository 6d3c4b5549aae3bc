"""The standard next-item protocols on a hand-written event table: filters, time split, prefixes, figures by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from cli import app
from journey.datasets.store import DatasetStore
from journey.errors import InvalidInputError
from journey.events import EVENT_SCHEMA
from journey.model_inputs import NextItemInputSpec, next_item_inputs
from journey.model_inputs.columns import ITEMS, TYPES
from journey.settings import Settings
from training.evaluate_protocol import SERVED, run_protocol, score_kinds
from training.protocol_kinds import KINDS, Kind
from training.protocols import Clicks, clicks_of, prefixes, prepare

POPULARITY, MARKOV = "popularity", "markov"
START = datetime(2026, 3, 1, tzinfo=UTC)
# session -> (day it starts, its events: an item is a view, ("cart", item) an add-to-cart)
SESSIONS: dict[str, tuple[int, list[object]]] = {
    "a": (0, [1, 2, 3]),
    "b": (1, [2, 1, 9]),
    "c": (2, [9]),  # one click: dropped before items are counted, so item 9 counts 4 and goes
    "d": (3, [3, ("cart", 2), 9, 1]),  # the cart is not a click
    "e": (4, [1, 2]),
    "f": (5, [9, 9]),  # nothing left once 9 goes
    "g": (6, [3]),
    "k": (7, [3, 1, 3]),  # the newest training session: validation
    "h": (15, [1, 3, 8]),  # test; 8 is clicked 5 times, but only in test sessions: removed there
    "i": (16, [2, 8, 8, 8, 8]),  # test; [2] once 8 goes: dropped
    "j": (17, [2, 1]),  # test
}


def events(sessions: dict[str, tuple[int, list[object]]] = SESSIONS) -> pa.Table:
    rows = []
    for session, (day, steps) in sessions.items():
        for k, step in enumerate(steps):
            kind, item = step if isinstance(step, tuple) else ("view", step)
            at = START + timedelta(days=day, minutes=k)
            event_type = "add_to_cart" if kind == "cart" else "view"
            rows.append((f"{session}{k}", 1, session, item, event_type, at, 1.0, 1))
    names = ["event_id", "user_id", "session_id", "item_id", "event_type", "event_timestamp", "price", "category_id"]
    return pa.table(
        {name: list(column) for name, column in zip(names, zip(*rows, strict=True), strict=True)}, EVENT_SCHEMA
    )


def _sessions_of(items: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [row[:n].tolist() for row, n in zip(items, lengths, strict=True)]


def test_srgnn_drops_short_sessions_then_rare_items_then_splits_on_the_last_seven_days() -> None:
    prepared = prepare(events(), "srgnn")
    funnel = {step["step"]: step for step in prepared.funnel}
    assert funnel["views (clicks)"]["sessions"] == 11 and funnel["views (clicks)"]["clicks"] == 28
    assert funnel["sessions with >= 2 clicks"]["sessions"] == 9  # c and g
    after_items = funnel["items clicked >= 5 times, then sessions with >= 2 clicks"]
    assert after_items["sessions"] == 8 and after_items["items"] == 4  # 9 went (4 clicks left), f with it
    assert prepared.split["method"] == "test = sessions starting in the last 7 days"
    assert prepared.split["cut"].startswith("2026-03-11T00:00")  # latest start (day 17) - 7 days
    assert prepared.split["sessions"] == {"fit": 4, "valid": 1, "test": 2}  # a b d e | k | h j (i lost its 8s)

    data, test = prepared.data, prepared.test
    assert _sessions_of(data.train["item_ids"], data.train["lengths"]) == [[1], [1, 2], [2], [3], [1]]
    assert data.train_labels.tolist() == [2, 3, 1, 1, 2]  # a: 1->2, 12->3; b: 2->1; d: 3->1; e: 1->2
    assert _sessions_of(data.valid["item_ids"], data.valid["lengths"]) == [[3], [3, 1]]
    assert data.valid_labels.tolist() == [1, 3]
    assert _sessions_of(test.inputs["item_ids"], test.inputs["lengths"]) == [[1], [2]]  # h without 8, j
    assert test.labels.tolist() == [3, 1]
    assert len(np.unique(test.groups)) == 2 and data.train_sessions is not None and len(data.train_sessions) == 5


def test_a_log_shorter_than_two_weeks_tests_on_the_last_fifth_of_its_span_and_says_so() -> None:
    short = {name: (day // 2, steps) for name, (day, steps) in SESSIONS.items()}  # kept sessions' starts: 8 days
    prepared = prepare(events(short), "srgnn")
    assert "span 8.00 days (< 14)" in prepared.split["method"] and "last 20%" in prepared.split["method"]
    assert prepared.split["cut"].startswith("2026-03-07T09:36")  # day 0 + 0.8 * 8 days: h, i and j are later
    assert prepared.split["sessions"]["test"] == 2


def test_session_split_is_a_seeded_random_split_of_whole_sessions() -> None:
    first, again = prepare(events(), "session-split", seed=5), prepare(events(), "session-split", seed=5)
    assert first.split == again.split and "random 20%" in first.split["method"]
    assert np.array_equal(first.test.labels, again.test.labels)
    assert not set(first.test.groups.tolist()) & set(first.data.train_sessions.tolist())  # type: ignore[union-attr]


def test_prefixes_are_exactly_what_serving_builds_from_the_same_clicks() -> None:
    spec = NextItemInputSpec(seq_len=3)
    clicks = Clicks(
        session=np.array([0, 0, 0, 0, 0, 1, 1, 2]),
        item=np.array([5, 6, 7, 8, 9, 4, 4, 3]),
        time=np.arange(8),
    )
    built = prefixes(clicks, spec)
    lists = [[5], [5, 6], [5, 6, 7], [5, 6, 7, 8], [4]]
    served = next_item_inputs({ITEMS: lists, TYPES: [["view"] * len(x) for x in lists]}, spec)
    for name, values in served.items():
        assert np.array_equal(built.inputs[name], values), name
    assert built.inputs["item_ids"][3].tolist() == [6, 7, 8]  # the newest seq_len, right-padded
    assert built.labels.tolist() == [6, 7, 8, 9, 4] and built.groups.tolist() == [0, 0, 0, 0, 1]


def test_clicks_are_views_in_time_order_within_each_session() -> None:
    table = events({"z": (0, [4, ("cart", 5), 6]), "y": (1, [7, 8])})
    clicks = clicks_of(table.take([4, 3, 2, 1, 0]))  # rows out of order
    assert clicks.item.tolist() == [7, 8, 4, 6]  # sessions by id (y, z), each in time order, the cart dropped
    assert clicks.session.tolist() == [0, 0, 1, 1]


def test_figures_by_hand_and_each_kind_against_the_best_baseline() -> None:
    prepared = prepare(events(), "srgnn")

    class Oracle:
        kind = "oracle"

        def recommend(self, inputs: dict[str, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
            ids = np.full((len(inputs["lengths"]), k), -1)
            ids[:, 1] = [3, 1]  # the test labels, both in second place
            return ids, np.zeros(ids.shape, dtype=np.float32)

    kinds = {
        POPULARITY: KINDS[POPULARITY],
        MARKOV: KINDS[MARKOV],
        "oracle": Kind(lambda _d, _s: Oracle(), False),
    }
    figures, versus, served = score_kinds(prepared, kinds, seed=0, rounds=200)
    by_kind = {f.kind: f for f in figures}
    # popularity of the fit labels [2, 3, 1, 1, 2]: 1, 2, 3 (ties by id); test: [1] -> 3 (third), [2] -> 1 (first)
    assert by_kind[POPULARITY].metrics == {"P@20": 1.0, "MRR@20": pytest.approx((1 / 3 + 1) / 2)}
    # last-item Markov: after 1 came 2 (twice), after 2 came 1 and 3, then popularity: [2, 1, 3] and [1, 3, 2]
    assert by_kind[MARKOV].metrics == {"P@20": 1.0, "MRR@20": pytest.approx((1 / 3 + 1) / 2)}
    assert by_kind["oracle"].metrics == {"P@20": 1.0, "MRR@20": 0.5}
    mrr = versus["oracle"]["MRR@20"]
    assert mrr["best_baseline"] == POPULARITY and mrr["difference"] == pytest.approx(0.5 - 2 / 3)
    assert mrr["ci95_low"] <= mrr["difference"] <= mrr["ci95_high"] and not mrr["better"]
    assert versus["oracle"]["P@20"]["difference"] == 0.0 and versus["oracle"]["P@20"]["non_inferior"]
    # the served row is the kind best on the validation prefixes, with that kind's test figures
    assert served["chosen"] in kinds and set(served["validation"]) == set(kinds)
    assert by_kind[SERVED].metrics == by_kind[served["chosen"]].metrics and not by_kind[SERVED].baseline
    assert versus[SERVED]["P@20"]["best_baseline"] in (POPULARITY, MARKOV)


def test_an_unknown_protocol_or_too_little_data_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInputError, match="unknown protocol 'yoochoose'"):
        prepare(events(), "yoochoose")
    with pytest.raises(InvalidInputError, match="no session left after the filters"):
        prepare(events({"c": (0, [9]), "g": (1, [3])}), "srgnn")


def test_run_protocol_writes_the_report_and_the_cli_prints_it(settings: Settings) -> None:
    DatasetStore(settings.events_dir).write("hand", events(), source={"kind": "test"})
    result = run_protocol("hand", "srgnn", settings, kinds=[POPULARITY], rounds=50)
    saved = json.loads((settings.reports_dir / "evaluate" / "hand" / "srgnn" / "report.json").read_text())
    assert saved["kinds"][0]["metrics"]["P@20"] == 1.0 and saved["split"]["sessions"]["test"] == 2
    assert result.paths["markdown"].endswith("reports/evaluate/hand/srgnn/report.md")

    cli = CliRunner().invoke(app, ["evaluate", "next-item", "-d", "hand", "--protocol", "srgnn"])
    assert cli.exit_code == 0, cli.output
    for kind in (POPULARITY, MARKOV, "covisitation", "sknn", "gru4rec", "sasrec"):
        assert kind in cli.output
    text = (settings.reports_dir / "evaluate" / "hand" / "srgnn" / "report.md").read_text()
    assert "## Preprocessing" in text and "| gru4rec |" in text and "Against the best baseline" in text
    assert f"| {SERVED} |" in text and f"`{SERVED}` is " in text
    bad = CliRunner().invoke(app, ["evaluate", "next-item", "-d", "hand", "--kind", "grumpy"])
    assert bad.exit_code == 2 and "unknown next-item kind 'grumpy'" in bad.output
