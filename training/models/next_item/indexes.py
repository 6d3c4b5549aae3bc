"""The numpy half of the index kinds (popularity, Markov, co-visitation, session-kNN): their tables and the steps of
their `recommend`, each the mirror of one block of `graphs.py`, so a kind's numpy answer and its ONNX graph compute
the same float32 values op for op.

    fitted_on(data, max_items)     the vocabulary and the session length (T) of a kind fitted on `data`
    encode(vocabulary, inputs)     item ids -> vocabulary indices [n, T], 0 for padding, unknown items and the steps
                                   after `lengths` (the graph's LabelEncoder + Where)
    decay_table(decay, seq_len)    [T + 1, T]: the weight of step j in a session of length L (Gather by `lengths`)
    Csr                            a ragged table (item -> followers, item -> sessions, session -> items) as flat
                                   arrays, read `width` entries per row (Gather of offsets, then of the entries)
    scatter_add(targets, values)   [n, size] sums (ScatterElements reduction="add")
    band(scores, prior)            the kind's own items above the popular items that fill the list
    top_k(scores, k)               ONNX TopK's order: best first, a tie to the lower index

Why exact arithmetic matters here: a graph that makes a discrete choice (session-kNN picks its neighbours by
similarity) must make the same choice as `recommend`, or the two disagree by whole items, not by rounding. Weights
that decide such a choice are multiples of 2^-10 (`QUANTUM`): their sums are exact in float32 in any order, so
ScatterElements and numpy tie in the same places. Scores that only rank the final list may differ by rounding:
the parity check lets near-ties (within 1e-6) swap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from training.models.next_item.base import UNKNOWN_INDEX, Inputs, SessionData, Vocabulary

Decay = Literal["linear", "harmonic", "div", "same"]
DECAYS: Final[tuple[str, ...]] = ("linear", "harmonic", "div", "same")
QUANTUM: Final = 1.0 / 1024  # weights that decide a discrete choice are multiples of this (exact sums in float32)
BAND: Final = np.float32(0.5)  # own scores in (0.5, 1], popular fill-ins in [0, 0.5)
SCORE_CELLS: Final = 1 << 24  # rows x columns of one chunk's dense score matrix (64 MiB of float32)


def fitted_on(data: SessionData, max_items: int) -> tuple[Vocabulary, int]:
    """The vocabulary an index kind is fitted with (the training split's `max_items` most frequent items) and the
    session length its graph takes (the inputs' T)."""
    return Vocabulary.build(data.train, data.train_labels, max_items), int(data.train["item_ids"].shape[1])


def valid_steps(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """bool [n, T]: the step holds one of the row's events (right padding after `lengths`)."""
    return np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]


def encode(vocabulary: Vocabulary, inputs: Inputs) -> np.ndarray:
    """int64 [n, T] vocabulary indices of the valid steps; 0 for padding and for items outside the vocabulary."""
    items = inputs["item_ids"]
    return np.where(valid_steps(inputs["lengths"], items.shape[1]), vocabulary.index(items), UNKNOWN_INDEX)


def last_index(index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64 [n, 1]: the newest step's index (0 for an empty session: its step 0 is padding, hence 0)."""
    return np.take_along_axis(index, np.maximum(np.asarray(lengths) - 1, 0)[:, None], axis=1)


def decay_table(decay: Decay, seq_len: int, *, quantize: bool = False) -> np.ndarray:
    """float32 [T + 1, T]: row L holds the weight of steps 0..L-1 of a session with L steps (0 after them).

    With i = j + 1 the step's position (1 = oldest) and L the session's length, as in session-rec's V-SKNN:
    linear 1 - 0.1 (L - i), floored at 0 (the newest item 1, ten steps back 0); harmonic 1 / (L - i + 1) (the newest
    1, then 1/2, 1/3, ...); div i / L; same 1. `quantize` rounds to multiples of QUANTUM (see the module docstring).
    """
    if decay not in DECAYS:
        raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
    length = np.arange(seq_len + 1, dtype=np.float64)[:, None]
    position = np.arange(1, seq_len + 1, dtype=np.float64)[None, :]
    back = length - position  # 0 for the newest step
    weights = {
        "linear": np.maximum(1.0 - 0.1 * back, 0.0),
        "harmonic": 1.0 / np.maximum(back + 1.0, 1.0),
        "div": position / np.maximum(length, 1.0),
        "same": np.ones_like(back),
    }[decay]
    if quantize:
        weights = np.round(weights / QUANTUM) * QUANTUM
    return np.where(back >= 0, weights, 0.0).astype(np.float32)


def step_weights(table: np.ndarray, index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """float32 [n, T]: each step's weight from `table` by the row's length, 0 for padding and unknown items."""
    weights: np.ndarray = table[np.asarray(lengths)] * (index > UNKNOWN_INDEX).astype(np.float32)
    return weights


def repeated_later(index: np.ndarray) -> np.ndarray:
    """bool [n, T]: the step's (known) item occurs again at a later step of the row (only its newest step counts)."""
    later = np.triu(np.ones((index.shape[1],) * 2, dtype=bool), k=1)  # [j, j'] with j' > j
    same = index[:, :, None] == index[:, None, :]
    again: np.ndarray = (same & later[None] & (index > UNKNOWN_INDEX)[:, None, :]).any(axis=2)
    return again


def label_shares(vocabulary: Vocabulary, labels: np.ndarray) -> np.ndarray:
    """float32 [V + 1]: each item's share of the training split's next items; index 0 gets -1 (never recommended:
    it stays below every item's score in every kind)."""
    index = vocabulary.index(labels)
    counts = np.bincount(index, minlength=len(vocabulary) + 1).astype(np.float64)
    counts[UNKNOWN_INDEX] = 0.0
    shares: np.ndarray = (counts / max(counts.sum(), 1.0)).astype(np.float32)
    shares[UNKNOWN_INDEX] = -1.0
    return shares


@dataclass(frozen=True)
class Csr:
    """A ragged table: row r's entries are `targets[offsets[r]:offsets[r + 1]]` (and `values`), best first.

    The flat arrays end with one dummy entry (target 0, value 0), so reading a row never indexes an empty array;
    `width` is the most entries a row holds: what the graph reads per row (shorter rows are masked). A table whose
    entries carry no value (session-kNN's) has `values` None: nothing to store, nothing to read.
    """

    offsets: np.ndarray  # int64 [rows + 1]
    targets: np.ndarray  # int32 [entries + 1]
    values: np.ndarray | None  # float32 [entries + 1]
    width: int

    @classmethod
    def build(
        cls,
        rows: np.ndarray,
        targets: np.ndarray,
        values: np.ndarray | None,
        order: np.ndarray,
        n_rows: int,
        cap: int,
    ) -> Csr:
        """Entries (row, target, value) kept, per row, the `cap` with the highest `order` (ties: lower target)."""
        rows, targets = np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        sort = np.lexsort((targets, -np.asarray(order, dtype=np.float64), rows))
        rows, targets = rows[sort], targets[sort]
        starts = np.searchsorted(rows, rows, side="left")
        keep = np.arange(len(rows)) - starts < cap
        rows, targets = rows[keep], targets[keep]
        counts = np.bincount(rows, minlength=n_rows)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kept = None if values is None else np.append(np.asarray(values, dtype=np.float32)[sort][keep], 0)
        return cls(
            offsets,
            np.append(targets, 0).astype(np.int32),
            None if kept is None else kept.astype(np.float32),
            max(int(counts.max(initial=0)), 1),
        )

    @property
    def entries(self) -> int:
        return len(self.targets) - 1

    @property
    def nbytes(self) -> int:
        values = 0 if self.values is None else self.values.nbytes
        return int(self.offsets.nbytes + self.targets.nbytes + values)

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Targets int64, values float32 (None without) and a mask, each [*rows.shape, width]: masked places hold
        0 and 0."""
        start = self.offsets[rows]
        count = self.offsets[rows + 1] - start
        ok = np.arange(self.width) < count[..., None]
        place = np.where(ok, start[..., None] + np.arange(self.width), 0)
        targets = np.where(ok, self.targets[place].astype(np.int64), 0)
        values = None if self.values is None else np.where(ok, self.values[place], np.float32(0))
        return targets, values, ok

    def expand(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The entries of `rows` (int64 [m]) as flat arrays: for each entry, its position in `rows` and its target
        (int64), rows in order, each row's entries best first. What `gather` holds at its unmasked places, without
        the padding: the way to read wide tables (session-kNN's posting lists) for many rows at once."""
        start = self.offsets[rows]
        count = self.offsets[rows + 1] - start
        owner = np.repeat(np.arange(len(rows)), count)
        place = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) + start[owner]
        return owner, self.targets[place].astype(np.int64)

    def weights(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`gather` of a table whose entries carry values (the type checker's view of it)."""
        targets, values, ok = self.gather(rows)
        if values is None:
            raise ValueError("this table's entries carry no values")
        return targets, values, ok


def scatter_add(targets: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """float32 [n, size]: row r's `values` summed at its `targets` (ScatterElements with reduction="add")."""
    n = len(targets)
    flat = (np.arange(n)[:, None] * size + targets).ravel()
    sums = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=n * size)
    return sums.reshape(n, size).astype(np.float32)


def band(scores: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """float32 [n, V + 1]: an item the kind scored gets score x (0.5 / the row's best score) + 0.5, in (0.5, 1];
    any other item 0.5 x its share of the training next items, in [0, 0.5): the popular items fill the list below.
    (The graph computes the same float32 operations, at the scored items only: graphs.band.)"""
    top = np.maximum(scores.max(axis=1, keepdims=True), np.float32(1e-30))
    own = scores * (BAND / top) + BAND
    result: np.ndarray = np.where(scores > 0, own, BAND * prior[None, :]).astype(np.float32)
    return result


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best columns per row and their scores, in ONNX TopK's order: best first, a tie to the lower column."""
    n, m = scores.shape
    if k >= m:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order, np.take_along_axis(scores, order, axis=1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    above, tied = scores > kth, scores == kth
    need = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= need))
    columns = np.nonzero(chosen)[1].reshape(n, k)  # ascending per row
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def chunks(rows: int, columns: int) -> Iterator[slice]:
    """Row slices whose [rows, columns] float32 matrices stay under SCORE_CELLS cells."""
    step = max(1, min(4096, SCORE_CELLS // max(columns, 1)))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def ranked(
    vocabulary: Vocabulary, inputs: Inputs, k: int, score: Callable[[Inputs], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Item ids int64 [n, k] and scores float32 [n, k] from a kind's `score` (inputs -> [n, V + 1]), by chunks;
    past the vocabulary's V items the places stay empty (id -1, score 0)."""
    n, size = len(inputs["lengths"]), len(vocabulary) + 1
    named = min(k, len(vocabulary))
    table = vocabulary.table()
    ids, values = np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)
    for part in chunks(n, size):
        top, best = top_k(score({name: array[part] for name, array in inputs.items()}), named)
        ids[part, :named], values[part, :named] = table[top], best
    return ids, values
