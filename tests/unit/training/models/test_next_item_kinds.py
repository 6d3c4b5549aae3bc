"""The index kinds of next item (popularity, markov, covisitation, sknn): their definitions checked by hand or against
a plain-Python reference, their ONNX graphs against their numpy `recommend` (parity at batch 1, 7 and the held-out
rows), and a training run of a baseline kind.

The data is the small synthetic shop of test_next_item.py (labelled next_item_v1 entities with the session state at
t, no Feast), split by time as the trainer splits it. The four kinds are fitted and exported once per module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from journey.errors import InvalidInputError
from journey.model_inputs import next_item_inputs
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from tests.factories.rankings import TIE, assert_same_ranking, ort_session, rows_of
from tests.factories.session_frames import session_training_frame
from training.export import ExportReport, read_metadata
from training.labels import label_ids, next_item_entities
from training.models.baselines import popular_items
from training.models.next_item import (
    BASELINES,
    KINDS,
    NextItemConfig,
    SessionData,
    kind_named,
    kind_or_auto,
    train_next_item,
)
from training.models.next_item.covisitation import CovisitationConfig, build_covisitation
from training.models.next_item.indexes import QUANTUM, fitted_on
from training.models.next_item.markov import MarkovConfig, fit_markov
from training.models.next_item.sknn import SknnConfig, build_sknn
from training.runs import session_groups
from training.splits import time_split

RUN = NextItemConfig(seq_len=8, top_k=15, holdout_rows=64)
TOP_K = 15
SEED = 5
INDEX_KINDS = ("popularity", "markov", "covisitation", "sknn")
# small searches: the module fits every kind, and the trainer test fits them again
SMALL: dict[str, Any] = {
    "covisitation": CovisitationConfig(tune_rows=500),
    "sknn": SknnConfig(k_neighbors=50, sample_size=200, k_grid=(20, 50), sample_grid=(200,), tune_rows=500),
}


@dataclass(frozen=True)
class Split:
    data: SessionData
    test: dict[str, np.ndarray]
    frame: pd.DataFrame


@pytest.fixture(scope="module")
def split() -> Split:
    frame = session_training_frame(next_item_entities)
    parts = time_split(frame, min_rows=RUN.min_split_rows)
    inputs = {name: next_item_inputs(getattr(parts, name), RUN.input_spec()) for name in ("train", "valid", "test")}
    labels = {name: label_ids(getattr(parts, name)) for name in ("train", "valid")}
    data = SessionData(inputs["train"], labels["train"], inputs["valid"], labels["valid"], session_groups(parts.train))
    return Split(data, inputs["test"], frame)


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[str, Any]:
    return {name: kind_named(name).fit(split.data, SEED, config=SMALL.get(name)) for name in INDEX_KINDS}


@pytest.fixture(scope="module")
def exported(fitted: dict[str, Any], split: Split, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportReport]:
    folder = tmp_path_factory.mktemp("kinds")
    holdout = {name: values[: RUN.holdout_rows] for name, values in split.test.items()}
    return {name: model.export(folder / f"{name}.onnx", holdout, TOP_K) for name, model in fitted.items()}


# --------------------------------------------------------------------------------------------------------------
# The graphs against `recommend`
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", INDEX_KINDS)
@pytest.mark.parametrize("batch", [1, 7, "held-out"])
def test_the_graph_answers_as_recommend_does(
    kind: str, batch: int | str, fitted: dict[str, Any], exported: dict[str, ExportReport], split: Split
) -> None:
    inputs = split.test if batch == "held-out" else rows_of(split.test, int(batch))

    ids, scores = ort_session(exported[kind].path).run(None, inputs)
    want_ids, want_scores = fitted[kind].recommend(inputs, TOP_K)

    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (len(inputs["lengths"]), TOP_K)
    assert_same_ranking(ids, scores, want_ids, want_scores)


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_the_export_passed_parity_and_names_the_recommender_contract(
    kind: str, exported: dict[str, ExportReport], fitted: dict[str, Any]
) -> None:
    report = exported[kind]
    assert set(report.max_abs_diff) == {RUN.holdout_rows, 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4
    assert report.sha256 == hashlib.sha256(report.path.read_bytes()).hexdigest()
    assert sorted(p.name for p in report.path.parent.iterdir() if p.name.startswith(kind)) == [f"{kind}.onnx"]
    session = ort_session(report.path)
    assert tuple(i.name for i in session.get_inputs()) == NEXT_ITEM_INPUT_NAMES
    assert tuple(o.name for o in session.get_outputs()) == NEXT_ITEM_OUTPUT_NAMES
    meta = read_metadata(report.path)
    assert (meta["journey.exporter"], meta["journey.framework"]) == ("onnx.helper", "onnx")
    assert json.loads(meta["journey.output_names"]) == list(NEXT_ITEM_OUTPUT_NAMES)
    params = fitted[kind].params()
    assert params["kind"] == kind and params["vocabulary_size"] == len(fitted[kind].vocabulary)
    json.dumps(params)  # the registry stores them as JSON


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_lists_name_vocabulary_items_once_best_first_and_empty_sessions_get_popular_items(
    kind: str, exported: dict[str, ExportReport], fitted: dict[str, Any], split: Split
) -> None:
    session = ort_session(exported[kind].path)
    ids, scores = session.run(None, split.test)
    vocabulary = set(fitted[kind].vocabulary.ids.tolist())
    assert set(np.unique(ids).tolist()) <= vocabulary
    assert all(len(set(row)) == TOP_K for row in ids.tolist())
    assert (np.diff(scores, axis=1) <= 0).all() and np.isfinite(scores).all()

    empty = {
        "item_ids": np.array([[0] * RUN.seq_len, [10**12] + [0] * (RUN.seq_len - 1)], dtype=np.int64),
        "event_types": np.zeros((2, RUN.seq_len), dtype=np.int64),
        "lengths": np.array([0, 1], dtype=np.int64),
    }  # no steps; one step of an item no vocabulary holds
    ids, scores = session.run(None, empty)
    popular = popular_items(split.data.train_labels, TOP_K)
    np.testing.assert_array_equal(ids[0], ids[1])
    assert ids[0, 0] == popular[0] and len(set(ids[0].tolist()) & set(popular.tolist())) >= TOP_K - 3


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_the_same_data_and_seed_give_the_same_onnx_bytes(
    kind: str, split: Split, exported: dict[str, ExportReport], tmp_path: Path
) -> None:
    again = kind_named(kind).fit(split.data, SEED, config=SMALL.get(kind))
    holdout = {name: values[: RUN.holdout_rows] for name, values in split.test.items()}
    assert again.export(tmp_path / "again.onnx", holdout, TOP_K).sha256 == exported[kind].sha256


def test_the_kinds_by_name() -> None:
    assert BASELINES == INDEX_KINDS and set(KINDS) >= {"gru4rec", *INDEX_KINDS}
    assert all(KINDS[name].baseline for name in INDEX_KINDS) and not KINDS["gru4rec"].baseline
    with pytest.raises(InvalidInputError) as raised:
        kind_named("word2vec")
    assert raised.value.field == "kind" and "sknn" in str(raised.value)
    with pytest.raises(InvalidInputError) as raised:
        kind_named("sknn").fit(SessionData({}, np.zeros(0), {}, np.zeros(0)), 0, config=MarkovConfig())
    assert raised.value.field == "config"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (lambda: SknnConfig(k_neighbors=600, sample_size=1000, k_grid=(600,), sample_grid=(1000,)), "k_neighbors"),
        (lambda: SknnConfig(sample_size=50), "sample_size"),
        (lambda: SknnConfig(decay="cubic"), "decay"),  # type: ignore[arg-type]
        (lambda: SknnConfig(idf_weight=-1.0), "idf_weight"),
        (lambda: CovisitationConfig(window=0), "window"),
        (lambda: MarkovConfig(max_followers=0), "max_followers"),
    ],
)
def test_bad_hyper_parameters_are_refused_by_name(config: Callable[[], Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        config()
    assert raised.value.field == field


# --------------------------------------------------------------------------------------------------------------
# Definitions, by hand
# --------------------------------------------------------------------------------------------------------------


def _data(sessions: list[list[int]], labels: list[int], seq_len: int = 4, ids: list[int] | None = None) -> SessionData:
    items = np.zeros((len(sessions), seq_len), dtype=np.int64)
    for row, session in enumerate(sessions):
        items[row, : len(session)] = session
    inputs = {
        "item_ids": items,
        "event_types": (items > 0).astype(np.int64),
        "lengths": np.array([len(s) for s in sessions], dtype=np.int64),
    }
    keys = None if ids is None else np.array(ids)
    return SessionData(inputs, np.array(labels, dtype=np.int64), inputs, np.array(labels, dtype=np.int64), keys)


def test_popularity_is_the_training_next_items_by_share(fitted: dict[str, Any], split: Split) -> None:
    ids, scores = fitted["popularity"].recommend(split.test, 5)
    labels = split.data.train_labels
    assert (ids == ids[0]).all()
    np.testing.assert_array_equal(ids[0], popular_items(labels, 5))  # no ties among the first five here
    np.testing.assert_allclose(scores[0], [np.mean(labels == item) for item in ids[0]], rtol=1e-6)


def test_markov_ranks_followers_of_the_last_item_with_dirichlet_smoothed_probabilities() -> None:
    # pairs (last -> next) as in test_baselines.py: 1 -> 5 twice, 1 -> 6, 2 -> 7, 2 -> 5, (empty) -> 6, 3 -> 8
    data = _data([[1], [1], [1], [2], [2], [], [3]], [5, 6, 5, 7, 5, 6, 8])
    model = fit_markov(data, MarkovConfig())
    queries = {name: values[[0, 3, 6, 5]] for name, values in data.train.items()}  # last 1, 2, 3, empty

    ids, scores = model.recommend(queries, 3)

    assert ids.tolist() == [[5, 6, 7], [5, 7, 6], [8, 5, 6], [5, 6, 7]]
    share = {5: 3 / 7, 6: 2 / 7, 7: 1 / 7, 8: 1 / 7}
    np.testing.assert_allclose(scores[0], [(2 + share[5]) / 4, (1 + share[6]) / 4, share[7] / 4], rtol=1e-6)
    np.testing.assert_allclose(scores[3], [share[5], share[6], share[7]], rtol=1e-6)  # c(a) = 0: popularity


def test_covisitation_weights_pairs_by_gap_and_the_sessions_items_by_recency() -> None:
    # rows (items -> next): [1, 2] -> 3, [1] -> 4, [2] -> 4; window 2: pairs 2->3 (1), 1->3 (1/2), 1->4 (1), 2->4 (1)
    data = _data([[1, 2], [1], [2]], [3, 4, 4])
    config = CovisitationConfig(window=2, decay="harmonic", tune=False)
    vocabulary, seq_len = fitted_on(data, config.max_items)
    model = build_covisitation(data, vocabulary, config, seq_len)
    # w(1, .) = {3: 1/3, 4: 2/3}; w(2, .) = {3: 1/2, 4: 1/2}; session [2, 1]: r = 1/2 for 2, 1 for 1
    query = {name: values[:1] for name, values in _data([[2, 1]], [0]).train.items()}
    ids, scores = model.recommend(query, 2)
    s3, s4 = 1 / 3 + 0.5 * 0.5, 2 / 3 + 0.5 * 0.5
    assert ids.tolist() == [[4, 3]]
    np.testing.assert_allclose(scores, [[1.0, 0.5 + 0.5 * s3 / s4]], rtol=1e-6)


# --------------------------------------------------------------------------------------------------------------
# Session-kNN against a plain-Python V-SKNN
# --------------------------------------------------------------------------------------------------------------


def reference_sknn(data: SessionData, model: Any, query: list[int]) -> dict[int, float]:
    """V-SKNN as sknn.py defines it, by dictionaries (no posting lists, no caps but the session's items): item id ->
    its banded score."""
    config, vocabulary = model.config, set(model.vocabulary.ids.tolist())
    items, lengths, labels = data.train["item_ids"], data.train["lengths"], data.train_labels
    keys = data.train_sessions
    sessions: dict[Any, dict[int, int]] = {}  # key -> item -> newest occurrence
    newest: dict[Any, int] = {}
    for row in range(len(labels)):
        seen = [*items[row, : lengths[row]].tolist(), int(labels[row])]
        for place, item in enumerate(seen):
            if item in vocabulary:
                sessions.setdefault(keys[row], {})[item] = row * (items.shape[1] + 1) + place
        newest[keys[row]] = row
    order = sorted(newest, key=lambda key: newest[key])  # one row is one session's: no ties
    number = {key: i for i, key in enumerate(order)}
    held = {
        number[key]: set(sorted(held, key=lambda i: -held[i])[: config.max_session_items])
        for key, held in sessions.items()
    }
    length = len(query)
    weight: dict[int, float] = {}
    for position, item in enumerate(query, start=1):  # a later occurrence overwrites: its newest step counts
        if item in vocabulary:
            weight[item] = round(max(1 - 0.1 * (length - position), 0.0) / QUANTUM) * QUANTUM
    weight = {item: w for item, w in weight.items() if w > 0}
    candidates = sorted((s for s, its in held.items() if its & set(weight)), reverse=True)[: config.sample_size]
    similarity = {s: sum(w for item, w in weight.items() if item in held[s]) for s in candidates}
    neighbors = sorted(candidates, key=lambda s: (-similarity[s], -s))[: config.k_neighbors]
    sums: dict[int, float] = {}
    for s in neighbors:
        for item in held[s]:
            sums[item] = sums.get(item, 0.0) + similarity[s]
    best = max(sums.values(), default=1.0)
    share = {int(i): float(np.mean(data.train_labels == i)) for i in vocabulary}
    return {i: 0.5 + 0.5 * sums[i] / best if i in sums else 0.5 * share[i] for i in vocabulary}


def test_sknn_equals_a_plain_python_v_sknn_with_sampling_and_caps_that_bite(split: Split) -> None:
    config = SknnConfig(k_neighbors=10, sample_size=25, max_session_items=6, k_grid=(10,), sample_grid=(25,))
    vocabulary, seq_len = fitted_on(split.data, config.max_items)
    model = build_sknn(split.data, vocabulary, config, seq_len)
    rows = np.flatnonzero(split.test["lengths"] >= 3)[:40]
    queries = {name: values[rows] for name, values in split.test.items()}

    ids, scores = model.recommend(queries, 10)

    for row in range(len(rows)):
        query = queries["item_ids"][row, : queries["lengths"][row]].tolist()
        reference = reference_sknn(split.data, model, query)
        want = sorted(reference, key=lambda i: (-reference[i], model.vocabulary.index(np.array([i]))[0]))[:10]
        np.testing.assert_allclose(scores[row], [reference[i] for i in want], atol=1e-6)
        ties = np.isclose(scores[row][:, None], scores[row][None, :], atol=TIE).sum(axis=1) > 1
        assert all(tie or got == w for got, w, tie in zip(ids[row].tolist(), want, ties, strict=True)), row


def test_sknn_reads_whole_sessions_not_one_row_each() -> None:
    # two training sessions: a = rows [7] -> 8 and [7, 8] -> 9; b = [5] -> 6. A query [9] shares 9 with session a
    data = _data([[7], [7, 8], [5]], [8, 9, 6], ids=[10, 10, 11])
    config = SknnConfig(k_neighbors=1, sample_size=1, k_grid=(1,), sample_grid=(1,), tune=False)
    vocabulary, seq_len = fitted_on(data, config.max_items)
    model = build_sknn(data, vocabulary, config, seq_len)
    query = {name: values[:1] for name, values in _data([[9]], [0]).train.items()}

    ids, scores = model.recommend(query, 3)

    assert sorted(ids[0].tolist()) == [7, 8, 9]  # session a's items, all with the same similarity
    np.testing.assert_allclose(scores, [[1.0, 1.0, 1.0]])
    assert model.index.n_sessions == 2


# --------------------------------------------------------------------------------------------------------------
# A training run of a baseline kind
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # four kinds fitted and one exported: a few seconds
def test_a_sknn_run_is_the_model_beside_the_other_baselines(split: Split, tmp_path: Path) -> None:
    run = train_next_item(
        split.frame, tmp_path / "sknn.onnx", kind="sknn", config=RUN, kind_config=SMALL["sknn"], seed=SEED
    )

    assert (run.model_name, run.feature_service, run.classes) == ("next_item", "next_item_v1", ())
    assert [(c.name, c.is_model) for c in run.candidates] == [
        ("sknn", True),
        ("popularity", False),
        ("markov", False),
        ("covisitation", False),
    ]
    assert all(c.scores.shape == (len(run.labels), RUN.eval_k) for c in run.candidates)
    assert all(c.valid_scores is not None and len(c.valid_scores) == len(run.valid_labels) for c in run.candidates)
    assert (run.model.scores[:, TOP_K:] == -1).all()  # the graph answers top_k: the list is judged as served
    params = run.params
    assert params["kind"] == "sknn" and params["input_spec"]["top_k"] == TOP_K
    assert params["input_spec"]["seq_len"] == RUN.seq_len and params["seed"] == SEED
    assert set(params["index"]) >= {"sessions", "posting_entries", "session_entries", "bytes"}
    assert params["tuning"] and set(params["baselines"]) == {"popularity", "markov", "covisitation"}
    assert run.history == {} and run.export.parity_max_abs_diff <= 1e-4
    json.dumps(params)


def test_an_unknown_kind_is_refused_before_any_work(split: Split, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        train_next_item(split.frame, tmp_path / "m.onnx", kind="item2vec", config=RUN)
    assert raised.value.field == "kind"
    assert not (tmp_path / "m.onnx").exists()


def test_a_baseline_kind_config_can_be_given_to_a_run(split: Split, tmp_path: Path) -> None:
    markov = replace(MarkovConfig(), max_followers=3)
    run = train_next_item(split.frame, tmp_path / "m.onnx", kind="markov", config=RUN, kind_config=markov)
    assert run.params["config"]["max_followers"] == 3 and run.params["index"]["max_followers"] <= 3


def test_a_neural_kinds_config_sets_the_runs_inputs_an_index_kinds_leaves_the_defaults() -> None:
    from training.models.next_item.trainer import _run_config

    neural = NextItemConfig(seq_len=8, top_k=15, eval_k=10, holdout_rows=32, min_split_rows=5)
    derived = _run_config(None, neural)
    assert (derived.seq_len, derived.top_k, derived.eval_k, derived.holdout_rows, derived.min_split_rows) == (
        8,
        15,
        10,
        32,
        5,
    )
    assert _run_config(None, SknnConfig()) == NextItemConfig()
    assert _run_config(RUN, neural) is RUN


@pytest.mark.slow  # every kind fitted (two small networks among them) and one exported
def test_auto_serves_the_kind_the_validation_days_support_and_reports_every_other(split: Split, tmp_path: Path) -> None:
    gru = replace(RUN, max_steps=60, eval_every=20, embedding_dim=16, hidden=16)
    run = train_next_item(split.frame, tmp_path / "auto.onnx", kind="auto", config=gru, seed=SEED)

    selection = run.params["selection"]
    figures, challenges = selection["validation"], selection["challenges"]
    assert set(figures) == set(KINDS)
    assert run.model.name == selection["chosen"] == run.params["kind"]
    served = "sknn"
    for challenge in challenges:  # each against the kind served so far; the last one standing is served
        assert challenge["incumbent"] == served
        served = challenge["challenger"] if challenge["ci95"][0] > 0 else served
    assert run.model.name == served and challenges[-1]["challenger"] in ("gru4rec", "sasrec")
    assert {c.name for c in run.candidates} == set(KINDS) and sum(c.is_model for c in run.candidates) == 1
    assert run.framework == KINDS[run.model.name].framework and (tmp_path / "auto.onnx").exists()
    json.dumps(run.params)


def test_auto_is_a_kind_option_and_an_unknown_kind_names_it() -> None:
    with pytest.raises(InvalidInputError, match="or auto") as raised:
        kind_or_auto("item2vec")
    assert (kind_or_auto("auto"), raised.value.field, raised.value.value) == ("auto", "kind", "item2vec")
