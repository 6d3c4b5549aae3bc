"""The BentoML services: endpoint declarations only. What answers them is serving.worker (the worker's state),
serving.answer (the one request path of the model endpoints) and serving.errors (errors as HTTP answers).

    bentoml serve serving.service:Journey --host 127.0.0.1 --port 3000      (or `make serve`)

`Journey` is the HTTP API (one instance per worker). `PropensityScorer` holds the purchase-propensity model behind
BentoML's adaptive batching and is started only when JOURNEY_ADAPTIVE_BATCHING=true (serving.batching says when
calls go through it). `/recommend` is optional: it answers 503 naming why until a next_item version is in
production, and the service is ready without it. Routes, promotions and the admin API: serving.lifecycle and
serving.admin.

Nothing heavy is imported at module level: BentoML imports this module in the supervisor as well as in each worker,
and the supervisor only needs the endpoint declarations. The model and feature code (pandas, ONNX Runtime, Feast,
aiohttp) is imported by the workers, inside `__init__`: ~0.8 s less before the first worker even starts.
"""

from __future__ import annotations

from typing import Any, cast

import bentoml
import numpy as np
from starlette.responses import JSONResponse

from journey.contracts import ENDPOINT_MODELS, PREDICT_NEXT_ACTION, PREDICT_PURCHASE, RECOMMEND
from journey.settings import get_settings
from serving.errors import answered, answered_sync
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

settings = get_settings()
API_PATHS = (*(f"/{endpoint}" for endpoint in ENDPOINT_MODELS), "/events")


@bentoml.service(name="journey_propensity_scorer", workers=1, traffic={"timeout": 10})
class PropensityScorer:
    """The production purchase-propensity model behind adaptive batching (no Feast here: it starts in ~1 s)."""

    def __init__(self) -> None:
        from serving.batching import production_scorer

        self.version, self._score = production_scorer(settings)

    @bentoml.api(
        batchable=True,
        batch_dim=0,
        max_batch_size=settings.batch_max_size,
        max_latency_ms=settings.batch_max_latency_ms,
    )
    def score(self, features: np.ndarray) -> np.ndarray:
        return self._score(features)


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
        from serving.admin import Admin
        from serving.batching import BatchedModel
        from serving.worker import Worker

        batched = None
        if settings.adaptive_batching:  # the version the scorer loaded (production at start) goes through it
            # the client learns the scorer's API when the scorer is up: look the method up per call, not now
            batched = BatchedModel.of_scorer(settings, lambda features: self.scorer.to_async.score(features))
        self.worker = Worker.start(settings, batched=batched)
        publish_status(self.worker.status)
        publish_journey(self.worker.journey_answer)  # GET /journey/{user_id}, answered by the middleware
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        publish_admin(Admin(self.worker.lifecycle, lambda: Registry(settings)).handle, admin_token)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop the route poller and write the prediction log's last records."""
        self.worker.close()

    def __is_ready__(self) -> bool:
        return self.worker.ready

    @bentoml.api(output_spec=PurchaseResponse)
    async def predict_purchase(self, request: PurchaseRequest, /) -> PurchaseResponse | JSONResponse:
        """P(purchase later in this session) for each candidate item of a user (and session)."""
        return await answered(self.worker.answers.answer(PREDICT_PURCHASE, request, PurchaseResponse))

    @bentoml.api(output_spec=NextActionResponse)
    async def predict_next_action(self, request: NextActionRequest, /) -> NextActionResponse | JSONResponse:
        """Probability of each next event type and of leaving (exit), for a user's current session."""
        return await answered(self.worker.answers.answer(PREDICT_NEXT_ACTION, request, NextActionResponse))

    @bentoml.api(output_spec=RecommendResponse)
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse | JSONResponse:
        """The `k` items the shopper is likeliest to look at next in this session, best first (next_item model)."""
        return await answered(self.worker.answers.answer(RECOMMEND, request, RecommendResponse))

    @bentoml.api(output_spec=EventsResponse)
    def events(self, request: EventsRequest, /) -> EventsResponse | JSONResponse:
        """Validate and push shop events (online session features at once, offline for training); bad ones are
        reported with row, field and reason while the good ones are stored."""
        return answered_sync(lambda: self.worker.ingest(request))


cast(Any, Journey).add_asgi_middleware(JourneyHTTP, api_paths=API_PATHS, max_body_bytes=settings.max_body_bytes)
