"""Next item, kind "popularity": the training split's most frequent next items, the same list for every session.

Score of an item: its share of the training split's next items (labels). The graph still takes the recommender
inputs (they give the batch size) and answers the constant list:

    lengths --Shape, Concat(top_k)--> [n, top_k] --Expand(ids [1, top_k]), Expand(scores [1, top_k])--> outputs

Index: top_k ids and scores (a few hundred bytes). It is every other index kind's fallback, below their own items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from journey.errors import InvalidInputError
from training.models.next_item.base import Inputs, SessionData, Vocabulary
from training.models.next_item.graphs import GraphBuilder, IndexRecommender
from training.models.next_item.indexes import fitted_on, label_shares, top_k


@dataclass(frozen=True)
class PopularityConfig:
    max_items: int = 100_000  # the vocabulary: the training split's most frequent items (inputs and labels)

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise InvalidInputError("max_items must be >= 1", field="max_items", value=self.max_items)


@dataclass(frozen=True)
class Popularity(IndexRecommender):
    config: PopularityConfig
    vocabulary: Vocabulary
    seq_len: int
    shares: np.ndarray  # float32 [V + 1], index 0 -1
    kind: str = field(default="popularity", init=False)

    def score(self, inputs: Inputs) -> np.ndarray:
        return np.broadcast_to(self.shares, (len(inputs["lengths"]), len(self.shares))).copy()

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = super().recommend({name: values[:1] for name, values in inputs.items()}, k)
        rows = len(inputs["lengths"])
        return np.repeat(ids, rows, axis=0), np.repeat(scores, rows, axis=0)

    def graph_scores(self, g: GraphBuilder) -> str:
        raise NotImplementedError("the popularity graph answers a constant list (see graph)")

    def graph(self, top_k: int) -> onnx.ModelProto:
        g = GraphBuilder("next_item_popularity", self.seq_len)
        index, scores = top_k_row(self.shares, top_k)
        shape = g.batch_shape(top_k)
        ids = g.op("Expand", g.const(self.vocabulary.table()[index][None, :], "popular_item_ids"), shape)
        return g.model(ids, g.op("Expand", g.const(scores[None, :], "popular_scores"), shape), top_k)

    def index_sizes(self) -> dict[str, int]:
        return {"items": len(self.vocabulary)}


def top_k_row(shares: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index, scores = top_k(shares[None, :], k)
    return index[0], scores[0]


def fit_popularity(data: SessionData, config: PopularityConfig, seed: int = 0) -> Popularity:
    """The shares of the training next items (`seed` unused: nothing is drawn)."""
    del seed
    vocabulary, seq_len = fitted_on(data, config.max_items)
    return Popularity(config, vocabulary, seq_len, label_shares(vocabulary, data.train_labels))
