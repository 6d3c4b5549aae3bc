"""The hyper-parameter search (training/search.py) on a toy objective: the base config first, the budget in trials
and seconds, the best fit kept as fitted, refused trials recorded, and the same seed giving the same trials."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from journey.errors import InvalidInputError
from training.search import SearchBudget, search


@dataclass(frozen=True)
class Toy:
    x: float = 0.0
    width: int = 4


def _space(trial: Any) -> dict[str, Any]:
    return {"x": trial.suggest_float("x", -3.0, 3.0), "width": trial.suggest_categorical("width", [1, 2, 3])}


def _fit(config: Toy) -> dict[str, Any]:
    if config.width == 3:
        raise InvalidInputError("width 3 does not fit", field="width", value=3)
    return {"config": config, "score": -((config.x - 1.0) ** 2) - 0.1 * config.width}


def _search(trials: int, seed: int = 0, seconds: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    return search(_fit, lambda m: m["score"], Toy(), _space, SearchBudget(trials, seconds), seed=seed, metric="score")


def test_the_base_config_is_the_first_trial_and_the_best_fit_is_kept_as_fitted() -> None:
    best, record = _search(12)
    trials = record["trials"]
    assert len(trials) == 12 and trials[0] == {**trials[0], "trial": "base", "params": {}, "value": -1.4}
    done = [t for t in trials if t["state"] == "complete"]
    assert record["best_value"] == max(t["value"] for t in done) == best["score"] > -1.4
    assert best["config"] == Toy(**{**Toy().__dict__, **record["best_params"]})
    assert record["budget"] == {"trials": 12, "seconds": None} and record["metric"] == "score (validation split)"


def test_a_trial_the_model_refuses_is_recorded_as_failed() -> None:
    _, record = _search(12)
    failed = [t for t in record["trials"] if t["state"] == "failed"]
    assert failed and all(t["params"]["width"] == 3 and "does not fit" in t["error"] for t in failed)


def test_the_same_seed_gives_the_same_trials_and_another_seed_others() -> None:
    strip = lambda record: [(t["params"], t.get("value")) for t in record["trials"]]  # noqa: E731
    assert strip(_search(6, seed=1)[1]) == strip(_search(6, seed=1)[1])
    assert strip(_search(6, seed=1)[1]) != strip(_search(6, seed=2)[1])


def test_a_time_budget_stops_starting_trials() -> None:
    def slow(config: Toy) -> dict[str, Any]:
        time.sleep(0.2)
        return _fit(config)

    best, record = search(slow, lambda m: m["score"], Toy(), _space, SearchBudget(100, 0.5), seed=0, metric="score")
    assert 1 <= len(record["trials"]) <= 5 and best is not None


def test_one_trial_is_the_base_config_alone() -> None:
    best, record = _search(1)
    assert [t["trial"] for t in record["trials"]] == ["base"] and best["config"] == Toy()


@pytest.mark.parametrize(("trials", "seconds", "field"), [(0, None, "search"), (3, 0.0, "search_seconds")])
def test_an_empty_budget_is_refused(trials: int, seconds: float | None, field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        SearchBudget(trials, seconds)
    assert raised.value.field == field
