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

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from journey.errors import JourneyError
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from training.export.onnx_files import ExportReport
from training.export.parity import NativeFn
from training.export.recommender import INDEX_INPUT, ONNX_ML_DOMAIN, ONNX_ML_OPSET, export_behind_index

if TYPE_CHECKING:
    import torch


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
    return export_behind_index(
        module,
        holdout,
        path,
        native=native,
        tolerance=tolerance,
        module_inputs=NEXT_ITEM_INPUT_NAMES,
        module_outputs=NEXT_ITEM_OUTPUT_NAMES,
        rewrite=lambda model: _index_in_graph(model, vocabulary),
    )


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
