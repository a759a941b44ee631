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
            for holder, slot in ((node, 1), (nxt, 1), (node, 2)):
                if slot < len(holder.input) and uses.get(holder.input[slot], 0) > 1:
                    _own_copy(holder, slot, graph, inits, uses)  # exporters dedupe equal constants
            pairs.append((node, nxt))
    ln_pairs, max_scale = _equalize_layernorms(graph, inits, consumers, uses, outputs)
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
    total = len(pairs) + ln_pairs
    change = _output_change(src, dst, sample) if total else 0.0
    return EqualizeResult(dst, total, max_scale, change)


_RESHAPES = {"Reshape", "Identity", "Flatten"}


def _equalize_layernorms(graph, inits, consumers, uses, outputs) -> tuple[int, float]:
    """LayerNorm -> Linear(s): the transformer "outlier feature" lives in LayerNorm's per-channel
    affine (gamma, beta); moving its scale into the consumers' input columns is float-equivalent
    (the same idea as SmoothQuant/Outlier Suppression, applied to weights only)."""
    from onnx import numpy_helper

    max_scale, count = 1.0, 0
    for node in graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 3 or node.input[1] not in inits \
                or node.input[2] not in inits or _attr(node, "axis", -1) != -1:
            continue
        linears, frontier, ok = [], [node.output[0]], True
        while frontier and ok:
            tensor = frontier.pop()
            if tensor in outputs or not consumers.get(tensor):
                ok = False
                break
            for user in consumers[tensor]:
                if user.op_type in _RESHAPES and user.input[0] == tensor:
                    frontier.append(user.output[0])
                elif user.op_type in ("Gemm", "MatMul") and user.input[0] == tensor and user.input[1] in inits \
                        and _attr(user, "transA", 0) == 0:
                    linears.append(user)
                else:
                    ok = False
        if not ok or not linears:
            continue
        for holder, slot in [(node, 1), (node, 2), *((lin, 1) for lin in linears)]:
            if uses.get(holder.input[slot], 0) > 1:
                _own_copy(holder, slot, graph, inits, uses)
        gamma = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        beta = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
        # Each consumer's weight with input channels on axis 0: Gemm(transB=1) stores (out, in).
        weights = [numpy_helper.to_array(inits[lin.input[1]]).astype(np.float64) for lin in linears]
        w_in = [w.T if (lin.op_type == "Gemm" and _attr(lin, "transB", 0) == 1) else w for lin, w in zip(linears, weights, strict=True)]
        if any(w.ndim != 2 or w.shape[0] != gamma.shape[0] for w in w_in):
            continue
        r_ln = np.maximum(np.abs(gamma), np.abs(beta))
        r_w = np.max([np.abs(w).max(axis=1) for w in w_in], axis=0)
        s = np.where((r_ln > 0) & (r_w > 0), np.sqrt(r_ln / np.maximum(r_w, 1e-12)), 1.0)
        s = np.clip(s / np.median(s), 1e-4, 1e4)  # only the spread matters; keep the typical channel as is
        max_scale = max(max_scale, float(np.max(np.maximum(s, 1 / s))))
        inits[node.input[1]].CopyFrom(numpy_helper.from_array((gamma / s).astype(np.float32), node.input[1]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array((beta / s).astype(np.float32), node.input[2]))
        for lin, w, wi in zip(linears, weights, w_in, strict=True):
            scaled = wi * s[:, None]
            new = scaled.T if wi is not w else scaled
            inits[lin.input[1]].CopyFrom(numpy_helper.from_array(new.astype(np.float32), lin.input[1]))
        count += 1
    return count, max_scale


def _own_copy(node, slot: int, graph, inits, uses) -> None:
    """Give `node` a private copy of a shared initializer so rescaling it touches no other node."""
    from onnx import numpy_helper

    name = node.input[slot]
    if name not in inits:
        return
    new_name = f"{name}__eq_{node.name}"
    copy = numpy_helper.from_array(numpy_helper.to_array(inits[name]).copy(), new_name)
    graph.initializer.append(copy)
    inits[new_name] = graph.initializer[-1]
    uses[name] -= 1
    uses[new_name] = 1
    node.input[slot] = new_name


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
