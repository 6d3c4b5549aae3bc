"""Adaptive batching for purchase propensity: the API worker's side of the `PropensityScorer` service.

With `JOURNEY_ADAPTIVE_BATCHING=true`, BentoML merges concurrent `/predict_purchase` model calls into one ONNX
Runtime call in the scorer process. Only the version that process loaded (production at its start) goes through
it; other variants score in-process. A call the batcher sheds (it waited past max_latency_ms: 503), or a broken
connection to the scorer process (restart, overload; aiohttp reports a connection closed while it reads the body as
a bare RuntimeError: seen as 500s in `make bench` (d)), is answered in-process with the same model rather than
passed to the shop as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
from bentoml.exceptions import BentoMLException

from journey.contracts import PURCHASE_PROPENSITY_MODEL
from journey.errors import JourneyError
from journey.onnx_contract import PROPENSITY_INPUT_NAME, PROPENSITY_OUTPUT_NAME
from journey.registry import Registry
from journey.settings import Settings
from serving.lifecycle import Arm
from serving.loaded import load_version
from serving.predictors.base import Prepared

log = logging.getLogger(__name__)

ScorerCall = Callable[[np.ndarray], Awaitable[np.ndarray]]  # the scorer client's `to_async.score`


def production_scorer(settings: Settings) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """The scorer process's model: the production version at its start, and its call (features -> probabilities)."""
    with Registry(settings) as registry:
        loaded = load_version(registry, PURCHASE_PROPENSITY_MODEL, "production", settings)

    def score(features: np.ndarray) -> np.ndarray:
        return loaded.run({PROPENSITY_INPUT_NAME: features})[PROPENSITY_OUTPUT_NAME]

    return loaded.version.version, score


@dataclass(frozen=True)
class BatchedModel:
    """The version the batching scorer serves, and how to call it."""

    version: int
    call: ScorerCall
    model: str = PURCHASE_PROPENSITY_MODEL

    @classmethod
    def of_scorer(cls, settings: Settings, call: ScorerCall) -> BatchedModel | None:
        """The API worker's view of the scorer: the production version now (what the scorer loaded at its start);
        None when there is none to send (every call then scores in-process)."""
        try:
            with Registry(settings) as registry:
                return cls(registry.get(PURCHASE_PROPENSITY_MODEL, "production").version, call)
        except JourneyError as exc:
            log.warning("no production version for the batching scorer", extra={"error": str(exc)})
            return None

    def serves(self, arm: Arm) -> bool:
        return arm.loaded.version.name == self.model and arm.version == self.version

    async def outputs(self, arm: Arm, prepared: Prepared) -> dict[str, np.ndarray]:
        """The model's outputs from the scorer, or from the arm's own session when the scorer cannot answer."""
        try:
            return {PROPENSITY_OUTPUT_NAME: await self.call(prepared.feeds[PROPENSITY_INPUT_NAME])}
        except (BentoMLException, aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
            log.warning("batched scorer unavailable, scoring in-process", extra={"error": str(exc)})
        return arm.run(prepared.feeds)
