"""Shared by the rewrite tests: run an ONNX model on onnxruntime, and apply one rewrite alone."""

from __future__ import annotations

import onnx

from edgeport.export.rewrites import apply_rewrites


def run_onnx(model, feed):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def rewrite_only(model, name: str, rewrite):
    """(original copy, rewritten model, records, notes) with only `rewrite` applied."""
    notes: list[str] = []
    original = onnx.ModelProto()
    original.CopyFrom(model)
    out, records = apply_rewrites(model, notes, [(name, rewrite)])
    return original, out, records, notes
