"""Next item, kind "markov": P(next item | the session's last item) from the training split's consecutive pairs,
backed off to popularity.

Each training row is one consecutive pair: its last item, then its next item (the label). With c(a, b) the times b
came right after a, c(a) the pairs that start at a and p(b) b's share of the training next items:

    score(b | a) = (c(a, b) + p(b)) / (c(a) + 1)

a Dirichlet-smoothed transition probability (prior strength 1, popularity as the prior): it sums to 1 over the
items, and since p(b) < 1 every item that followed a ranks above every item that never did; an empty session or
an unknown last item (c = 0) gets plain popularity. Only the `max_followers` most frequent followers of an item are
kept (the rest count as never seen); the top-k answer is exact as long as `max_followers` >= top_k. Repeats are
kept: a b equal to a (the same item viewed again) is a follower like any other.

Graph (index: followers as CSR, offsets [V + 2] int64 + followers and counts [E + 1] int32 / float32, c(a) [V + 1],
p [V + 1]):

    item_ids --LabelEncoder, Where--> index [n, T] --GatherElements(lengths - 1)--> last [n, 1]
    last --Gather(offsets), Range(max_followers), Gather(followers, counts)--> [n, F]
    p / (Gather(c(a)) + 1) [n, V + 1] --ScatterElements(add) of counts / (c(a) + 1) at the followers--> TopK --> ids
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journey.errors import InvalidInputError
from training.models.next_item.base import UNKNOWN_INDEX, Inputs, SessionData, Vocabulary
from training.models.next_item.graphs import GraphBuilder, IndexRecommender, encode, flat, weighted_gather
from training.models.next_item.graphs import last_index as graph_last_index
from training.models.next_item.indexes import Csr, fitted_on, label_shares, last_index
from training.models.next_item.indexes import encode as encode_items


@dataclass(frozen=True)
class MarkovConfig:
    max_items: int = 100_000  # the vocabulary: the training split's most frequent items (inputs and labels)
    max_followers: int = 100  # per item, the most frequent next items kept

    def __post_init__(self) -> None:
        for name in ("max_items", "max_followers"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))


@dataclass(frozen=True)
class Markov(IndexRecommender):
    config: MarkovConfig
    vocabulary: Vocabulary
    seq_len: int
    followers: Csr  # item index -> next item indices, counts as values
    totals: np.ndarray  # float32 [V + 1]: c(a), the pairs starting at a
    shares: np.ndarray  # float32 [V + 1]: p(b); index 0 -1
    kind: str = field(default="markov", init=False)

    def score(self, inputs: Inputs) -> np.ndarray:
        """p(b) / (c(a) + 1), then c(a, b) / (c(a) + 1) added at a's followers (each at most once per row)."""
        last = last_index(encode_items(self.vocabulary, inputs), inputs["lengths"])
        targets, counts, _ = self.followers.weights(last)
        denominator = self.totals[last] + np.float32(1)
        scores: np.ndarray = self.shares[None, :] / denominator
        np.add.at(scores, (np.arange(len(last))[:, None], targets[:, 0, :]), counts[:, 0, :] / denominator)
        return scores

    def graph_scores(self, g: GraphBuilder) -> str:
        last = graph_last_index(g, encode(g, self.vocabulary.ids))
        targets, counts, _ = weighted_gather(g, self.followers, last, "followers")
        denominator = g.op("Add", g.op("Gather", g.const(self.totals, "totals"), last, axis=0), g.const(np.float32(1)))
        base = g.op("Div", g.const(self.shares[None, :], "shares"), denominator)
        pairs = g.op("Div", flat(g, counts), denominator)
        return g.op("ScatterElements", base, flat(g, targets), pairs, axis=1, reduction="add")

    def index_sizes(self) -> dict[str, int]:
        return {
            "items": len(self.vocabulary),
            "follower_entries": self.followers.entries,
            "max_followers": self.followers.width,
            "bytes": self.followers.nbytes + self.totals.nbytes + self.shares.nbytes,
        }


def fit_markov(data: SessionData, config: MarkovConfig, seed: int = 0) -> Markov:
    """Counts of (last item, next item) over the training rows whose both items are in the vocabulary (`seed`
    unused: nothing is drawn)."""
    del seed
    vocabulary, seq_len = fitted_on(data, config.max_items)
    size = len(vocabulary) + 1
    last = last_index(encode_items(vocabulary, data.train), data.train["lengths"])[:, 0]
    following = vocabulary.index(data.train_labels)
    known = (last != UNKNOWN_INDEX) & (following != UNKNOWN_INDEX)
    pairs, counts = np.unique(last[known] * size + following[known], return_counts=True)
    followers = Csr.build(pairs // size, pairs % size, counts, counts, size, config.max_followers)
    totals = np.bincount(last[known], minlength=size).astype(np.float32)
    return Markov(config, vocabulary, seq_len, followers, totals, label_shares(vocabulary, data.train_labels))
