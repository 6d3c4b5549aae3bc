"""What happens after an answer exists: the prediction log, the shadow, and conversions credited to A/B variants.

`served` runs once the response is built and never fails it: it appends a `PredictionRecord` to the prediction log
(a list append: the log writes in batches on its own thread), remembers which variant answered the user (for
conversions), and hands the shadow version, if the route has one, to a one-thread executor that scores it on the
same features: a shadow never delays or fails a request and its answer is never returned. Purchases arriving at
`/events` are credited to the variant that answered the buyer's latest prediction within `attribution_window_s` in
this worker (`journey_ab_conversions_total`); the A/B report's offline attribution joins the prediction log with the
event log and sees every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final

from journey.contracts import ENDPOINT_MODELS
from journey.events import EventType
from journey.settings import Settings
from journey.stores.prediction_log import PredictionLog, PredictionRecord
from serving import metrics
from serving.lifecycle import SHADOW_VARIANT, Arm, Routed
from serving.predictors.base import Prepared
from serving.schemas import EventsResponse, ModelRequest, ModelResponse

log = logging.getLogger(__name__)

MAX_TOUCHES: Final = 100_000  # users remembered for conversion counting; the oldest are forgotten first
MAX_SHADOW_BACKLOG: Final = 1_000  # shadow scorings waiting; past it they are skipped (counted), never queued forever


class Outcomes:
    """The prediction log, shadow scoring and conversion counting of one worker."""

    def __init__(self, settings: Settings, prediction_log: PredictionLog | None = None) -> None:
        self.settings = settings
        self.prediction_log = prediction_log
        self._touches: OrderedDict[tuple[str, int], tuple[str, float]] = OrderedDict()
        self._touch_lock = threading.Lock()
        self._shadow = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-shadow")
        self._shadow_lock = threading.Lock()
        self._shadow_backlog = 0
        self.shadow_skipped = 0

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish queued shadow scorings, write the prediction log's last records."""
        self._shadow.shutdown(wait=True)
        if self.prediction_log is not None:
            self.prediction_log.close(timeout_s)

    def served(self, routed: Routed, request: ModelRequest, prepared: Prepared, response: ModelResponse) -> None:
        """After the answer: log it, remember the user for conversions, queue the shadow. Never raises."""
        now = datetime.now(UTC)
        try:
            score = routed.arm.predictor.log_score(response)
            self._append(routed, request, now, routed.arm, score, prepared)
            with self._touch_lock:
                key = (routed.endpoint, int(request.user_id))
                self._touches[key] = (routed.variant, time.time())
                self._touches.move_to_end(key)
                while len(self._touches) > MAX_TOUCHES:
                    self._touches.popitem(last=False)
            if routed.shadow is not None:
                self._queue_shadow(routed, request, prepared, now)
        except Exception:  # bookkeeping must never fail an answer that exists
            log.exception("could not record a served prediction", extra={"endpoint": routed.endpoint})

    def _append(
        self, routed: Routed, request: ModelRequest, now: datetime, arm: Arm, score: float | None, prepared: Prepared
    ) -> None:
        if self.prediction_log is None:
            return
        shadow = arm.variant == SHADOW_VARIANT
        record = PredictionRecord(
            request_id=routed.request_id,
            time=now,
            endpoint=routed.endpoint,
            user_id=int(request.user_id),
            variant=SHADOW_VARIANT if shadow else routed.variant,
            model_version=arm.version,
            score=score,
            session_id=request.session_id,
            experiment=routed.assignment.experiment,
            shadow=shadow,
            feature_age_s=prepared.oldest_age,
        )
        self.prediction_log.append(record)

    def _queue_shadow(self, routed: Routed, request: ModelRequest, prepared: Prepared, now: datetime) -> None:
        with self._shadow_lock:
            if self._shadow_backlog >= MAX_SHADOW_BACKLOG:
                self.shadow_skipped += 1
                return
            self._shadow_backlog += 1
        try:
            self._shadow.submit(self._score_shadow, routed, request, prepared, now)
        except RuntimeError:  # shutting down
            with self._shadow_lock:
                self._shadow_backlog -= 1

    def _score_shadow(self, routed: Routed, request: ModelRequest, prepared: Prepared, now: datetime) -> None:
        """Score the shadow version on the request's features (read again only if its inputs differ); log it."""
        shadow = routed.shadow
        assert shadow is not None
        try:
            predictor = shadow.predictor
            inputs = prepared if routed.arm.predictor.same_inputs(predictor) else predictor.prepare(request)
            response = predictor.respond(inputs, shadow.run(inputs.feeds))
            self._append(routed, request, now, shadow, predictor.log_score(response), inputs)
        except Exception as exc:  # a broken candidate is what a shadow is for finding: log, never raise
            log.warning(
                "shadow scoring failed",
                extra={"endpoint": routed.endpoint, "version": shadow.version, "error": f"{type(exc).__name__}: {exc}"},
                exc_info=True,
            )
        finally:
            with self._shadow_lock:
                self._shadow_backlog -= 1

    def count_conversions(self, events: Sequence[Any], response: EventsResponse) -> int:
        """Credit each accepted purchase to the variant that answered the buyer's latest prediction (per endpoint)
        within the attribution window in this worker; the number of conversions counted."""
        rejected = {reject.row - 1 for reject in response.rejects} | {row - 1 for row in response.duplicate_rows}
        now, window = time.time(), self.settings.attribution_window_s
        counted = 0
        for row, event in enumerate(events):
            if row in rejected or not isinstance(event, Mapping) or event.get("event_type") != EventType.PURCHASE:
                continue
            try:
                user = int(event["user_id"])
            except (KeyError, TypeError, ValueError):
                continue
            with self._touch_lock:
                hits = [(e, *self._touches[(e, user)]) for e in ENDPOINT_MODELS if (e, user) in self._touches]
            for endpoint, variant, at in hits:
                if now - at <= window:
                    metrics.count_conversions(endpoint, variant)
                    counted += 1
        return counted

    def status(self) -> dict[str, Any]:
        """Its part of `/readyz`'s `lifecycle` section."""
        return {
            "prediction_log": vars(self.prediction_log.stats) if self.prediction_log is not None else None,
            "shadow_skipped": self.shadow_skipped,
        }
