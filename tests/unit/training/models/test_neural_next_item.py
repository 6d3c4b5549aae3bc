"""The neural next-item kinds (gru4rec, sasrec) and the repeat-aware head they share: the head's probabilities by
their definition, causality and padding, the ONNX graph against the native `recommend` (parity at batch 1, 7, 1024
and the held-out rows; the session's items outside the vocabulary named by the graph itself), determinism, the
step budget and the hyper-parameter search.

The data is the small synthetic shop of test_next_item.py (labelled next_item_v1 entities with the session state at
t, no Feast), split by time as the trainer splits it; each kind is fitted once per module with a tiny network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from journey.errors import InvalidInputError
from journey.model_inputs import next_item_inputs
from journey.onnx_contract import EXPORTER_TORCH_DYNAMO, NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from tests.factories.rankings import assert_same_ranking, ort_session, rows_of
from tests.factories.session_frames import session_training_frame
from training.export import ExportReport, read_metadata
from training.labels import label_ids, next_item_entities
from training.models.next_item.base import SessionData, Vocabulary
from training.models.next_item.gru import NextItemConfig, build_gru4rec, fit_gru4rec
from training.models.next_item.neural import NOT_A_SLOT, SessionNet, TopSlots
from training.models.next_item.neural_fit import NeuralRecommender, _Validation, later_items, tensors
from training.models.next_item.sasrec import SASRecConfig, build_sasrec, fit_sasrec
from training.runs import session_groups
from training.splits import time_split

TOP_K = 15
SEED = 5
SMALL: dict[str, Any] = {"seq_len": 8, "top_k": TOP_K, "embedding_dim": 16, "max_steps": 150, "eval_every": 25}
SMALL |= {"batch_size": 128, "sampled_negatives": 64, "holdout_rows": 64, "patience": 3, "lr": 5e-3}
SASREC = SASRecConfig(**SMALL, heads=2, layers=1)
GRU = NextItemConfig(**SMALL, hidden=16, type_dim=4)


@dataclass(frozen=True)
class Split:
    data: SessionData
    test: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def split() -> Split:
    parts = time_split(session_training_frame(next_item_entities), min_rows=SASREC.min_split_rows)
    inputs = {name: next_item_inputs(getattr(parts, name), SASREC.input_spec()) for name in ("train", "valid", "test")}
    labels = {name: label_ids(getattr(parts, name)) for name in ("train", "valid")}
    data = SessionData(inputs["train"], labels["train"], inputs["valid"], labels["valid"], session_groups(parts.train))
    return Split(data, inputs["test"])


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[str, NeuralRecommender]:
    return {"sasrec": fit_sasrec(split.data, config=SASREC, seed=SEED), "gru4rec": fit_gru4rec(split.data, GRU, SEED)}


@pytest.fixture(scope="module")
def exported(
    fitted: dict[str, NeuralRecommender], split: Split, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ExportReport]:
    folder = tmp_path_factory.mktemp("neural")
    holdout = {name: values[: SASREC.holdout_rows] for name, values in split.test.items()}
    return {name: model.export(folder / f"{name}.onnx", holdout, TOP_K) for name, model in fitted.items()}


def _untrained(kind: str, n_items: int = 30, repeat: bool = True) -> SessionNet:
    torch.manual_seed(0)
    config = {"seq_len": 5, "embedding_dim": 8, "dropout": 0.0, "repeat": repeat}
    if kind == "sasrec":
        return build_sasrec(SASRecConfig(**config, heads=2, layers=2), n_items).eval()
    return build_gru4rec(NextItemConfig(**config, hidden=8, type_dim=4), n_items).eval()


def _batch() -> list[torch.Tensor]:
    """(index, raw ids, types, lengths): rows with unknown items (index 0; raw 901, 902), repeats and an empty one."""
    index = torch.tensor([[3, 0, 5, 0, 3], [7, 7, 2, 0, 0], [0, 0, 0, 0, 0], [4, 0, 0, 9, 9]])
    raw = torch.tensor([[103, 901, 105, 901, 103], [107, 107, 102, 0, 0], [0, 0, 0, 0, 0], [104, 902, 903, 0, 0]])
    types = torch.tensor([[1, 1, 2, 1, 1], [1, 2, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    return [index, raw, types, torch.tensor([5, 3, 0, 3])]


# --------------------------------------------------------------------------------------------------------------
# The repeat-aware head (untrained networks, by definition)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_slots_are_a_distribution_over_the_vocabulary_and_the_sessions_new_items(kind: str) -> None:
    with torch.no_grad():
        slots = _untrained(kind)(*_batch())
    vocabulary, session = slots[:, :31], slots[:, 31:]
    assert slots.shape == (4, 31 + 5)
    assert (vocabulary[:, 0] == NOT_A_SLOT).all()  # padding / unknown: never recommended
    total = torch.where(slots > 0, slots, torch.zeros_like(slots)).sum(dim=1)
    torch.testing.assert_close(total, torch.ones(4), atol=1e-5, rtol=0)
    # row 0: the unknown item 901 (steps 1 and 3) once, at its first step; known items' steps are not slots
    assert (session[0, 1] > 0) and (session[0, [0, 2, 3, 4]] == NOT_A_SLOT).all()
    assert (session[1] == NOT_A_SLOT).all() and (session[2] == NOT_A_SLOT).all()  # nothing new; empty
    assert (session[3, [1, 2]] > 0).all() and (session[3, [0, 3, 4]] == NOT_A_SLOT).all()  # padding is no slot


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_training_likelihood_is_the_log_of_the_answers_probability(kind: str) -> None:
    net = _untrained(kind)
    x = _batch()
    # next items: a known item of the session, an unknown one of the session, a known one outside, the empty row's
    target = torch.tensor([[5, 105], [0, 0], [12, 112], [0, 902]])
    target[1] = torch.tensor([7, 107])
    with torch.no_grad():
        slots = net(*x)
        log_p, nameable = net.log_likelihood(x, target)
    assert nameable.tolist() == [True, True, True, True]
    want = torch.stack([slots[0, 5], slots[1, 7], slots[2, 12], slots[3, 31 + 1]]).log()
    torch.testing.assert_close(log_p, want, atol=1e-5, rtol=1e-5)


def test_a_next_item_neither_known_nor_in_the_session_cannot_be_named() -> None:
    net = _untrained("sasrec")
    _, nameable = net.log_likelihood(_batch(), torch.tensor([[0, 999], [0, 998], [0, 997], [0, 996]]))
    assert not nameable.any()


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_a_sampled_step_over_every_item_has_the_full_likelihood(kind: str) -> None:
    net = _untrained(kind)
    x, target = _batch(), torch.tensor([[5, 105], [12, 112], [12, 112], [9, 109]])
    with torch.no_grad():
        full, _ = net.log_likelihood(x, target)
        sampled, _ = net.log_likelihood(x, target, torch.arange(1, 31))
    torch.testing.assert_close(sampled, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_steps_after_the_length_and_later_steps_do_not_reach_back(kind: str) -> None:
    net = _untrained(kind)
    index, raw, types, lengths = _batch()
    noisy = index.clone()
    noisy[1, 3:] = torch.tensor([11, 12])  # padding after the length of 3
    with torch.no_grad():
        torch.testing.assert_close(net(index, raw, types, lengths), net(noisy, raw, types, lengths))
        states = net.encode(index, types, lengths)[0]
        later = index.clone()
        later[0, 3:] = torch.tensor([13, 14])  # steps 3 and 4 of row 0 change: steps 0..2 must not
        torch.testing.assert_close(net.encode(later, types, lengths)[0][0, :3], states[0, :3])


def test_without_the_repeat_head_the_answer_is_the_vocabulary_softmax() -> None:
    with torch.no_grad():
        slots = _untrained("sasrec", repeat=False)(*_batch())
    assert (slots[:, 31:] == NOT_A_SLOT).all()
    torch.testing.assert_close(slots[:, 1:31].sum(dim=1), torch.ones(4), atol=1e-5, rtol=0)


def test_top_slots_name_the_sessions_unknown_items_by_their_own_ids() -> None:
    net = _untrained("sasrec")
    table = torch.cat([torch.tensor([0]), torch.arange(101, 131)])  # index i -> item 100 + i
    with torch.no_grad():
        ids, scores = TopSlots(net, table, 34)(*_batch())
    assert 901 in ids[0].tolist() and {902, 903} <= set(ids[3].tolist())
    named = [row[score >= 0].tolist() for row, score in zip(ids, scores, strict=True)]  # -1: no candidate slot
    assert all(len(set(row)) == len(row) for row in named)  # every item once
    assert [len(row) for row in named] == [31, 30, 30, 32]  # the vocabulary, and the new items of rows 0 and 3
    assert (scores[:, :-1] >= scores[:, 1:]).all()


@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_validation_loss_and_rank_are_those_of_the_answer(kind: str) -> None:
    net = _untrained(kind)
    x, table = _batch(), torch.cat([torch.tensor([0]), torch.arange(101, 131)])  # index i -> item 100 + i
    target = torch.tensor([[5, 105], [7, 107], [12, 112], [0, 902]])
    validation = _Validation(net, "mrr")
    with torch.no_grad():
        loss, nameable = validation.loss(x, target)
        ids, _ = TopSlots(net, table, 36)(*x)
        log_p, _ = net.log_likelihood(x, target)
    places = [ids[row].tolist().index(int(target[row, 1])) + 1 for row in range(4)]
    assert validation.ranks[0].tolist() == places and nameable == 4.0
    torch.testing.assert_close(loss, -log_p.sum(), atol=1e-4, rtol=1e-5)
    mrr = sum(1 / place for place in places if place <= 20) / 4
    assert validation.score() == pytest.approx(mrr) and validation.ranks == []


# --------------------------------------------------------------------------------------------------------------
# Fitted kinds: the graph, the budget, determinism
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # the module's two fits and exports: ~30 s once
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("batch", [1, 7, "held-out"])
def test_the_graph_answers_as_recommend_does(
    kind: str, batch: int | str, fitted: dict[str, NeuralRecommender], exported: dict[str, ExportReport], split: Split
) -> None:
    inputs = rows_of(split.test, SASREC.holdout_rows if batch == "held-out" else int(batch))
    ids, scores = ort_session(exported[kind].path).run(None, inputs)
    want_ids, want_scores = fitted[kind].recommend(inputs, TOP_K)
    assert_same_ranking(ids, scores, want_ids, want_scores)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_export_passed_parity_and_names_the_recommender_contract(
    kind: str, exported: dict[str, ExportReport]
) -> None:
    report = exported[kind]
    assert report.exporter == EXPORTER_TORCH_DYNAMO
    assert set(report.max_abs_diff) == {SASREC.holdout_rows, 1, 7, 1024} and report.parity_max_abs_diff <= 1e-4
    session = ort_session(report.path)
    assert tuple(i.name for i in session.get_inputs()) == NEXT_ITEM_INPUT_NAMES
    assert tuple(o.name for o in session.get_outputs()) == NEXT_ITEM_OUTPUT_NAMES
    assert json.loads(read_metadata(report.path)["journey.input_names"]) == list(NEXT_ITEM_INPUT_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_graph_names_a_session_item_the_vocabulary_does_not_know(
    kind: str, fitted: dict[str, NeuralRecommender], exported: dict[str, ExportReport]
) -> None:
    model = fitted[kind]
    stranger = int(model.vocabulary.ids.max()) + 1
    known = [int(i) for i in model.vocabulary.ids[:3]]
    columns = {
        "session_last_item_ids": [[known[0], stranger, known[1], stranger], [], [stranger, known[2]]],
        "session_last_event_types": [["view", "view", "view", "add_to_cart"], [], ["view", "view"]],
    }
    inputs = next_item_inputs(columns, SASREC.input_spec())
    ids, scores = ort_session(exported[kind].path).run(None, inputs)
    want_ids, want_scores = model.recommend(inputs, TOP_K)
    assert_same_ranking(ids, scores, want_ids, want_scores)
    assert stranger in ids[0].tolist() and stranger in ids[2].tolist() and stranger not in ids[1].tolist()
    assert np.isfinite(scores).all() and (scores[1] > 0).all()  # an empty session: the popular items


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sasrec", "gru4rec"])
def test_the_fit_keeps_to_its_step_budget_and_says_how_it_went(kind: str, fitted: dict[str, NeuralRecommender]) -> None:
    params = fitted[kind].params()
    assert params["kind"] == kind and params["vocabulary_size"] == len(fitted[kind].vocabulary)
    assert 0 < params["best_step"] <= params["steps_run"] <= SASREC.max_steps
    assert params["config"]["max_steps"] == SASREC.max_steps and params["input_spec"]["seq_len"] == SASREC.seq_len
    curves = fitted[kind].curves()
    assert len(curves["train_loss"]) == len(curves["valid_loss"]) == len(curves["valid_score"]) == params["evaluations"]
    assert np.isfinite(curves["train_loss"]).all() and np.isfinite(curves["valid_loss"]).all()
    assert params["best_valid_score"] == max(curves["valid_score"])
    json.dumps(params)  # what the registry stores


@pytest.mark.slow
def test_the_fit_beats_the_popular_items_on_the_validation_days(
    fitted: dict[str, NeuralRecommender], split: Split
) -> None:
    labels = split.data.valid_labels
    ids, counts = np.unique(split.data.train_labels, return_counts=True)
    popular = ids[np.argsort(-counts, kind="stable")[:20]]
    baseline = float(np.isin(labels, popular).mean())
    for model in fitted.values():
        assert model.best_score > baseline + 0.02


@pytest.mark.slow  # one more fit and export
def test_the_same_data_and_seed_give_the_same_onnx_bytes(
    fitted: dict[str, NeuralRecommender], exported: dict[str, ExportReport], split: Split, tmp_path: Path
) -> None:
    again = fit_sasrec(split.data, config=SASREC, seed=SEED)
    holdout = {name: values[: SASREC.holdout_rows] for name, values in split.test.items()}
    assert again.export(tmp_path / "again.onnx", holdout, TOP_K).sha256 == exported["sasrec"].sha256
    assert again.history == fitted["sasrec"].history


def test_inputs_of_another_width_than_the_config_are_refused(split: Split) -> None:
    with pytest.raises(InvalidInputError) as raised:
        fit_sasrec(split.data, config=replace(SASREC, seq_len=6), seed=SEED)
    assert raised.value.field == "seq_len"


@pytest.mark.slow  # three short fits
def test_a_search_keeps_the_best_of_its_trials_on_the_validation_days(split: Split) -> None:
    model = fit_sasrec(split.data, config=replace(SASREC, max_steps=30, search_trials=3), seed=SEED)
    search = model.search
    assert search is not None and model.params()["search"] == search
    trials = search["trials"]
    assert [t["trial"] for t in trials] == ["base", 1, 2] and trials[0]["params"] == {}
    done = [t for t in trials if t["state"] == "complete"]
    assert search["best_value"] == max(t["value"] for t in done) == model.best_score
    assert search["budget"] == {"trials": 3, "seconds": None}
    json.dumps(model.params())


def test_later_items_are_the_sessions_next_items_after_this_rows_not_already_seen() -> None:
    # rows in time order, two sessions interleaved: A = 1 2 3 4 (three rows), B = 5 6 5 (two rows)
    items = np.array([[1, 0, 0], [5, 0, 0], [1, 2, 0], [5, 6, 0], [1, 2, 3]])
    inputs = {"item_ids": items, "event_types": np.where(items > 0, 1, 0), "lengths": np.array([1, 1, 2, 2, 3])}
    labels = np.array([2, 6, 3, 5, 4])
    data = SessionData(inputs, labels, inputs, labels, np.array(["A", "B", "A", "B", "A"]))
    vocabulary = Vocabulary.build(inputs, labels, 100)

    later = later_items(data, vocabulary, horizon=2)

    want = [[3, 4], [0, 0], [4, 0], [0, 0], [0, 0]]  # B's later 5 is in its steps already: the repeat head's
    np.testing.assert_array_equal(later, vocabulary.index(np.array(want)))
    assert (later_items(replace(data, train_sessions=None), vocabulary, 2) == 0).all()  # every row its own session


@pytest.mark.slow  # one short fit
def test_a_fit_with_the_later_item_loss_trains_and_keeps_its_budget(split: Split) -> None:
    model = fit_gru4rec(split.data, replace(GRU, max_steps=50, later_loss=0.5), SEED)
    assert np.isfinite(model.curves()["train_loss"]).all() and model.params()["steps_run"] <= 50
    assert model.params()["config"]["later_loss"] == 0.5


def test_tensors_map_ids_as_the_graphs_label_encoder_does(split: Split) -> None:
    vocabulary = Vocabulary.build(split.data.train, split.data.train_labels, 100)
    index, raw, _, _ = tensors(split.test, vocabulary)
    np.testing.assert_array_equal(index.numpy(), vocabulary.index(split.test["item_ids"]))
    np.testing.assert_array_equal(raw.numpy(), split.test["item_ids"])
