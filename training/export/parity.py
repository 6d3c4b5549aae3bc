"""The parity check every export passes before its file is kept: ONNX Runtime against the native model.

Why on every export: a converted graph can run and still be wrong (float32 thresholds moving samples across tree
splits, an op lowered differently, a batch axis frozen at the example's size). The written file runs with ONNX
Runtime's CPU provider on the held-out batch and on batch sizes 1, 7 and 1024 (the held-out rows tiled or sliced),
and every output is compared with the native model's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from journey.errors import InvalidInputError

PARITY_BATCH_SIZES: tuple[int, ...] = (1, 7, 1024)
ORT_PROVIDERS = ["CPUExecutionProvider"]  # tree ensembles have no CUDA kernel; parity is checked where it will run

NativeFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
CompareFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float]


def check_parity(
    path: Path,
    native: NativeFn,
    holdout: Mapping[str, np.ndarray],
    *,
    tolerance: float,
    compare: CompareFn | None = None,
) -> dict[int, float]:
    """Max abs diff between ONNX Runtime on `path` and `native`, per batch size; raise above `tolerance`.

    Batch sizes: the held-out batch as given, then 1, 7 and 1024 (held-out rows sliced or tiled). Outputs are
    compared in graph order with `native`'s list (by `compare`, default the max abs diff over every output); a shape
    mismatch or a NaN on one side only counts as infinite.
    """
    compare = compare or max_abs_diff
    import onnxruntime as ort  # a heavy import (CUDA provider probing): only when an export is checked

    session = ort.InferenceSession(str(path), providers=ORT_PROVIDERS)
    rows = {len(v) for v in holdout.values()}
    if len(rows) != 1 or 0 in rows:
        raise InvalidInputError(
            f"holdout inputs must share one non-empty batch size, got {sorted(rows)}", field="holdout"
        )
    diffs: dict[int, float] = {}
    for batch in (rows.pop(), *PARITY_BATCH_SIZES):
        feeds = {name: resize_rows(values, batch) for name, values in holdout.items()}
        got = session.run(None, feeds)
        want = native(feeds)
        diff = compare(got, want)
        diffs[batch] = diff
        if not diff <= tolerance:
            raise InvalidInputError(
                f"ONNX export refused: max abs diff {diff:.3g} > tolerance {tolerance:g} at batch {batch}",
                field="parity",
                value=diff,
            )
    return diffs


def resize_rows(values: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows of `values`: a slice when it has enough, the rows repeated in order when not."""
    if len(values) >= batch:
        return np.ascontiguousarray(values[:batch])
    return np.ascontiguousarray(np.take(values, np.arange(batch) % len(values), axis=0))


def max_abs_diff(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        a = np.asarray(g, dtype=np.float64)
        b = np.asarray(w, dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        if a.size == 0:
            continue
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0
        worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    return worst
