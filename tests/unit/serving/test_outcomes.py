"""serving.outcomes through the service's answer path: the prediction log, the shadow, conversions per variant."""

from __future__ import annotations

import time
from typing import Any

import pytest

from journey.contracts import PREDICT_PURCHASE
from journey.settings import Settings
from serving import metrics
from serving.answer import Answers
from serving.lifecycle import SHADOW_VARIANT, Lifecycle
from serving.outcomes import Outcomes
from serving.schemas import EventsResponse, Reject
from tests.factories.answering import MemorySink, ask, set_route


def test_the_shadow_is_scored_and_logged_with_the_request_id_but_never_answers(
    models: Settings, lifecycle: Lifecycle, outcomes: Outcomes, answers: Answers, sink: MemorySink
) -> None:
    set_route(models, ("control", 1, 100), shadow=2)
    lifecycle.reload()

    response = ask(answers, 7)
    outcomes._shadow.submit(lambda: None).result()  # the shadow executor has run what was queued before
    assert outcomes.prediction_log is not None and outcomes.prediction_log.flush()

    rows = {row["shadow"]: row for row in sink.rows()}
    assert len(sink.rows()) == 2 and rows[False]["request_id"] == rows[True]["request_id"]
    assert (response.variant, response.version) == ("control", 1)
    assert (rows[False]["variant"], rows[False]["model_version"]) == ("control", 1)
    assert (rows[True]["variant"], rows[True]["model_version"]) == (SHADOW_VARIANT, 2)
    assert rows[False]["experiment"] == rows[True]["experiment"] == "exp1"
    assert rows[False]["score"] == pytest.approx(max(s.probability for s in response.scores))
    assert rows[True]["score"] != pytest.approx(rows[False]["score"])  # v2 ranks prices the other way


def test_a_failing_shadow_is_logged_and_never_fails_the_answer(
    models: Settings, lifecycle: Lifecycle, outcomes: Outcomes, answers: Answers, caplog: pytest.LogCaptureFixture
) -> None:
    set_route(models, ("control", 1, 100), shadow=2)
    lifecycle.reload()
    shadow = lifecycle.snapshot.endpoints[PREDICT_PURCHASE].shadow
    assert shadow is not None
    object.__setattr__(shadow.loaded, "runtime", None)  # breaks the shadow's model call

    response = ask(answers, 7)
    outcomes._shadow.submit(lambda: None).result()

    assert response.variant == "control"
    assert "shadow scoring failed" in caplog.text


def conversions(endpoint: str, variant: str) -> float:
    return metrics.AB_CONVERSIONS.labels(endpoint, variant)._value.get()  # type: ignore[no-any-return]


def purchase(user_id: int) -> dict[str, Any]:
    return {"user_id": user_id, "event_type": "purchase"}


def test_a_purchase_by_a_user_who_got_a_prediction_counts_a_conversion_for_that_variant(
    outcomes: Outcomes, answers: Answers
) -> None:
    ask(answers, 7)
    before = conversions(PREDICT_PURCHASE, "production")
    accepted = EventsResponse(accepted=3, rejected=0, sessions=1, rejects=[])

    counted = outcomes.count_conversions([purchase(7), purchase(8), {"user_id": 7, "event_type": "view"}], accepted)

    assert counted == 1
    assert conversions(PREDICT_PURCHASE, "production") == before + 1


def test_rejected_purchases_and_purchases_after_the_window_count_no_conversion(
    models: Settings, outcomes: Outcomes, answers: Answers
) -> None:
    ask(answers, 7)
    rejected = EventsResponse(
        accepted=0, rejected=1, sessions=0, rejects=[Reject(row=1, field="price", value="-1", reason="negative")]
    )
    assert outcomes.count_conversions([purchase(7)], rejected) == 0

    outcomes.settings = models.model_copy(update={"attribution_window_s": 1e-9})
    time.sleep(0.01)
    assert (
        outcomes.count_conversions([purchase(7)], EventsResponse(accepted=1, rejected=0, sessions=1, rejects=[])) == 0
    )


def test_a_shadow_with_the_same_inputs_reuses_the_features_read_for_the_answer(
    lifecycle: Lifecycle, models: Settings
) -> None:
    set_route(models, ("control", 1, 100), shadow=3)
    lifecycle.reload()
    served = lifecycle.snapshot.endpoints[PREDICT_PURCHASE]

    assert served.shadow is not None
    assert served.arms["control"].predictor.same_inputs(served.shadow.predictor)
