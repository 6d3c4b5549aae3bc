"""ONNX Runtime sessions for serving: the provider really in use, the `journey.*` contract, and checked inputs.

    ModelRuntime.load(path, providers=None, ...)  one InferenceSession (CUDA first when ORT has it, CPU last), warmed
    runtime.run(feeds)                            named arrays in, named arrays out; bad input -> InputError (422)
    runtime.describe()                            what `/readyz` reports: path, provider(s), inputs/outputs, parity

Why the runtime package imports only numpy, onnxruntime, the standard library and `journey.onnx_contract`: a GPU
host runs the model server from a bare image (onnxruntime-gpu, no Feast, BentoML, pydantic or torch), so nothing here
may reach the rest of Journey (an import-linter contract keeps it so).

Why the provider is read back from the session: onnxruntime-gpu lists `CUDAExecutionProvider` as available even on a
host without CUDA libraries and then silently builds a CPU session (STACK-NOTES). The provider that ONNX Runtime
actually registered is what `/readyz` and the `journey_execution_provider` metric report, and a fall-back is logged as
a warning. Tree ensembles (XGBoost) have no CUDA kernel: with default providers they get a CPU-only session, so the
report never claims a GPU that the model does not use. Inputs are checked before `session.run`
(serving.runtime.tensors says why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort

from serving.runtime import cuda
from serving.runtime.metadata import ModelLoadError, ModelMetadata
from serving.runtime.providers import CPU, CPU_ONLY_FRAMEWORKS, Placement
from serving.runtime.tensors import TensorSpec, check_feeds, zeros

log = logging.getLogger(__name__)

# CPU_ONLY_FRAMEWORKS (serving.runtime.providers): graphs without a CUDA kernel (TreeEnsemble). A CUDA session would
# run them on the CPU anyway while reporting CUDA, so with default providers they get a CPU session.
WARMUP_BATCHES: Final = (1, 8)


class ModelRuntime:
    """One loaded model: an ONNX Runtime session plus the contract it was exported with; safe to share by threads.

    Build it with `ModelRuntime.load`. Nothing changes after loading (ONNX Runtime's `run` is thread-safe), so one
    runtime serves every request of a worker concurrently.
    """

    def __init__(
        self,
        path: Path,
        session: ort.InferenceSession,
        metadata: ModelMetadata,
        *,
        requested_providers: Sequence[str],
        intra_op_threads: int,
        inter_op_threads: int,
    ) -> None:
        self._path = path
        self._session = session
        self._metadata = metadata
        self._requested = tuple(requested_providers)
        self._providers: tuple[str, ...] = tuple(session.get_providers())
        self._inputs = tuple(TensorSpec.from_node(node) for node in session.get_inputs())
        self._outputs = tuple(TensorSpec.from_node(node) for node in session.get_outputs())
        self._input_names = tuple(i.name for i in self._inputs)
        self._output_names = [o.name for o in self._outputs]
        self._fixed_axes = tuple(
            tuple((axis, d) for axis, d in enumerate(spec.shape) if isinstance(d, int)) for spec in self._inputs
        )
        self._threads = (intra_op_threads, inter_op_threads)
        self.placement: Placement | None = None  # set by `load` when the provider policy decided
        for spec in self._inputs:
            if spec.dtype is None:
                raise ModelLoadError(f"input {spec.name!r} has type {spec.onnx_type}, not a tensor", path=path)
        if metadata.input_names and metadata.input_names != self._input_names:
            raise ModelLoadError(
                f"metadata input names {list(metadata.input_names)} differ from the graph's {list(self._input_names)}",
                path=path,
            )
        if metadata.output_names and list(metadata.output_names) != self._output_names:
            raise ModelLoadError(
                f"metadata output names {list(metadata.output_names)} differ from the graph's {self._output_names}",
                path=path,
            )

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        warmup: bool = True,
        require_metadata: bool = True,
        placement: Placement | None = None,
    ) -> ModelRuntime:
        """Open `path` (read by ONNX Runtime from disk, never through Python bytes), check its contract, warm it up.

        Args:
            path: the `.onnx` file (self-contained, as training.export writes it).
            providers: execution providers in order of preference; None = CUDA when this onnxruntime build has it,
                then CPU (tree models: CPU only). CPU is always appended last.
            intra_op_threads: threads inside one operator; 0 = ONNX Runtime's default (one per physical core), which
                oversubscribes a host running several workers: the service passes its settings' value.
            inter_op_threads: threads across independent operators (only used in parallel execution mode).
            warmup: run batches of zeros once, so the first request does not pay for allocations and kernel setup.
            require_metadata: refuse a file without the `journey.*` contract (an ONNX file that skipped the export's
                parity check); False serves any graph, e.g. in benchmarks.
            placement: the provider policy's decision (serving.runtime.providers.place): its providers are asked for
                unless `providers` is given, and `describe()` reports it.

        Raises:
            ModelLoadError: unreadable file, missing/contradicting metadata, non-tensor input, or failed warm-up.
        """
        path = Path(path)
        if intra_op_threads < 0 or inter_op_threads < 0:
            raise ValueError(f"thread counts must be >= 0, got {intra_op_threads} and {inter_op_threads}")
        if not path.is_file():
            raise ModelLoadError("no model file here", path=path)
        started = time.perf_counter()
        if providers is None and placement is not None:
            providers = placement.providers
        threads = (intra_op_threads, inter_op_threads)
        session, metadata, requested = _open_checked(path, providers, threads, require_metadata)
        runtime = cls(
            path,
            session,
            metadata,
            requested_providers=requested,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
        )
        runtime.placement = placement
        runtime._loaded(warmup, started)
        return runtime

    def _loaded(self, warmup: bool, started: float) -> None:
        """Say when ONNX Runtime fell back from the preferred provider, warm up, log the load."""
        if self.provider != self._requested[0]:
            log.warning(
                "ONNX Runtime fell back from the preferred execution provider",
                extra={
                    "model_path": str(self._path),
                    "requested_providers": list(self._requested),
                    "provider": self.provider,
                },
            )
        if warmup:
            try:
                self.warmup()
            except Exception as exc:  # whatever stops zeros from running would stop requests too
                raise ModelLoadError(f"warm-up failed: {exc}", path=self._path) from exc
        log.info(
            "model loaded",
            extra={
                "model_path": str(self._path),
                "provider": self.provider,
                "framework": self._metadata.framework,
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )

    @property
    def path(self) -> Path:
        return self._path

    @property
    def provider(self) -> str:
        """The execution provider ONNX Runtime registered first, i.e. the one running (most of) the graph."""
        return self._providers[0]

    @property
    def providers(self) -> tuple[str, ...]:
        """Every provider the session registered, in priority order."""
        return self._providers

    @property
    def requested_providers(self) -> tuple[str, ...]:
        return self._requested

    @property
    def metadata(self) -> ModelMetadata:
        return self._metadata

    @property
    def feature_order(self) -> tuple[str, ...]:
        """Column order of the feature matrix the model was trained on (serving builds rows in this order)."""
        return self._metadata.feature_order

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self._output_names)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every output by name for `feeds` (one array per graph input, batch on axis 0).

        Raises:
            InputError: a missing or unexpected input, a dtype that cannot be cast without changing values, a wrong
                rank or fixed dimension, batch sizes that differ between inputs, or an empty batch.
        """
        checked = check_feeds(self._inputs, self._fixed_axes, feeds)
        results = self._session.run(self._output_names, checked)
        return dict(zip(self._output_names, results, strict=True))

    def warmup(self) -> None:
        """Run zeros at batch 1 and a small batch: allocations, kernel selection and (CUDA) context setup happen here.

        Non-batch dynamic axes (e.g. a sequence length) get size 1; fixed ones their size. Zeros are valid for every
        Journey input (padding ids, `lengths` 0 = an unknown session, NaN-free dense features).
        """
        for batch in WARMUP_BATCHES:
            self.run({spec.name: zeros(spec, batch) for spec in self._inputs})

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for `/readyz` and logs."""
        return {
            "path": str(self._path),
            "provider": self.provider,
            "providers": list(self._providers),
            "requested_providers": list(self._requested),
            "placement": self.placement.describe() if self.placement is not None else None,
            "framework": self._metadata.framework,
            "exporter": self._metadata.exporter,
            "parity_max_abs_diff": self._metadata.parity_max_abs_diff,
            "input_names": list(self.input_names),
            "output_names": list(self._output_names),
            "inputs": [spec.describe() for spec in self._inputs],
            "outputs": [spec.describe() for spec in self._outputs],
            "n_features": len(self._metadata.feature_order),
            "intra_op_threads": self._threads[0],
            "inter_op_threads": self._threads[1],
        }

    def __repr__(self) -> str:
        return f"ModelRuntime({str(self._path)!r}, provider={self.provider!r}, inputs={list(self.input_names)})"


def _open_checked(
    path: Path, providers: Sequence[str] | None, threads: tuple[int, int], require_metadata: bool
) -> tuple[ort.InferenceSession, ModelMetadata, list[str]]:
    """The session, its parsed contract and the providers asked for; a tree model asked for CUDA by default is
    reopened on the CPU alone (it has no CUDA kernel, so a CUDA session would only claim a GPU it does not use)."""
    requested = cuda.resolve_providers(providers)
    session = cuda.open_session(path, requested, *threads)
    props = dict(session.get_modelmeta().custom_metadata_map)
    metadata = ModelMetadata.parse(props, path=path, require=require_metadata)
    if providers is None and metadata.framework in CPU_ONLY_FRAMEWORKS and requested != [CPU]:
        requested = [CPU]
        if session.get_providers()[0] != CPU:
            session = cuda.open_session(path, requested, *threads)
    return session, metadata, requested
