"""Choosing an index kind's hyper-parameters on the validation split (never on the test days).

    validation_sample(data, rows, seed)   up to `rows` validation examples, drawn with the seed
    list_quality(ids, labels)             hit rate at 20 and MRR at 20 of ranked lists (what the run reports)
    coordinate_search(start, grids, ...)  one pass over the hyper-parameters, each tried over its grid with the
                                          others at their best so far; the better hit rate@20 wins, then MRR@20

One pass of coordinate search (a handful of fits) rather than the full grid: the kinds' parameters interact little,
and the search has to stay cheap enough to run for every baseline of every training run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, Final, TypeVar

import numpy as np

from training.models.next_item.base import Inputs, SessionData

CUTOFF: Final = 20
Config = TypeVar("Config")


def validation_sample(data: SessionData, rows: int, seed: int) -> tuple[Inputs, np.ndarray]:
    """At most `rows` validation examples (all of them when there are fewer), in their order."""
    n = len(data.valid_labels)
    take = np.arange(n) if n <= rows else np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))
    return {name: values[take] for name, values in data.valid.items()}, data.valid_labels[take]


def list_quality(ids: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(hit rate at 20, MRR at 20) of lists best first (-1: an empty place)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    hits = ids[:, :CUTOFF] == np.asarray(labels)[:, None]
    found = hits.any(axis=1)
    rank = hits.argmax(axis=1) + 1
    return float(found.mean()), float(np.where(found, 1.0 / rank, 0.0).mean())


def coordinate_search(
    start: Config,
    grids: Mapping[str, Sequence[Any]],
    quality: Callable[[Config], tuple[float, float]],
) -> tuple[Config, list[dict[str, Any]]]:
    """The best configuration found and every trial (its varied values, hit rate@20, MRR@20), in the order run."""
    best, best_quality = start, quality(start)
    trials = [_trial(start, grids, best_quality)]
    tried = {_key(start, grids)}
    for name, values in grids.items():
        for value in values:
            candidate = replace(best, **{name: value})  # type: ignore[type-var]
            if _key(candidate, grids) in tried:
                continue
            tried.add(_key(candidate, grids))
            found = quality(candidate)
            trials.append(_trial(candidate, grids, found))
            if found > best_quality:
                best, best_quality = candidate, found
    return best, trials


def _key(config: Any, grids: Mapping[str, Sequence[Any]]) -> tuple[Any, ...]:
    return tuple(getattr(config, name) for name in grids)


def _trial(config: Any, grids: Mapping[str, Sequence[Any]], found: tuple[float, float]) -> dict[str, Any]:
    values = {name: asdict(config)[name] for name in grids}
    return {**values, f"hit_rate@{CUTOFF}": round(found[0], 5), f"mrr@{CUTOFF}": round(found[1], 5)}
