"""Next-item recommenders -> one ONNX graph each that takes and answers in the shop's item ids.

    export_recommender(module, vocabulary, ...)  a torch top-k module over vocabulary indices: the torch
                                                 graph (`torch_onnx_export`) wrapped in two ONNX nodes, a LabelEncoder
                                                 in front (item id -> index, 0 when unknown) and a Gather behind
                                                 (index -> item id)
    export_graph(model, holdout, path, ...)      a graph built whole with onnx.helper (the index kinds: popularity,
                                                 Markov, co-visitation, session-kNN; their index in its initializers)

Either way the file alone answers in item ids: no vocabulary or index file travels beside it. Parity compares scores
within the tolerance and ids exactly, except inside a tie (`ranking_diff`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from journey.errors import InvalidInputError, JourneyError
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from journey.registry import sha256_of  # the hash the registry checks at registration, computed the same way
from training.export.onnx_files import ExportReport, remove_side_files, staged, write_metadata
from training.export.parity import CompareFn, NativeFn, check_parity, max_abs_diff, resize_rows
from training.export.torch_onnx import torch_onnx_export

if TYPE_CHECKING:
    import torch

INDEX_INPUT: Final = "item_index"  # the vocabulary index of each step: the LabelEncoder's output, the module's input
_INDEX_OUTPUT, _ID_TABLE = "top_indices", "vocabulary_item_ids"
ONNX_ML_DOMAIN, ONNX_ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder with int64 keys and values


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
    return export_behind_index(
        module,
        holdout,
        path,
        native=native,
        tolerance=tolerance,
        module_inputs=NEXT_ITEM_INPUT_NAMES[1:],
        module_outputs=(_INDEX_OUTPUT, "scores"),
        rewrite=lambda model: _with_vocabulary(model, vocabulary),
    )


def export_behind_index(
    module: torch.nn.Module,
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    native: NativeFn,
    tolerance: float,
    module_inputs: Sequence[str],
    module_outputs: Sequence[str],
    rewrite: Callable[[onnx.ModelProto], onnx.ModelProto],
) -> ExportReport:
    """The export both torch recommenders share: `module(item_index, *module_inputs) -> module_outputs` exported
    with torch, the graph handed to `rewrite` (which puts the LabelEncoder of item ids in front, and whatever else
    the module leaves to ONNX), parity-checked against `native` on the raw-id `holdout` with `ranking_diff`, and the
    metadata of a NEXT_ITEM_INPUT_NAMES -> NEXT_ITEM_OUTPUT_NAMES recommender written; nothing is left at `path`
    when anything fails."""
    import torch  # loaded on use: see torch_onnx.py

    if set(holdout) != set(NEXT_ITEM_INPUT_NAMES):
        raise InvalidInputError(
            f"holdout inputs {sorted(holdout)} differ from {list(NEXT_ITEM_INPUT_NAMES)}", field="holdout"
        )
    feeds = {name: np.ascontiguousarray(holdout[name], dtype=np.int64) for name in NEXT_ITEM_INPUT_NAMES}
    example_rows = max(2, min(8, len(feeds["lengths"])))  # torch.export specialises a size-1 axis
    example = {name: resize_rows(values, example_rows) for name, values in feeds.items()}
    args = (
        torch.zeros(example["item_ids"].shape, dtype=torch.int64),
        *(torch.from_numpy(example[name]) for name in module_inputs),
    )
    module.eval()
    with staged(path) as staging:
        exporter = torch_onnx_export(module, args, staging, [INDEX_INPUT, *module_inputs], list(module_outputs))
        onnx_model = onnx.load(str(staging))
        remove_side_files(staging)
        onnx.save_model(rewrite(onnx_model), str(staging), save_as_external_data=False)
        diffs = check_parity(staging, native, feeds, tolerance=tolerance, compare=ranking_diff(tolerance))
        report = ExportReport(
            path=path,
            sha256="",
            framework="torch",
            exporter=exporter,
            input_names=NEXT_ITEM_INPUT_NAMES,
            output_names=NEXT_ITEM_OUTPUT_NAMES,
            max_abs_diff=diffs,
        )
        write_metadata(staging, report, feature_order=NEXT_ITEM_INPUT_NAMES)
    return replace(report, sha256=sha256_of(path))


EXPORTER_ONNX_HELPER = "onnx.helper"  # a graph built node by node from a fitted index (no converter involved)


def export_graph(
    model: onnx.ModelProto,
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    native: NativeFn,
    framework: str,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Write `model` (recommender inputs and outputs, NEXT_ITEM_INPUT_NAMES -> NEXT_ITEM_OUTPUT_NAMES) to `path`,
    refused unless ONNX Runtime matches `native` on the raw-id `holdout` and at 1, 7 and 1024 rows (scores within
    `tolerance`, ids equal except inside a tie); nothing is left at `path` then."""
    if set(holdout) != set(NEXT_ITEM_INPUT_NAMES):
        raise InvalidInputError(
            f"holdout inputs {sorted(holdout)} differ from {list(NEXT_ITEM_INPUT_NAMES)}", field="holdout"
        )
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != (list(NEXT_ITEM_INPUT_NAMES), list(NEXT_ITEM_OUTPUT_NAMES)):
        raise JourneyError(f"recommender graph has inputs {names[0]} and outputs {names[1]}")
    feeds = {name: np.ascontiguousarray(holdout[name], dtype=np.int64) for name in NEXT_ITEM_INPUT_NAMES}
    with staged(path) as staging:
        onnx.save_model(model, str(staging), save_as_external_data=False)
        diffs = check_parity(staging, native, feeds, tolerance=tolerance, compare=ranking_diff(tolerance))
        report = ExportReport(
            path=path,
            sha256="",
            framework=framework,
            exporter=EXPORTER_ONNX_HELPER,
            input_names=NEXT_ITEM_INPUT_NAMES,
            output_names=NEXT_ITEM_OUTPUT_NAMES,
            max_abs_diff=diffs,
        )
        write_metadata(staging, report, feature_order=NEXT_ITEM_INPUT_NAMES)
    return replace(report, sha256=sha256_of(path))


def _with_vocabulary(model: onnx.ModelProto, vocabulary: np.ndarray) -> onnx.ModelProto:
    """The index graph behind a LabelEncoder (item id -> index) and before a Gather (index -> item id)."""
    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if INDEX_INPUT not in inputs or outputs != [_INDEX_OUTPUT, "scores"]:
        raise JourneyError(f"exported recommender has inputs {inputs} and outputs {outputs}")
    ids = np.asarray(vocabulary, dtype=np.int64)
    encode = helper.make_node(
        "LabelEncoder",
        [NEXT_ITEM_INPUT_NAMES[0]],
        [INDEX_INPUT],
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
        if value.name == INDEX_INPUT:
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


def ranking_diff(tolerance: float) -> CompareFn:
    """Max abs diff of the scores; infinite when an id differs outside a tie (a neighbour's score within TIE_GAP:
    two runtimes may order near-equal items either way, and the last place may swap with the next, unseen one).

    The tie gap is not `tolerance`: in a 20k-item softmax most places below the top few are within 1e-4 of each
    other, and the id check would then guard only the first places."""

    def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
        if len(got) != 2 or len(want) != 2 or np.shape(got[0]) != np.shape(want[0]):
            return float("inf")
        diff = max_abs_diff(got[1:], want[1:])
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
