"""Float-exact rewrite of padded and ceil-mode max-pools, so their int8 model runs under XNNPACK.

What goes wrong (measured with onnx2tf 1.28.8, TF 2.21, ai-edge-litert 2.3): onnx2tf lowers a
MaxPool whose padding TensorFlow cannot express (the ResNet stem's MaxPool2d(3, 2, padding=1) on an
even size, any `ceil_mode=True` pool) to PADV2 with pad value float32.min (-3.4e38) and a VALID
MAX_POOL_2D. The TFLite calibrator records that pad value as the PADV2 output's minimum, and PADV2,
MAX_POOL_2D (and the fused conv/ReLU feeding them) share one scale, so the whole chain gets scale
3.4e38 / 255 = 1.33e36 (zero point 127): every real activation quantizes to the zero point. The
next CONV_2D / FULLY_CONNECTED then has a requantization scale input_scale * weight_scale /
output_scale of ~1e32, and XNNPACK refuses to create any qs8 convolution or fully-connected operator
whose requantization scale is >= 256 (xnn_status_unsupported_parameter). That check runs when the
runtime is created, not when nodes are partitioned, hence "failed to create XNNPACK runtime ...
Node number N (TfLiteXNNPackDelegate) failed to prepare". Builtin kernels accept the scales and run,
but the pooled values are all lost. A requantizing op after the pool (DenseNet: BN -> MUL/ADD) has
no such limit in XNNPACK, so that model is delegated: it runs, equally wrong.

So the fault is the pad value, not the ops. Each rewrite here keeps the float result bit-identical
and removes the extreme value (proved by tests/test_pool_padding.py on onnxruntime and torch):
- `same`: the effective padding (ceil extra included) is what TensorFlow's SAME gives for this
  size -> MaxPool(auto_pad=SAME_UPPER); TFLite's SAME max-pool ignores padded cells.
- `bounded`: the input has a known lower bound L (after ReLU L = 0, Clip/ReLU6 -> its min,
  Sigmoid -> 0; followed through Concat, MaxPool, reshapes) -> Pad(constant L) + VALID MaxPool.
  Every window holds at least one real value >= L, so the max is unchanged.
- `edge`: otherwise (PReLU, BN, a bare conv) -> replicate the border rows/columns with Slice +
  Concat + VALID MaxPool. Exact because PyTorch/ONNX pads are at most half the kernel and the last
  window starts inside the input, so a window that sees a copied border cell also sees the original.
  (ONNX Pad mode=edge would also be exact, but onnx2tf lowers it to MIRROR_PAD, which XNNPACK does
  not delegate.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# Ops whose output is >= their input's lower bound, or that move values without changing them.
_PASS_THROUGH = {"MaxPool", "Reshape", "Transpose", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Slice", "Split",
                 "Resize", "Upsample", "SpaceToDepth", "DepthToSpace", "GlobalMaxPool"}
_NON_NEGATIVE = {"Relu", "Sigmoid", "Softplus", "HardSigmoid", "Softmax", "Exp", "Abs"}


@dataclass(frozen=True)
class PoolRewrite:
    node: str  # the MaxPool node's name (kept on the rewritten MaxPool, so tracing still finds it)
    kind: str  # same | bounded | edge
    pads: tuple[int, ...]  # effective ONNX pads (begins then ends), ceil-mode extra included
    pad_value: float | None = None  # the constant for `bounded`

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "kind": self.kind, "pads": list(self.pads), "pad_value": self.pad_value}


def rewrite_padded_maxpools(model: Any) -> list[PoolRewrite]:
    """Rewrites `model` (an onnx.ModelProto with inferred static shapes) in place; returns what changed."""
    graph = model.graph
    shapes = _static_shapes(model)
    producers = {out: node for node in graph.node for out in node.output}
    inits = {i.name: i for i in graph.initializer}
    done: list[PoolRewrite] = []
    new_nodes: list[Any] = []
    for node in graph.node:
        plan = _plan(node, shapes)
        if plan is None:
            new_nodes.append(node)
            continue
        pads, kernel, strides = plan
        in_shape = shapes[node.input[0]]
        if _is_tf_same(in_shape[2:], kernel, strides, pads, shapes[node.output[0]][2:]):
            _set_attrs(node, auto_pad="SAME_UPPER")
            new_nodes.append(node)
            done.append(PoolRewrite(node.name, "same", pads))
            continue
        bound = lower_bound(node.input[0], producers, inits)
        if bound is not None:
            extra, padded = _constant_pad(node, pads, bound, graph)
            done.append(PoolRewrite(node.name, "bounded", pads, bound))
        else:
            extra, padded = _edge_pad(node, pads, in_shape, graph)
            done.append(PoolRewrite(node.name, "edge", pads))
        new_nodes.extend(extra)
        node.input[0] = padded
        _set_attrs(node, pads=[0] * len(pads))
        new_nodes.append(node)
    if done:
        del graph.node[:]
        graph.node.extend(new_nodes)
    return done


def _static_shapes(model: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[vi.name] = [int(d.dim_value) for d in dims]
    return out


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _plan(node: Any, shapes: dict[str, list[int]]) -> tuple[tuple[int, ...], list[int], list[int]] | None:
    """(effective pads, kernel, strides) for a MaxPool that onnx2tf would pad with float32.min; else None."""
    if node.op_type != "MaxPool" or len(node.output) != 1:
        return None  # a MaxPool with indices is left alone: onnx2tf builds it another way
    auto = _attr(node, "auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) != "NOTSET":
        return None
    if node.input[0] not in shapes or node.output[0] not in shapes:
        return None
    in_sp, out_sp = shapes[node.input[0]][2:], shapes[node.output[0]][2:]
    kernel = list(_attr(node, "kernel_shape", []))
    rank = len(kernel)
    strides = list(_attr(node, "strides", [1] * rank))
    dilations = list(_attr(node, "dilations", [1] * rank))
    pads = list(_attr(node, "pads", [0] * 2 * rank))
    if any(d != 1 for d in dilations) or len(in_sp) != rank or len(out_sp) != rank:
        return None
    begins = pads[:rank]
    # The end padding that a VALID pool needs to produce the same output size (ceil-mode extra included).
    ends = [max(0, (o - 1) * s + k - n - b) for o, s, k, n, b in zip(out_sp, strides, kernel, in_sp, begins, strict=True)]
    if not any(begins) and not any(ends):
        return None
    if any(2 * b > k for b, k in zip(begins, kernel, strict=True)):
        return None  # outside what PyTorch/ONNX allow; the exactness argument needs pad <= kernel / 2
    return tuple(begins + ends), kernel, strides


def _is_tf_same(in_sp: list[int], kernel: list[int], strides: list[int], pads: tuple[int, ...], out_sp: list[int]) -> bool:
    rank = len(kernel)
    for i, (n, k, s) in enumerate(zip(in_sp, kernel, strides, strict=True)):
        out = math.ceil(n / s)
        total = max((out - 1) * s + k - n, 0)
        if out != out_sp[i] or pads[i] != total // 2 or pads[rank + i] != total - total // 2:
            return False
    return True


def lower_bound(tensor: str, producers: dict[str, Any], inits: dict[str, Any], depth: int = 0) -> float | None:
    """A value no element of `tensor` can be below, known from the ops that made it; None if unknown."""
    node = producers.get(tensor)
    if node is None or depth > 32:
        return None
    op = node.op_type
    if op in _NON_NEGATIVE:
        return 0.0
    if op == "Clip":
        low = _attr(node, "min", None)  # opset < 11 keeps it as an attribute
        if len(node.input) > 1 and node.input[1]:
            low = _constant(node.input[1], producers, inits)
        return float(low) if low is not None and math.isfinite(low) else None
    if op in _PASS_THROUGH:
        return lower_bound(node.input[0], producers, inits, depth + 1)
    if op == "Concat":
        bounds = [lower_bound(t, producers, inits, depth + 1) for t in node.input]
        return None if any(b is None for b in bounds) else float(min(bounds))  # type: ignore[type-var]
    if op == "Max":
        bounds = [b for b in (lower_bound(t, producers, inits, depth + 1) for t in node.input) if b is not None]
        return float(max(bounds)) if bounds else None
    return None


def _constant(name: str, producers: dict[str, Any], inits: dict[str, Any]) -> float | None:
    """The scalar held by an initializer or a Constant node; None for a computed tensor."""
    from onnx import numpy_helper

    if name in inits:
        return float(numpy_helper.to_array(inits[name]).reshape(-1)[0])
    node = producers.get(name)
    if node is not None and node.op_type == "Constant":
        value = _attr(node, "value", None)
        return float(numpy_helper.to_array(value).reshape(-1)[0]) if value is not None else None
    return None


def _set_attrs(node: Any, **values: Any) -> None:
    from onnx import helper

    drop = {"pads", "ceil_mode", "auto_pad", *values}
    kept = [a for a in node.attribute if a.name not in drop]
    del node.attribute[:]
    node.attribute.extend(kept)
    for name, value in values.items():
        if name == "auto_pad" or any(value):
            node.attribute.append(helper.make_attribute(name, value))


def _name(node: Any, suffix: str) -> str:
    # Same scope as the pool, so module_path() names the same PyTorch module for the helper nodes.
    return f"{node.name}_{suffix}"


def _constant_pad(node: Any, pads: tuple[int, ...], value: float, graph: Any) -> tuple[list[Any], str]:
    from onnx import helper, numpy_helper

    rank = len(pads) // 2
    onnx_pads = [0, 0, *pads[:rank], 0, 0, *pads[rank:]]  # N and C get no padding
    p_name, v_name, out = _name(node, "pads"), _name(node, "pad_value"), _name(node, "padded")
    graph.initializer.extend([numpy_helper.from_array(np.asarray(onnx_pads, np.int64), p_name),
                              numpy_helper.from_array(np.asarray(value, np.float32), v_name)])
    return [helper.make_node("Pad", [node.input[0], p_name, v_name], [out], name=_name(node, "Pad"), mode="constant")], out


def _edge_pad(node: Any, pads: tuple[int, ...], in_shape: list[int], graph: Any) -> tuple[list[Any], str]:
    """Border replication as Slice + Concat, one spatial axis at a time (XNNPACK runs both in int8)."""
    from onnx import helper, numpy_helper

    rank = len(pads) // 2
    nodes: list[Any] = []
    current = node.input[0]
    for i in range(rank):
        begin, end = pads[i], pads[rank + i]
        if not begin and not end:
            continue
        axis, size = 2 + i, in_shape[2 + i]
        copies: dict[str, list[str]] = {"lo": [], "hi": []}
        for side, count, (lo, hi) in (("lo", begin, (0, 1)), ("hi", end, (size - 1, size))):
            if not count:
                continue
            tag = f"edge{i}_{side}"
            consts = [numpy_helper.from_array(np.asarray([v], np.int64), _name(node, f"{tag}_{k}"))
                      for k, v in (("start", lo), ("end", hi), ("axis", axis))]
            graph.initializer.extend(consts)
            sliced = _name(node, tag)
            nodes.append(helper.make_node("Slice", [current, *(c.name for c in consts)], [sliced], name=_name(node, f"{tag}_Slice")))
            copies[side] = [sliced] * count  # the border row/column repeated once per padded row/column
        pieces = [*copies["lo"], current, *copies["hi"]]
        out = _name(node, f"edge{i}")
        nodes.append(helper.make_node("Concat", pieces, [out], name=_name(node, f"edge{i}_Concat"), axis=axis))
        current = out
    return nodes, current
