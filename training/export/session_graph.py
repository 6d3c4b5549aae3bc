"""A neural next-item module that answers in item ids itself -> one self-contained ONNX graph.

The module (`training.models.next_item.neural.TopSlots`) takes the vocabulary indices *and* the raw item ids: it
names the session's own items even when the vocabulary does not know them, so its top-k and the index -> id
decoding are already inside the torch graph. What the export adds is the LabelEncoder in front:

    item_ids int64 [n, T] --LabelEncoder (ai.onnx.ml: vocabulary id -> index, else 0)--> item_index --+
    item_ids, event_types, lengths ------------------------------------------------------------------+--> torch graph
        --> recommended_item_ids int64 [n, top_k], scores float32 [n, top_k] (best first)

so the file alone answers in item ids, with the inputs and outputs of every next-item kind
(`journey.onnx_contract.NEXT_ITEM_INPUT_NAMES` / `NEXT_ITEM_OUTPUT_NAMES`). Parity is the recommenders' check
(`recommender.ranking_diff`): scores within the tolerance, ids equal except inside a near-tie, at the held-out batch
and at 1, 7 and 1024 rows.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import onnx
from onnx import helper

from journey.errors import InvalidInputError, JourneyError
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from journey.registry import sha256_of  # the hash the registry checks at registration, computed the same way
from training.export.onnx_files import ExportReport, remove_side_files, staged, write_metadata
from training.export.parity import NativeFn, check_parity, resize_rows
from training.export.recommender import ONNX_ML_DOMAIN, ONNX_ML_OPSET, ranking_diff
from training.export.torch_onnx import torch_onnx_export

if TYPE_CHECKING:
    import torch

INDEX_INPUT: Final = "item_index"


def export_session_recommender(
    module: torch.nn.Module,
    vocabulary: np.ndarray,
    holdout: dict[str, np.ndarray],
    path: Path,
    *,
    native: NativeFn,
    tolerance: float = 1e-4,
) -> ExportReport:
    """Export `module(item_index, item_ids, event_types, lengths) -> (recommended_item_ids, scores)` behind a
    LabelEncoder of `vocabulary` (index i + 1 is item `vocabulary[i]`, 0 any other id), checked against `native` (the
    same module fed by the numpy mapping) on the raw-id `holdout`; nothing is left at `path` when parity fails."""
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
        *(torch.from_numpy(example[name]) for name in NEXT_ITEM_INPUT_NAMES),
    )
    module.eval()
    with staged(path) as staging:
        names = [INDEX_INPUT, *NEXT_ITEM_INPUT_NAMES]
        exporter = torch_onnx_export(module, args, staging, names, list(NEXT_ITEM_OUTPUT_NAMES))
        onnx_model = onnx.load(str(staging))
        remove_side_files(staging)
        onnx.save_model(_index_in_graph(onnx_model, vocabulary), str(staging), save_as_external_data=False)
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


def _index_in_graph(model: onnx.ModelProto, vocabulary: np.ndarray) -> onnx.ModelProto:
    """The graph with `item_index` computed from `item_ids` by a LabelEncoder instead of being an input."""
    graph = model.graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != [INDEX_INPUT, *NEXT_ITEM_INPUT_NAMES] or outputs != list(NEXT_ITEM_OUTPUT_NAMES):
        raise JourneyError(f"exported session recommender has inputs {inputs} and outputs {outputs}")
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
    nodes = [encode, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [value for value in graph.input if value.name != INDEX_INPUT]
    del graph.input[:]
    graph.input.extend(kept)
    if not any(o.domain == ONNX_ML_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ONNX_ML_DOMAIN, ONNX_ML_OPSET))
    onnx.checker.check_model(model)
    return model
