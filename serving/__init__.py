"""Serving: the BentoML service, ONNX Runtime sessions, online features, routing and metrics."""
