"""Every next-item kind's exported graph served the way `/recommend` serves it, without HTTP: `ModelRuntime` loads the
file (its journey.* contract, warm-up) and `RecommendPredictor` builds the inputs from the session's online state
and answers. Serving has no code per kind: each is just another `next_item` version.

The kinds are fitted small on the synthetic shop of tests/unit/training/models (no Feast): the neural kinds with tiny
networks and budgets, the index kinds with their defaults (short searches).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from journey import contracts as c
from journey.model_inputs import next_item_inputs
from journey.model_inputs.columns import ITEMS, TYPES
from serving.predictors.base import ModelInfo
from serving.predictors.recommend import RecommendPredictor
from serving.runtime import ModelRuntime
from serving.schemas import RecommendRequest
from tests.factories.session_frames import session_training_frame
from training.labels import label_ids, next_item_entities
from training.models.next_item import KINDS, NextItemConfig, SASRecConfig, SessionData
from training.models.next_item.covisitation import CovisitationConfig
from training.models.next_item.sknn import SknnConfig
from training.runs import session_groups
from training.splits import time_split

TOP_K = 12
RUN = NextItemConfig(seq_len=8, top_k=TOP_K, embedding_dim=8, type_dim=4, hidden=16, max_steps=20, holdout_rows=32)
CONFIGS: dict[str, Any] = {
    "gru4rec": RUN,
    "sasrec": SASRecConfig(seq_len=8, top_k=TOP_K, embedding_dim=8, heads=2, layers=1, max_steps=20, holdout_rows=32),
    "covisitation": CovisitationConfig(tune_rows=300),
    "sknn": SknnConfig(tune_rows=300, k_grid=(50,), sample_grid=(500,)),
}
SESSION = "s-known"


@dataclass(frozen=True)
class Served:
    path: Path
    model: Any  # the fitted Recommender
    spec: dict[str, Any]  # params["input_spec"] as the registry keeps it
    session: tuple[list[int], list[str]]  # a test session's items and event types (newest last)


class SessionReader:
    """The online reader's shape for next_item_v1: one known session, every other one unknown to the store."""

    service = c.NEXT_ITEM_V1

    def __init__(self, items: list[int], types: list[str]) -> None:
        self.items, self.types = items, types

    def read_with_timestamps(self, rows: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        known = [row["session_id"] == SESSION for row in rows]
        columns = {
            ITEMS: [self.items if k else None for k in known],
            TYPES: [self.types if k else None for k in known],
        }
        return columns, {c.SESSION_ACTIVITY: [datetime.now(UTC) if k else None for k in known]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Served]:
    frame = session_training_frame(next_item_entities)
    parts = time_split(frame, min_rows=RUN.min_split_rows)
    inputs = {name: next_item_inputs(getattr(parts, name), RUN.input_spec()) for name in ("train", "valid", "test")}
    data = SessionData(
        inputs["train"],
        label_ids(parts.train),
        inputs["valid"],
        label_ids(parts.valid),
        session_groups(parts.train),
    )
    test = parts.test.iloc[int(np.argmax(inputs["test"]["lengths"]))]
    session = (list(test[ITEMS]), list(test[TYPES]))
    holdout = {name: values[: RUN.holdout_rows] for name, values in inputs["test"].items()}
    folder = tmp_path_factory.mktemp("served-kinds")
    result = {}
    for name, kind in KINDS.items():
        model = kind.fit(data, 3, config=CONFIGS.get(name))
        path = model.export(folder / f"{name}.onnx", holdout, TOP_K)
        result[name] = Served(path.path, model, {**RUN.input_spec().to_dict(), "top_k": TOP_K}, session)
    return result


def _predictor(kind: Served, reader: SessionReader | None) -> tuple[RecommendPredictor, ModelRuntime]:
    runtime = ModelRuntime.load(kind.path, intra_op_threads=1, inter_op_threads=1)
    info = ModelInfo("next_item", 4, c.NEXT_ITEM_V1, runtime.feature_order, ())
    return RecommendPredictor.build(info, reader, {"input_spec": kind.spec}), runtime  # type: ignore[arg-type]


@pytest.mark.slow  # every kind fitted and exported once (the networks tiny): ~20 s
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_answers_recommend_through_the_runtime_and_the_predictor(
    kind: str, served: dict[str, Served]
) -> None:
    entry = served[kind]
    predictor, runtime = _predictor(entry, SessionReader(*entry.session))

    prepared = predictor.prepare(RecommendRequest(user_id=1, session_id=SESSION, k=5))
    response = predictor.respond(prepared, runtime.run(prepared.feeds))

    assert not response.degraded and response.feature_age_seconds[c.SESSION_ACTIVITY] is not None
    assert prepared.feeds["lengths"][0] == min(len(entry.session[0]), RUN.seq_len)
    assert (response.model, response.version) == ("next_item", 4)
    want_ids, want_scores = entry.model.recommend(prepared.feeds, TOP_K)  # the kind's own numpy / torch answer
    ids = np.array([item.item_id for item in response.items])
    scores = np.array([item.score for item in response.items])
    np.testing.assert_allclose(scores, want_scores[0, :5], atol=1e-4)
    near = np.isclose(want_scores[0, :6, None], want_scores[0, None, :6], atol=1e-6).sum(axis=1)[:5] > 1
    assert all(tied or got == want for got, want, tied in zip(ids, want_ids[0, :5], near, strict=True))
    assert (np.diff(scores) <= 0).all() and len(set(ids.tolist())) == 5


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_answers_a_session_the_store_does_not_know_and_caps_k_at_its_top_k(
    kind: str, served: dict[str, Served]
) -> None:
    predictor, runtime = _predictor(served[kind], SessionReader(*served[kind].session))

    prepared = predictor.prepare(RecommendRequest(user_id=1, session_id="never-seen", k=TOP_K))
    response = predictor.respond(prepared, runtime.run(prepared.feeds))

    assert prepared.feeds["lengths"].tolist() == [0] and not response.degraded
    assert len(response.items) == TOP_K and all(np.isfinite(item.score) for item in response.items)
    assert predictor.prepare(RecommendRequest(user_id=1, session_id=SESSION, k=TOP_K + 1)).context == TOP_K
    assert runtime.provider == "CPUExecutionProvider"
