"""ONNX export: parity with the native model at several batch sizes, metadata round-trip, and refusal on mismatch.

Tiny models on random data keep this fast; the torch export (dynamo) is done once per module and shared.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xgboost
from torch import nn

from journey.errors import InvalidInputError
from journey.onnx_contract import EXPORTER_ONNXMLTOOLS, EXPORTER_TORCH_DYNAMO, EXPORTER_TORCH_LEGACY
from training.export import ExportReport, export_torch, export_xgboost, read_metadata, torch_onnx

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
    reference = torch_onnx._torch_reference
    monkeypatch.setattr(torch_onnx, "_torch_reference", lambda m, xs: [o + 1e-3 for o in reference(m, xs)])
    module = NextActionGRU()
    rng = np.random.default_rng(4)
    example = {k: torch.from_numpy(v) for k, v in _gru_inputs(rng, 4).items()}
    path = tmp_path / "refused.onnx"

    with pytest.raises(InvalidInputError, match="ONNX export refused") as excinfo:
        export_torch(module, example, _gru_inputs(rng, 20), path, output_names=["logits"])

    assert excinfo.value.field == "parity"
    assert list(tmp_path.iterdir()) == []
