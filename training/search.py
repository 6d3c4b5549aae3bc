"""Hyper-parameter search with a budget: Optuna's TPE sampler over a model's search space, judged on the
validation split only (the test days stay untouched for the report).

    SearchBudget(trials, seconds)                    at most `trials` fits, and no new one after `seconds`
    search(fit, score, base, space, budget, seed=)   -> (the best fitted model, the record of every trial)

The first trial is always `base` itself (the defaults, or the config file's values: it need not lie in the
space), so a search can only find a better validation score than no search. Each further trial fits a model with
`base` updated by the values TPE samples from the space, and the best fit is kept as it is: nothing is refitted
afterwards, so the winner is exactly the model whose validation score the record shows. A trial whose values a
model refuses (InvalidInputError) is recorded as failed, and the sampler moves on.

Determinism: the sampler is seeded and every fit is seeded, so a search bounded by `trials` gives the same trials,
the same winner and the same bytes; a bound in `seconds` stops after however many trials fit in the time.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from journey.errors import InvalidInputError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

C = TypeVar("C")
M = TypeVar("M")
Space = Callable[["optuna.Trial"], dict[str, Any]]


@dataclass(frozen=True)
class SearchBudget:
    trials: int
    seconds: float | None = None  # no new trial starts after this many seconds (None: no limit)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise InvalidInputError("a search needs at least 1 trial", field="search", value=self.trials)
        if self.seconds is not None and self.seconds <= 0:
            raise InvalidInputError("search seconds must be > 0", field="search_seconds", value=self.seconds)


@dataclass
class _Best(Generic[M]):
    model: M | None = None
    value: float = float("-inf")
    trial: int | str = "base"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def search(
    fit: Callable[[C], M],
    score: Callable[[M], float],
    base: C,
    space: Space,
    budget: SearchBudget,
    *,
    seed: int,
    metric: str,
) -> tuple[M, dict[str, Any]]:
    """Fit `base`, then up to `budget.trials - 1` variants sampled from `space`; return the fit with the highest
    `score` (the validation `metric`) and the record of the search (params["search"] of the version, in its report)."""
    import optuna  # a heavy import, only when a search runs

    started = time.perf_counter()
    best: _Best[M] = _Best()
    record = [_trial(best, "base", {}, lambda: fit(base), score)]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(budget.trials - 1, 1)))
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        values = space(trial)
        variant = dataclasses.replace(base, **values)  # type: ignore[type-var]  # every config is a dataclass
        entry = _trial(best, trial.number + 1, values, lambda: fit(variant), score)
        record.append(entry)
        if entry["state"] != "complete":
            raise optuna.TrialPruned(str(entry.get("error")))
        return float(entry["value"])

    left = None if budget.seconds is None else max(budget.seconds - (time.perf_counter() - started), 1e-3)
    if budget.trials > 1 and (left is None or left > 1e-3):
        study.optimize(objective, n_trials=budget.trials - 1, timeout=left)
    if best.model is None:
        raise InvalidInputError("no trial of the search could be fitted", field="search", value=budget.trials)
    summary = {
        "sampler": "optuna TPE (the first trial: the base config)",
        "seed": seed,
        "metric": f"{metric} (validation split)",
        "budget": {"trials": budget.trials, "seconds": budget.seconds},
        "seconds": round(time.perf_counter() - started, 2),
        "best_trial": best.trial,
        "best_params": best.params,
        "best_value": best.value,
        "trials": record,
    }
    return best.model, summary


def _trial(
    best: _Best[M], number: int | str, values: dict[str, Any], fit: Callable[[], M], score: Callable[[M], float]
) -> dict[str, Any]:
    """Fit one trial, keep it in `best` when it is better; its line of the record."""
    started = time.perf_counter()
    try:
        model = fit()
    except InvalidInputError as exc:  # sampled values the model refuses (e.g. heads not dividing the width)
        return {"trial": number, "state": "failed", "params": values, "error": str(exc)}
    value = score(model)
    if value > best.value:
        best.model, best.value, best.trial, best.params = model, value, number, values
    seconds = round(time.perf_counter() - started, 2)
    log.info("search trial", extra={"trial": number, "params": values, "value": value, "seconds": seconds})
    return {"trial": number, "state": "complete", "params": values, "value": value, "seconds": seconds}
