"""Checkpoint loading, ONNX export/normalisation and ONNX -> TFLite conversion."""
