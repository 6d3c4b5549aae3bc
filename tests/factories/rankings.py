"""Checking an exported next-item graph against the kind's numpy/torch answer: one ONNX Runtime session, rows of a
given batch size, and "the same ranking" (scores within 1e-4, ids equal except inside a near-tie), as every
next-item kind's parity check defines it (training.export.recommender.ranking_diff)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np

TIE: Final = 1e-6  # scores closer than this may come in either order


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def rows_of(inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """`batch` rows of `inputs`, cycling through them."""
    take = np.arange(batch) % len(inputs["lengths"])
    return {name: np.ascontiguousarray(values[take]) for name, values in inputs.items()}


def assert_same_ranking(ids: np.ndarray, scores: np.ndarray, want_ids: np.ndarray, want_scores: np.ndarray) -> None:
    """Scores within 1e-4; ids equal wherever the wanted score is not within TIE of a neighbour's."""
    np.testing.assert_allclose(scores, want_scores, atol=1e-4)
    gap = np.abs(np.diff(want_scores.astype(np.float64), axis=1))
    tied = np.zeros(ids.shape, dtype=bool)
    tied[:, :-1] |= gap <= TIE
    tied[:, 1:] |= gap <= TIE
    tied[:, -1] = True
    assert not ((ids != want_ids) & ~tied).any()
