"""The next-item kinds a protocol evaluates: every kind of the registry (training/models/next_item/kinds.py).

    KINDS["sknn"].fit(data, seed) -> a fitted Recommender: .kind, .recommend(inputs, k) -> (item ids [n, k], scores)
    KINDS["sknn"].baseline        -> whether the acceptance compares the other kinds with it (the index kinds)

A kind is anything whose fitted object has `kind` and `recommend` (the `Recommender` contract of base.py, without
export), so a protocol can also be handed a stand-in (the tests' oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from training.models.next_item import KINDS as NEXT_ITEM_KINDS
from training.models.next_item.base import Inputs, SessionData


class Ranker(Protocol):
    """What a protocol needs of a fitted next-item model (every `Recommender` is one)."""

    @property
    def kind(self) -> str: ...

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class Kind:
    fit: Callable[[SessionData, int], Ranker]  # (training and validation prefixes, seed) -> fitted
    baseline: bool  # the acceptance compares every other kind with the best of these


KINDS: Final[dict[str, Kind]] = {name: Kind(kind.fit, kind.baseline) for name, kind in NEXT_ITEM_KINDS.items()}
