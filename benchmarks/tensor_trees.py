"""Rewrite a tree-ensemble ONNX model (ai.onnx.ml TreeEnsembleClassifier) as plain tensor ops, for the GPU benchmark.

    python -m benchmarks.tensor_trees SRC.onnx DST.onnx [--strategy gemm|tree_trav|perf_tree_trav]

ONNX Runtime runs tree ensembles on its CPU provider only: on a CUDA session those nodes fall back to the CPU. The
GPU question for the XGBoost propensity model is therefore whether the same trees, compiled to matrix multiplications
by hummingbird-ml (Microsoft's tree compiler), are faster on the GPU than the trees on the CPU. This tool produces
that model so `benchmarks/gpu.py` can time both; serving keeps the tree model unless the numbers say otherwise
(README, performance).

hummingbird-ml is not a project dependency (it pins onnx <= 1.16, below what the exporters need): install it beside
the project with `pip install --no-deps hummingbird-ml onnxconverter-common`. Two of its gaps are handled here:
it drops the ensemble's `base_values` (XGBoost's base score), so the base is folded into the first tree's leaves
(every row reaches exactly one of them, so the sum is unchanged); and torch >= 2.9 exports through dynamo, which
hummingbird's ONNX backend cannot drive, so the converted torch module is exported with the TorchScript exporter.
The result must match the tree model within 1e-4 on random rows or nothing is written (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from benchmarks.gpu import PARITY_TOLERANCE, parity

TREE_OPS = {"TreeEnsembleClassifier", "TreeEnsembleRegressor"}


def fold_base_values(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose tree node carries its base score in tree 0's leaf weights and a zero `base_values`."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    for node in folded.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "base_values" not in attrs:
            continue
        prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
        base = list(helper.get_attribute_value(attrs["base_values"]))
        tree_ids = helper.get_attribute_value(attrs[f"{prefix}_treeids"])
        class_ids = helper.get_attribute_value(attrs[f"{prefix}_ids"])
        weights = list(helper.get_attribute_value(attrs[f"{prefix}_weights"]))
        first_tree = min(tree_ids)
        for i, (tree, cls) in enumerate(zip(tree_ids, class_ids, strict=True)):
            if tree == first_tree:
                weights[i] += base[cls] if cls < len(base) else base[0]
        attrs[f"{prefix}_weights"].CopyFrom(helper.make_attribute(f"{prefix}_weights", weights))
        attrs["base_values"].CopyFrom(helper.make_attribute("base_values", [0.0] * len(base)))
    return folded


def convert(src: Path, dst: Path, strategy: str, rows: int = 4096) -> float:
    """Writes the tensor-op model to `dst` when it matches `src`; returns the max abs difference found."""
    import torch
    from hummingbird.ml import convert as hb_convert

    model = onnx.load(str(src))
    reference = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    (feature,) = reference.get_inputs()
    outputs = [o.name for o in reference.get_outputs()]
    sample = np.random.default_rng(0).standard_normal((rows, feature.shape[1])).astype(np.float32)
    extra: dict[str, Any] = {"tree_implementation": strategy}
    compiled = hb_convert(fold_base_values(model), "torch", sample[:8], extra_config=extra).model.eval()
    candidate = dst.with_suffix(".tmp.onnx")
    torch.onnx.export(
        compiled,
        (torch.from_numpy(sample[:8]),),
        str(candidate),
        dynamo=False,
        opset_version=15,
        input_names=[feature.name],
        output_names=outputs,
        dynamic_axes={name: {0: "batch"} for name in [feature.name, *outputs]},
    )
    exported = onnx.load(str(candidate))
    helper.set_model_props(exported, {**{p.key: p.value for p in model.metadata_props}, "journey.trees_as": strategy})
    onnx.save(exported, str(candidate))
    tensor = ort.InferenceSession(str(candidate), providers=["CPUExecutionProvider"])
    worst = parity(reference, tensor, {feature.name: sample})
    if worst > PARITY_TOLERANCE:
        candidate.unlink()
        return worst
    candidate.replace(dst)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="tree-ensemble .onnx (the exported XGBoost model)")
    parser.add_argument("dst", type=Path, help="where the tensor-op .onnx goes")
    parser.add_argument("--strategy", choices=["gemm", "tree_trav", "perf_tree_trav"], default="gemm")
    args = parser.parse_args(argv)
    if not args.src.is_file():
        parser.error(f"no such model file: {args.src}")  # exits 2
    worst = convert(args.src, args.dst, args.strategy)
    if not args.dst.is_file():
        print(f"refused: the tensor model differs from the trees by {worst:.3g} (> {PARITY_TOLERANCE})")
        return 1
    print(f"tensor-op model ({args.strategy}) written to {args.dst}; max abs diff vs the trees {worst:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
