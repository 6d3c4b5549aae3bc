"""The session-kNN graph: `Sknn.score` as ONNX nodes, step for step (see sknn.py for what each step means).

    item_ids --LabelEncoder, Where--> index [n, T]
    weights   Gather(decay, lengths) x known x (1 - ReduceMax(Equal(index_j, index_j') & j' > j))      [n, T]
    postings  Gather(offsets) + Range(P) --Gather(sessions)--> candidates [n, T x P] (-1: none), their weights
    newest    TopK(candidates, m) with m the most candidates any row has (a sort, newest session first: the -1
              padding past m is never sorted) + GatherElements(weights)
    distinct  first of a run (Not(Equal(previous))) --CumSum--> group; keep group < sample_size
    similar   ScatterElements(add) of the weights into [n, sample_size + 1] (slot sample_size: the dropped ones,
              with weight 0), ScatterElements(max) of the session numbers
    neighbors TopK(similarity, k_neighbors) + GatherElements(session numbers); similarity 0: none
    items     Gather(session offsets) + Range(Q) --Gather(items)--> [n, k x Q] with the neighbour's similarity
    scores    ScatterElements(add) into zeros [n, V + 1]; at the neighbours' items only: x (1 + idf_weight x idf),
              scaled into (0.5, 1], ScatterElements(max) over Expand(0.5 p) (graphs.band) --> TopK --> ids

Index in the initializers: postings offsets [V + 2] int64 + session numbers [E_p + 1] int32, session offsets
[N + 1] int64 + item indices [E_s + 1] int32, 0.5 p [V + 1] (and the boost [V + 1] with idf) float32, the decay
table [T + 1, T]. At 100k items and 500k sessions: ~21 MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper

from training.models.next_item.graphs import GraphBuilder, band, csr_gather, encode, flat, scatter_add, step_weights
from training.models.next_item.indexes import Csr

_I64, _F32 = TensorProto.INT64, TensorProto.FLOAT


@dataclass(frozen=True)
class SknnTables:
    """What the graph is built from: a fitted Sknn's tables and the two sizes that shape its steps."""

    vocabulary: np.ndarray  # int64 [V]: index i + 1 is vocabulary[i]
    decay: np.ndarray  # float32 [T + 1, T]
    postings: Csr  # item index -> session numbers, newest first
    sessions: Csr  # session number -> item indices
    shares: np.ndarray  # float32 [V + 1]
    boost: np.ndarray | None  # float32 [V + 1], None when idf_weight is 0
    sample_size: int
    k_neighbors: int


def sknn_scores(g: GraphBuilder, tables: SknnTables) -> str:
    """float32 [n, V + 1]: the banded item scores for the graph's inputs (`Sknn.score`)."""
    index = encode(g, tables.vocabulary)
    weights = g.op("Mul", step_weights(g, tables.decay, index), _newest_occurrence(g, index))
    numbers, similarity = _neighbors(g, tables, index, weights)
    items, _, ok = csr_gather(g, tables.sessions, numbers, "session_items")
    pulls = g.op("Where", ok, g.op("Unsqueeze", similarity, _axes(g, -1)), g.const(np.float32(0)))
    items = flat(g, items)
    sums = scatter_add(g, items, flat(g, pulls), len(tables.shares))
    return band(g, sums, items, tables.shares, tables.boost)


def _axes(g: GraphBuilder, *axes: int) -> str:
    return g.const(np.array(axes, dtype=np.int64))


def _newest_occurrence(g: GraphBuilder, index: str) -> str:
    """float32 [n, T]: 0 where the step's known item occurs again later in the row, else 1 (`repeated_later`)."""
    steps = g.seq_len
    later = g.const(np.triu(np.ones((steps, steps), dtype=bool), k=1)[None], "later")
    same = g.op("Equal", g.op("Unsqueeze", index, _axes(g, 2)), g.op("Unsqueeze", index, _axes(g, 1)))
    known = g.op("Unsqueeze", g.op("Greater", index, g.const(np.int64(0))), _axes(g, 1))
    again = g.op("Cast", g.op("And", g.op("And", same, later), known), to=_F32)
    return g.op("Sub", g.const(np.float32(1)), g.op("ReduceMax", again, _axes(g, 2), keepdims=0))


def _neighbors(g: GraphBuilder, tables: SknnTables, index: str, weights: str) -> tuple[str, str]:
    """Session numbers int64 [n, k] (0 where none) and similarities float32 [n, k], as `Sknn.neighbors`."""
    sample = tables.sample_size
    sessions, _, ok = csr_gather(g, tables.postings, index, "postings", masked=False)
    positive = g.op("Unsqueeze", g.op("Greater", weights, g.const(np.float32(0))), _axes(g, -1))
    ok = flat(g, g.op("And", ok, positive))
    candidates = g.op("Where", ok, flat(g, sessions), g.const(np.int64(-1)))
    shared = g.op(
        "Where",
        ok,
        flat(g, g.op("Expand", g.op("Unsqueeze", weights, _axes(g, -1)), g.op("Shape", sessions))),
        g.const(np.float32(0)),
    )
    # sort only as many places as the fullest row has candidates (at least one): the rest is -1 padding
    found = g.op("ReduceSum", g.op("Cast", ok, to=_I64), _axes(g, 1), keepdims=0)
    places = g.op("Max", g.op("ReduceMax", found, _axes(g, 0), keepdims=1), g.const(np.array([1], dtype=np.int64)))
    newest, order = g.ops("TopK", (candidates, places), 2, axis=1)
    shared = g.op("GatherElements", shared, order, axis=1)
    start = g.op("Expand", g.const(np.array([[-2]], dtype=np.int64)), g.batch_shape(1))
    before = g.op("Slice", newest, _axes(g, 0), _axes(g, -1), _axes(g, 1))
    previous = g.op("Concat", start, before, axis=1)
    real = g.op("GreaterOrEqual", newest, g.const(np.int64(0)))
    new = g.op("And", g.op("Not", g.op("Equal", newest, previous)), real)
    group = g.op("Sub", g.op("CumSum", g.op("Cast", new, to=_I64), g.const(np.int64(1))), g.const(np.int64(1)))
    keep = g.op("And", real, g.op("Less", group, g.const(np.int64(sample))))
    slot = g.op("Where", keep, group, g.const(np.int64(sample)))
    # slot `sample` collects what is dropped, with weight 0: TopK may reach it only among zeros, which say "none"
    similarity = scatter_add(g, slot, g.op("Where", keep, shared, g.const(np.float32(0))), sample + 1)
    none = helper.make_tensor("none", _I64, [1], [-1])
    unset = g.op("ConstantOfShape", g.batch_shape(sample + 1), value=none)
    kept = g.op("Where", keep, newest, g.const(np.int64(-1)))
    numbers = g.op("ScatterElements", unset, slot, kept, axis=1, reduction="max")
    k = min(tables.k_neighbors, sample)
    value, best = g.ops("TopK", (similarity, g.const(np.array([k], dtype=np.int64))), 2, axis=1)
    found = g.op("Greater", value, g.const(np.float32(0)))
    chosen = g.op("GatherElements", numbers, best, axis=1)
    return (
        g.op("Where", found, chosen, g.const(np.int64(0))),
        g.op("Where", found, value, g.const(np.float32(0))),
    )
