"""Which execution provider a model gets: the `auto|cuda|cpu` policy of `JOURNEY_EXECUTION_PROVIDER`.

Standard library only (like serving/runtime/ it must import on a bare GPU host with numpy and onnxruntime).

Why a policy and not "CUDA whenever there is a GPU": a GPU wins on throughput only from some batch size on. Below
it, the host-to-device copies and the kernel launches of a small graph cost more than the CPU's whole run (the GPU
benchmark, benchmarks/gpu.py, measures the batch from which CUDA serves more rows/s than the CPU: the crossover).
So `auto` places a model on CUDA only when the batches serving sends it reach that measured crossover:

- the purchase model behind adaptive batching gets batches of up to `batch_max_size` rows;
- everything scored in-process (the purchase model without batching, next action: one session per call) gets the
  rows of one request, which `auto` counts as 1: a shop's typical request, not the `max_candidates` bound.

Tree ensembles (the XGBoost export) have no CUDA kernels in ONNX Runtime: always CPU. `cuda` asks for CUDA wherever
the graph has kernels for it (and says "GPU expected", so the alert fires when the session still lands on the CPU);
`cpu` never asks. The choice and its reason are in `/readyz` (per model, `placement`) and in `journey_gpu_expected`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

CUDA: Final = "CUDAExecutionProvider"
CPU: Final = "CPUExecutionProvider"
POLICIES: Final = ("auto", "cuda", "cpu")
# exporters whose graphs have no CUDA kernel (ai.onnx.ml TreeEnsemble): a CUDA session runs them on the CPU anyway
# Graphs that gain nothing from (or cannot run) CUDA: tree ensembles have no CUDA kernel in ONNX Runtime; the
# next-item index graphs ("onnx": LabelEncoder, gathers and scatters over small tables) are ai.onnx.ml + lookups.
CPU_ONLY_FRAMEWORKS: Final = frozenset({"xgboost", "onnx"})


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a model should run and why; `gpu_expected` is what the "GPU expected, CPU in use" alert compares."""

    policy: str
    providers: tuple[str, ...]  # what to ask ONNX Runtime for, in order (CPU always last)
    gpu_expected: bool
    reason: str
    batch: int | None = None  # rows per model call serving sends (auto only)
    crossover: int | None = None  # measured CUDA-beats-CPU batch (auto only)

    def describe(self) -> dict[str, Any]:
        return asdict(self) | {"providers": list(self.providers)}


def place(
    policy: str,
    *,
    framework: str | None,
    gpu_present: bool,
    batch: int,
    crossover: int | None,
    crossover_problem: str = "",
) -> Placement:
    """The placement of one model under `policy` (see the module docstring for the rules)."""
    if policy not in POLICIES:
        raise ValueError(f"execution provider policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    cpu = (CPU,)
    if policy == "cpu":
        return Placement(policy, cpu, False, "policy cpu")
    if framework in CPU_ONLY_FRAMEWORKS:
        reason = f"{framework} graph (tree ensemble or index lookups): no CUDA kernels worth using in ONNX Runtime"
        return Placement(policy, cpu, False, reason)
    if policy == "cuda":
        if not gpu_present:
            # expected but impossible: the alert should tell the operator who asked for CUDA on this host
            return Placement(policy, cpu, True, "policy cuda, but this host exposes no NVIDIA GPU")
        return Placement(policy, (CUDA, CPU), True, "policy cuda")
    if not gpu_present:
        return Placement(policy, cpu, False, "no NVIDIA GPU on this host", batch, crossover)
    if crossover is None:
        why = crossover_problem or "the GPU benchmark measured no batch where CUDA beats the CPU"
        return Placement(policy, cpu, False, why, batch, crossover)
    if batch < crossover:
        why = f"batches of {batch} row(s) stay below the measured CUDA crossover of {crossover}"
        return Placement(policy, cpu, False, why, batch, crossover)
    return Placement(
        policy, (CUDA, CPU), True, f"batches of {batch} reach the CUDA crossover of {crossover}", batch, crossover
    )


def measured_crossover(report_path: Path, model: str) -> tuple[int | None, str]:
    """The crossover batch the GPU benchmark measured for `model` (its JSON report), or None and why not."""
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"no GPU benchmark report at {report_path} (run benchmarks/gpu.py on this host)"
    except (OSError, ValueError) as exc:
        log.warning("unreadable GPU benchmark report", extra={"path": str(report_path), "error": str(exc)})
        return None, f"unreadable GPU benchmark report {report_path}: {exc}"
    crossovers = report.get("crossover") if isinstance(report, Mapping) else None
    if not isinstance(crossovers, Mapping) or model not in crossovers:
        return None, f"the GPU benchmark report {report_path} has no crossover for {model}"
    value = crossovers[model]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, ""
    return None, f"the GPU benchmark found no batch where CUDA beats the CPU for {model}"
