"""ONNX export of trained models, refused unless ONNX Runtime reproduces the native model on held-out data.

    export_xgboost(model, feature_names, holdout, path)       XGBClassifier -> onnxmltools (opset 15), input "features"
    export_torch(module, example_inputs, holdout, path, ...)  nn.Module -> torch.onnx dynamo exporter (legacy fallback)
    export_recommender(module, vocabulary, holdout, path, ...) a top-k module over vocabulary indices -> a graph that
                                                              takes and returns the shop's item ids (vocabulary in it)
    read_metadata(path)                                       the `metadata_props` serving reads (names, feature order)

Why a parity check on every export: a converted graph can run and still be wrong (float32 thresholds moving samples
across tree splits, an op lowered differently, a batch axis frozen at the example's size). Each export runs the
written file with ONNX Runtime's CPU provider on the held-out batch and on batch sizes 1, 7 and 1024 (the held-out
rows tiled or sliced) and compares every output with the native model. Above `tolerance` the export is refused
(`InvalidInputError`, field "parity") and nothing is left at `path`: the model is written to a temporary file next to
it and moved into place only once it passed, so a refused export does not clobber an earlier good one either.

Files are self-contained (no `.onnx.data` side file), so one path is the whole model for the registry and BentoML.
torch and xgboost are imported inside the functions: serving imports this module for `read_metadata` only.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from journey.errors import InvalidInputError, JourneyError
from journey.onnx_contract import (
    EXPORTER_ONNXMLTOOLS,
    EXPORTER_TORCH_DYNAMO,
    EXPORTER_TORCH_LEGACY,
    META_EXPORTER,
    META_FEATURE_ORDER,
    META_FRAMEWORK,
    META_INPUT_NAMES,
    META_OUTPUT_NAMES,
    META_PARITY,
    NEXT_ITEM_INPUT_NAMES,
    NEXT_ITEM_OUTPUT_NAMES,
    PROPENSITY_INPUT_NAME,
)
from journey.registry import sha256_of  # the hash the registry checks at registration, computed the same way

if TYPE_CHECKING:
    import torch
    import xgboost

log = logging.getLogger(__name__)

PARITY_BATCH_SIZES: tuple[int, ...] = (1, 7, 1024)
XGBOOST_TARGET_OPSET = 15  # the onnxmltools XGBoost converter fails above 15 (STACK-NOTES)
ORT_PROVIDERS = ["CPUExecutionProvider"]  # tree ensembles have no CUDA kernel; parity is checked where it will run

_INDEX_INPUT, _INDEX_OUTPUT, _ID_TABLE = "item_index", "top_indices", "vocabulary_item_ids"
ONNX_ML_DOMAIN, ONNX_ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder with int64 keys and values

NativeFn = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
CompareFn = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float]


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


def export_xgboost(
    model: xgboost.XGBClassifier,
    feature_names: list[str],
    holdout: np.ndarray,
    path: Path,
    *,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Convert a fitted XGBClassifier to ONNX (input "features", float32 [batch, n]); check it against the model.

    `feature_names` is the column order the model was trained on; it is stored as `journey.feature_order` so serving
    builds the input row in that order. The converter only accepts the booster's own `f0..fn` names, so the
    conversion runs on a copy with the names cleared; the parity reference is the model as given.
    """
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    n_features = int(model.n_features_in_)
    if len(feature_names) != n_features:
        raise InvalidInputError(
            f"{len(feature_names)} feature names for a model trained on {n_features} features",
            field="feature_names",
            value=feature_names,
        )
    x = np.asarray(holdout, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != n_features:
        raise InvalidInputError(
            f"holdout must be a non-empty [rows, {n_features}] array, got shape {x.shape}",
            field="holdout",
            value=x.shape,
        )

    unnamed = copy.deepcopy(model)
    unnamed.get_booster().feature_names = None
    onnx_model: onnx.ModelProto = convert_xgboost(
        unnamed,
        initial_types=[(PROPENSITY_INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=XGBOOST_TARGET_OPSET,
    )
    output_names = tuple(o.name for o in onnx_model.graph.output)
    onnx_model.graph.name = "xgboost_classifier"  # onnxmltools names graphs with a random UUID: same model, same bytes

    def native(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _xgboost_reference(model, inputs[PROPENSITY_INPUT_NAME])

    with _staged(path) as staging:
        onnx.save_model(onnx_model, str(staging))
        diffs = check_parity(staging, native, {PROPENSITY_INPUT_NAME: x}, tolerance=tolerance)
        report = ExportReport(
            path=path,
            sha256="",  # known once the staged file is in place
            framework="xgboost",
            exporter=EXPORTER_ONNXMLTOOLS,
            input_names=(PROPENSITY_INPUT_NAME,),
            output_names=tuple(output_names),
            max_abs_diff=diffs,
        )
        _write_metadata(staging, report, feature_order=list(feature_names))
    return replace(report, sha256=sha256_of(path))


def export_torch(
    module: torch.nn.Module,
    example_inputs: dict[str, torch.Tensor],
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    output_names: list[str],
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export `module` with a dynamic batch axis (dim 0 of every input) and check it against its own forward.

    `example_inputs` are passed positionally in dict order, so the keys must follow `forward`'s parameters; they
    become the ONNX input names. Use an example batch of at least 2 rows: torch.export specialises a size-1 axis.
    The dynamo exporter is tried first; only if it raises does the legacy TorchScript exporter run (`exporter` in
    the report and metadata says which one wrote the file).
    """
    input_names = list(example_inputs)
    if not input_names:
        raise InvalidInputError("example_inputs is empty", field="example_inputs")
    if set(holdout) != set(input_names):
        raise InvalidInputError(
            f"holdout inputs {sorted(holdout)} differ from example inputs {sorted(input_names)}",
            field="holdout",
            value=sorted(holdout),
        )
    feeds = {name: _as_dtype(name, holdout[name], example_inputs[name]) for name in input_names}

    module.eval()
    args = tuple(example_inputs[name] for name in input_names)

    def native(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return _torch_reference(module, [inputs[name] for name in input_names])

    with _staged(path) as staging:
        exporter = _torch_onnx_export(module, args, staging, input_names, output_names)
        onnx_model = onnx.load(str(staging))  # pulls in external data, if an exporter wrote any
        _remove_side_files(staging)
        onnx.save_model(onnx_model, str(staging), save_as_external_data=False)
        graph_outputs = [o.name for o in onnx_model.graph.output]
        if graph_outputs != list(output_names):
            raise JourneyError(f"exported graph has outputs {graph_outputs}, expected {output_names}")
        diffs = check_parity(staging, native, feeds, tolerance=tolerance)
        report = ExportReport(
            path=path,
            sha256="",  # known once the staged file is in place
            framework="torch",
            exporter=exporter,
            input_names=tuple(input_names),
            output_names=tuple(output_names),
            max_abs_diff=diffs,
        )
        _write_metadata(staging, report, feature_order=input_names)
    return replace(report, sha256=sha256_of(path))


def export_recommender(
    module: torch.nn.Module,
    vocabulary: np.ndarray,
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    native: NativeFn,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export a module `(item_index, event_types, lengths) -> (top_indices, scores)` over vocabulary indices
    (index i + 1 is item `vocabulary[i]`, 0 any other item) as a graph over the shop's item ids.

    The torch graph is wrapped in two ONNX nodes: a LabelEncoder in front (item id -> index, 0 when unknown) and a
    Gather behind (index -> item id), so the file alone answers in item ids. `native` (the trained module with the
    same mapping in numpy) is what parity compares against, on the raw-id `holdout` (NEXT_ITEM_INPUT_NAMES), at
    the held-out batch and at 1, 7 and 1024 rows: scores within `tolerance`, ids equal except inside a tie.
    """
    import torch

    if set(holdout) != set(NEXT_ITEM_INPUT_NAMES):
        raise InvalidInputError(
            f"holdout inputs {sorted(holdout)} differ from {list(NEXT_ITEM_INPUT_NAMES)}", field="holdout"
        )
    feeds = {name: np.ascontiguousarray(holdout[name], dtype=np.int64) for name in NEXT_ITEM_INPUT_NAMES}
    example_rows = max(2, min(8, len(feeds["lengths"])))  # torch.export specialises a size-1 axis
    example = {name: _resize_rows(values, example_rows) for name, values in feeds.items()}
    args = (
        torch.zeros(example["item_ids"].shape, dtype=torch.int64),
        *(torch.from_numpy(example[name]) for name in NEXT_ITEM_INPUT_NAMES[1:]),
    )
    module.eval()
    index_names = [_INDEX_INPUT, *NEXT_ITEM_INPUT_NAMES[1:]]
    with _staged(path) as staging:
        exporter = _torch_onnx_export(module, args, staging, index_names, [_INDEX_OUTPUT, "scores"])
        onnx_model = onnx.load(str(staging))
        _remove_side_files(staging)
        onnx.save_model(_with_vocabulary(onnx_model, vocabulary), str(staging), save_as_external_data=False)
        diffs = check_parity(staging, native, feeds, tolerance=tolerance, compare=_ranking_diff(tolerance))
        report = ExportReport(
            path=path,
            sha256="",
            framework="torch",
            exporter=exporter,
            input_names=NEXT_ITEM_INPUT_NAMES,
            output_names=NEXT_ITEM_OUTPUT_NAMES,
            max_abs_diff=diffs,
        )
        _write_metadata(staging, report, feature_order=NEXT_ITEM_INPUT_NAMES)
    return replace(report, sha256=sha256_of(path))


def _with_vocabulary(model: onnx.ModelProto, vocabulary: np.ndarray) -> onnx.ModelProto:
    """The index graph behind a LabelEncoder (item id -> index) and before a Gather (index -> item id)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if _INDEX_INPUT not in inputs or outputs != [_INDEX_OUTPUT, "scores"]:
        raise JourneyError(f"exported recommender has inputs {inputs} and outputs {outputs}")
    ids = np.asarray(vocabulary, dtype=np.int64)
    encode = helper.make_node(
        "LabelEncoder",
        [NEXT_ITEM_INPUT_NAMES[0]],
        [_INDEX_INPUT],
        domain=ONNX_ML_DOMAIN,
        keys_int64s=ids.tolist(),
        values_int64s=list(range(1, len(ids) + 1)),
        default_int64=0,
    )
    decode = helper.make_node("Gather", [_ID_TABLE, _INDEX_OUTPUT], [NEXT_ITEM_OUTPUT_NAMES[0]], axis=0)
    graph.initializer.append(numpy_helper.from_array(np.concatenate([[0], ids]).astype(np.int64), _ID_TABLE))
    nodes = [encode, *graph.node, decode]
    del graph.node[:]
    graph.node.extend(nodes)
    for value in graph.input:
        if value.name == _INDEX_INPUT:
            value.name = NEXT_ITEM_INPUT_NAMES[0]
    indices = next(o for o in graph.output if o.name == _INDEX_OUTPUT)
    shape = [d.dim_param or d.dim_value for d in indices.type.tensor_type.shape.dim]
    scores = copy.deepcopy(graph.output[1])
    del graph.output[:]
    graph.output.extend(
        [helper.make_tensor_value_info(NEXT_ITEM_OUTPUT_NAMES[0], TensorProto.INT64, shape or None), scores]
    )
    if not any(o.domain == ONNX_ML_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ONNX_ML_DOMAIN, ONNX_ML_OPSET))
    onnx.checker.check_model(model)
    return model


TIE_GAP = 1e-6  # scores closer than this may come out in either order (float32 noise between runtimes: ~1e-7)


def _ranking_diff(tolerance: float) -> CompareFn:
    """Max abs diff of the scores; infinite when an id differs outside a tie (a neighbour's score within TIE_GAP:
    two runtimes may order near-equal items either way, and the last place may swap with the next, unseen one).

    The tie gap is not `tolerance`: in a 20k-item softmax most places below the top few are within 1e-4 of each
    other, and the id check would then guard only the first places."""

    def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
        if len(got) != 2 or len(want) != 2 or np.shape(got[0]) != np.shape(want[0]):
            return float("inf")
        diff = _max_abs_diff(got[1:], want[1:])
        ids_got, ids_want, scores = np.asarray(got[0]), np.asarray(want[0]), np.asarray(want[1], dtype=np.float64)
        if ids_got.size == 0:
            return diff
        gap = np.abs(np.diff(scores, axis=1))
        tied = np.zeros(scores.shape, dtype=bool)
        tied[:, :-1] |= gap <= TIE_GAP
        tied[:, 1:] |= gap <= TIE_GAP
        tied[:, -1] = True  # the k+1-th item, unseen here, may have the same score
        return diff if bool(np.all((ids_got == ids_want) | tied)) else float("inf")

    return compare


def check_parity(
    path: Path,
    native: NativeFn,
    holdout: Mapping[str, np.ndarray],
    *,
    tolerance: float,
    compare: CompareFn | None = None,
) -> dict[int, float]:
    """Max abs diff between ONNX Runtime on `path` and `native`, per batch size; raise above `tolerance`.

    Batch sizes: the held-out batch as given, then 1, 7 and 1024 (held-out rows sliced or tiled). Outputs are
    compared in graph order with `native`'s list (by `compare`, default the max abs diff over every output); a shape
    mismatch or a NaN on one side only counts as infinite.
    """
    compare = compare or _max_abs_diff
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=ORT_PROVIDERS)
    rows = {len(v) for v in holdout.values()}
    if len(rows) != 1 or 0 in rows:
        raise InvalidInputError(
            f"holdout inputs must share one non-empty batch size, got {sorted(rows)}", field="holdout"
        )
    diffs: dict[int, float] = {}
    for batch in (rows.pop(), *PARITY_BATCH_SIZES):
        feeds = {name: _resize_rows(values, batch) for name, values in holdout.items()}
        got = session.run(None, feeds)
        want = native(feeds)
        diff = compare(got, want)
        diffs[batch] = diff
        if not diff <= tolerance:
            raise InvalidInputError(
                f"ONNX export refused: max abs diff {diff:.3g} > tolerance {tolerance:g} at batch {batch}",
                field="parity",
                value=diff,
            )
    return diffs


def _xgboost_reference(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The native outputs in the converter's order: label [N] and probabilities [N, classes]."""
    return [np.asarray(model.predict(x)), np.asarray(model.predict_proba(x))]


def _torch_reference(module: torch.nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outputs]


def _torch_onnx_export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> str:
    """Write `path` with the dynamo exporter, or the legacy one if dynamo raises; return which one wrote it."""
    import torch
    from torch.jit._trace import TracerWarning

    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            # Emitted from inside torch's own tracing of stock modules (nn.GRU's _flat_weights, torch._check_is_size
            # in its RNN decomposition, pytree internals, dynamo probing `.grad` of non-leaf tensors, one Dim shared
            # by several inputs): nothing the caller's
            # model can change, and the parity check below is what tells whether the graph is right.
            warnings.filterwarnings("ignore", message=r".*_check_is_size will be removed", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used")
            warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf")
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamo=True,
                external_data=False,
                dynamic_shapes=tuple({0: batch} for _ in args),
                verbose=False,
            )
        return EXPORTER_TORCH_DYNAMO
    except Exception as exc:  # noqa: BLE001  any dynamo failure (many error types): the legacy exporter is the fallback
        log.warning("dynamo ONNX export failed, trying the legacy exporter", extra={"error": repr(exc)[:500]})
        _remove_side_files(path)
        path.unlink(missing_ok=True)
    with warnings.catch_warnings():
        # The legacy exporter is deprecated and says so on every call (we only get here when dynamo failed); its
        # TracerWarnings flag Python-level branches frozen at the example's values, which the parity check at other
        # batch sizes is there to catch; likewise its warning that an RNN exported at batch > 1 may fail at other
        # batch sizes (parity runs at 1, 7 and 1024).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=TracerWarning)
        warnings.filterwarnings("ignore", message=r"Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*input_names, *output_names]},
        )
    return EXPORTER_TORCH_LEGACY


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A temporary file beside `path`, moved onto it on success and deleted (with any side file) on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        yield staging
        staging.replace(path)
    finally:
        _remove_side_files(staging)
        staging.unlink(missing_ok=True)


def _remove_side_files(path: Path) -> None:
    path.with_name(path.name + ".data").unlink(missing_ok=True)


def _write_metadata(path: Path, report: ExportReport, *, feature_order: Sequence[str]) -> None:
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


def _drop_volatile_metadata(model: onnx.ModelProto) -> None:
    """torch's exporter notes per-process details (e.g. counters) under `pkg.torch.export.*`: the same model exported
    twice in one process would differ in bytes, and the registry's sha256 would call them different models."""
    for container in (model, model.graph):
        kept = [p for p in container.metadata_props if not p.key.startswith(VOLATILE_METADATA_PREFIX)]
        del container.metadata_props[:]
        container.metadata_props.extend(kept)


def _as_dtype(name: str, values: np.ndarray, example: torch.Tensor) -> np.ndarray:
    dtype = example.detach().cpu().numpy().dtype
    array = np.asarray(values)
    if not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise InvalidInputError(
            f"holdout input {name!r} has dtype {array.dtype}, the model takes {dtype}", field="holdout", value=name
        )
    return array.astype(dtype)


def _resize_rows(values: np.ndarray, batch: int) -> np.ndarray:
    """`batch` rows of `values`: a slice when it has enough, the rows repeated in order when not."""
    if len(values) >= batch:
        return np.ascontiguousarray(values[:batch])
    return np.ascontiguousarray(np.take(values, np.arange(batch) % len(values), axis=0))


def _max_abs_diff(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        a = np.asarray(g, dtype=np.float64)
        b = np.asarray(w, dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        if a.size == 0:
            continue
        diff = np.abs(a - b)
        diff[np.isnan(a) & np.isnan(b)] = 0.0
        worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    return worst
