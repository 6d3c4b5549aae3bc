"""benchmarks/tensor_trees.py: the base-score fold that makes hummingbird's tensor model match XGBoost's trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import xgboost

from benchmarks import tensor_trees
from training.export import export_xgboost


@pytest.fixture(scope="module")
def tree_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] + rng.normal(scale=0.5, size=400) > 0.8).astype(int)  # imbalanced: a base score far from 0
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1, random_state=0).fit(x[:300], y[:300])
    path = tmp_path_factory.mktemp("trees") / "model.onnx"
    export_xgboost(model, [f"c{i}" for i in range(5)], x[300:], path)
    return path


def _tree_attr(model: onnx.ModelProto, name: str) -> list[float]:
    (node,) = [n for n in model.graph.node if n.op_type in tensor_trees.TREE_OPS]
    return list(onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == name)))


def test_folding_the_base_score_into_the_first_tree_keeps_every_prediction(tree_model: Path, tmp_path: Path) -> None:
    original = onnx.load(str(tree_model))
    folded = tensor_trees.fold_base_values(original)
    onnx.save(folded, str(tmp_path / "folded.onnx"))
    x = np.random.default_rng(1).normal(size=(256, 5)).astype(np.float32)

    before = ort.InferenceSession(str(tree_model)).run(None, {"features": x})
    after = ort.InferenceSession(str(tmp_path / "folded.onnx")).run(None, {"features": x})

    assert _tree_attr(original, "base_values") != [0.0] and _tree_attr(folded, "base_values") == [0.0]
    np.testing.assert_array_equal(before[0], after[0])
    assert np.max(np.abs(before[1] - after[1])) <= 1e-6


def test_a_missing_source_model_exits_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        tensor_trees.main([str(tmp_path / "missing.onnx"), str(tmp_path / "out.onnx")])
    assert exit_info.value.code == 2
