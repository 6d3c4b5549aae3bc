"""Tiny real ONNX models for registry and serving tests that need a model file but not a trained model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_onnx(path: Path, scale: float = 2.0) -> tuple[Path, str]:
    """A one-node ONNX model (y = x * scale) and its SHA-256, as the exporter would report it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    weight = numpy_helper.from_array(np.full((2,), scale, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "tiny", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()
