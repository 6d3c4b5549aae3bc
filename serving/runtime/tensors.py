"""Graph inputs and outputs as ONNX Runtime sees them, and the checks a request's arrays pass before `session.run`.

Why inputs are checked before `session.run`: ONNX Runtime's own errors name neither the input nor what was wrong in
terms a client can fix, and it refuses harmless differences (float64 where the graph takes float32, int32 ids).
`check_feeds` casts what can be cast without changing a value's meaning and raises `InputError` (field = the input's
name) for the rest, which the service turns into HTTP 422.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeAlias

import numpy as np

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


def check_feeds(
    inputs: Sequence[TensorSpec], fixed_axes: Sequence[tuple[tuple[int, int], ...]], feeds: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The feeds as ONNX Runtime needs them (right dtype, contiguous), or InputError naming the first bad input.

    On the hot path of every request: the per-input facts (ranks, fixed axes) are computed once at load.
    """
    names = tuple(spec.name for spec in inputs)
    if len(feeds) != len(names) or not all(name in feeds for name in names):
        missing = [n for n in names if n not in feeds]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model takes {list(names)}", field=missing[0])
        unexpected = [str(n) for n in feeds if n not in names]
        raise InputError(f"unexpected input(s) {unexpected}; the model takes {list(names)}", field=unexpected[0])
    checked: dict[str, np.ndarray] = {}
    batch: tuple[str, int] | None = None
    for spec, fixed in zip(inputs, fixed_axes, strict=True):
        array = as_input(spec, feeds[spec.name])
        if spec.shape:
            shape = array.shape
            if len(shape) != len(spec.shape):
                raise InputError(
                    f"input {spec.name!r} has rank {len(shape)} (shape {shape}), expected rank "
                    f"{len(spec.shape)} {show(spec.shape)}",
                    field=spec.name,
                    value=shape,
                )
            for axis, size in fixed:
                if shape[axis] != size:
                    raise InputError(
                        f"input {spec.name!r} has size {shape[axis]} on axis {axis}, expected {size} "
                        f"(shape {shape} vs {show(spec.shape)})",
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


def as_input(spec: TensorSpec, value: Any) -> np.ndarray:
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


def zeros(spec: TensorSpec, batch: int) -> np.ndarray:
    dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
    shape = tuple(d if isinstance(d, int) else (batch if axis == 0 else 1) for axis, d in enumerate(spec.shape))
    if dtype.kind == "O":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=dtype)


def show(shape: Shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
