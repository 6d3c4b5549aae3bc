"""ONNX export of trained models, refused unless ONNX Runtime reproduces the native model on held-out data.

    export_xgboost(model, feature_names, holdout, path)       XGBClassifier -> onnxmltools (opset 15), input "features"
    export_torch(module, example_inputs, holdout, path, ...)  nn.Module -> torch.onnx dynamo exporter (legacy fallback)
    export_recommender(module, vocabulary, holdout, path, ...) a top-k module over vocabulary indices -> a graph that
                                                              takes and returns the shop's item ids (vocabulary in it)
    export_graph(model, holdout, path, ...)                   a recommender graph built with onnx.helper from a fitted
                                                              index (the next-item baselines) -> checked file
    read_metadata(path)                                       the `metadata_props` serving reads (names, feature order)

Why a parity check on every export: a converted graph can run and still be wrong (float32 thresholds moving samples
across tree splits, an op lowered differently, a batch axis frozen at the example's size). Each export runs the
written file with ONNX Runtime's CPU provider on the held-out batch and on batch sizes 1, 7 and 1024 (the held-out
rows tiled or sliced) and compares every output with the native model. Above `tolerance` the export is refused
(`InvalidInputError`, field "parity") and nothing is left at `path`: the model is written to a temporary file next to
it and moved into place only once it passed, so a refused export does not clobber an earlier good one either.

Files are self-contained (no `.onnx.data` side file), so one path is the whole model for the registry and BentoML.
torch, onnxmltools and onnxruntime are imported inside the functions that use them: importing this package (to read
a file's metadata, say) loads none of them.

    onnx_files.py     ExportReport, staging beside the target path, the `journey.*` metadata
    parity.py         check_parity: ONNX Runtime vs the native model at the held-out batch and 1, 7, 1024 rows
    xgboost_onnx.py   export_xgboost
    torch_onnx.py     export_torch (dynamo, legacy fallback)
    recommender.py    export_recommender (LabelEncoder + torch graph + Gather), export_graph (onnx.helper graphs)
"""

# the exporter names an ExportReport (and a file's `journey.exporter`) carries, beside the functions that write them
from journey.onnx_contract import EXPORTER_ONNXMLTOOLS, EXPORTER_TORCH_DYNAMO, EXPORTER_TORCH_LEGACY
from training.export.onnx_files import ExportReport, read_metadata
from training.export.parity import PARITY_BATCH_SIZES, check_parity
from training.export.recommender import export_graph, export_recommender
from training.export.torch_onnx import export_torch
from training.export.xgboost_onnx import export_xgboost

__all__ = [
    "EXPORTER_ONNXMLTOOLS",
    "EXPORTER_TORCH_DYNAMO",
    "EXPORTER_TORCH_LEGACY",
    "PARITY_BATCH_SIZES",
    "ExportReport",
    "check_parity",
    "export_graph",
    "export_recommender",
    "export_torch",
    "export_xgboost",
    "read_metadata",
]
