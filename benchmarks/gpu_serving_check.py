"""Serving's own session code on a GPU host: each policy's placement, the provider the session got, CUDA vs CPU parity.

    python benchmarks/gpu_serving_check.py --model next_action=PATH:pytorch --model purchase_propensity=PATH:xgboost \
        [--batch 1024] [--crossover 64] [--out reports/gpu/serving-check.json]

The unit tests cover the CPU fallback everywhere; this is the check for the other branch, where CUDA is real. It runs
on the bare GPU host like benchmarks/gpu.py (numpy, onnxruntime and serving.runtime/providers only, no pytest
conftest with pydantic): per model and policy (`cuda`, `auto` with the given batch and crossover, `cpu`), the
`Placement`, the provider ONNX Runtime actually gave, and the max abs difference of the outputs from a plain CPU
session on the same random batch. Exit 1 when a GPU-expected placement landed on the CPU or parity exceeds 1e-4.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

if __package__ in (None, ""):  # run as a file on the GPU host: the repo root's packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gpu import PARITY_TOLERANCE, make_inputs, max_abs_diff
from serving.runtime import ModelRuntime, nvidia_device_present, preload_cuda_libraries
from serving.runtime.providers import CPU, CUDA, POLICIES, place


def check(path: Path, framework: str, policy: str, batch: int, crossover: int) -> dict[str, Any]:
    gpu = nvidia_device_present()
    placement = place(policy, framework=framework, gpu_present=gpu, batch=batch, crossover=crossover)
    runtime = ModelRuntime.load(path, placement=placement)
    reference = ort.InferenceSession(str(path), providers=[CPU])
    feeds = make_inputs(reference, batch, np.random.default_rng(0))
    got = runtime.run(feeds)
    names = [o.name for o in reference.get_outputs()]
    diff = max_abs_diff(reference.run(names, feeds), [got[name] for name in names])
    ok = diff <= PARITY_TOLERANCE and (runtime.provider == CUDA or not placement.gpu_expected)
    return {"provider": runtime.provider, "placement": placement.describe(), "max_abs_diff_vs_cpu": diff, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH:FRAMEWORK")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--crossover", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("reports/gpu/serving-check.json"))
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"gpu_present": nvidia_device_present(), "cuda_libraries": preload_cuda_libraries()}
    for spec in args.model:
        name, _, rest = spec.partition("=")
        path, _, framework = rest.rpartition(":")
        if not name or not Path(path).is_file() or not framework:
            parser.error(f"--model wants NAME=PATH:FRAMEWORK of an existing file, got {spec!r}")  # exits 2
        for policy in POLICIES:
            row = check(Path(path), framework, policy, args.batch, args.crossover)
            results[f"{name}/{policy}"] = row
            print(
                f"{name:<20} {policy:<5} -> {row['provider']:<22} diff {row['max_abs_diff_vs_cpu']:.2e}  "
                f"{'ok' if row['ok'] else 'FAILED'}  ({row['placement']['reason']})"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"written to {args.out}")
    return 0 if all(r["ok"] for k, r in results.items() if "/" in k) else 1


if __name__ == "__main__":
    sys.exit(main())
