"""Cross-layer equalization on the ONNX graph: a float-equivalent rewrite that removes per-channel
range outliers before int8, so fewer (often no) layers need to stay in float.

For a producer conv A whose output feeds only a consumer conv/linear B, with nothing but
positive-homogeneous ops between them (Relu, Pad with zeros), channel c of A's output can be divided
by s_c and B's input channel c multiplied by s_c without changing the float function. Choosing
s_c = sqrt(range_A[c] / range_B[c]) equalizes the two weight ranges (Nagel et al., "Data-Free
Quantization", 2019). Clip/HardSwish are not positive-homogeneous, so such pairs are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PASS_THROUGH = {"Relu", "Pad", "Identity"}


@dataclass(frozen=True)
class EqualizeResult:
    path: Path
    pairs: int
    max_scale: float
    max_output_change: float


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def equalize(src: Path, dst: Path, sample: dict[str, np.ndarray], iterations: int = 4) -> EqualizeResult:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    pairs = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        tensor, nxt = node.output[0], None
        while tensor not in outputs and len(consumers.get(tensor, [])) == 1:
            cand = consumers[tensor][0]
            if cand.op_type in PASS_THROUGH and cand.input[0] == tensor and _zero_pad(cand, inits):
                tensor = cand.output[0]
                continue
            nxt = cand
            break
        if nxt is None or nxt.input[0] != tensor or len(nxt.input) < 2 or nxt.input[1] not in inits:
            continue
        if nxt.op_type == "Conv" and (_attr(nxt, "group", 1) == 1 or _is_depthwise(nxt, inits)):
            if all(uses.get(n, 0) == 1 for n in [node.input[1], nxt.input[1], *node.input[2:3]]):
                pairs.append((node, nxt))
    max_scale = 1.0
    for _ in range(iterations):
        for a, b in pairs:
            wa = numpy_helper.to_array(inits[a.input[1]]).astype(np.float64)
            wb = numpy_helper.to_array(inits[b.input[1]]).astype(np.float64)
            depthwise_b = _is_depthwise(b, inits)
            ra = np.abs(wa).reshape(wa.shape[0], -1).max(axis=1)
            rb = np.abs(wb).reshape(wb.shape[0], -1).max(axis=1) if depthwise_b else np.abs(wb).max(axis=tuple(i for i in range(wb.ndim) if i != 1))
            if ra.shape != rb.shape:
                continue
            s = np.where((ra > 0) & (rb > 0), np.sqrt(ra / np.maximum(rb, 1e-12)), 1.0)
            s = np.clip(s, 1e-4, 1e4)
            max_scale = max(max_scale, float(np.max(np.maximum(s, 1 / s))))
            shape_a = (-1,) + (1,) * (wa.ndim - 1)
            inits[a.input[1]].CopyFrom(numpy_helper.from_array((wa / s.reshape(shape_a)).astype(np.float32), a.input[1]))
            if len(a.input) > 2 and a.input[2] in inits:
                bias = numpy_helper.to_array(inits[a.input[2]]).astype(np.float64)
                inits[a.input[2]].CopyFrom(numpy_helper.from_array((bias / s).astype(np.float32), a.input[2]))
            shape_b = shape_a if depthwise_b else (1, -1) + (1,) * (wb.ndim - 2)
            inits[b.input[1]].CopyFrom(numpy_helper.from_array((wb * s.reshape(shape_b)).astype(np.float32), b.input[1]))
    onnx.save(model, str(dst))
    change = _output_change(src, dst, sample) if pairs else 0.0
    return EqualizeResult(dst, len(pairs), max_scale, change)


def _zero_pad(node, inits) -> bool:
    if node.op_type != "Pad":
        return True
    mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "constant")
    if mode != "constant":
        return False
    if len(node.input) > 2 and node.input[2]:
        from onnx import numpy_helper

        value = inits.get(node.input[2])
        return value is not None and not np.any(numpy_helper.to_array(value))
    return True


def _is_depthwise(node, inits) -> bool:
    from onnx import numpy_helper

    group = _attr(node, "group", 1)
    w = numpy_helper.to_array(inits[node.input[1]])
    return group > 1 and w.shape[1] == 1 and group == w.shape[0]


def _output_change(before: Path, after: Path, sample: dict[str, np.ndarray]) -> float:
    """Largest relative change of any output: the rewrite must be float-equivalent."""
    import onnxruntime as ort

    a = ort.InferenceSession(str(before), providers=["CPUExecutionProvider"]).run(None, sample)
    b = ort.InferenceSession(str(after), providers=["CPUExecutionProvider"]).run(None, sample)
    return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(x)) + 1e-12)) for x, y in zip(a, b, strict=True))
