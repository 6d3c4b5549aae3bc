"""The BentoML service: endpoints and their wiring only; the logic lives in predict.py, ingest.py and state.py.

    bentoml serve serving.service:Journey --host 127.0.0.1 --port 3000      (or `make serve`)

Two services: `Journey` (the HTTP API, one per worker: features, validation, responses) and `PropensityScorer`
(the XGBoost ONNX session behind BentoML's adaptive batching, used when JOURNEY_ADAPTIVE_BATCHING=true: concurrent
`/predict_purchase` calls are merged into one ONNX Runtime call of up to JOURNEY_BATCH_MAX_SIZE rows, waiting at most
JOURNEY_BATCH_MAX_LATENCY_MS). The default scores in-process: on this 2-core machine the extra process hop and the
dispatcher cost more than batching saves (`make bench`, case serving), and a call the batcher sheds falls back to
in-process scoring rather than an error.
Next action answers one session per call and always runs in-process.

Nothing heavy is imported at module level: BentoML imports this module in the supervisor as well as in each worker,
and the supervisor only needs the endpoint declarations. The model and feature code (pandas, ONNX Runtime, Feast,
aiohttp) is imported by the workers, inside the methods: ~0.8 s less before the first worker even starts.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, cast

import anyio
import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, ServiceUnavailable

from journey.errors import JourneyError
from journey.settings import get_settings
from serving import metrics
from serving.http import JourneyHTTP, publish_journey, publish_status
from serving.schemas import (
    EventsRequest,
    EventsResponse,
    NextActionRequest,
    NextActionResponse,
    PurchaseRequest,
    PurchaseResponse,
)

log = logging.getLogger(__name__)
settings = get_settings()
PURCHASE_MODEL = "purchase_propensity"  # serving.predict.PURCHASE_MODEL (a unit test keeps them equal)


class Unprocessable(InvalidArgument):
    """Bad input found after schema validation (a value no model can take): HTTP 422, the field named."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY
    http_status = 422  # what serving.metrics records


class Unavailable(ServiceUnavailable):
    """A dependency (model, feature store) is not loaded: HTTP 503, never a bare 500."""

    http_status = 503


def _unprocessable(exc: Exception) -> Unprocessable:
    field = getattr(exc, "field", None)
    return Unprocessable(f"{field}: {exc}" if field else str(exc))


@bentoml.service(name="journey_propensity_scorer", workers=1, traffic={"timeout": 10})
class PropensityScorer:
    """The production purchase-propensity model behind adaptive batching (no Feast here: it starts in ~1 s)."""

    def __init__(self) -> None:
        from journey.registry import Registry
        from serving.predict import score_propensity
        from serving.state import load_production

        self._score = score_propensity
        with Registry(settings) as registry:
            version, self.runtime = load_production(registry, PURCHASE_MODEL, settings)
        self.version = str(version.version)

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
    )
    def score(self, features: np.ndarray) -> np.ndarray:
        return self._score(self.runtime, self.version, features)


API_PATHS = ("/predict_purchase", "/predict_next_action", "/events")


@bentoml.service(
    name="journey",
    workers=settings.serve_workers,
    http={"host": settings.serve_host, "port": settings.serve_port},
    traffic={"timeout": 30},
)
class Journey:
    # only a declared dependency gets its own worker process: with batching off, none is started
    if settings.adaptive_batching:
        scorer = bentoml.depends(PropensityScorer)

    def __init__(self) -> None:
        from serving.state import ServingState

        self.state = ServingState.load(settings)
        publish_status(self.state.status)
        publish_journey(self.state.journey_answer)  # GET /journey/{user_id}, answered by the middleware
        metrics.prime_series(services=("purchase_propensity_v1", "next_action_v1"))

    def __is_ready__(self) -> bool:
        return self.state.ready

    def _require(self, predictor: Any, name: str) -> Any:
        if predictor is None:
            raise Unavailable(f"{name} is not loaded: {'; '.join(self.state.problems) or 'unknown'}")
        return predictor

    async def _score(self, features: np.ndarray) -> np.ndarray:
        from serving.predict import score_propensity

        if settings.adaptive_batching:
            import aiohttp  # the scorer client's transport

            try:
                result: np.ndarray = await self.scorer.to_async.score(features)
                return result
            except (BentoMLException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                # the batcher sheds calls that waited past max_latency_ms (503), or the connection to the scorer
                # process broke (restart, overload): the same model is loaded here, so answer in-process rather
                # than pass an error to the shop
                log.warning("batched scorer unavailable, scoring in-process", extra={"error": str(exc)})
        return score_propensity(self.state.runtimes[PURCHASE_MODEL], str(self.state.versions[PURCHASE_MODEL]), features)

    @bentoml.api(input_spec=PurchaseRequest, output_spec=PurchaseResponse)
    async def predict_purchase(self, **params: Any) -> PurchaseResponse:
        """P(purchase later in this session) for each candidate item of a user (and session)."""
        from serving.runtime import InputError

        predictor = self._require(self.state.purchase, "purchase_propensity")
        with metrics.time_request("predict_purchase", predictor.model.variant):
            try:
                prepared = await anyio.to_thread.run_sync(predictor.prepare, PurchaseRequest.model_construct(**params))
                response: PurchaseResponse = predictor.respond(prepared, await self._score(prepared.feeds["features"]))
            except (JourneyError, InputError) as exc:
                raise _unprocessable(exc) from exc
        return response

    @bentoml.api(input_spec=NextActionRequest, output_spec=NextActionResponse)
    def predict_next_action(self, **params: Any) -> NextActionResponse:
        """Probability of each next event type and of leaving (exit), for a user's current session."""
        from serving.runtime import InputError

        predictor = self._require(self.state.next_action, "next_action")
        runtime = self.state.runtimes["next_action"]
        version = str(self.state.versions["next_action"])
        with metrics.time_request("predict_next_action", predictor.model.variant):
            try:
                prepared = predictor.prepare(NextActionRequest.model_construct(**params))
                with metrics.time_inference("next_action", version, runtime.provider):
                    outputs = runtime.run(prepared.feeds)
                response: NextActionResponse = predictor.respond(prepared, outputs[predictor.OUTPUT])
            except (JourneyError, InputError) as exc:
                raise _unprocessable(exc) from exc
        return response

    @bentoml.api(input_spec=EventsRequest, output_spec=EventsResponse)
    def events(self, **params: Any) -> EventsResponse:
        """Validate and push shop events (online session features at once, offline for training); bad ones are
        reported with row, field and reason while the good ones are stored."""
        from serving.ingest import ingest

        if self.state.store is None or self.state.tables is None:
            raise Unavailable(f"feature store not loaded: {'; '.join(self.state.problems)}")
        with metrics.time_request("events"):
            try:
                response = ingest(self.state.store, self.state.tables, params["events"])
            except JourneyError as exc:
                if exc.http_status >= 500:
                    raise Unavailable(str(exc)) from exc
                raise _unprocessable(exc) from exc
        return response


cast(Any, Journey).add_asgi_middleware(JourneyHTTP, api_paths=API_PATHS, max_body_bytes=settings.max_body_bytes)
