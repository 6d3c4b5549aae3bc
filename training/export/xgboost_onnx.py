"""XGBClassifier -> ONNX through onnxmltools (opset 15), input "features", parity-checked against the booster."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from journey.errors import InvalidInputError
from journey.onnx_contract import EXPORTER_ONNXMLTOOLS, PROPENSITY_INPUT_NAME
from journey.registry import sha256_of  # the hash the registry checks at registration, computed the same way
from training.export.onnx_files import ExportReport, staged, write_metadata
from training.export.parity import check_parity

if TYPE_CHECKING:
    import xgboost

XGBOOST_TARGET_OPSET = 15  # the onnxmltools XGBoost converter fails above 15 (STACK-NOTES)


def export_xgboost(
    model: xgboost.XGBClassifier,
    feature_names: list[str],
    holdout: np.ndarray,
    path: Path,
    *,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Convert a fitted XGBClassifier to ONNX (input "features", float32 [batch, n]); check it against the model.

    `feature_names` is the column order the model was trained on; it is stored as `journey.feature_order` so serving
    builds the input row in that order. The converter only accepts the booster's own `f0..fn` names, so the
    conversion runs on a copy with the names cleared; the parity reference is the model as given.
    """
    # onnxmltools (and the xgboost it drives) load only when a booster is exported
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    n_features = int(model.n_features_in_)
    if len(feature_names) != n_features:
        raise InvalidInputError(
            f"{len(feature_names)} feature names for a model trained on {n_features} features",
            field="feature_names",
            value=feature_names,
        )
    x = np.asarray(holdout, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != n_features:
        raise InvalidInputError(
            f"holdout must be a non-empty [rows, {n_features}] array, got shape {x.shape}",
            field="holdout",
            value=x.shape,
        )

    unnamed = copy.deepcopy(model)
    unnamed.get_booster().feature_names = None
    onnx_model: onnx.ModelProto = convert_xgboost(
        unnamed,
        initial_types=[(PROPENSITY_INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=XGBOOST_TARGET_OPSET,
    )
    output_names = tuple(o.name for o in onnx_model.graph.output)
    onnx_model.graph.name = "xgboost_classifier"  # onnxmltools names graphs with a random UUID: same model, same bytes

    def native(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _xgboost_reference(model, inputs[PROPENSITY_INPUT_NAME])

    with staged(path) as staging:
        onnx.save_model(onnx_model, str(staging))
        diffs = check_parity(staging, native, {PROPENSITY_INPUT_NAME: x}, tolerance=tolerance)
        report = ExportReport(
            path=path,
            sha256="",  # known once the staged file is in place
            framework="xgboost",
            exporter=EXPORTER_ONNXMLTOOLS,
            input_names=(PROPENSITY_INPUT_NAME,),
            output_names=tuple(output_names),
            max_abs_diff=diffs,
        )
        write_metadata(staging, report, feature_order=list(feature_names))
    return replace(report, sha256=sha256_of(path))


def _xgboost_reference(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The native outputs in the converter's order: label [N] and probabilities [N, classes]."""
    return [np.asarray(model.predict(x)), np.asarray(model.predict_proba(x))]
