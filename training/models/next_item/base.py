"""What every next-item model kind shares: the data it is fitted on, the vocabulary, and the contract it keeps.

A next-item model of any kind, neural (GRU4Rec, SASRec) or a baseline kept as an index (popularity, last-item
Markov, item-to-item co-visitation, session-kNN), is a `Recommender`: fitted on a `SessionData`, it recommends
from the same inputs serving builds (`journey.model_inputs.next_item_inputs`: the session's last item ids and event
types, right-padded, with their lengths) and exports one self-contained ONNX graph with the same input and output
names (`journey.onnx_contract.NEXT_ITEM_INPUT_NAMES` / `NEXT_ITEM_OUTPUT_NAMES`), parity-checked against its own
`recommend`. So every kind is a version of the registry's `next_item` model: served by `/recommend` without a
change to serving, routable, A/B-tested and rolled back like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from journey.errors import InvalidInputError
from training.export import ExportReport

UNKNOWN_INDEX: Final = 0  # padding and every item outside the vocabulary
Inputs = dict[str, np.ndarray]  # item_ids int64 [n, T], event_types int64 [n, T], lengths int64 [n]


@dataclass(frozen=True)
class SessionData:
    """Training and validation examples of one split: inputs as serving builds them, the next item's id as label.

    Test rows are not here: a kind is fitted (and tunes, stops early, selects) on train and valid only.

    `train_sessions` says which training rows come from one shopping session (any hashable id per row, rows in
    time order as the split gives them): a session-based kind (session-kNN) fits on whole sessions, not on the
    overlapping prefixes one session makes. None: every row counts as a session of its own.
    """

    train: Inputs
    train_labels: np.ndarray  # int64 [n_train], raw item ids
    valid: Inputs
    valid_labels: np.ndarray  # int64 [n_valid]
    train_sessions: np.ndarray | None = None  # [n_train], the session id of each training row
    valid_sessions: np.ndarray | None = None  # [n_valid], of each validation row (selection resamples sessions)


class Recommender(Protocol):
    """A fitted next-item model of any kind (see the module docstring)."""

    @property
    def kind(self) -> str:
        """The kind's name: "popularity", "markov", "covisitation", "sknn", "gru4rec", "sasrec", ... (read-only: a
        frozen kind keeps it as a field, another as a plain attribute)."""
        ...

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Item ids int64 [n, k] (-1 where fewer than k items can be named) and scores float32 [n, k], best first:
        what the exported graph must reproduce."""
        ...

    def export(self, path: Path, holdout: Inputs, top_k: int) -> ExportReport:
        """Write the self-contained ONNX graph answering `top_k` items per row; refused unless it matches
        `recommend` on `holdout` (ids, and scores within 1e-4; ties may swap)."""
        ...

    def params(self) -> dict[str, Any]:
        """What the registry keeps to describe (and refit) this version; `kind` and `vocabulary_size` (the items it
        can name: a graph answers at most that many per row) included."""
        ...


@runtime_checkable
class LearningCurves(Protocol):
    """What a kind fitted by epochs (the neural ones) adds: its losses per evaluation, for the run's report."""

    def curves(self) -> dict[str, list[float]]:
        """{"train_loss": [...], "valid_loss": [...], ...}: TrainingRun.history."""
        ...


@dataclass(frozen=True)
class Vocabulary:
    """The model's items, most frequent first: item `ids[i]` has index i + 1 (0 is padding / unknown)."""

    ids: np.ndarray  # int64 [V]

    @classmethod
    def build(cls, inputs: Inputs, labels: np.ndarray, max_items: int) -> Vocabulary:
        """The training split's items (as inputs and as labels), by count, ties by id; at most `max_items`."""
        if max_items < 1:
            raise InvalidInputError("max_items must be >= 1", field="max_items", value=max_items)
        valid = np.arange(inputs["item_ids"].shape[1])[None, :] < inputs["lengths"][:, None]
        seen = np.concatenate([inputs["item_ids"][valid], labels])
        ids, counts = np.unique(seen, return_counts=True)
        order = np.lexsort((ids, -counts))[:max_items]
        return cls(ids[order].astype(np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, item_ids: np.ndarray) -> np.ndarray:
        """Indices of raw item ids (what the graph's LabelEncoder computes): 0 for an id outside the vocabulary."""
        sort = np.argsort(self.ids, kind="stable")
        ordered = self.ids[sort]
        flat = np.asarray(item_ids, dtype=np.int64)
        pos = np.clip(np.searchsorted(ordered, flat), 0, max(len(ordered) - 1, 0))
        hit = ordered[pos] == flat if len(ordered) else np.zeros(flat.shape, dtype=bool)
        return np.where(hit, sort[pos] + 1, UNKNOWN_INDEX).astype(np.int64)

    def table(self) -> np.ndarray:
        """Index -> item id, index 0 included (id 0: masked, never recommended)."""
        return np.concatenate([[0], self.ids]).astype(np.int64)


def pad_columns(ids: np.ndarray, k: int) -> np.ndarray:
    """[n, k]: a list shorter than `k` leaves the last places empty (-1, never a hit)."""
    return np.pad(ids, ((0, 0), (0, max(k - ids.shape[1], 0))), constant_values=-1)[:, :k]
