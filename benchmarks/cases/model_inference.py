"""Model inference: ONNX Runtime (CPU provider) vs the native framework, at batch 1, 64 and 1024.

Models have the production shapes (XGBoost: the propensity model's feature count, tree count and depth; PyTorch:
the next-action GRU with its default config) but are fitted on random data: speed depends on the shape, not on
what was learnt. Every export goes through `training/export.py`, parity check included, so the ONNX file timed is
the one the registry would accept. Native and ORT calls are interleaved per batch size, and the ratio is
ORT / native (< 1: ONNX Runtime is faster). The propensity graph is also timed with 2 intra-op threads against
the 1 that serving sets: on 2 cores shared with the HTTP worker a second thread only pays off for large batches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Case, Result, interleaved, with_ratio

CASE_NAME = "model_inference"
BATCHES = (1, 64, 1024)
PROPENSITY_FEATURES = 49
PROPENSITY_TREES = 150
PROPENSITY_DEPTH = 5


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _xgboost(directory: Path, rng: np.random.Generator) -> tuple[Callable[[int], object], Callable[[int], object]]:
    from xgboost import XGBClassifier

    from training.export import export_xgboost

    x = rng.standard_normal((20_000, PROPENSITY_FEATURES)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.standard_normal(len(x)) > 1.0).astype(np.int64)
    model = XGBClassifier(n_estimators=PROPENSITY_TREES, max_depth=PROPENSITY_DEPTH, n_jobs=2, random_state=0)
    model.fit(x, y)
    report = export_xgboost(model, [f"c{i}" for i in range(x.shape[1])], x[:2048], directory / "xgb.onnx")
    session = _ort_session(report.path, threads=2)
    batches = {b: x[:b] for b in BATCHES}
    return (lambda b: model.predict_proba(batches[b])), (lambda b: session.run(None, {"features": batches[b]}))


def _torch_inputs(spec: Any, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    from journey.model_inputs import STEP_FEATURES

    lengths = rng.integers(1, spec.seq_len + 1, rows)
    valid = np.arange(spec.seq_len)[None, :] < lengths[:, None]
    return {
        "event_types": np.where(valid, rng.integers(1, spec.type_vocab_size, (rows, spec.seq_len)), 0),
        "item_buckets": np.where(valid, rng.integers(1, spec.item_buckets + 1, (rows, spec.seq_len)), 0),
        "category_buckets": np.where(valid, rng.integers(1, spec.category_buckets + 1, (rows, spec.seq_len)), 0),
        "step_features": (rng.random((rows, spec.seq_len, len(STEP_FEATURES))) * valid[..., None]).astype(np.float32),
        "lengths": lengths.astype(np.int64),
        "dense": rng.standard_normal((rows, len(spec.dense_features))).astype(np.float32),
    }


def _torch(directory: Path, rng: np.random.Generator) -> tuple[Callable[[int], object], Callable[[int], object]]:
    import torch

    from journey.onnx_contract import NEXT_ACTION_INPUT_NAMES, NEXT_ACTION_OUTPUT_NAME
    from training.export import export_torch
    from training.models.next_action import NextActionConfig, NextActionNet

    torch.manual_seed(0)
    torch.set_num_threads(2)
    config = NextActionConfig()
    spec = config.input_spec()
    width = len(spec.dense_features)
    module = NextActionNet(spec, config, np.zeros(width), np.ones(width)).eval()
    inputs = _torch_inputs(spec, max(BATCHES), rng)
    example = {name: torch.from_numpy(inputs[name][:8]) for name in NEXT_ACTION_INPUT_NAMES}
    report = export_torch(module, example, inputs, directory / "gru.onnx", output_names=[NEXT_ACTION_OUTPUT_NAME])
    session = _ort_session(report.path, threads=2)
    native = {b: tuple(torch.from_numpy(inputs[n][:b]) for n in NEXT_ACTION_INPUT_NAMES) for b in BATCHES}
    feeds = {b: {n: inputs[n][:b] for n in NEXT_ACTION_INPUT_NAMES} for b in BATCHES}

    def torch_eval(b: int) -> object:
        with torch.inference_mode():
            return module(*native[b])

    return torch_eval, (lambda b: session.run(None, feeds[b]))


def _measure(
    model: str, native_name: str, pair: tuple[Callable[[int], object], Callable[[int], object]], quick: bool
) -> list[Result]:
    native, ort = pair
    results: list[Result] = []
    for batch in BATCHES:
        repetitions = (30 if quick else 200) if batch < 1024 else (10 if quick else 50)
        fns: dict[str, Callable[[], object]] = {"native": partial(native, batch), "ort": partial(ort, batch)}
        timings = interleaved(fns, repetitions, warmup=5)
        base = Result(CASE_NAME, f"{model} {native_name}, batch {batch}", timings["native"], rows=batch)
        candidate = Result(CASE_NAME, f"{model} ONNX Runtime CPU, batch {batch}", timings["ort"], rows=batch)
        results += [base, with_ratio(candidate, base)]
    return results


def _threads(path: Path, quick: bool) -> list[Result]:
    """ORT intra-op threads 2 vs 1 (serving's JOURNEY_ORT_INTRA_OP_THREADS) on the propensity graph, at the batch
    sizes serving sends it: one candidate, a 100-candidate request, a full batcher batch."""
    rng = np.random.default_rng(1)
    sessions = {threads: _ort_session(path, threads) for threads in (1, 2)}
    results: list[Result] = []
    for batch in (1, 100, 1024):
        feeds = {"features": rng.standard_normal((batch, PROPENSITY_FEATURES)).astype(np.float32)}
        repetitions = (30 if quick else 200) if batch < 1024 else (10 if quick else 50)
        timings = interleaved(
            {str(t): partial(session.run, None, feeds) for t, session in sessions.items()}, repetitions, warmup=5
        )
        base = Result(CASE_NAME, f"xgboost ORT CPU 1 intra-op thread, batch {batch}", timings["1"], rows=batch)
        two = Result(CASE_NAME, f"xgboost ORT CPU 2 intra-op threads, batch {batch}", timings["2"], rows=batch)
        results += [base, with_ratio(two, base)]
    return results


def run(quick: bool) -> list[Result]:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="journey-bench-models-") as tmp:
        directory = Path(tmp)
        results = _measure("xgboost", "predict_proba", _xgboost(directory, rng), quick)
        results += _threads(directory / "xgb.onnx", quick)
        results += _measure("next-action GRU", "torch eval", _torch(directory, rng), quick)
    return results


CASE = Case(CASE_NAME, "ONNX Runtime CPU vs native predict (XGBoost, torch GRU) at batch 1/64/1024", run)
