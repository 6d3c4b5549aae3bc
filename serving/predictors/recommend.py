"""next_item: the `k` items the session's shopper is likeliest to look at next, top-k inside the ONNX graph.

A session the online store does not know (or a store that cannot answer) gets the model's answer for an empty
session: what it learnt to be popular, flagged degraded when the store was down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from journey.model_inputs import NextItemInputSpec, next_item_inputs
from journey.onnx_contract import NEXT_ITEM_OUTPUT_NAMES
from serving import metrics
from serving.predictors.base import ModelInfo, Outputs, Predictor, Prepared, Row, read_features
from serving.schemas import Recommendation, RecommendRequest, RecommendResponse

if TYPE_CHECKING:
    from serving.features import OnlineFeatureReader


class RecommendPredictor:
    OUTPUT = NEXT_ITEM_OUTPUT_NAMES  # (ids, scores)

    def __init__(self, model: ModelInfo, reader: OnlineFeatureReader | None, spec: NextItemInputSpec) -> None:
        self.model = model
        self.reader = reader
        self.spec = spec

    @classmethod
    def build(cls, model: ModelInfo, reader: OnlineFeatureReader | None, params: dict[str, Any]) -> RecommendPredictor:
        return cls(model, reader, NextItemInputSpec.from_dict(params["input_spec"]))

    def prepare(self, request: RecommendRequest) -> Prepared:
        """k over the version's top_k answers top_k items: the variants of an A/B split may differ in top_k, and a
        request valid for one must not be refused by the other (the schema cannot know which will answer)."""
        rows: list[Row] = [{"session_id": request.session_id}]
        columns, ages, degraded = read_features(self.reader, rows, self.spec.source_features)
        return Prepared(next_item_inputs(columns, self.spec), 1, degraded, ages, min(request.k, self.spec.top_k))

    def respond(self, prepared: Prepared, outputs: Outputs) -> RecommendResponse:
        ids_name, scores_name = self.OUTPUT
        k = int(prepared.context)
        ids = np.asarray(outputs[ids_name])[0, :k]
        scores = np.asarray(outputs[scores_name][0, :k], dtype=np.float64)
        metrics.record_scores(self.model.name, str(self.model.version), scores[:1])
        return RecommendResponse(
            model=self.model.name,
            version=self.model.version,
            variant=self.model.variant,
            degraded=prepared.degraded,
            feature_age_seconds=prepared.ages,
            items=[Recommendation(item_id=int(i), score=float(p)) for i, p in zip(ids, scores, strict=True)],
        )

    def same_inputs(self, other: Predictor[Any, Any]) -> bool:
        # top_k only cuts the answer: the inputs are the same
        return (
            isinstance(other, RecommendPredictor)
            and other.model.feature_service == self.model.feature_service
            and other.spec.seq_len == self.spec.seq_len
        )

    def log_score(self, response: RecommendResponse) -> float | None:
        """The top item's probability: how sure the model is of where the session goes."""
        return response.items[0].score if response.items else None
