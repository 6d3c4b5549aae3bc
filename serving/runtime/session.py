"""ONNX Runtime sessions for serving: the provider really in use, the `journey.*` contract, and checked inputs.

    ModelRuntime.load(path, providers=None, ...)  one InferenceSession (CUDA first when ORT has it, CPU last), warmed
    runtime.run(feeds)                            named arrays in, named arrays out; bad input -> InputError (422)
    runtime.describe()                            what `/readyz` reports: path, provider(s), inputs/outputs, parity

Why this module imports only numpy, onnxruntime and the standard library: a GPU host runs the model server from a
bare image (onnxruntime-gpu, no Feast, BentoML, pydantic or torch), so nothing here may reach the rest of Journey.
The metadata keys are therefore spelled out here; `tests/unit/serving/test_runtime.py` checks that they equal
`training.export`'s.

Why the provider is read back from the session: onnxruntime-gpu lists `CUDAExecutionProvider` as available even on a
host without CUDA libraries and then silently builds a CPU session (STACK-NOTES). The provider that ONNX Runtime
actually registered is what `/readyz` and the `journey_execution_provider` metric report, and a fall-back is logged as
a warning. Tree ensembles (XGBoost) have no CUDA kernel: with default providers they get a CPU-only session, so the
report never claims a GPU that the model does not use.

Why inputs are checked before `session.run`: ONNX Runtime's own errors name neither the input nor what was wrong in
terms a client can fix, and it refuses harmless differences (float64 where the graph takes float32, int32 ids).
`run` casts what can be cast without changing a value's meaning and raises `InputError` (field = the input's name)
for the rest, which the service turns into HTTP 422.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, TypeAlias

import numpy as np
import onnxruntime as ort

from journey.onnx_contract import (
    META_EXPORTER,
    META_FEATURE_ORDER,
    META_FRAMEWORK,
    META_INPUT_NAMES,
    META_OUTPUT_NAMES,
    META_PARITY,
    REQUIRED_METADATA,
)
from serving.runtime.providers import CPU, CPU_ONLY_FRAMEWORKS, CUDA, Placement

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS: Final = (CUDA, CPU)
# CPU_ONLY_FRAMEWORKS (serving.runtime.providers): graphs without a CUDA kernel (TreeEnsemble). A CUDA session would
# run them on the CPU anyway while reporting CUDA, so with default providers they get a CPU session.
WARMUP_BATCHES: Final = (1, 8)

Dim: TypeAlias = int | str | None  # a fixed size, a named dynamic axis, or an unnamed dynamic axis
Shape: TypeAlias = tuple[Dim, ...]

_ONNX_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(object),
}


class InputError(ValueError):
    """A request's input cannot be fed to the model; `field` names the input so the client knows what to fix.

    Carries `http_status` like `journey.errors.InvalidInputError` (which this module may not import), so the service
    converts both in one place.
    """

    http_status: ClassVar[int] = 422

    def __init__(self, message: str, *, field: str, value: object = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class ModelLoadError(RuntimeError):
    """The model file cannot be served: unreadable, not a Journey export, or its metadata contradicts its graph."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One graph input or output as ONNX Runtime sees it; `dtype` is None for non-tensor values (maps, sequences).

    An empty `shape` means a scalar or a value of unknown rank (ONNX Runtime reports both as []): its rank is not
    checked.
    """

    name: str
    onnx_type: str
    dtype: np.dtype[Any] | None
    shape: Shape

    @classmethod
    def from_node(cls, node: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int | str) or d is None else str(d) for d in (node.shape or ()))
        return cls(name=node.name, onnx_type=node.type, dtype=_ONNX_DTYPES.get(node.type), shape=shape)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.onnx_type, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """The `journey.*` contract an export writes into the model (training/export.py), parsed."""

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    feature_order: tuple[str, ...]
    framework: str | None
    exporter: str | None
    parity_max_abs_diff: float | None
    properties: Mapping[str, str] = field(default_factory=dict)  # every custom metadata entry, `journey.*` included

    @classmethod
    def parse(cls, props: Mapping[str, str], *, path: Path, require: bool = True) -> ModelMetadata:
        """Parse and check the entries; with `require`, a file without the contract is refused (it skipped export)."""
        missing = [key for key in REQUIRED_METADATA if key not in props]
        if require and missing:
            raise ModelLoadError(
                f"metadata {missing[0]!r} is missing: only models written by training.export (parity-checked) are "
                "served",
                path=path,
            )
        parity: float | None = None
        if META_PARITY in props:
            try:
                parity = float(props[META_PARITY])
            except ValueError as exc:
                raise ModelLoadError(
                    f"metadata {META_PARITY!r} is not a number: {props[META_PARITY]!r}", path=path
                ) from exc
        return cls(
            input_names=_name_list(props, META_INPUT_NAMES, path),
            output_names=_name_list(props, META_OUTPUT_NAMES, path),
            feature_order=_name_list(props, META_FEATURE_ORDER, path),
            framework=props.get(META_FRAMEWORK),
            exporter=props.get(META_EXPORTER),
            parity_max_abs_diff=parity,
            properties=dict(props),
        )


def _name_list(props: Mapping[str, str], key: str, path: Path) -> tuple[str, ...]:
    if key not in props:
        return ()
    try:
        names = json.loads(props[key])
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"metadata {key!r} is not JSON: {exc}", path=path) from exc
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelLoadError(f"metadata {key!r} is not a JSON list of strings: {props[key]!r}", path=path)
    return tuple(names)


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
        requested = resolve_providers(providers)
        session = _open_session(path, requested, intra_op_threads, inter_op_threads)
        props = dict(session.get_modelmeta().custom_metadata_map)
        metadata = ModelMetadata.parse(props, path=path, require=require_metadata)
        if providers is None and metadata.framework in CPU_ONLY_FRAMEWORKS and requested != [CPU]:
            requested = [CPU]
            if session.get_providers()[0] != CPU:
                session = _open_session(path, requested, intra_op_threads, inter_op_threads)
        runtime = cls(
            path,
            session,
            metadata,
            requested_providers=requested,
            intra_op_threads=intra_op_threads,
            inter_op_threads=inter_op_threads,
        )
        if runtime.provider != requested[0]:
            log.warning(
                "ONNX Runtime fell back from the preferred execution provider",
                extra={"model_path": str(path), "requested_providers": requested, "provider": runtime.provider},
            )
        runtime.placement = placement
        if warmup:
            try:
                runtime.warmup()
            except Exception as exc:  # whatever stops zeros from running would stop requests too
                raise ModelLoadError(f"warm-up failed: {exc}", path=path) from exc
        log.info(
            "model loaded",
            extra={
                "model_path": str(path),
                "provider": runtime.provider,
                "framework": metadata.framework,
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return runtime

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
        checked = self._check(feeds)
        results = self._session.run(self._output_names, checked)
        return dict(zip(self._output_names, results, strict=True))

    def warmup(self) -> None:
        """Run zeros at batch 1 and a small batch: allocations, kernel selection and (CUDA) context setup happen here.

        Non-batch dynamic axes (e.g. a sequence length) get size 1; fixed ones their size. Zeros are valid for every
        Journey input (padding ids, `lengths` 0 = an unknown session, NaN-free dense features).
        """
        for batch in WARMUP_BATCHES:
            self.run({spec.name: _zeros(spec, batch) for spec in self._inputs})

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

    def _check(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The feeds as ONNX Runtime needs them (right dtype, contiguous), or InputError naming the first bad input.

        On the hot path of every request: the per-input facts (names, ranks, fixed axes) are computed once at load.
        """
        names = self._input_names
        if len(feeds) != len(names) or not all(name in feeds for name in names):
            missing = [n for n in names if n not in feeds]
            if missing:
                raise InputError(f"missing input(s) {missing}; the model takes {list(names)}", field=missing[0])
            unexpected = [str(n) for n in feeds if n not in names]
            raise InputError(f"unexpected input(s) {unexpected}; the model takes {list(names)}", field=unexpected[0])
        checked: dict[str, np.ndarray] = {}
        batch: tuple[str, int] | None = None
        for spec, fixed in zip(self._inputs, self._fixed_axes, strict=True):
            array = _as_input(spec, feeds[spec.name])
            if spec.shape:
                shape = array.shape
                if len(shape) != len(spec.shape):
                    raise InputError(
                        f"input {spec.name!r} has rank {len(shape)} (shape {shape}), expected rank "
                        f"{len(spec.shape)} {_show(spec.shape)}",
                        field=spec.name,
                        value=shape,
                    )
                for axis, size in fixed:
                    if shape[axis] != size:
                        raise InputError(
                            f"input {spec.name!r} has size {shape[axis]} on axis {axis}, expected {size} "
                            f"(shape {shape} vs {_show(spec.shape)})",
                            field=spec.name,
                            value=shape,
                        )
                rows = shape[0]
                if rows == 0:
                    raise InputError(f"input {spec.name!r} has an empty batch", field=spec.name, value=shape)
                if batch is None:
                    batch = (spec.name, rows)
                elif rows != batch[1]:
                    raise InputError(
                        f"input {spec.name!r} has {rows} rows but {batch[0]!r} has {batch[1]}: every input must "
                        "carry the same batch",
                        field=spec.name,
                        value=rows,
                    )
            checked[spec.name] = array
        return checked


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


def _open_session(path: Path, providers: list[str], intra: int, inter: int) -> ort.InferenceSession:
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


def _as_input(spec: TensorSpec, value: Any) -> np.ndarray:
    """`value` as an array of the input's dtype; a cast is allowed only within a kind (or up) and if no value changes.

    Why not `astype` everything: a string or float sent where ids are expected must fail loudly, and so must an int64
    id that does not fit an int32 input or a float64 beyond float32's range (it would become inf).
    """
    want = spec.dtype
    assert want is not None  # checked at load: every input is a tensor
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise InputError(f"input {spec.name!r} is not an array: {exc}", field=spec.name) from exc
    if array.dtype == want:
        return np.ascontiguousarray(array)
    if want.kind == "O":  # string tensors: ORT takes str or object arrays of str
        if array.dtype.kind in "UO":
            return np.ascontiguousarray(array, dtype=object)
        raise InputError(
            f"input {spec.name!r} has dtype {array.dtype}, expected strings", field=spec.name, value=str(array.dtype)
        )
    if not np.can_cast(array.dtype, want, casting="same_kind"):
        raise InputError(
            f"input {spec.name!r} has dtype {array.dtype}, which cannot be cast to {want} without changing values",
            field=spec.name,
            value=str(array.dtype),
        )
    with np.errstate(over="ignore"):  # an overflowing float is detected (and refused) below, not warned about
        cast = np.ascontiguousarray(array, dtype=want)
    if not np.can_cast(array.dtype, want, casting="safe") and array.size:
        if want.kind in "iu" and array.dtype.kind in "iub":
            info = np.iinfo(want)
            if array.min() < info.min or array.max() > info.max:
                raise InputError(
                    f"input {spec.name!r} has values outside {want}'s range [{info.min}, {info.max}]",
                    field=spec.name,
                    value=(array.min().item(), array.max().item()),
                )
        elif want.kind == "f" and array.dtype.kind == "f" and np.isinf(cast).sum() != np.isinf(array).sum():
            raise InputError(
                f"input {spec.name!r} has values beyond {want}'s range (they would become inf)", field=spec.name
            )
    return cast


def _zeros(spec: TensorSpec, batch: int) -> np.ndarray:
    dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
    shape = tuple(d if isinstance(d, int) else (batch if axis == 0 else 1) for axis, d in enumerate(spec.shape))
    if dtype.kind == "O":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=dtype)


def _show(shape: Shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
