"""The `journey.*` contract an export writes into the model's metadata (journey.onnx_contract), parsed and checked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from journey.onnx_contract import (
    META_EXPORTER,
    META_FEATURE_ORDER,
    META_FRAMEWORK,
    META_INPUT_NAMES,
    META_OUTPUT_NAMES,
    META_PARITY,
    REQUIRED_METADATA,
)


class ModelLoadError(RuntimeError):
    """The model file cannot be served: unreadable, not a Journey export, or its metadata contradicts its graph."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


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
