"""Stable hashing of ids into embedding buckets.

Hashing is a fixed arithmetic mix (splitmix64's output, the id as its state), never Python's `hash()`: the buckets
must be the same in every process, on every host, for the model's whole life.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stable_hash(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """splitmix64's output for each int64 id (as uint64): well mixed, and the same everywhere forever."""
    z = np.ascontiguousarray(ids, dtype=np.int64).view(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)  # uint64 arrays wrap around silently: the arithmetic is mod 2**64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed: np.ndarray = z ^ (z >> np.uint64(31))
    return mixed


def hash_buckets(ids: np.ndarray | Sequence[int], buckets: int) -> np.ndarray:
    """Bucket 1..`buckets` of each id (0 is left for padding), int64."""
    result: np.ndarray = (stable_hash(ids) % np.uint64(buckets)).astype(np.int64) + 1
    return result
