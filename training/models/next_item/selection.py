"""`--kind auto`: fit every kind and serve the one the validation days support.

    select_on_validation(fitted, inputs, labels, k, simple=..., groups=...) -> (name, record)

Why: which kind wins depends on the shop. On the REES46 sample's test days the networks beat session-kNN by ten
points of hit rate; under the SR-GNN protocol of the same log (300 training prefixes) session-kNN leads; on the 2M
synthetic shop co-visitation and the GRU are level. A shop should not have to run the comparison by hand, and the
promotion gate would refuse a network that loses anyway.

The rule, on the validation rows only (the test days stay untouched and are what the report shows): start from
session-kNN (`default`); the best other index kind (`simple`: popularity, markov, covisitation) replaces it only if
it beats it on hit rate at `k` (the gate's headline metric) with a 95% paired bootstrap lower bound > 0 over the
validation sessions (`groups`; rows when None); then the best network does the same against the kind served so far.
"Best" is the highest validation hit rate, ties broken by MRR at `k`, then by the order of `fitted`.

Why a kind has to prove itself against session-kNN: with few validation rows the best point estimate is noise, and
the default should be the kind that is strong everywhere: session-kNN matched or beat most networks in the
session-based recommendation studies of Ludewig & Jannach, and costs least to be wrong with. A network also costs
more to train and to serve (a vocabulary softmax grows with the catalogue). Under the SR-GNN protocol of the REES46
sample (2 validation prefixes once filtered as the test is) the point estimate picked the GRU, which lost to
session-kNN by 3.3 points on 1,432 test prefixes; on the demo shop the GRU beats session-kNN on 34k validation rows
beyond doubt and is served.
The record (every kind's validation figures, each challenge, the winner) goes into params["selection"].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import numpy as np

from training.evaluate import rank_of_label
from training.gate import GATE_SEED, bootstrap_table, mean_statistic
from training.models.next_item.base import Inputs

RULE: Final = (
    "sknn unless another index kind, then a network, beats the kind served so far on validation hit_rate@k with a "
    "95% paired bootstrap lower bound > 0"
)
DEFAULT_INDEX_KIND: Final = "sknn"
ROUNDS: Final = 1000


class Ranks(Protocol):
    """What selection needs of a fitted kind (every Recommender, and a protocol's rankers)."""

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def select_on_validation(
    fitted: Mapping[str, Ranks],
    inputs: Inputs,
    labels: np.ndarray,
    k: int,
    *,
    simple: Iterable[str] = (),
    default: str = DEFAULT_INDEX_KIND,
    groups: np.ndarray | None = None,
) -> tuple[str, dict[str, Any]]:
    """The kind to serve among `fitted` and the record of how it was chosen (see the module docstring)."""
    hits, reciprocal = {}, {}
    for name, model in fitted.items():
        ranks = rank_of_label(labels, model.recommend(inputs, k)[0][:, :k])
        hits[name] = (ranks > 0).astype(np.float64)
        reciprocal[name] = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0)
    figures = {n: {f"hit_rate@{k}": float(hits[n].mean()), f"mrr@{k}": float(reciprocal[n].mean())} for n in fitted}
    order = list(fitted)

    def best(names: list[str]) -> str:
        return max(names, key=lambda n: (figures[n][f"hit_rate@{k}"], figures[n][f"mrr@{k}"], -order.index(n)))

    simple = [n for n in order if n in set(simple)]
    networks = [n for n in order if n not in simple]
    record: dict[str, Any] = {"rule": RULE, "validation": figures, "rows": len(labels), "challenges": []}
    if not simple or not len(labels):
        record["chosen"] = best(order)
        return record["chosen"], record

    def challenge(incumbent: str, challenger: str) -> str:
        """The challenger when it beats the incumbent beyond doubt, else the incumbent."""
        if challenger == incumbent:
            return incumbent
        low, high = _interval(hits[challenger] - hits[incumbent], groups)
        metric = f"hit_rate@{k}"
        record["challenges"].append(
            {
                "incumbent": incumbent,
                "challenger": challenger,
                "metric": metric,
                "difference": figures[challenger][metric] - figures[incumbent][metric],
                "ci95": [low, high],
                "won": low > 0,
            }
        )
        return challenger if low > 0 else incumbent

    served = challenge(default if default in simple else best(simple), best(simple))
    if networks:
        served = challenge(served, best(networks))
    record["chosen"] = served
    return served, record


def _interval(differences: np.ndarray, groups: np.ndarray | None) -> tuple[float, float]:
    """95% percentile interval of the mean per-row difference over resampled sessions (rows when no groups)."""
    table = bootstrap_table({"d": mean_statistic(differences)}, groups, len(differences), ROUNDS, GATE_SEED)
    low, high = np.nanpercentile(table["d"], [2.5, 97.5])
    return float(low), float(high)
