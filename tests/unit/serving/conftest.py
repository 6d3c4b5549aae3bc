"""Serving unit fixtures: real ONNX propensity versions in the embedded registry, a lifecycle over them (no Feast:
predictors get no online reader and answer from the request alone, which is all routing needs), outcomes written to
memory, and the answer path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from journey.settings import Settings
from journey.stores.prediction_log import PredictionLog
from serving.answer import Answers
from serving.lifecycle import Lifecycle
from serving.outcomes import Outcomes
from tests.factories.answering import MemorySink
from tests.factories.served import register_propensity


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Exported ONNX files are reused by every test (export takes a second each); registries are per test."""
    return tmp_path_factory.mktemp("propensity")


@pytest.fixture
def models(settings: Settings, model_dir: Path) -> Settings:
    register_propensity(settings, model_dir, 3)
    return settings


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def lifecycle(models: Settings) -> Iterator[Lifecycle]:
    lifecycle = Lifecycle.start(models, lambda _service: None, poll=False)
    yield lifecycle
    lifecycle.close()


@pytest.fixture
def outcomes(models: Settings, sink: MemorySink) -> Iterator[Outcomes]:
    outcomes = Outcomes(models, PredictionLog(sink, flush_interval_s=0.05))
    yield outcomes
    outcomes.close()


@pytest.fixture
def answers(lifecycle: Lifecycle, outcomes: Outcomes) -> Answers:
    return Answers(lifecycle, outcomes)
