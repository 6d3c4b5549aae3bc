"""ONNX Runtime sessions and the execution-provider policy.

This package imports numpy, onnxruntime, the standard library and `journey.onnx_contract` only (an import-linter
contract keeps it so), so `benchmarks/gpu.py` and serving's session code run on a bare GPU host.
"""

from serving.runtime.providers import CPU, CPU_ONLY_FRAMEWORKS, CUDA, Placement
from serving.runtime.session import (
    InputError,
    ModelLoadError,
    ModelRuntime,
    cuda_options,
    nvidia_device_present,
    preload_cuda_libraries,
    resolve_providers,
)

__all__ = [
    "CPU",
    "CPU_ONLY_FRAMEWORKS",
    "CUDA",
    "InputError",
    "ModelLoadError",
    "ModelRuntime",
    "Placement",
    "cuda_options",
    "nvidia_device_present",
    "preload_cuda_libraries",
    "resolve_providers",
]
