"""The next-item trainer with the GRU4Rec kind: an ONNX graph that takes and answers in the shop's item ids, parity
with the native model, refusals, the vocabulary and the baselines beside it (the index kinds themselves are tested in
test_next_item_kinds.py).

The training frame is built as in test_next_action.py, without Feast (the Feast path is tested in test_datasets.py):
labelled entities from a small synthetic shop and the session state at each decision time from `session_rows`. Two
module fixtures share the expensive parts: one `train_next_item` run with a tiny network (a few seconds), and an
untrained but seeded GRU4Rec network exported as the kind exports it, so the ONNX file can be compared with the
native `recommend` on the very same weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from journey.errors import InvalidInputError
from journey.model_inputs import NextItemInputSpec, next_item_inputs
from journey.onnx_contract import EXPORTER_TORCH_DYNAMO, NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES as RECOMMENDER_INPUT_NAMES
from journey.onnx_contract import NEXT_ITEM_OUTPUT_NAMES as RECOMMENDER_OUTPUT_NAMES
from tests.factories.session_frames import session_training_frame
from training.export import read_metadata
from training.labels import label_ids, next_item_entities
from training.models.baselines import popular_items
from training.models.next_item import BASELINES, NeuralRecommender, NextItemConfig, Vocabulary, train_next_item
from training.models.next_item.gru import build_gru4rec
from training.runs import TrainingRun
from training.splits import time_split
from training.torch_loop import History

TINY = NextItemConfig(
    embedding_dim=8,
    type_dim=4,
    hidden=16,
    max_steps=40,  # a few passes over the shop's ~2,400 training rows
    eval_every=10,
    lr=0.03,  # high for a real run: a few short passes are enough for the bias to learn the popular items
    top_k=10,
    batch_size=256,
    holdout_rows=64,
    max_threads=1,
)
SPEC = TINY.input_spec()
SEED = 11
TIE = 1e-6  # scores closer than this may come out in either order from two runtimes


def _frame() -> pd.DataFrame:
    """A next_item_v1 training frame: labelled entities and the session state at t (last items and event types)."""
    return session_training_frame(next_item_entities)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module")
def run(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    path = tmp_path_factory.mktemp("next_item") / "model.onnx"
    return train_next_item(frame, path, config=TINY, seed=SEED)


@dataclass(frozen=True)
class Native:
    """A seeded network, its vocabulary and its exported graph: the same weights on both sides."""

    model: NeuralRecommender
    vocabulary: Vocabulary
    path: Path
    test: dict[str, np.ndarray]  # next_item_inputs of the frame's test days


@pytest.fixture(scope="module")
def native(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Native:
    split = time_split(frame, min_rows=TINY.min_split_rows)
    vocabulary = Vocabulary.build(next_item_inputs(split.train, SPEC), label_ids(split.train), TINY.max_items)
    torch.manual_seed(SEED)
    model = NeuralRecommender("gru4rec", build_gru4rec(TINY, len(vocabulary)).eval(), vocabulary, TINY, SEED, History())
    test = next_item_inputs(split.test, SPEC)
    path = tmp_path_factory.mktemp("native") / "recommender.onnx"
    model.export(path, {name: values[: TINY.holdout_rows] for name, values in test.items()}, TINY.top_k)
    return Native(model, vocabulary, path, test)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _online(part: pd.DataFrame) -> dict[str, list[Any]]:
    """The online reader's shape: a dict of python lists, None where a session has no state."""
    return {
        name: [None if isinstance(v, float) and np.isnan(v) else list(v) for v in part[name]]
        for name in SPEC.source_features
    }


def _assert_same_ranking(ids: np.ndarray, scores: np.ndarray, want: np.ndarray) -> None:
    """`ids` equal `want` at every place whose score is not within TIE of a neighbour's (a near-tie may swap)."""
    gap = np.abs(np.diff(scores.astype(np.float64), axis=1))
    tied = np.zeros(ids.shape, dtype=bool)
    tied[:, :-1] |= gap <= TIE
    tied[:, 1:] |= gap <= TIE
    tied[:, -1] = True  # the (k+1)-th item, not shown, may tie with the last
    mismatched = (ids != want) & ~tied
    assert not mismatched.any(), f"{int(mismatched.sum())} places differ outside a near-tie"
    assert np.mean(ids == want) > 0.95


def _rows(inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` rows: the first ones, repeated in order when there are fewer."""
    take = np.arange(batch) % len(inputs["lengths"])
    return {name: np.ascontiguousarray(values[take]) for name, values in inputs.items()}


# --------------------------------------------------------------------------------------------------------------
# The exported graph (trained run)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the module's training run + export: a few seconds once
def test_the_onnx_file_answers_in_the_training_vocabularys_item_ids(run: TrainingRun, frame: pd.DataFrame) -> None:
    split = time_split(frame, min_rows=TINY.min_split_rows)
    train = next_item_inputs(split.train, SPEC)
    valid = np.arange(SPEC.seq_len)[None, :] < train["lengths"][:, None]
    vocabulary = set(train["item_ids"][valid].tolist()) | set(label_ids(split.train).tolist())
    assert run.params["vocabulary_size"] == len(vocabulary)

    test = next_item_inputs(_online(split.test), SPEC)
    ids, _ = _session(run.export.path).run(None, test)

    assert ids.dtype == np.int64 and ids.shape == (len(split.test), TINY.top_k)
    # the vocabulary's items, or (the repeat head) the session's own, known to the vocabulary or not
    steps = np.arange(SPEC.seq_len)[None, :] < test["lengths"][:, None]
    for row, named in enumerate(ids.tolist()):
        assert set(named) <= vocabulary | set(test["item_ids"][row][steps[row]].tolist())
    assert 0 not in ids  # index 0 (padding / unknown) is masked, never recommended
    assert all(len(set(row)) == TINY.top_k for row in ids.tolist())  # no item twice in one list


@pytest.mark.slow
def test_onnx_on_inputs_built_as_serving_builds_them_reproduces_the_models_test_lists(
    run: TrainingRun, frame: pd.DataFrame
) -> None:
    spec = NextItemInputSpec.from_dict(json.loads(json.dumps(run.params["input_spec"])))
    assert spec == SPEC
    test = time_split(frame, min_rows=TINY.min_split_rows).test

    ids, scores = _session(run.export.path).run(None, next_item_inputs(_online(test), spec))

    model = run.model.scores  # the native `recommend` on the test days, cut at eval_k
    _assert_same_ranking(ids, scores, model[:, : TINY.top_k])
    assert (model[:, TINY.top_k :] == -1).all()  # the graph returns top_k items: the rest of the list stays empty


@pytest.mark.slow
def test_scores_are_probabilities_sorted_best_first(run: TrainingRun, frame: pd.DataFrame) -> None:
    test = time_split(frame, min_rows=TINY.min_split_rows).test
    _, scores = _session(run.export.path).run(None, next_item_inputs(_online(test), SPEC))
    assert scores.dtype == np.float32
    assert ((scores > 0) & (scores <= 1)).all()
    assert (np.diff(scores, axis=1) <= 0).all()
    assert (scores.sum(axis=1) <= 1 + 1e-5).all()  # the top k of a softmax over the whole vocabulary


@pytest.mark.slow
def test_the_graph_and_its_metadata_name_the_recommender_inputs_and_outputs(run: TrainingRun) -> None:
    assert NEXT_ITEM_INPUT_NAMES == RECOMMENDER_INPUT_NAMES  # serving builds with one, export writes the other
    assert NEXT_ITEM_OUTPUT_NAMES == RECOMMENDER_OUTPUT_NAMES
    session = _session(run.export.path)
    assert tuple(i.name for i in session.get_inputs()) == RECOMMENDER_INPUT_NAMES
    assert tuple(o.name for o in session.get_outputs()) == RECOMMENDER_OUTPUT_NAMES
    meta = read_metadata(run.export.path)
    assert json.loads(meta["journey.input_names"]) == list(RECOMMENDER_INPUT_NAMES)
    assert json.loads(meta["journey.output_names"]) == list(RECOMMENDER_OUTPUT_NAMES)
    assert meta["journey.exporter"] == EXPORTER_TORCH_DYNAMO
    report = run.export
    assert (report.input_names, report.output_names) == (RECOMMENDER_INPUT_NAMES, RECOMMENDER_OUTPUT_NAMES)
    assert set(report.max_abs_diff) == {TINY.holdout_rows, 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4


@pytest.mark.slow
def test_an_unknown_or_empty_session_gets_the_popular_items_without_nan(run: TrainingRun, frame: pd.DataFrame) -> None:
    columns: dict[str, list[Any]] = {
        "session_last_item_ids": [None, [], np.nan],
        "session_last_event_types": [None, [], np.nan],
    }
    inputs = next_item_inputs(columns, SPEC)
    assert inputs["lengths"].tolist() == [0, 0, 0]

    ids, scores = _session(run.export.path).run(None, inputs)

    assert np.isfinite(scores).all() and (scores > 0).all()
    assert (ids == ids[0]).all()  # no state, one answer: the learnt prior
    popular = popular_items(label_ids(time_split(frame, min_rows=TINY.min_split_rows).train), TINY.top_k)
    assert ids[0, 0] in popular[:3]
    assert len(set(ids[0].tolist()) & set(popular.tolist())) >= TINY.top_k // 2


@pytest.mark.slow
def test_the_run_carries_the_model_then_the_baselines_as_ranked_item_lists(
    run: TrainingRun, frame: pd.DataFrame
) -> None:
    split = time_split(frame, min_rows=TINY.min_split_rows)
    assert (run.model_name, run.framework, run.feature_service) == ("next_item", "pytorch", "next_item_v1")
    assert run.classes == ()  # a ranking task: evaluate() reads the scores as item ids
    assert run.feature_order == ("session_last_item_ids", "session_last_event_types")
    assert [(c.name, c.is_model) for c in run.candidates] == [
        ("gru4rec", True),
        *((name, False) for name in BASELINES),  # every baseline kind: popularity, markov, covisitation, sknn
    ]
    assert BASELINES == ("popularity", "markov", "covisitation", "sknn")
    assert run.params["kind"] == "gru4rec" and set(run.params["baselines"]) == set(BASELINES)
    np.testing.assert_array_equal(run.labels, label_ids(split.test))
    for candidate in run.candidates:
        assert candidate.scores.shape == (len(split.test), TINY.eval_k)
        assert candidate.scores.dtype == np.int64
    assert run.params["input_spec"]["top_k"] == TINY.top_k
    assert len(run.history["train_loss"]) == len(run.history["valid_loss"]) == run.params["evaluations"] >= 1
    assert 0 < run.params["best_step"] <= run.params["steps_run"] <= TINY.max_steps
    assert np.isfinite(run.history["train_loss"]).all() and np.isfinite(run.history["valid_loss"]).all()
    assert set(run.seconds) == {"inputs", "fit", "export", "baselines"}


@pytest.mark.slow  # two more training runs
def test_the_same_seed_gives_the_same_onnx_model(run: TrainingRun, frame: pd.DataFrame, tmp_path: Path) -> None:
    again = train_next_item(frame, tmp_path / "again.onnx", config=TINY, seed=SEED)
    assert again.export.sha256 == run.export.sha256  # byte-identical: the registry's hash names the same model
    np.testing.assert_array_equal(again.model.scores, run.model.scores)
    assert again.history == run.history

    other = train_next_item(frame, tmp_path / "other.onnx", config=replace(TINY, max_steps=10), seed=SEED + 1)
    assert other.export.sha256 != run.export.sha256


# --------------------------------------------------------------------------------------------------------------
# The exported graph against the native module (same weights)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the module's export: a few seconds once
@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_onnx_equals_the_native_recommend_at_every_batch_size(native: Native, batch: int) -> None:
    inputs = _rows(native.test, batch)

    ids, scores = _session(native.path).run(None, inputs)
    want_ids, want_scores = native.model.recommend(inputs, TINY.top_k)

    assert ids.shape == scores.shape == (batch, TINY.top_k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    _assert_same_ranking(ids, want_scores, want_ids)


@pytest.mark.slow
def test_an_unknown_item_id_is_read_as_index_0_and_named_by_its_own_id(native: Native) -> None:
    known = int(native.vocabulary.ids[0])
    strangers = [int(native.vocabulary.ids.max()) + 1, -7]  # in no vocabulary
    columns = {
        "session_last_item_ids": [[known, strangers[0]], [known, strangers[1]], [known, known]],
        "session_last_event_types": [["view", "view"]] * 3,
    }
    inputs = next_item_inputs(columns, SPEC)
    index = native.vocabulary.index(inputs["item_ids"])
    assert index[:2, 1].tolist() == [0, 0] and index[2, 1] == 1

    ids, scores = _session(native.path).run(None, inputs)

    # the network reads both strangers as index 0: the same answer, but each row names its own stranger (the
    # repeat head recommends the session's items whether the vocabulary knows them or not)
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-6)
    np.testing.assert_array_equal(
        np.where(ids[0] == strangers[0], 0, ids[0]), np.where(ids[1] == strangers[1], 0, ids[1])
    )
    assert strangers[1] not in ids[0] and strangers[0] not in ids[1]
    assert not np.array_equal(scores[0], scores[2])  # while a known item there is read as itself
    want_ids, want_scores = native.model.recommend(inputs, TINY.top_k)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    _assert_same_ranking(ids, want_scores, want_ids)


# --------------------------------------------------------------------------------------------------------------
# Refusals (before any export)
# --------------------------------------------------------------------------------------------------------------


def test_a_frame_without_a_label_column_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no 'label' column") as raised:
        train_next_item(frame.drop(columns=["label"]), tmp_path / "m.onnx", config=TINY)
    assert raised.value.field == "label"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("bad", [2.5, np.nan, "shoe"])
def test_a_label_that_is_not_an_item_id_is_refused(frame: pd.DataFrame, tmp_path: Path, bad: object) -> None:
    labels = frame["label"].astype(object)
    labels.iloc[3] = bad
    with pytest.raises(InvalidInputError, match="item ids") as raised:
        train_next_item(frame.assign(label=labels), tmp_path / "m.onnx", config=TINY)
    assert raised.value.field == "label"


def test_integral_float_labels_are_read_as_item_ids() -> None:
    labels = label_ids(pd.DataFrame({"label": [12.0, 2.0**40]}))
    assert labels.dtype == np.int64 and labels.tolist() == [12, 2**40]


def test_training_days_whose_next_item_is_always_the_same_are_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="nothing to rank") as raised:
        train_next_item(frame.assign(label=7), tmp_path / "m.onnx", config=TINY)
    assert raised.value.field == "label"
    assert raised.value.value == 7
    assert not (tmp_path / "m.onnx").exists()


def test_too_few_rows_are_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        train_next_item(frame.head(30), tmp_path / "m.onnx", config=TINY)
    assert raised.value.field == "rows"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow  # one more (short) training run
def test_next_items_outside_the_vocabulary_leave_the_training_curve_finite(frame: pd.DataFrame, tmp_path: Path) -> None:
    # two items in the vocabulary and batches of 16: most batches hold no known next item at all, whose mean loss
    # over zero rows was NaN
    config = replace(TINY, max_items=2, batch_size=16, max_steps=20, top_k=2)
    small = train_next_item(frame, tmp_path / "m.onnx", config=config, seed=SEED)
    assert small.params["vocabulary_size"] == 2
    assert np.isfinite(small.history["train_loss"]).all() and np.isfinite(small.history["valid_loss"]).all()
    assert small.model.scores.shape[1] == TINY.eval_k and (small.model.scores[:, 2:] == -1).all()


# --------------------------------------------------------------------------------------------------------------
# Vocabulary (no training); the sampled loss in test_neural_next_item.py, the baselines in test_next_item_kinds.py
# --------------------------------------------------------------------------------------------------------------


def _inputs(sessions: list[list[int]], seq_len: int = 4) -> dict[str, np.ndarray]:
    """Right-padded item ids (padding 7: counted only if the lengths were ignored) and lengths."""
    items = np.full((len(sessions), seq_len), 7, dtype=np.int64)
    for row, session in enumerate(sessions):
        items[row, : len(session)] = session
    lengths = np.array([len(s) for s in sessions], dtype=np.int64)
    return {"item_ids": items, "event_types": np.where(items == 7, 0, 1), "lengths": lengths}


def test_vocabulary_indexes_items_by_frequency_and_every_other_id_as_0() -> None:
    # counts over valid steps and labels: 30 x3, 10 x2, 20 x2, 40 x1 (the padding 7s do not count)
    vocabulary = Vocabulary.build(_inputs([[30, 10], [20], []]), np.array([30, 30, 20, 10, 40]), max_items=10)

    assert vocabulary.ids.tolist() == [30, 10, 20, 40]  # most frequent first, ties by id
    assert len(vocabulary) == 4
    index = vocabulary.index(np.array([[30, 10, 20, 40], [7, 0, -1, 99]]))
    assert index.dtype == np.int64
    assert index.tolist() == [[1, 2, 3, 4], [0, 0, 0, 0]]
    assert vocabulary.table().tolist() == [0, 30, 10, 20, 40]  # index -> id, 0 for the masked index


def test_vocabulary_keeps_only_the_max_items_most_frequent() -> None:
    vocabulary = Vocabulary.build(_inputs([[5, 5, 6], [6, 8]]), np.array([5, 9, 8]), max_items=2)
    assert vocabulary.ids.tolist() == [5, 6]  # 5 x3, 6 x2; 8 x2 loses the tie to 6, 9 x1
    assert vocabulary.index(np.array([8, 9, 5])).tolist() == [0, 0, 1]
    with pytest.raises(InvalidInputError) as raised:
        Vocabulary.build(_inputs([[5]]), np.array([5]), max_items=0)
    assert raised.value.field == "max_items"
