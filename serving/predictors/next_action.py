"""next_action: the session's next event type or exit, from the GRU over its last events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from journey.events import EventType
from journey.model_inputs import NextActionInputSpec, next_action_inputs
from journey.onnx_contract import NEXT_ACTION_OUTPUT_NAME
from serving import metrics
from serving.predictors.base import ModelInfo, Outputs, Predictor, Prepared, Row, read_features
from serving.schemas import NextActionRequest, NextActionResponse

if TYPE_CHECKING:
    from serving.features import OnlineFeatureReader


class NextActionPredictor:
    OUTPUT = NEXT_ACTION_OUTPUT_NAME

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None, spec: NextActionInputSpec) -> None:
        self.model = model
        self.reader = reader
        self.spec = spec

    @classmethod
    def build(cls, model: ModelInfo, reader: OnlineFeatureReader | None, params: dict[str, Any]) -> NextActionPredictor:
        return cls(model, reader, NextActionInputSpec.from_dict(params["input_spec"]))

    def prepare(self, request: NextActionRequest) -> Prepared:
        rows: list[Row] = [{"user_id": request.user_id, "session_id": request.session_id}]
        columns, ages, degraded = read_features(self.reader, rows, self.spec.source_features)
        feeds = next_action_inputs(columns, self.spec)
        return Prepared(feeds, 1, degraded, ages)

    def respond(self, prepared: Prepared, outputs: Outputs) -> NextActionResponse:
        row = np.asarray(outputs[self.OUTPUT], dtype=np.float64)[0]
        metrics.record_scores(self.model.name, str(self.model.version), row.max(keepdims=True))
        return NextActionResponse(
            model=self.model.name,
            version=self.model.version,
            variant=self.model.variant,
            degraded=prepared.degraded,
            feature_age_seconds=prepared.ages,
            probabilities={label: float(p) for label, p in zip(self.model.classes, row, strict=True)},
            predicted=self.model.classes[int(row.argmax())],
        )

    def same_inputs(self, other: Predictor[Any, Any]) -> bool:
        return (
            isinstance(other, NextActionPredictor)
            and other.model.feature_service == self.model.feature_service
            and other.spec == self.spec
        )

    def log_score(self, response: NextActionResponse) -> float | None:
        """P(purchase) next."""
        return response.probabilities.get(EventType.PURCHASE.value)
