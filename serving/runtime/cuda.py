"""Which execution providers to ask ONNX Runtime for on this host, and opening a session with them.

onnxruntime-gpu lists `CUDAExecutionProvider` as available even on a host without CUDA libraries and then silently
builds a CPU session (STACK-NOTES): the session module reads the provider back; here the request is made sensible
(no CUDA without an NVIDIA device, CUDA/cuDNN preloaded from NVIDIA's pip packages, TF32 off).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import onnxruntime as ort

from serving.runtime.metadata import ModelLoadError
from serving.runtime.providers import CPU, CUDA

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS: Final = (CUDA, CPU)


def nvidia_device_present() -> bool:
    """Whether this host exposes an NVIDIA GPU to the process (driver device nodes or procfs entry)."""
    return any(Path(p).exists() for p in ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version"))


def resolve_providers(requested: Sequence[str] | None = None) -> list[str]:
    """The providers to ask ONNX Runtime for: `requested` (default CUDA, CPU) minus those this build lacks, CPU last.

    A provider the build does not have is dropped with a warning rather than an error, so one configuration serves
    GPU and CPU hosts; CPU is always appended because it is the one that runs every operator.
    """
    available = set(ort.get_available_providers())
    if requested is None and CUDA in available and not nvidia_device_present():
        # the onnxruntime-gpu wheel lists CUDA on every host; asking for it without a GPU only buys a failed
        # library load and two error lines per model load
        available.discard(CUDA)
    wanted = list(DEFAULT_PROVIDERS if requested is None else requested)
    unavailable = [p for p in wanted if p not in available]
    if unavailable and requested is not None:
        log.warning(
            "execution providers not in this onnxruntime build, skipped",
            extra={"requested_providers": wanted, "unavailable_providers": unavailable, "available": sorted(available)},
        )
    chosen = [p for p in dict.fromkeys(wanted) if p in available and p != CPU]
    return [*chosen, CPU]


@functools.cache
def preload_cuda_libraries() -> str:
    """Load CUDA and cuDNN from the NVIDIA pip packages (`onnxruntime.preload_dlls`, ORT >= 1.21), once per process.

    Where CUDA comes from pip wheels (`onnxruntime-gpu[cuda,cudnn]`, or torch's `nvidia-*` packages) rather than the
    system's library path, the CUDA provider otherwise fails to open (`libcublasLt.so.13: cannot open shared object
    file`) and the model silently lands on the CPU. Returns what happened, for logs and reports; an older ORT or a
    host without those packages is not an error: the system library path may still serve."""
    if CUDA not in ort.get_available_providers() or not nvidia_device_present():
        return "not needed: no CUDA provider in this onnxruntime build, or no NVIDIA GPU"
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return f"onnxruntime {ort.__version__} has no preload_dlls: the system library path is used"
    try:
        preload()
    except (OSError, RuntimeError) as exc:
        outcome = f"preload_dlls failed ({str(exc).splitlines()[0][:160]}): the system library path is used"
        log.warning("CUDA libraries not preloaded", extra={"reason": outcome})
        return outcome
    return "preload_dlls ran (CUDA and cuDNN from the NVIDIA pip packages where installed; it prints what it missed)"


def cuda_options(*, tf32: bool = False) -> dict[str, str]:
    """CUDA provider options for serving: TF32 off unless asked.

    ONNX Runtime's CUDA provider runs float32 matmuls and convolutions in TF32 by default (10-bit mantissa). On an
    H200 that put the next-action GRU 7e-4 away from the CPU's output (reports/gpu), past the 1e-4 the export's
    parity check promised for the registered artifact; with TF32 off the two agree, at a cost benchmarks/gpu.py
    measures (`--tf32`)."""
    return {"use_tf32": "1" if tf32 else "0"}


def open_session(path: Path, providers: list[str], intra: int, inter: int) -> ort.InferenceSession:
    if CUDA in providers:
        preload_cuda_libraries()
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    with_options = [(p, cuda_options()) if p == CUDA else p for p in providers]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=with_options)
    except Exception as exc:  # ORT's errors are plain Exception subclasses (Fail, NoSuchFile, InvalidProtobuf...)
        raise ModelLoadError(f"ONNX Runtime cannot load it: {exc}", path=path) from exc
