"""A tiny real .tflite plus the report.json edgeport convert writes beside it, without a conversion.

The model is built directly with the TFLite schema bindings: one FULLY_CONNECTED op from an NHWC
image (1x4x4xC) to `classes` scores, seeded weights. It runs in ai-edge-litert like any converted
model, which is all `edgeport ship` needs, and keeps these tests to a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from edgeport.ship import metadata as tm


def tiny_tflite(channels: int = 3, classes: int = 3, seed: int = 0) -> bytes:
    _, tfl = tm.schemas()
    rng = np.random.default_rng(seed)
    k = 4 * 4 * channels
    weights = rng.standard_normal((classes, k)).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32)

    def buffer(data: np.ndarray | None) -> Any:
        b = tfl.BufferT()
        b.data = None if data is None else np.frombuffer(data.tobytes(), np.uint8)
        return b

    def tensor(name: str, shape: list[int], buf: int) -> Any:
        t = tfl.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, tfl.TensorType.FLOAT32, buf
        return t

    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    op = tfl.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType, op.builtinOptions = tfl.BuiltinOptions.FullyConnectedOptions, tfl.FullyConnectedOptionsT()
    graph = tfl.SubGraphT()
    graph.tensors = [tensor("serving_default_x:0", [1, 4, 4, channels], 0), tensor("w", [classes, k], 1),
                     tensor("b", [classes], 2), tensor("PartitionedCall:0", [1, classes], 0)]
    graph.inputs, graph.outputs, graph.operators, graph.name = [0], [3], [op], "main"
    model = tfl.ModelT()
    model.version, model.description = 3, "tiny test model"
    model.operatorCodes, model.subgraphs = [code], [graph]
    model.buffers = [buffer(None), buffer(weights), buffer(bias)]
    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_result(folder: Path, *, channels: int = 3, classes: int = 3, seed: int = 0, passed: bool = True,
                 class_names: list[str] | None = None, color: str | None = None, stem: str = "tiny_int8") -> Path:
    """A convert output folder: <stem>.tflite and report.json as edgeport convert writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_tflite(channels, classes, seed)
    path = folder / f"{stem}.tflite"
    path.write_bytes(model)
    color = color or ("grayscale" if channels == 1 else "rgb")
    pre = {"resize": None, "crop": [4, 4], "scale": 1 / 255, "mean": [0.5] * channels, "std": [0.25] * channels,
           "color": color, "layout": "NCHW"}
    report = {
        "profile": {"name": "raspberry-pi-4"}, "versions": {"edgeport": "0.1.0"}, "timings": {},
        "artifact": {"path": str(path), "sha256": hashlib.sha256(model).hexdigest(), "size_bytes": len(model)},
        "quantization": {"mode": "int8", "float_layers": []},
        "accuracy": {"reference": 0.9, "tflite": 0.875, "drop_pp": 2.5, "top1_agreement": 0.95, "cosine_mean": 0.99,
                     "snr_db": 20.0},
        "latency": {"simulated": {"p50_ms": 0.5}, "host": {"p50_ms": 0.2, "p90_ms": 0.3},
                    "device": {"p50_ms": None, "p90_ms": None, "target": None}},
        "verdict": {"passed": passed, "checks": [{"name": "accuracy_drop_pp", "value": 2.5, "budget": 1 if not passed else 5,
                                                  "passed": passed}]},
        "model": {"source": "nets/tiny.pt", "sha256": "ab" * 32, "inputs": [{"name": "x", "shape": [1, channels, 4, 4]}],
                  "outputs": [{"name": "logits", "shape": [1, classes]}]},
        "data": {"calibration": {"source": "imgs/", "samples": 40, "sha256": "cd" * 32, "preprocessing": pre,
                                 "class_names": class_names},
                 "validation": {"source": "val/", "samples": 8, "sha256": "ef" * 32, "preprocessing": pre,
                                "class_names": class_names}},
    }
    (folder / "report.json").write_text(json.dumps(report, indent=2))
    return folder


def run_tflite(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]
