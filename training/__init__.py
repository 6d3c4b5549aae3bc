"""Training pipelines: batch features, point-in-time training sets, models, ONNX export, evaluation."""
