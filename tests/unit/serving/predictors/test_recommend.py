"""serving.predictors.recommend.RecommendPredictor around the model call: its inputs, its refusals and its answer."""

from __future__ import annotations

import numpy as np
import pytest

from journey.model_inputs import NextItemInputSpec
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from serving.predictors.base import ModelInfo
from serving.predictors.recommend import RecommendPredictor
from serving.schemas import RecommendRequest

SPEC = NextItemInputSpec(seq_len=4, top_k=5)
INFO = ModelInfo("next_item", 3, "next_item_v1", ("session_last_item_ids", "session_last_event_types"), ())


def predictor() -> RecommendPredictor:
    return RecommendPredictor(INFO, None, SPEC)


def outputs() -> dict[str, np.ndarray]:
    ids = np.array([[501, 502, 503, 504, 505]], dtype=np.int64)
    scores = np.array([[0.4, 0.2, 0.1, 0.05, 0.01]], dtype=np.float32)
    return dict(zip(NEXT_ITEM_OUTPUT_NAMES, (ids, scores), strict=True))


def test_k_over_the_models_top_k_answers_top_k_items() -> None:
    prepared = predictor().prepare(RecommendRequest(user_id=1, session_id="s", k=6))
    assert prepared.context == SPEC.top_k


def test_without_an_online_store_the_inputs_are_an_empty_session_flagged_degraded() -> None:
    prepared = predictor().prepare(RecommendRequest(user_id=1, session_id="s", k=3))
    assert set(prepared.feeds) == set(NEXT_ITEM_INPUT_NAMES)
    assert prepared.feeds["lengths"].tolist() == [0]
    assert prepared.feeds["item_ids"].shape == (1, SPEC.seq_len)
    assert prepared.degraded


def test_the_answer_is_the_first_k_items_of_the_graph_best_first() -> None:
    recommender = predictor()
    prepared = recommender.prepare(RecommendRequest(user_id=1, session_id="s", k=3))
    response = recommender.respond(prepared, outputs())
    assert [(item.item_id, round(item.score, 6)) for item in response.items] == [(501, 0.4), (502, 0.2), (503, 0.1)]
    assert (response.model, response.version, response.variant) == ("next_item", 3, "production")


def test_the_logged_score_of_a_recommendation_is_its_top_items_probability() -> None:
    recommender = predictor()
    response = recommender.respond(recommender.prepare(RecommendRequest(user_id=1, session_id="s", k=2)), outputs())
    assert recommender.log_score(response) == pytest.approx(0.4)
    assert recommender.log_score(response.model_copy(update={"items": []})) is None
