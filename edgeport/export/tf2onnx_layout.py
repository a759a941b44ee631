"""ONNX files exported from TensorFlow/Keras by tf2onnx: channels-last already, full of Transpose pairs.

tf2onnx keeps Keras's NHWC tensors and wraps each channel-first op (Conv, pooling) in Transpose pairs;
elementwise ops, reductions and Reshapes between them stay in NHWC. onnx2tf assumes every 4-D tensor
is NCHW and moves it to NHWC, so on such a file it reads the NHWC segments' axes wrongly: a Keras
GlobalAveragePooling2D (ReduceMean over axes 1, 2) averaged the wrong axes and the float model's
output had cosine 0 against onnxruntime; on a third-party audio model a Mul failed outright.

The route taken, proved by the float check on every conversion:
- onnxruntime's transpose optimizer (graph optimization level BASIC: standard ONNX ops only) pushes
  each Transpose through the elementwise ops and reductions until pairs cancel. What is left is an
  NCHW graph with a Transpose only where the NHWC order really matters (before a Reshape, at outputs),
  the form torch.onnx writes and onnx2tf converts.
- The NHWC graph inputs (4-D, read only by a Transpose to NCHW) keep their shape in the TFLite model
  (onnx2tf's keep_ncw_or_nchw_or_ncdhw_input_names keeps an input as it is), so the app feeds the
  same NHWC arrays the Keras model took, and calibration data is given in that layout.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

PRODUCERS = ("tf2onnx", "keras2onnx")
_TO_NCHW = [0, 3, 1, 2]


def is_tf2onnx(model: Any) -> bool:
    return model.producer_name.lower() in PRODUCERS


def channels_last_inputs(model: Any) -> list[str]:
    """4-D graph inputs that every consumer transposes to NCHW: the Keras model's NHWC inputs."""
    from onnx import helper

    found = []
    for vi in model.graph.input:
        if len(vi.type.tensor_type.shape.dim) != 4:
            continue
        users = [n for n in model.graph.node if vi.name in n.input]
        if users and all(n.op_type == "Transpose" and
                         next((list(helper.get_attribute_value(a)) for a in n.attribute if a.name == "perm"), None)
                         == _TO_NCHW for n in users):
            found.append(vi.name)
    return found


def push_transposes(model: Any) -> tuple[Any, int]:
    """The graph after onnxruntime's BASIC optimizations (transpose optimizer, constant folding,
    redundant nodes), and how many Transpose nodes that removed."""
    import onnx
    import onnxruntime as ort

    before = sum(n.op_type == "Transpose" for n in model.graph.node)
    with tempfile.TemporaryDirectory(prefix="edgeport-tf2onnx-") as tmp:
        src, dst = Path(tmp, "in.onnx"), Path(tmp, "out.onnx")
        onnx.save(model, str(src))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(dst)
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(str(dst))
    foreign = {n.domain for n in optimized.graph.node if n.domain not in ("", "ai.onnx")}
    if foreign:  # BASIC writes standard ops only; anything else is not ours to hand to onnx2tf
        return model, 0
    after = sum(n.op_type == "Transpose" for n in optimized.graph.node)
    return optimized, before - after
