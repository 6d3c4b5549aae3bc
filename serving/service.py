"""The BentoML service: endpoints and their wiring only; the logic lives in predict.py, ingest.py and state.py.

    bentoml serve serving.service:Journey --host 127.0.0.1 --port 3000      (or `make serve`)

Two services: `Journey` (the HTTP API, one per worker: features, validation, responses) and `PropensityScorer`
(the XGBoost ONNX session behind BentoML's adaptive batching, used when JOURNEY_ADAPTIVE_BATCHING=true: concurrent
`/predict_purchase` calls are merged into one ONNX Runtime call of up to JOURNEY_BATCH_MAX_SIZE rows, waiting at most
JOURNEY_BATCH_MAX_LATENCY_MS). The default scores in-process: on this 2-core machine the extra process hop and the
dispatcher cost more than batching saves (`make bench`, case serving), and a call the batcher sheds falls back to
in-process scoring rather than an error.
Next action and recommendations answer one session per call and always run in-process. `/recommend` is optional:
it answers 503 (naming why) until a next_item version is in production, and the service is ready without it.

Routing (serving.lifecycle): each request is assigned a variant of its endpoint's route (sticky by user), answered
by that variant's model version, logged to the prediction log off the request path, and shadowed when the route has
a shadow; routes and promotions reload without a restart. Only the version the batching scorer loaded goes through
it; any other variant scores in-process. `/admin/...` (serving.admin, behind the admin token) changes routes.

Nothing heavy is imported at module level: BentoML imports this module in the supervisor as well as in each worker,
and the supervisor only needs the endpoint declarations. The model and feature code (pandas, ONNX Runtime, Feast,
aiohttp) is imported by the workers, inside the methods: ~0.8 s less before the first worker even starts.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, cast

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, ServiceUnavailable

from journey.errors import JourneyError
from journey.settings import get_settings
from serving import metrics
from serving.http import JourneyHTTP, publish_admin, publish_journey, publish_status
from serving.schemas import (
    EventsRequest,
    EventsResponse,
    NextActionRequest,
    NextActionResponse,
    PurchaseRequest,
    PurchaseResponse,
    RecommendRequest,
    RecommendResponse,
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


API_PATHS = ("/predict_purchase", "/predict_next_action", "/recommend", "/events")


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
        from journey.registry import Registry
        from journey.stores.prediction_log import open_prediction_log
        from serving.admin import Admin
        from serving.lifecycle import Lifecycle
        from serving.state import ServingState

        self.state = ServingState.load(settings)
        # the version the batching scorer loaded (production at start): only that variant's calls may go through it
        self.scorer_version = self.state.versions.get(PURCHASE_MODEL)
        self.lifecycle = Lifecycle.start(
            settings, self.state.reader, state=self.state, prediction_log=open_prediction_log(settings)
        )
        publish_status(lambda: self.state.status() | {"lifecycle": self.lifecycle.status()})
        publish_journey(self.state.journey_answer)  # GET /journey/{user_id}, answered by the middleware
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        publish_admin(Admin(self.lifecycle, lambda: Registry(settings)).handle, admin_token)
        metrics.prime_series(services=("purchase_propensity_v1", "next_action_v1", "next_item_v1"))

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the route poller and write the prediction log's last records."""
        self.lifecycle.close()

    def __is_ready__(self) -> bool:
        return self.state.ready

    def _route(self, endpoint: str, user_id: int) -> Any:
        """The lifecycle's `Routed` for this request (503 when the endpoint has no model loaded)."""
        try:
            return self.lifecycle.route(endpoint, user_id)
        except JourneyError as exc:
            raise Unavailable(str(exc)) from exc

    async def _score(self, routed: Any, features: np.ndarray) -> np.ndarray:
        from serving.predict import score_propensity

        if settings.adaptive_batching and routed.arm.version == self.scorer_version:
            import aiohttp  # the scorer client's transport

            try:
                result: np.ndarray = await self.scorer.to_async.score(features)
                return result
            except (BentoMLException, aiohttp.ClientError, OSError, TimeoutError, RuntimeError) as exc:
                # the batcher sheds calls that waited past max_latency_ms (503), or the connection to the scorer
                # process broke (restart, overload; aiohttp reports a connection closed while it reads the body as a
                # bare RuntimeError: seen as 500s in `make bench` (d)): the same model is loaded here, so answer
                # in-process rather than pass an error to the shop
                log.warning("batched scorer unavailable, scoring in-process", extra={"error": str(exc)})
        return score_propensity(routed.arm.loaded.runtime, str(routed.arm.version), features)

    @bentoml.api(input_spec=PurchaseRequest, output_spec=PurchaseResponse)
    async def predict_purchase(self, **params: Any) -> PurchaseResponse:
        """P(purchase later in this session) for each candidate item of a user (and session)."""
        from serving.runtime import InputError

        request = PurchaseRequest.model_construct(**params)
        routed = self._route("predict_purchase", request.user_id)
        predictor = routed.arm.predictor
        with metrics.time_request("predict_purchase", routed.variant):
            try:
                # on the event loop, no thread hop: one Redis round trip (bounded by online_timeout_s, skipped for
                # online_retry_after_s after a failure) costs less than handing off to a worker thread and back:
                # 1 item p50 1.16 -> 0.96 ms, c=64 711 -> 816 req/s (reports/perf-notes.md)
                prepared = predictor.prepare(request)
                response: PurchaseResponse = predictor.respond(
                    prepared, await self._score(routed, prepared.feeds["features"])
                )
            except (JourneyError, InputError) as exc:
                raise _unprocessable(exc) from exc
        self.lifecycle.served(routed, request, prepared, response)  # log + shadow, off the request's path
        return response

    def _answer_in_process(self, endpoint: str, request: Any) -> Any:
        """Route, read features, run the variant's ONNX session here, answer, then log and shadow: the path of
        every endpoint that scores one session per call (no batching scorer)."""
        from serving.runtime import InputError

        routed = self._route(endpoint, request.user_id)
        predictor, loaded = routed.arm.predictor, routed.arm.loaded
        with metrics.time_request(endpoint, routed.variant):
            try:
                prepared = predictor.prepare(request)
                with metrics.time_inference(loaded.version.name, str(routed.arm.version), loaded.runtime.provider):
                    outputs = loaded.runtime.run(prepared.feeds)
                response = predictor.respond(prepared, predictor.select(outputs))
            except (JourneyError, InputError) as exc:
                raise _unprocessable(exc) from exc
        self.lifecycle.served(routed, request, prepared, response)
        return response

    @bentoml.api(input_spec=NextActionRequest, output_spec=NextActionResponse)
    def predict_next_action(self, **params: Any) -> NextActionResponse:
        """Probability of each next event type and of leaving (exit), for a user's current session."""
        response: NextActionResponse = self._answer_in_process(
            "predict_next_action", NextActionRequest.model_construct(**params)
        )
        return response

    @bentoml.api(input_spec=RecommendRequest, output_spec=RecommendResponse)
    def recommend(self, **params: Any) -> RecommendResponse:
        """The `k` items the shopper is likeliest to look at next in this session, best first (next_item model)."""
        response: RecommendResponse = self._answer_in_process("recommend", RecommendRequest.model_construct(**params))
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
        self.lifecycle.count_conversions(params["events"], response)  # purchases credited to A/B variants
        return response


cast(Any, Journey).add_asgi_middleware(JourneyHTTP, api_paths=API_PATHS, max_body_bytes=settings.max_body_bytes)
