"""ONNX Runtime sessions and the execution-provider policy.

This package imports numpy, onnxruntime, the standard library and `journey.onnx_contract` only (an import-linter
contract keeps it so), so `benchmarks/gpu.py` and serving's session code run on a bare GPU host.
"""

from serving.runtime.cuda import cuda_options, nvidia_device_present, preload_cuda_libraries, resolve_providers
from serving.runtime.metadata import ModelLoadError, ModelMetadata
from serving.runtime.providers import CPU, CPU_ONLY_FRAMEWORKS, CUDA, Placement
from serving.runtime.session import ModelRuntime
from serving.runtime.tensors import InputError, TensorSpec

__all__ = [
    "CPU",
    "CPU_ONLY_FRAMEWORKS",
    "CUDA",
    "InputError",
    "ModelLoadError",
    "ModelMetadata",
    "ModelRuntime",
    "Placement",
    "TensorSpec",
    "cuda_options",
    "nvidia_device_present",
    "preload_cuda_libraries",
    "resolve_providers",
]
