"""The ONNX file an export writes: what the report says about it, staging (nothing half-written is ever left at
the target path) and the `journey.*` metadata serving reads."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from journey.onnx_contract import (
    META_EXPORTER,
    META_FEATURE_ORDER,
    META_FRAMEWORK,
    META_INPUT_NAMES,
    META_OUTPUT_NAMES,
    META_PARITY,
)


@dataclass(frozen=True)
class ExportReport:
    """What was written and how close ONNX Runtime came to the native model at each batch size checked."""

    path: Path
    sha256: str
    framework: str
    exporter: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    max_abs_diff: dict[int, float] = field(default_factory=dict)

    @property
    def parity_max_abs_diff(self) -> float:
        """The worst difference over every batch size checked."""
        return max(self.max_abs_diff.values(), default=0.0)


def read_metadata(path: Path) -> dict[str, str]:
    """Every `metadata_props` entry of an ONNX file (the `journey.*` keys among them), without loading weights."""
    model = onnx.load(str(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, moved onto it on success and deleted (with any side file) on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield staging
        staging.replace(path)
    finally:
        remove_side_files(staging)
        staging.unlink(missing_ok=True)


def remove_side_files(path: Path) -> None:
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def write_metadata(path: Path, report: ExportReport, *, feature_order: Sequence[str]) -> None:
    """Names, feature order, framework, exporter and parity into the model, where serving reads them."""
    props = {
        META_INPUT_NAMES: json.dumps(list(report.input_names)),
        META_OUTPUT_NAMES: json.dumps(list(report.output_names)),
        META_FEATURE_ORDER: json.dumps(list(feature_order)),
        META_FRAMEWORK: report.framework,
        META_PARITY: repr(report.parity_max_abs_diff),
        META_EXPORTER: report.exporter,
    }
    model = onnx.load(str(path))
    _drop_volatile_metadata(model)
    kept = {p.key: p.value for p in model.metadata_props if p.key not in props}
    onnx.helper.set_model_props(model, {**kept, **props})
    onnx.save_model(model, str(path), save_as_external_data=False)


VOLATILE_METADATA_PREFIX = "pkg.torch.export."
NODE_STACK_TRACE = "pkg.torch.onnx.stack_trace"


def _drop_volatile_metadata(model: onnx.ModelProto) -> None:
    """torch's exporter notes per-process details (e.g. counters) under `pkg.torch.export.*`, and on every node the
    source file and line that created it (`pkg.torch.onnx.stack_trace`): the same model exported twice in one process,
    from another checkout path or after its code moved would differ in bytes, and the registry's sha256 would call
    them different models."""
    for container in (model, model.graph):
        _keep_props(container, lambda key: not key.startswith(VOLATILE_METADATA_PREFIX))
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        _keep_props(node, lambda key: key != NODE_STACK_TRACE)


def _keep_props(container: Any, keep: Callable[[str], bool]) -> None:
    kept = [p for p in container.metadata_props if keep(p.key)]
    del container.metadata_props[:]
    container.metadata_props.extend(kept)
