"""Next item, kind "sknn": session-kNN with vector weights (V-SKNN, Ludewig & Jannach 2018, as in session-rec).

The training sessions are the index: each session's distinct items (those of all its training rows and their next
items, the `max_session_items` newest kept), sessions numbered oldest to newest. For a session being served:

1. Its items weigh by recency (`decay`, default linear: the newest 1, each step back 0.1 less, 0 from ten back;
   an item seen twice counts once, at its newest step). Weights are multiples of 2^-10 (indexes.QUANTUM).
2. Candidates: the training sessions holding any of its items; the `sample_size` most recent of them are kept.
3. Similarity of a candidate: the sum of the weights of the items it shares with the session (the dot product of
   the session's weight vector with the candidate's 0/1 vector; session-rec's "vec" without its constant divisor).
4. Neighbours: the `k_neighbors` most similar candidates (a tie goes to the more recent one).
5. Item score: the sum of the similarities of the neighbours that hold the item, times 1 + idf_weight x idf(item)
   (idf = log(sessions / sessions holding the item)); items already in the session stay eligible (repeats are
   common). The list: the scored items in (0.5, 1], then popular items below (`indexes.band`).

Posting lists (item -> sessions) keep each item's `sample_size` most recent sessions only, and that is exact: a
candidate among the `sample_size` most recent holding some item is, for each item it holds, among that item's
`sample_size` most recent sessions (every newer session holding that item is a newer candidate too). So step 2 and
the similarity of every kept candidate come out of the posting lists alone (`sknn_graph.py` shows the graph).

Hyper-parameters start from session-rec's V-SKNN defaults (k 100, sample 500, linear decay) and are chosen on the
validation split by one pass of coordinate search (`tuning.py`). Sums stay exact in float32 (so the graph picks the
same neighbours as numpy) while k_neighbors x seq_len x 1024 < 2^24: k_neighbors is capped at 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np

from journey.errors import InvalidInputError
from training.models.next_item.base import UNKNOWN_INDEX, Inputs, SessionData, Vocabulary
from training.models.next_item.graphs import GraphBuilder, IndexRecommender
from training.models.next_item.indexes import (
    DECAYS,
    Csr,
    Decay,
    band,
    decay_table,
    encode,
    fitted_on,
    label_shares,
    repeated_later,
    step_weights,
    top_k,
    valid_steps,
)
from training.models.next_item.sknn_graph import SknnTables, sknn_scores
from training.models.next_item.tuning import coordinate_search, list_quality, validation_sample

MAX_NEIGHBORS: Final = 500


@dataclass(frozen=True)
class SknnConfig:
    max_items: int = 100_000  # the vocabulary: the training split's most frequent items (inputs and labels)
    k_neighbors: int = 100
    sample_size: int = 500  # the most recent candidate sessions kept (also each item's posting list length)
    decay: Decay = "linear"
    idf_weight: float = 0.0  # item score x (1 + idf_weight x idf); 0: plain sums of similarities
    max_session_items: int = 50  # a training session's newest distinct items kept in the index
    tune: bool = True  # choose k_neighbors, sample_size, decay and idf_weight on the validation split
    k_grid: tuple[int, ...] = (50, 100, 200)
    sample_grid: tuple[int, ...] = (500, 1000)
    decay_grid: tuple[Decay, ...] = ("linear", "harmonic", "same")
    idf_grid: tuple[float, ...] = (0.0, 1.0)
    tune_rows: int = 5_000  # validation rows the choice is made on (drawn with the seed)

    def __post_init__(self) -> None:
        for name in ("max_items", "max_session_items", "tune_rows"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", field=name, value=getattr(self, name))
        for k in (self.k_neighbors, *self.k_grid):
            if not 1 <= k <= MAX_NEIGHBORS:
                raise InvalidInputError(f"k_neighbors must be in 1..{MAX_NEIGHBORS}", field="k_neighbors", value=k)
        for size in (self.sample_size, *self.sample_grid):
            if size < max(self.k_neighbors, *self.k_grid):
                raise InvalidInputError("sample_size must be >= k_neighbors", field="sample_size", value=size)
        for decay in (self.decay, *self.decay_grid):
            if decay not in DECAYS:
                raise InvalidInputError(f"decay must be one of {list(DECAYS)}", field="decay", value=decay)
        if min(self.idf_weight, *self.idf_grid) < 0:
            raise InvalidInputError("idf_weight must be >= 0", field="idf_weight", value=self.idf_weight)


@dataclass(frozen=True)
class SessionIndex:
    """The training sessions as two ragged tables, and what the scores need per item."""

    postings: Csr  # item index -> session numbers, newest first (at most sample_size)
    sessions: Csr  # session number -> item indices, newest first (at most max_session_items)
    idf: np.ndarray  # float32 [V + 1]: log(sessions / sessions holding the item); 0 for index 0

    @property
    def n_sessions(self) -> int:
        return len(self.sessions.offsets) - 1


@dataclass(frozen=True)
class Sknn(IndexRecommender):
    config: SknnConfig
    vocabulary: Vocabulary
    seq_len: int
    index: SessionIndex
    decay: np.ndarray  # float32 [T + 1, T], multiples of 2^-10
    boost: np.ndarray  # float32 [V + 1]: 1 + idf_weight x idf
    shares: np.ndarray  # float32 [V + 1]: p(b); index 0 -1
    tuning: tuple[dict[str, Any], ...] = ()
    kind: str = field(default="sknn", init=False)

    def score(self, inputs: Inputs) -> np.ndarray:
        weights, index = self.query_weights(inputs)
        neighbors, similarity = self.neighbors(index, weights)
        found = np.flatnonzero(similarity.ravel() > 0)
        owner, items = self.index.sessions.expand(neighbors.ravel()[found])
        rows = found[owner] // neighbors.shape[1]
        sums = _sums(len(index), len(self.shares), rows, items, similarity.ravel()[found][owner])
        return band(sums * self.boost[None, :] if self.config.idf_weight else sums, self.shares)

    def query_weights(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        """float32 [n, T] weights (each item once, at its newest step) and the int64 [n, T] vocabulary indices."""
        index = encode(self.vocabulary, inputs)
        weights = step_weights(self.decay, index, inputs["lengths"])
        return weights * (~repeated_later(index)).astype(np.float32), index

    def neighbors(self, index: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Session numbers int64 [n, k] (0 where none) and similarities float32 [n, k] (0 where none).

        The candidates of all rows at once, as flat arrays (the graph pads each row to its posting lists' width and
        sorts; the same entries, in the same order, decide the same neighbours)."""
        n, sample = len(index), self.config.sample_size
        row, step = np.nonzero(weights > 0)
        owner, session = self.index.postings.expand(index[row, step])
        row, shared = row[owner], weights[row, step][owner]
        order = np.lexsort((-session, row))  # per row, newest session first
        row, session, shared = row[order], session[order], shared[order]
        new = np.ones(len(row), dtype=bool)
        new[1:] = (row[1:] != row[:-1]) | (session[1:] != session[:-1])
        group = np.cumsum(new) - 1
        group -= group[np.searchsorted(row, row, side="left")]  # distinct sessions before it in its row
        keep = group < sample
        similarity = _sums(n, sample, row[keep], group[keep], shared[keep])
        numbers = np.full((n, sample), -1, dtype=np.int64)
        numbers[row[keep], group[keep]] = session[keep]
        best, value = top_k(similarity, min(self.config.k_neighbors, sample))
        found = value > 0
        chosen = np.take_along_axis(numbers, best, axis=1)
        return np.where(found, chosen, 0), np.where(found, value, np.float32(0))

    def graph_scores(self, g: GraphBuilder) -> str:
        boost = self.boost if self.config.idf_weight else None
        tables = SknnTables(
            self.vocabulary.ids,
            self.decay,
            self.index.postings,
            self.index.sessions,
            self.shares,
            boost,
            self.config.sample_size,
            self.config.k_neighbors,
        )
        return sknn_scores(g, tables)

    def index_sizes(self) -> dict[str, int]:
        postings, sessions = self.index.postings, self.index.sessions
        return {
            "items": len(self.vocabulary),
            "sessions": self.index.n_sessions,
            "posting_entries": postings.entries,
            "posting_width": postings.width,
            "session_entries": sessions.entries,
            "session_width": sessions.width,
            "bytes": postings.nbytes + sessions.nbytes + self.boost.nbytes + self.shares.nbytes + self.decay.nbytes,
        }

    def params(self) -> dict[str, Any]:
        return {**super().params(), "tuning": list(self.tuning)}


def _sums(rows: int, columns: int, row: np.ndarray, column: np.ndarray, values: np.ndarray) -> np.ndarray:
    """float32 [rows, columns]: `values` summed at (row, column) (ScatterElements "add"; exact for multiples of
    2^-10, in any order)."""
    flat = np.bincount(row * columns + column, weights=values.astype(np.float64), minlength=rows * columns)
    result: np.ndarray = flat.reshape(rows, columns).astype(np.float32)
    return result


def session_index(data: SessionData, vocabulary: Vocabulary, postings: int, session_items: int) -> SessionIndex:
    """Sessions numbered by their newest training row (oldest first), each with its newest distinct items."""
    n, steps = data.train["item_ids"].shape
    size = len(vocabulary) + 1
    index = np.where(valid_steps(data.train["lengths"], steps), vocabulary.index(data.train["item_ids"]), 0)
    items = np.concatenate([index, vocabulary.index(data.train_labels)[:, None]], axis=1)  # the label is newest
    keys = np.arange(n) if data.train_sessions is None else np.asarray(data.train_sessions)
    _, session = np.unique(keys, return_inverse=True)
    session = session.reshape(-1)
    newest_row = np.zeros(session.max(initial=-1) + 1, dtype=np.int64)
    np.maximum.at(newest_row, session, np.arange(n))
    number = np.empty(len(newest_row), dtype=np.int64)
    number[np.lexsort((np.arange(len(newest_row)), newest_row))] = np.arange(len(newest_row))
    ok = items != UNKNOWN_INDEX
    rows, place = np.nonzero(ok)
    pairs = number[session[rows]] * size + items[ok]
    recency = rows * (steps + 1) + place
    pairs, first = np.unique(pairs[np.argsort(-recency, kind="stable")], return_index=True)
    newest = -np.sort(-recency)[first]
    by_session = Csr.build(pairs // size, pairs % size, None, newest, len(number), session_items)
    kept_session = np.repeat(np.arange(len(number)), np.diff(by_session.offsets))
    kept_item = by_session.targets[:-1].astype(np.int64)
    by_item = Csr.build(kept_item, kept_session, None, kept_session, size, postings)
    holding = np.bincount(kept_item, minlength=size).astype(np.float64)
    idf = np.where(holding > 0, np.log(max(len(number), 1) / np.maximum(holding, 1)), 0.0).astype(np.float32)
    return SessionIndex(by_item, by_session, idf)


def build_sknn(
    data: SessionData, vocabulary: Vocabulary, config: SknnConfig, seq_len: int, index: SessionIndex | None = None
) -> Sknn:
    """The kind with `config` as it is; `index` (posting lists at least sample_size long) is reused when given."""
    index = index or session_index(data, vocabulary, config.sample_size, config.max_session_items)
    boost = (1.0 + config.idf_weight * index.idf).astype(np.float32)
    table = decay_table(config.decay, seq_len, quantize=True)
    return Sknn(config, vocabulary, seq_len, index, table, boost, label_shares(vocabulary, data.train_labels))


def fit_sknn(data: SessionData, config: SknnConfig, seed: int = 0) -> Sknn:
    """Hyper-parameters chosen on (a sample of, drawn with `seed`) the validation split when `config.tune`, then
    the final index (its posting lists exactly `sample_size` long)."""
    vocabulary, seq_len = fitted_on(data, config.max_items)
    if not config.tune:
        return build_sknn(data, vocabulary, config, seq_len)
    inputs, labels = validation_sample(data, config.tune_rows, seed)
    widest = session_index(data, vocabulary, max(config.sample_size, *config.sample_grid), config.max_session_items)

    def quality(candidate: SknnConfig) -> tuple[float, float]:
        model = build_sknn(data, vocabulary, candidate, seq_len, widest)
        return list_quality(model.recommend(inputs, 20)[0], labels)

    grids = {
        "k_neighbors": config.k_grid,
        "sample_size": config.sample_grid,
        "decay": config.decay_grid,
        "idf_weight": config.idf_grid,
    }
    best, trials = coordinate_search(config, grids, quality)
    return replace(build_sknn(data, vocabulary, best, seq_len), tuning=tuple(trials))
