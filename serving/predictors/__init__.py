"""One predictor per model kind, and the table that says which endpoint each one answers.

    endpoint              model                 predictor              needed for /readyz
    predict_purchase      purchase_propensity   PurchasePredictor      yes
    predict_next_action   next_action           NextActionPredictor    yes
    recommend             next_item             RecommendPredictor     no: 503 naming why until one is in production

Adding a model kind to serving: its request and response in `serving/schemas.py`, a predictor module here and its
row in ENDPOINTS, the endpoint -> model pair in `journey.contracts.ENDPOINT_MODELS` (the registry validates routes
with it), and a one-line endpoint in `serving/service.py`. Routing, loading, hot reload, the shadow, the prediction
log and metrics need no change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Protocol

from journey.contracts import (
    ENDPOINT_MODELS,
    NEXT_ACTION_MODEL,
    NEXT_ITEM_MODEL,
    PREDICT_NEXT_ACTION,
    PREDICT_PURCHASE,
    PURCHASE_PROPENSITY_MODEL,
    RECOMMEND,
)
from serving.predictors.base import ModelInfo, Predictor
from serving.predictors.next_action import NextActionPredictor
from serving.predictors.purchase import PurchasePredictor
from serving.predictors.recommend import RecommendPredictor

if TYPE_CHECKING:
    from journey.registry import ModelVersion
    from serving.features import OnlineFeatureReader
    from serving.runtime import ModelRuntime

ReaderFactory = Callable[[str], "OnlineFeatureReader | None"]  # feature service -> its reader (None: no store)


class PredictorKind(Protocol):
    def build(self, model: ModelInfo, reader: OnlineFeatureReader | None, params: dict[str, Any]) -> Any: ...


@dataclass(frozen=True)
class Endpoint:
    name: str
    model: str  # the registered model whose versions answer it
    predictor: PredictorKind


ENDPOINTS: Final[Mapping[str, Endpoint]] = MappingProxyType(
    {
        e.name: e
        for e in (
            Endpoint(PREDICT_PURCHASE, PURCHASE_PROPENSITY_MODEL, PurchasePredictor),
            Endpoint(PREDICT_NEXT_ACTION, NEXT_ACTION_MODEL, NextActionPredictor),
            Endpoint(RECOMMEND, NEXT_ITEM_MODEL, RecommendPredictor),
        )
    }
)
if {e.name: e.model for e in ENDPOINTS.values()} != dict(ENDPOINT_MODELS):
    raise ImportError("serving.predictors.ENDPOINTS must serve exactly journey.contracts.ENDPOINT_MODELS")
_BY_MODEL: Final = {e.model: e for e in ENDPOINTS.values()}


def build_predictor(
    version: ModelVersion, runtime: ModelRuntime, variant: str, reader_for: ReaderFactory
) -> Predictor[Any, Any]:
    """The predictor that answers as `variant` with a loaded version (readers are per feature service, shared)."""
    info = ModelInfo.of(version, runtime, variant)
    predictor: Predictor[Any, Any] = _BY_MODEL[version.name].predictor.build(
        info, reader_for(info.feature_service), dict(version.params)
    )
    return predictor


__all__ = ["ENDPOINTS", "Endpoint", "ModelInfo", "Predictor", "ReaderFactory", "build_predictor"]
