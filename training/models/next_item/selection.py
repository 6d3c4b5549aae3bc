"""`--kind auto`: fit every kind and serve the one that ranks the validation days best.

    select_on_validation(fitted, inputs, labels, k) -> (name, record)

Why: which kind wins depends on the shop. On the REES46 sample the networks beat session-kNN by ten points of hit
rate; on the SR-GNN protocol of the same log, and on logs where most test items were never seen in training, an index
kind is as good or better. A shop should not have to run the comparison by hand to serve the better one, and the
promotion gate would refuse a network that loses anyway.

The rule: the highest hit rate at `k` on the validation rows (the gate's headline metric), ties broken by MRR at `k`,
then by the order of `fitted` (networks first: `kinds.KINDS`). Only the validation days choose; the test days stay
untouched and are what the report shows, so the reported figure of the chosen kind is not inflated by the choice.
The record (every kind's validation figures and the winner) goes into the version's params["selection"].
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from training.evaluate import hit_rate, mrr
from training.models.next_item.base import Inputs, Recommender

RULE: Final = "highest validation hit_rate@k, then mrr@k, then kind order"


def select_on_validation(
    fitted: dict[str, Recommender], inputs: Inputs, labels: np.ndarray, k: int
) -> tuple[str, dict[str, Any]]:
    """The name of the best of `fitted` on the validation rows and the record of how it was chosen."""
    figures = {}
    for name, model in fitted.items():
        lists = model.recommend(inputs, k)[0]
        figures[name] = {f"hit_rate@{k}": hit_rate(labels, lists, k), f"mrr@{k}": mrr(labels, lists, k)}
    order = list(fitted)
    best = max(order, key=lambda n: (figures[n][f"hit_rate@{k}"], figures[n][f"mrr@{k}"], -order.index(n)))
    return best, {"rule": RULE, "chosen": best, "validation": figures, "rows": len(labels)}
