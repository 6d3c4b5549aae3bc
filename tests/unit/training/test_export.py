"""ONNX export: parity with the native model at several batch sizes, metadata round-trip, and refusal on mismatch.

Tiny models on random data keep this fast; the torch export (dynamo) is done once per module and shared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import xgboost
from torch import nn

from journey.errors import InvalidInputError
from journey.onnx_contract import EXPORTER_ONNXMLTOOLS, EXPORTER_TORCH_DYNAMO, EXPORTER_TORCH_LEGACY
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES as RECOMMENDER_INPUT_NAMES
from journey.onnx_contract import NEXT_ITEM_OUTPUT_NAMES as RECOMMENDER_OUTPUT_NAMES
from training import export
from training.export import (
    ExportReport,
    _ranking_diff,
    check_parity,
    export_recommender,
    export_torch,
    export_xgboost,
    read_metadata,
)

N_FEATURES = 12
N_EVENT_TYPES = 6
SEQ_LEN = 10
N_SESSION_FEATURES = 3
N_ACTIONS = 5


class NextActionGRU(nn.Module):
    """Shape of the next-action model: event-type ids [N, T] through a GRU, joined with float features [N, F]."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(N_EVENT_TYPES, 4)
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8 + N_SESSION_FEATURES, N_ACTIONS)

    def forward(self, event_types: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        _, hidden = self.gru(self.embed(event_types))
        logits: torch.Tensor = self.head(torch.cat([hidden[-1], features], dim=1))
        return logits


@pytest.fixture(scope="module")
def xgb_data() -> tuple[xgboost.XGBClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, N_FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, tree_method="hist", n_jobs=1, random_state=0)
    model.fit(x[:300], y[:300])
    return model, x[300:]


def _gru_inputs(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    return {
        "event_types": rng.integers(0, N_EVENT_TYPES, size=(rows, SEQ_LEN), dtype=np.int64),
        "features": rng.normal(size=(rows, N_SESSION_FEATURES)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def gru_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportReport, NextActionGRU]:
    torch.manual_seed(0)
    module = NextActionGRU()
    rng = np.random.default_rng(1)
    example = {k: torch.from_numpy(v) for k, v in _gru_inputs(rng, 4).items()}
    path = tmp_path_factory.mktemp("onnx") / "next_action.onnx"
    report = export_torch(module, example, _gru_inputs(rng, 50), path, output_names=["logits"])
    return report, module


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_xgboost_export_matches_predict_proba_at_every_batch_size(
    xgb_data: tuple[xgboost.XGBClassifier, np.ndarray], tmp_path: Path
) -> None:
    model, holdout = xgb_data
    names = [f"feat_{i}" for i in range(N_FEATURES)]
    path = tmp_path / "propensity.onnx"

    report = export_xgboost(model, names, holdout, path)

    assert report.path == path and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["propensity.onnx"]  # no staging or .data side file
    assert report.sha256 == _sha256(path)
    assert report.framework == "xgboost" and report.exporter == EXPORTER_ONNXMLTOOLS
    assert report.input_names == ("features",)
    assert set(report.max_abs_diff) == {len(holdout), 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4

    meta = read_metadata(path)
    assert json.loads(meta["journey.feature_order"]) == names
    assert json.loads(meta["journey.input_names"]) == ["features"]
    assert json.loads(meta["journey.output_names"]) == list(report.output_names)
    assert meta["journey.framework"] == "xgboost"
    assert meta["journey.exporter"] == EXPORTER_ONNXMLTOOLS
    assert float(meta["journey.parity_max_abs_diff"]) == report.parity_max_abs_diff


def test_xgboost_export_accepts_a_model_with_named_features(tmp_path: Path) -> None:
    """A booster carrying real column names cannot be converted as is; the export clears them on a copy only."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    names = [f"col_{i}" for i in range(N_FEATURES)]
    x = rng.normal(size=(120, N_FEATURES)).astype(np.float32)
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1)
    model.fit(pd.DataFrame(x, columns=names), (x[:, 0] > 0).astype(int))

    report = export_xgboost(model, names, x[:20], tmp_path / "named.onnx")

    assert report.parity_max_abs_diff <= 1e-4
    assert model.get_booster().feature_names == names


def test_xgboost_export_rejects_wrong_feature_count(
    xgb_data: tuple[xgboost.XGBClassifier, np.ndarray], tmp_path: Path
) -> None:
    model, holdout = xgb_data
    with pytest.raises(InvalidInputError) as excinfo:
        export_xgboost(model, ["a", "b"], holdout, tmp_path / "m.onnx")
    assert excinfo.value.field == "feature_names"
    assert list(tmp_path.iterdir()) == []


def test_torch_gru_export_matches_forward_at_every_batch_size(
    gru_export: tuple[ExportReport, NextActionGRU],
) -> None:
    report, module = gru_export

    assert report.exporter == EXPORTER_TORCH_DYNAMO
    assert report.framework == "torch"
    assert report.input_names == ("event_types", "features")
    assert report.output_names == ("logits",)
    assert set(report.max_abs_diff) == {50, 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4
    assert report.sha256 == _sha256(report.path)
    assert [p.name for p in report.path.parent.iterdir()] == ["next_action.onnx"]
    assert not module.training

    meta = read_metadata(report.path)
    assert json.loads(meta["journey.input_names"]) == ["event_types", "features"]
    assert json.loads(meta["journey.feature_order"]) == ["event_types", "features"]
    assert json.loads(meta["journey.output_names"]) == ["logits"]
    assert meta["journey.framework"] == "torch"
    assert meta["journey.exporter"] == EXPORTER_TORCH_DYNAMO
    assert float(meta["journey.parity_max_abs_diff"]) == report.parity_max_abs_diff


def test_torch_export_runs_with_onnxruntime_at_a_new_batch_size(
    gru_export: tuple[ExportReport, NextActionGRU],
) -> None:
    import onnxruntime as ort

    report, module = gru_export
    feeds = _gru_inputs(np.random.default_rng(3), 33)
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, feeds)
    with torch.no_grad():
        want = module(*(torch.from_numpy(feeds[k]) for k in ("event_types", "features"))).numpy()
    assert logits.shape == (33, N_ACTIONS)
    np.testing.assert_allclose(logits, want, atol=1e-4)


def test_torch_export_falls_back_to_the_legacy_exporter_when_dynamo_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_export = torch.onnx.export

    def dynamo_fails(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dynamo"):
            raise RuntimeError("simulated dynamo failure")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    torch.manual_seed(5)
    module = NextActionGRU()
    rng = np.random.default_rng(5)
    example = {k: torch.from_numpy(v) for k, v in _gru_inputs(rng, 4).items()}
    path = tmp_path / "legacy.onnx"

    report = export_torch(module, example, _gru_inputs(rng, 30), path, output_names=["logits"])

    assert report.exporter == EXPORTER_TORCH_LEGACY
    assert read_metadata(path)["journey.exporter"] == EXPORTER_TORCH_LEGACY
    assert set(report.max_abs_diff) == {30, 1, 7, 1024}
    assert report.parity_max_abs_diff <= 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["legacy.onnx"]


def test_xgboost_export_refused_on_mismatch_leaves_nothing_behind(
    xgb_data: tuple[xgboost.XGBClassifier, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, holdout = xgb_data
    native = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda x: native(x) + 1e-3)
    path = tmp_path / "refused.onnx"

    with pytest.raises(InvalidInputError, match=r"ONNX export refused: max abs diff .* at batch 100") as excinfo:
        export_xgboost(model, [f"f{i}" for i in range(N_FEATURES)], holdout, path)

    assert excinfo.value.field == "parity"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_refused_export_keeps_an_earlier_file_untouched(
    xgb_data: tuple[xgboost.XGBClassifier, np.ndarray], tmp_path: Path
) -> None:
    model, holdout = xgb_data
    path = tmp_path / "model.onnx"
    names = [f"f{i}" for i in range(N_FEATURES)]
    good = export_xgboost(model, names, holdout, path)

    with pytest.raises(InvalidInputError):
        export_xgboost(model, names, holdout, path, tolerance=-1.0)

    assert _sha256(path) == good.sha256
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_torch_export_refused_on_mismatch_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = export._torch_reference
    monkeypatch.setattr(export, "_torch_reference", lambda m, xs: [o + 1e-3 for o in reference(m, xs)])
    module = NextActionGRU()
    rng = np.random.default_rng(4)
    example = {k: torch.from_numpy(v) for k, v in _gru_inputs(rng, 4).items()}
    path = tmp_path / "refused.onnx"

    with pytest.raises(InvalidInputError, match="ONNX export refused") as excinfo:
        export_torch(module, example, _gru_inputs(rng, 20), path, output_names=["logits"])

    assert excinfo.value.field == "parity"
    assert list(tmp_path.iterdir()) == []


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
        report.path, _recommender_native(module), holdout, tolerance=1e-4, compare=_ranking_diff(1e-4)
    )
    assert max(agreeing.values()) <= 1e-4

    with pytest.raises(InvalidInputError, match="ONNX export refused") as excinfo:
        check_parity(
            report.path, _recommender_native(module, shift=1), holdout, tolerance=1e-4, compare=_ranking_diff(1e-4)
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


def test_ranking_diff_is_infinite_when_ids_differ_outside_a_tie() -> None:
    swapped = WANT_IDS.copy()
    swapped[0, [1, 2]] = swapped[0, [2, 1]]  # 0.3 and 0.1 are no tie
    assert _ranking_diff(1e-4)([swapped, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == float("inf")
    other = WANT_IDS.copy()
    other[1, 0] = 99
    assert _ranking_diff(1e-4)([other, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == float("inf")


def test_ranking_diff_is_the_score_difference_when_ids_differ_only_inside_a_tie() -> None:
    swapped = WANT_IDS.copy()
    swapped[1, [1, 2]] = swapped[1, [2, 1]]  # 0.2 and 0.2 - 5e-7: within TIE_GAP
    swapped[0, 3] = 77  # the last place may go to the (k+1)-th item, whose score nobody saw
    scores = WANT_SCORES + np.float32(2e-6)
    diff = _ranking_diff(1e-4)([swapped, scores], [WANT_IDS, WANT_SCORES])
    assert diff == pytest.approx(2e-6, abs=1e-7)  # float32 rounding of the shifted scores


def test_ranking_diff_ties_only_scores_closer_than_the_tie_gap_not_the_score_tolerance() -> None:
    swapped = WANT_IDS.copy()
    swapped[1, [1, 2]] = swapped[1, [2, 1]]  # 0.2 and 0.2 - 5e-5: within the 1e-4 tolerance, yet no tie
    assert _ranking_diff(1e-4)([swapped, NO_TIE_SCORES], [WANT_IDS, NO_TIE_SCORES]) == float("inf")


def test_ranking_diff_is_infinite_for_other_shapes_or_outputs() -> None:
    compare = _ranking_diff(1e-4)
    assert compare([WANT_IDS[:, :3], WANT_SCORES[:, :3]], [WANT_IDS, WANT_SCORES]) == float("inf")
    assert compare([WANT_IDS], [WANT_IDS, WANT_SCORES]) == float("inf")
    assert compare([WANT_IDS, WANT_SCORES], [WANT_IDS, WANT_SCORES]) == 0.0
