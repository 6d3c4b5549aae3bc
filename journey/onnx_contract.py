"""What an exported ONNX file promises the server that loads it: metadata keys, frameworks, tensor names.

`training.export` writes these and `serving.runtime` reads them; both import them from here, so the two sides cannot
drift apart. Standard library only: the ONNX runtime package imports this module on a bare GPU host that has numpy
and onnxruntime and nothing else of ours.
"""

from __future__ import annotations

from typing import Final

# `journey.*` entries of the model's metadata_props (JSON lists for the name lists)
META_INPUT_NAMES: Final = "journey.input_names"
META_OUTPUT_NAMES: Final = "journey.output_names"
META_FEATURE_ORDER: Final = "journey.feature_order"
META_FRAMEWORK: Final = "journey.framework"
META_PARITY: Final = "journey.parity_max_abs_diff"
META_EXPORTER: Final = "journey.exporter"
REQUIRED_METADATA: Final = (META_INPUT_NAMES, META_OUTPUT_NAMES, META_FEATURE_ORDER, META_FRAMEWORK)

# what trained the graph (META_FRAMEWORK) and what wrote it (META_EXPORTER)
FRAMEWORK_XGBOOST: Final = "xgboost"
FRAMEWORK_PYTORCH: Final = "pytorch"
EXPORTER_ONNXMLTOOLS: Final = "onnxmltools"
EXPORTER_TORCH_DYNAMO: Final = "torch.onnx.dynamo"
EXPORTER_TORCH_LEGACY: Final = "torch.onnx.legacy"

# tensor names per model kind
PROPENSITY_INPUT_NAME: Final = "features"  # float32 [n, features] in META_FEATURE_ORDER
PROPENSITY_OUTPUT_NAME: Final = "probabilities"  # float32 [n, 2]
NEXT_ACTION_INPUT_NAMES: Final = (
    "event_types",
    "item_buckets",
    "category_buckets",
    "step_features",
    "lengths",
    "dense",
)
NEXT_ACTION_OUTPUT_NAME: Final = "probabilities"  # float32 [n, classes], softmax in the graph
NEXT_ITEM_INPUT_NAMES: Final = ("item_ids", "event_types", "lengths")
NEXT_ITEM_OUTPUT_NAMES: Final = ("recommended_item_ids", "scores")  # [n, top_k] each, best first
