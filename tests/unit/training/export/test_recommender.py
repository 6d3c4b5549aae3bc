"""The recommender export: item ids in, item ids out, the vocabulary inside the graph; parity that tolerates ties.

Tiny modules on random data keep this fast; the export is done once per module and shared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from journey.errors import InvalidInputError
from journey.onnx_contract import EXPORTER_TORCH_DYNAMO
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES as RECOMMENDER_INPUT_NAMES
from journey.onnx_contract import NEXT_ITEM_OUTPUT_NAMES as RECOMMENDER_OUTPUT_NAMES
from training.export import ExportReport, check_parity, export_recommender, read_metadata
from training.export.recommender import ranking_diff

N_EVENT_TYPES = 6
SEQ_LEN = 10


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Recommender: item ids in, item ids out, the vocabulary inside the graph
# --------------------------------------------------------------------------------------------------------------

VOCABULARY = np.array([501, 502, 503, 504, 505, 506, 507, 508], dtype=np.int64)  # index i + 1 is VOCABULARY[i]
UNKNOWN_ID = 999  # in no vocabulary: index 0
TOP_K = 3


class TinyRecommender(nn.Module):
    """The recommender's shape over vocabulary indices: the valid steps' embeddings summed -> softmax over the
    vocabulary (index 0 masked) -> the top k indices and their probabilities."""

    def __init__(self) -> None:
        super().__init__()
        self.items = nn.Embedding(len(VOCABULARY) + 1, 4)
        self.types = nn.Embedding(N_EVENT_TYPES, 4)
        self.out = nn.Linear(4, len(VOCABULARY) + 1)
        mask = torch.zeros(len(VOCABULARY) + 1)
        mask[0] = -1e9
        self.mask: torch.Tensor
        self.register_buffer("mask", mask)

    def forward(
        self, item_index: torch.Tensor, event_types: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        valid = (torch.arange(item_index.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)
        state = ((self.items(item_index) + self.types(event_types)) * valid.to(torch.float32)).sum(dim=1)
        scores, indices = torch.topk(torch.softmax(self.out(state) + self.mask, dim=1), TOP_K, dim=1)
        return indices, scores


def _recommender_inputs(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """Raw item ids (some unknown), right-padded with 0 after `lengths` (0 for an unknown session)."""
    ids = rng.choice(np.append(VOCABULARY, UNKNOWN_ID), size=(rows, SEQ_LEN))
    lengths = rng.integers(0, SEQ_LEN + 1, size=rows)
    valid = np.arange(SEQ_LEN)[None, :] < lengths[:, None]
    types = rng.integers(1, N_EVENT_TYPES, size=(rows, SEQ_LEN))
    return {
        "item_ids": np.where(valid, ids, 0).astype(np.int64),
        "event_types": np.where(valid, types, 0).astype(np.int64),
        "lengths": lengths.astype(np.int64),
    }


def _recommender_native(module: nn.Module, shift: int = 0) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """The module on item ids mapped by hand (unknown -> 0), its indices mapped back; `shift` moves each answer to
    the next item of the vocabulary (a wrong reference)."""
    lookup = {int(item): i + 1 for i, item in enumerate(VOCABULARY)}
    table = np.concatenate([[0], VOCABULARY])

    def native(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        index = np.vectorize(lambda item: lookup.get(int(item), 0))(feeds["item_ids"]).astype(np.int64)
        with torch.no_grad():
            indices, scores = module(*(torch.from_numpy(a) for a in (index, feeds["event_types"], feeds["lengths"])))
        return [table[(indices.numpy() - 1 + shift) % len(VOCABULARY) + 1], scores.numpy()]

    return native


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportReport, TinyRecommender]:
    torch.manual_seed(7)
    module = TinyRecommender()
    path = tmp_path_factory.mktemp("onnx") / "recommender.onnx"
    holdout = _recommender_inputs(np.random.default_rng(8), 40)
    report = export_recommender(module, VOCABULARY, holdout, path, native=_recommender_native(module))
    return report, module


def test_recommender_export_takes_and_returns_item_ids_through_its_vocabulary(
    recommender: tuple[ExportReport, TinyRecommender],
) -> None:
    import onnxruntime as ort

    report, module = recommender
    assert report.exporter == EXPORTER_TORCH_DYNAMO
    assert (report.input_names, report.output_names) == (RECOMMENDER_INPUT_NAMES, RECOMMENDER_OUTPUT_NAMES)
    assert set(report.max_abs_diff) == {40, 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4
    assert report.sha256 == _sha256(report.path)
    assert [p.name for p in report.path.parent.iterdir()] == ["recommender.onnx"]
    model = onnx.load(str(report.path))
    first, last = model.graph.node[0], model.graph.node[-1]
    assert (first.op_type, first.domain, list(first.input)) == ("LabelEncoder", "ai.onnx.ml", ["item_ids"])
    assert (last.op_type, list(last.output)) == ("Gather", ["recommended_item_ids"])
    assert json.loads(read_metadata(report.path)["journey.output_names"]) == list(RECOMMENDER_OUTPUT_NAMES)

    feeds = _recommender_inputs(np.random.default_rng(9), 25)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    ids, scores = session.run(None, feeds)
    want_ids, want_scores = _recommender_native(module)(feeds)
    assert ids.dtype == np.int64 and ids.shape == (25, TOP_K)
    assert set(np.unique(ids).tolist()) <= set(VOCABULARY.tolist())  # answers in item ids, never the masked 0
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_recommender_export_refuses_a_holdout_with_other_inputs(tmp_path: Path) -> None:
    module = TinyRecommender()
    holdout = _recommender_inputs(np.random.default_rng(10), 10)
    holdout["item_buckets"] = holdout.pop("item_ids")
    with pytest.raises(InvalidInputError, match="holdout inputs") as excinfo:
        export_recommender(module, VOCABULARY, holdout, tmp_path / "m.onnx", native=_recommender_native(module))
    assert excinfo.value.field == "holdout"
    assert list(tmp_path.iterdir()) == []


def test_check_parity_refuses_a_recommender_whose_ids_disagree(
    recommender: tuple[ExportReport, TinyRecommender],
) -> None:
    report, module = recommender
    holdout = _recommender_inputs(np.random.default_rng(11), 20)
    agreeing = check_parity(
        report.path, _recommender_native(module), holdout, tolerance=1e-4, compare=ranking_diff(1e-4)
    )
    assert max(agreeing.values()) <= 1e-4

    with pytest.raises(InvalidInputError, match="ONNX export refused") as excinfo:
        check_parity(
            report.path, _recommender_native(module, shift=1), holdout, tolerance=1e-4, compare=ranking_diff(1e-4)
        )
    assert excinfo.value.field == "parity"
    assert excinfo.value.value == float("inf")  # the scores agree: the ids outside a tie do not


def test_recommender_export_refused_on_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    torch.manual_seed(12)
    module = TinyRecommender()
    holdout = _recommender_inputs(np.random.default_rng(12), 20)
    with pytest.raises(InvalidInputError, match="ONNX export refused") as excinfo:
        export_recommender(
            module, VOCABULARY, holdout, tmp_path / "m.onnx", native=_recommender_native(module, shift=1)
        )
    assert excinfo.value.field == "parity"
    assert list(tmp_path.iterdir()) == []


# ids [n, k] and scores [n, k], best first: a near-tie (within the tolerance of a neighbour) may come out either way
WANT_IDS = np.array([[11, 12, 13, 14], [21, 22, 23, 24]])
WANT_SCORES = np.array([[0.5, 0.3, 0.1, 0.05], [0.4, 0.2, 0.2 - 5e-7, 0.1]], dtype=np.float32)
NO_TIE_SCORES = np.array([[0.5, 0.3, 0.1, 0.05], [0.4, 0.2, 0.2 - 5e-5, 0.1]], dtype=np.float32)


def testranking_diff_is_infinite_when_ids_differ_outside_a_tie() -> None:
    swapped = WANT_IDS.copy()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]  # 0.3 and 0.1 are no tie
    assert ranking_diff(1e-4)([swapped, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == float("inf")
    other = WANT_IDS.copy()
    other[1, 0] = 99
    assert ranking_diff(1e-4)([other, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == float("inf")


def testranking_diff_is_the_score_difference_when_ids_differ_only_inside_a_tie() -> None:
    swapped = WANT_IDS.copy()
    swapped[1, [1, 2]] = swapped[1, [2, 1]]  # 0.2 and 0.2 - 5e-7: within TIE_GAP
    swapped[0, 3] = 77  # the last place may go to the (k+1)-th item, whose score nobody saw
    scores = WANT_SCORES + np.float32(2e-6)
    diff = ranking_diff(1e-4)([swapped, scores], [WANT_IDS, WANT_SCORES])
    assert diff == pytest.approx(2e-6, abs=1e-7)  # float32 rounding of the shifted scores


def testranking_diff_ties_only_scores_closer_than_the_tie_gap_not_the_score_tolerance() -> None:
    swapped = WANT_IDS.copy()
    swapped[1, [1, 2]] = swapped[1, [2, 1]]  # 0.2 and 0.2 - 5e-5: within the 1e-4 tolerance, yet no tie
    assert ranking_diff(1e-4)([swapped, NO_TIE_SCORES], [WANT_IDS, NO_TIE_SCORES]) == float("inf")


def testranking_diff_is_infinite_for_other_shapes_or_outputs() -> None:
    compare = ranking_diff(1e-4)
    assert compare([WANT_IDS[:, :3], WANT_SCORES[:, :3]], [WANT_IDS, WANT_SCORES]) == float("inf")
    assert compare([WANT_IDS], [WANT_IDS, WANT_SCORES]) == float("inf")
    assert compare([WANT_IDS, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == 0.0
