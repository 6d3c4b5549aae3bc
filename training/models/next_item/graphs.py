"""The ONNX half of the index kinds: a small graph builder (onnx.helper) and the blocks every index graph is made of,
each the mirror of one numpy step in `indexes.py`.

Every graph takes the recommender inputs (`journey.onnx_contract.NEXT_ITEM_INPUT_NAMES`: item_ids int64 [n, T],
event_types int64 [n, T], lengths int64 [n]) and answers its outputs (recommended_item_ids int64 [n, top_k], scores
float32 [n, top_k], best first), like the GRU's graph, so serving cannot tell the kinds apart. The blocks:

    encode          LabelEncoder (ai.onnx.ml: vocabulary id -> index, else 0) and Where(step < length)
    step_weights    Gather(decay table, lengths) x (index > 0)
    csr_gather      Gather(offsets) -> start, count; start + Range(the longest count) -> Gather(targets, values), masked
    scatter_add     ConstantOfShape([n, size]) -> ScatterElements(reduction="add")
    band            Where(score > 0, 0.5 + 0.5 score / ReduceMax(score), 0.5 prior)
    head            TopK(top_k) -> Gather(index -> item id table): the two outputs

The index a kind fitted (vocabulary, popularity, follower lists, the session-kNN posting lists) lives in the graph's
initializers: one file is the whole model, and the registry's sha256 of that file versions the index with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from journey.errors import InvalidInputError
from journey.onnx_contract import NEXT_ITEM_INPUT_NAMES, NEXT_ITEM_OUTPUT_NAMES
from training.export import ExportReport, export_graph
from training.models.next_item.base import Inputs, Vocabulary
from training.models.next_item.indexes import BAND, Csr, ranked

OPSET: Final = 18  # ScatterElements with reduction "add" / "max" (16 / 18), ReduceMax with axes as an input (18)
ONNX_ML_DOMAIN, ONNX_ML_OPSET = "ai.onnx.ml", 2  # LabelEncoder with int64 keys and values
BATCH: Final = "batch"


class GraphBuilder:
    """Nodes and initializers with generated names (`<op>_<n>`), in the order they are added: deterministic bytes."""

    def __init__(self, name: str, seq_len: int) -> None:
        self.name = name
        self.seq_len = seq_len
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0
        self.item_ids, self.event_types, self.lengths = NEXT_ITEM_INPUT_NAMES

    def _name(self, stem: str) -> str:
        self._count += 1
        return f"{stem.lower()}_{self._count}"

    def const(self, value: Any, stem: str = "const", dtype: Any = None) -> str:
        """An initializer holding `value` (a numpy array or a scalar, whose dtype `dtype` names)."""
        name = self._name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, domain: str = "", **attrs: Any) -> str:
        return self.ops(op_type, inputs, 1, domain=domain, **attrs)[0]

    def ops(self, op_type: str, inputs: tuple[str, ...], outputs: int, domain: str = "", **attrs: Any) -> list[str]:
        names = [self._name(op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, domain=domain, **attrs))
        return names

    def batch_shape(self, *tail: int) -> str:
        """int64 [1 + len(tail)]: (n, *tail), n read from `lengths`."""
        return self.op("Concat", self.op("Shape", self.lengths), self.const(np.array(tail, dtype=np.int64)), axis=0)

    def model(self, ids: str, scores: str, top_k: int) -> onnx.ModelProto:
        """The graph with the recommender's inputs and outputs (`ids`, `scores` renamed to theirs), checked."""
        self.nodes.append(helper.make_node("Identity", [ids], [NEXT_ITEM_OUTPUT_NAMES[0]]))
        self.nodes.append(helper.make_node("Identity", [scores], [NEXT_ITEM_OUTPUT_NAMES[1]]))
        inputs = [
            helper.make_tensor_value_info(self.item_ids, TensorProto.INT64, [BATCH, self.seq_len]),
            helper.make_tensor_value_info(self.event_types, TensorProto.INT64, [BATCH, self.seq_len]),
            helper.make_tensor_value_info(self.lengths, TensorProto.INT64, [BATCH]),
        ]
        outputs = [
            helper.make_tensor_value_info(NEXT_ITEM_OUTPUT_NAMES[0], TensorProto.INT64, [BATCH, top_k]),
            helper.make_tensor_value_info(NEXT_ITEM_OUTPUT_NAMES[1], TensorProto.FLOAT, [BATCH, top_k]),
        ]
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, initializer=self.initializers)
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(ONNX_ML_DOMAIN, ONNX_ML_OPSET)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="journey")
        model.ir_version = 9  # onnx 1.23 writes 11 by default; ONNX Runtime 1.2x reads 9 everywhere
        onnx.checker.check_model(model, full_check=True)
        return model


# ---------------------------------------------------------------------------------------------------------------
# Blocks (each mirrors a function of indexes.py)
# ---------------------------------------------------------------------------------------------------------------


def valid_steps(g: GraphBuilder) -> str:
    """bool [n, T]: step < length."""
    steps = g.const(np.arange(g.seq_len, dtype=np.int64)[None, :], "steps")
    return g.op("Less", steps, g.op("Unsqueeze", g.lengths, g.const(np.array([1], dtype=np.int64))))


def encode(g: GraphBuilder, vocabulary: np.ndarray) -> str:
    """int64 [n, T] vocabulary indices (index i + 1 is `vocabulary[i]`; 0: padding or unknown), as `encode`."""
    ids = np.asarray(vocabulary, dtype=np.int64)
    index = g.op(
        "LabelEncoder",
        g.item_ids,
        domain=ONNX_ML_DOMAIN,
        keys_int64s=ids.tolist(),
        values_int64s=list(range(1, len(ids) + 1)),
        default_int64=0,
    )
    return g.op("Where", valid_steps(g), index, g.const(np.int64(0)))


def known(g: GraphBuilder, index: str) -> str:
    """float32 [n, T]: 1 where the step holds a vocabulary item."""
    return g.op("Cast", g.op("Greater", index, g.const(np.int64(0))), to=TensorProto.FLOAT)


def step_weights(g: GraphBuilder, table: np.ndarray, index: str) -> str:
    """float32 [n, T]: Gather(table, lengths) x known, as `step_weights`."""
    return g.op("Mul", g.op("Gather", g.const(table, "decay"), g.lengths, axis=0), known(g, index))


def last_index(g: GraphBuilder, index: str) -> str:
    """int64 [n, 1]: the newest step's index, as `last_index`."""
    last = g.op("Max", g.op("Sub", g.lengths, g.const(np.int64(1))), g.const(np.int64(0)))
    return g.op("GatherElements", index, g.op("Unsqueeze", last, g.const(np.array([1], dtype=np.int64))), axis=1)


def csr_gather(g: GraphBuilder, csr: Csr, rows: str, stem: str, *, masked: bool = True) -> tuple[str, str | None, str]:
    """Targets int64, values float32 (None for a table without) and the mask, each [*rows, width], as `Csr.gather`
    (rows int64 [n, R]). `masked` False leaves the masked places' targets unspecified (the caller masks them)."""
    offsets = g.const(csr.offsets, f"{stem}_offsets")
    start = g.op("Gather", offsets, rows, axis=0)
    count = g.op("Sub", g.op("Gather", offsets, g.op("Add", rows, g.const(np.int64(1))), axis=0), start)
    last_axis = g.const(np.array([-1], dtype=np.int64))
    # read as many places as the longest of these rows holds (at least one), not the table's widest row
    longest = g.op("Max", g.op("ReduceMax", count, keepdims=0), g.const(np.int64(1)))
    width = g.op("Range", g.const(np.int64(0)), longest, g.const(np.int64(1)))
    ok = g.op("Less", width, g.op("Unsqueeze", count, last_axis))
    place = g.op("Where", ok, g.op("Add", g.op("Unsqueeze", start, last_axis), width), g.const(np.int64(0)))
    targets = g.op("Cast", g.op("Gather", g.const(csr.targets, f"{stem}_targets"), place, axis=0), to=TensorProto.INT64)
    if masked:
        targets = g.op("Where", ok, targets, g.const(np.int64(0)))
    if csr.values is None:
        return targets, None, ok
    values = g.op("Gather", g.const(csr.values, f"{stem}_values"), place, axis=0)
    return targets, g.op("Where", ok, values, g.const(np.float32(0))), ok


def weighted_gather(g: GraphBuilder, csr: Csr, rows: str, stem: str) -> tuple[str, str, str]:
    """`csr_gather` of a table whose entries carry values."""
    targets, values, ok = csr_gather(g, csr, rows, stem)
    if values is None:
        raise ValueError(f"table {stem} carries no values")
    return targets, values, ok


def flat(g: GraphBuilder, tensor: str) -> str:
    """[n, a, b] -> [n, a * b]."""
    return g.op("Reshape", tensor, g.const(np.array([0, -1], dtype=np.int64)))


def scatter_add(g: GraphBuilder, targets: str, values: str, size: int, fill: float = 0.0) -> str:
    """float32 [n, size]: `values` summed at `targets` per row, as `scatter_add`."""
    zeros = g.op(
        "ConstantOfShape", g.batch_shape(size), value=helper.make_tensor("fill", TensorProto.FLOAT, [1], [fill])
    )
    return g.op("ScatterElements", zeros, targets, values, axis=1, reduction="add")


def band(g: GraphBuilder, sums: str, items: str, prior: np.ndarray, boost: np.ndarray | None = None) -> str:
    """float32 [n, V + 1], as `band` (of sums x boost): the own items' scores computed at `items` only (int64 [n, E],
    every item with a positive sum among them; 0 elsewhere), written over the popular items' fill-ins.

    ScatterElements "max" writes them: an item listed twice gets the same value twice, and a listed item without a
    positive sum keeps its fill-in, as does index 0 (-0.5)."""
    half = g.const(BAND)
    own = g.op("GatherElements", sums, items, axis=1)
    if boost is not None:
        own = g.op("Mul", own, g.op("Gather", g.const(boost, "boost"), items, axis=0))
    top = g.op("ReduceMax", own, g.const(np.array([1], dtype=np.int64)), keepdims=1)
    scale = g.op("Div", half, g.op("Max", top, g.const(np.float32(1e-30))))
    fill = g.const((BAND * prior).astype(np.float32), "fill")
    scored = g.op("Add", g.op("Mul", own, scale), half)
    values = g.op("Where", g.op("Greater", own, g.const(np.float32(0))), scored, g.op("Gather", fill, items, axis=0))
    base = g.op("Expand", g.op("Unsqueeze", fill, g.const(np.array([0], dtype=np.int64))), g.batch_shape(len(prior)))
    return g.op("ScatterElements", base, items, values, axis=1, reduction="max")


def head(g: GraphBuilder, scores: str, vocabulary: np.ndarray, top_k: int) -> onnx.ModelProto:
    """TopK over the vocabulary indices, Gather of their item ids: the finished model."""
    best, index = g.ops("TopK", (scores, g.const(np.array([top_k], dtype=np.int64))), 2, axis=1, largest=1, sorted=1)
    table = g.const(np.concatenate([[0], np.asarray(vocabulary, dtype=np.int64)]), "vocabulary_item_ids")
    return g.model(g.op("Gather", table, index, axis=0), best, top_k)


# ---------------------------------------------------------------------------------------------------------------
# What the index kinds share
# ---------------------------------------------------------------------------------------------------------------

FRAMEWORK: Final = "onnx"  # the file's journey.framework: a graph built with onnx.helper from a numpy-fitted index


class IndexRecommender(ABC):
    """A next-item kind kept as an index (see base.Recommender): numpy `score` and the graph that mirrors it.

    Subclasses set `kind`, `config`, `vocabulary`, `seq_len` and implement `score` (inputs -> float32 [n, V + 1])
    and `graph_scores` (the same as ONNX nodes); `recommend` and `export` follow.
    """

    kind: str
    config: Any
    vocabulary: Vocabulary
    seq_len: int

    @abstractmethod
    def score(self, inputs: Inputs) -> np.ndarray: ...

    @abstractmethod
    def graph_scores(self, g: GraphBuilder) -> str: ...

    def index_sizes(self) -> dict[str, int]:
        """Entries and bytes of the tables the graph carries (params and the report)."""
        return {}

    def recommend(self, inputs: Inputs, k: int) -> tuple[np.ndarray, np.ndarray]:
        return ranked(self.vocabulary, inputs, k, self.score)

    def graph(self, top_k: int) -> onnx.ModelProto:
        g = GraphBuilder(f"next_item_{self.kind}", self.seq_len)
        return head(g, self.graph_scores(g), self.vocabulary.ids, top_k)

    def export(self, path: Path, holdout: Inputs, top_k: int) -> ExportReport:
        if not 1 <= top_k <= len(self.vocabulary):
            raise InvalidInputError(
                f"top_k must be in 1..{len(self.vocabulary)} (the vocabulary)", field="top_k", value=top_k
            )
        return export_graph(
            self.graph(top_k),
            holdout,
            path,
            native=lambda feeds: list(self.recommend(feeds, top_k)),
            framework=FRAMEWORK,
        )

    def params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": asdict(self.config),
            "vocabulary_size": len(self.vocabulary),
            "index": self.index_sizes(),
        }
