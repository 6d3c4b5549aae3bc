"""Next item, kind "covisitation": the items that followed the session's items in training (within a few steps),
recency-weighted, backed off to popularity.

Today's co-visitation baseline ranked what followed the session's last item; this kind keeps that spirit and reads
more of the session. Each training row pairs each of its last `window` items with its next item, the pair weighted
by 1 / gap (gap 1: the next item came right after it). With c(a, b) those weights summed over the rows and
w(a, b) = c(a, b) / sum_b' c(a, b') (only the `max_neighbors` heaviest b per a kept), a session with items a_j
(newest last) scores

    S(b) = sum_j r_j w(a_j, b)          r_j: the `decay` weight of step j (harmonic: 1, 1/2, 1/3, ... back in time)

and ranks b by S in (0.5, 1] (S / the row's best S), then popular items in [0, 0.5) (`indexes.band`). Every
occurrence of an item in the session counts (a repeated item pulls harder), and items already in the session stay
eligible (a shopper returns to what they viewed). window 1 with only the last item is today's baseline; the window
and the decay are chosen on the validation split (`tuning.py`).

Graph (index: neighbours as CSR, offsets [V + 2] int64 + items and weights [E + 1] int32 / float32, the decay table
[T + 1, T], p [V + 1]):

    item_ids --LabelEncoder, Where--> index [n, T] --Gather(offsets), Range(max_neighbors), Gather--> [n, T, F]
    weights x Gather(decay, lengths) --ScatterElements(add) into zeros [n, V + 1]--> S
    S at the neighbours --scale into (0.5, 1]--> ScatterElements(max) over Expand(0.5 p) --> TopK --> ids
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from journey.errors import InvalidInputError
from training.models.next_item.base import UNKNOWN_INDEX, Inputs, SessionData, Vocabulary
from training.models.next_item.graphs import (
    GraphBuilder,
    IndexRecommender,
    band,
    encode,
    flat,
    scatter_add,
    weighted_gather,
)
from training.models.next_item.graphs import step_weights as graph_step_weights
from training.models.next_item.indexes import DECAYS, Csr, Decay, decay_table, fitted_on, label_shares, step_weights
from training.models.next_item.indexes import band as band_scores
from training.models.next_item.indexes import encode as encode_items
from training.models.next_item.indexes import scatter_add as add_at
from training.models.next_item.tuning import coordinate_search, list_quality, validation_sample


@dataclass(frozen=True)
class CovisitationConfig:
    max_items: int = 100_000  # the vocabulary: the training split's most frequent items (inputs and labels)
    window: int = 3  # a next item pairs with each of the row's last `window` items
    max_neighbors: int = 100  # per item, the heaviest co-visited items kept
    decay: Decay = "harmonic"  # weight of the session's items by recency
    tune: bool = True  # choose window and decay on the validation split
    window_grid: tuple[int, ...] = (1, 2, 3, 5)
    decay_grid: tuple[Decay, ...] = ("harmonic", "linear", "same")
    tune_rows: int = 5_000  # validation rows the choice is made on (drawn with the seed)

    def __post_init__(self) -> None:
        for name in ("max_items", "window", "max_neighbors", "tune_rows"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        for decay in (self.decay, *self.decay_grid):
            if decay not in DECAYS:
                raise InvalidInputError(f"decay must be one of {list(DECAYS)}", field="decay", value=decay)


@dataclass(frozen=True)
class Covisitation(IndexRecommender):
    config: CovisitationConfig
    vocabulary: Vocabulary
    seq_len: int
    neighbors: Csr  # item index -> co-visited item indices, w(a, b) as values
    decay: np.ndarray  # float32 [T + 1, T]
    shares: np.ndarray  # float32 [V + 1]: p(b); index 0 -1
    tuning: tuple[dict[str, Any], ...] = ()
    kind: str = field(default="covisitation", init=False)

    def score(self, inputs: Inputs) -> np.ndarray:
        index = encode_items(self.vocabulary, inputs)
        recency = step_weights(self.decay, index, inputs["lengths"])
        targets, weights, _ = self.neighbors.weights(index)
        n = len(index)
        pulls = weights * recency[:, :, None]
        return band_scores(add_at(targets.reshape(n, -1), pulls.reshape(n, -1), len(self.shares)), self.shares)

    def graph_scores(self, g: GraphBuilder) -> str:
        index = encode(g, self.vocabulary.ids)
        recency = g.op("Unsqueeze", graph_step_weights(g, self.decay, index), g.const(np.array([-1], dtype=np.int64)))
        targets, weights, _ = weighted_gather(g, self.neighbors, index, "neighbors")
        items = flat(g, targets)
        sums = scatter_add(g, items, flat(g, g.op("Mul", weights, recency)), len(self.shares))
        return band(g, sums, items, self.shares)

    def index_sizes(self) -> dict[str, int]:
        return {
            "items": len(self.vocabulary),
            "neighbor_entries": self.neighbors.entries,
            "max_neighbors": self.neighbors.width,
            "bytes": self.neighbors.nbytes + self.decay.nbytes + self.shares.nbytes,
        }

    def params(self) -> dict[str, Any]:
        return {**super().params(), "tuning": list(self.tuning)}


def covisited(data: SessionData, vocabulary: Vocabulary, window: int, cap: int) -> Csr:
    """w(a, b) per item a: the 1 / gap weighted pairs (one of a row's last `window` items, its next item)."""
    size = len(vocabulary) + 1
    index, lengths = vocabulary.index(data.train["item_ids"]), data.train["lengths"]
    following = vocabulary.index(data.train_labels)
    sources, targets, weights = [], [], []
    for gap in range(1, window + 1):
        step = lengths - gap
        has = step >= 0
        source = np.take_along_axis(index, np.maximum(step, 0)[:, None], axis=1)[:, 0]
        ok = has & (source != UNKNOWN_INDEX) & (following != UNKNOWN_INDEX)
        sources.append(source[ok])
        targets.append(following[ok])
        weights.append(np.full(int(ok.sum()), 1.0 / gap))
    keys = np.concatenate(sources) * size + np.concatenate(targets)
    pairs, where = np.unique(keys, return_inverse=True)
    sums = np.bincount(where.reshape(-1), weights=np.concatenate(weights), minlength=len(pairs))
    rows = pairs // size
    normalised = sums / np.bincount(rows, weights=sums, minlength=size)[rows]
    return Csr.build(rows, pairs % size, normalised, normalised, size, cap)


def build_covisitation(
    data: SessionData, vocabulary: Vocabulary, config: CovisitationConfig, seq_len: int
) -> Covisitation:
    """The kind with `config` as it is (no tuning)."""
    return Covisitation(
        config,
        vocabulary,
        seq_len,
        covisited(data, vocabulary, config.window, config.max_neighbors),
        decay_table(config.decay, seq_len),
        label_shares(vocabulary, data.train_labels),
    )


def fit_covisitation(data: SessionData, config: CovisitationConfig, seed: int = 0) -> Covisitation:
    """Window and decay chosen on (a sample of, drawn with `seed`) the validation split when `config.tune`, then
    the final index."""
    vocabulary, seq_len = fitted_on(data, config.max_items)
    if not config.tune:
        return build_covisitation(data, vocabulary, config, seq_len)
    inputs, labels = validation_sample(data, config.tune_rows, seed)

    def quality(candidate: CovisitationConfig) -> tuple[float, float]:
        model = build_covisitation(data, vocabulary, candidate, seq_len)
        return list_quality(model.recommend(inputs, 20)[0], labels)

    grids = {"window": config.window_grid, "decay": config.decay_grid}
    best, trials = coordinate_search(config, grids, quality)
    return replace(build_covisitation(data, vocabulary, best, seq_len), tuning=tuple(trials))
