"""Trace a TFLite op back to the ONNX node and the PyTorch module that produced it.

onnx2tf does not keep ONNX node names in TFLite tensor names, so the match is numerical: run the
float TFLite model (all tensors preserved) and the ONNX model (every node output exposed) on the
same sample, and pair each TFLite op output with the ONNX node output holding the same values (in
either layout). The PyTorch module path then comes from the TorchScript exporter's scoped node
names, e.g. /features/features.3/conv/conv.1/Conv -> features.3.conv.1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.export.layout import apply, candidate_perms


def module_path(onnx_node_name: str) -> str | None:
    """'/features/features.3/conv/conv.1/Conv' -> 'features.3.conv.1'; None for non-torch names."""
    if not onnx_node_name.startswith("/"):
        return None
    parts = [p for p in onnx_node_name.strip("/").split("/")[:-1] if p]
    path: list[str] = []
    for part in parts:
        # Each scope is either a child attribute (conv) or the qualified child of the previous one (conv.1).
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path) or None


def onnx_intermediates(onnx_path: Path, feed: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """Every float node output of the ONNX model on one sample: tensor name -> (node name, value)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    known = {o.name for o in model.graph.output}
    producer = {}
    for node in model.graph.node:
        for out in node.output:
            if out and out not in known:
                model.graph.output.append(onnx.ValueInfoProto(name=out))
            producer[out] = node.name
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, feed)
    return {n: (producer.get(n, n), v) for n, v in zip(names, values, strict=True)
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1}


def tflite_intermediates(tflite_path: Path, feed: dict[str, np.ndarray], input_map: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    from edgeport.tflite.runner import dequantize_output, quantize_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what this is
        interp = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True)
    runner = interp.get_signature_runner()
    details = runner.get_input_details()
    runner(**{k: quantize_input(apply(feed[spec["source"]], _perm(spec)), details[k]) for k, spec in input_map.items()})
    out = {}
    for t in interp.get_tensor_details():
        try:
            value = interp.get_tensor(t["index"])
        except ValueError:
            continue
        if value is None or value.size <= 1:
            continue
        out[t["name"]] = dequantize_output(value, {"quantization": t["quantization"]}).astype(np.float32)
    return out


def _perm(spec: dict[str, Any]) -> tuple[int, ...] | None:
    perm = spec.get("perm")
    return tuple(perm) if perm is not None else None


def match(tfl: dict[str, np.ndarray], onnx_vals: dict[str, tuple[str, np.ndarray]], wanted: list[str],
          min_cosine: float = 0.999) -> dict[str, dict[str, Any]]:
    """For each wanted TFLite tensor, the ONNX node whose output holds the same values."""
    by_size: dict[int, list[tuple[str, str, np.ndarray]]] = {}
    order = {name: i for i, name in enumerate(onnx_vals)}
    for tensor, (node, value) in onnx_vals.items():
        by_size.setdefault(value.size, []).append((tensor, node, value))
    found: dict[str, dict[str, Any]] = {}
    for name in wanted:
        value = tfl.get(name)
        if value is None:
            continue
        best = None
        for tensor, node, ref in by_size.get(value.size, []):
            for perm in candidate_perms(ref.shape, value.shape) or [None]:
                cand = apply(ref, perm) if perm is not None else ref.reshape(value.shape)
                cos = _cosine(cand, value)
                # Prefer the closest values; on ties the later node (a fused activation's output).
                key = (round(cos, 4), order[tensor])
                if cos >= min_cosine and (best is None or key > best[0]):
                    best = (key, node, cos)
        if best is not None:
            found[name] = {"onnx_node": best[1], "cosine": round(best[2], 5)}
    return found


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a64) * np.linalg.norm(b64)
    return float(a64 @ b64 / denom) if denom > 0 else (1.0 if not a64.any() and not b64.any() else 0.0)
