"""LayerNorm written out (ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div, then Mul/Add) -> one LayerNormalization.

torch.onnx writes `nn.LayerNorm` this way before opset 17. onnx2tf builds a LayerNormalization node
from tf_keras's LayerNormalization, which TFLite lowers to MEAN, SQUARED_DIFFERENCE, RSQRT, MUL,
ADD: the form the converter quantizes well (measured numbers in README.md).

Only a normalisation over the trailing axes with constant scale/shift is replaced: that is
LayerNormalization's definition (axis..rank-1). ConvNeXt's channels-first LayerNorm (mean over axis
1 of NCHW) is left as it is. Before opset 17 the node is the onnxruntime form of the op (ONNX domain,
registered by onnxruntime from version 1), so the float proof runs; its output keeps the original
tensor name and shape, so shapes downstream stay known.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.export.rewrites._graph import GraphIndex, replace


def layer_norm(model: Any, ctx) -> list[dict]:
    from onnx import helper, numpy_helper

    ix = GraphIndex(model, ctx)
    done: list[dict] = []
    for div in list(model.graph.node):
        found = _match(ix, div) if div.op_type == "Div" else None
        if found is None:
            continue
        x, axis, eps, last, scale, shift, pattern = found
        rank = len(ctx.shapes[x])
        normalized = ctx.shapes[x][axis:]
        names = []
        for kind, value, default in (("scale", scale, 1.0), ("bias", shift, 0.0)):
            arr = np.full(normalized, default, np.float32) if value is None else value
            name = f"{last.name or last.output[0]}_ln_{kind}"
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            names.append(name)
        new = helper.make_node("LayerNormalization", [x, *names], list(last.output), name=last.name,
                               axis=axis - rank, epsilon=eps)
        replace(model, last, new)
        done.append({"rewrite": "layer_norm", "node": last.name, "axis": axis - rank, "epsilon": eps,
                     "replaced": len(pattern)})
    return done


def _match(ix: GraphIndex, div: Any):
    d, s = div.input
    sub, sqrt = ix.made_by(d, "Sub"), ix.made_by(s, "Sqrt")
    if sub is None or sqrt is None:
        return None
    x, m = sub.input
    mean = ix.made_by(m, "ReduceMean")
    add = ix.made_by(sqrt.input[0], "Add")
    if mean is None or mean.input[0] != x or add is None or x not in ix.ctx.shapes:
        return None
    rank = len(ix.ctx.shapes[x])
    axes = _trailing_axes(ix, mean, rank)
    v, eps_name = add.input if ix.scalar(add.input[1]) is not None else reversed(add.input)
    eps = ix.scalar(eps_name)
    var = ix.made_by(v, "ReduceMean")
    square = ix.producer.get(var.input[0]) if var is not None else None
    if axes is None or eps is None or eps < 0 or square is None or _trailing_axes(ix, var, rank) != axes:
        return None
    if not (square.op_type == "Pow" and square.input[0] == d and ix.scalar(square.input[1]) == 2.0) and \
            not (square.op_type == "Mul" and list(square.input) == [d, d]):
        return None
    pattern = [mean, sub, square, var, add, sqrt, div]
    last, scale, shift = div, None, None
    normalized = ix.ctx.shapes[x][axes:]
    for op_type in ("Mul", "Add"):  # the optional affine part: Mul by a constant, then Add a constant
        nxt = ix.only_reader(last.output[0])
        if nxt is None or nxt.op_type != op_type:
            break
        const = next((ix.ctx.constants.get(t) for t in nxt.input if t != last.output[0]), None)
        const = _as_normalized(const, normalized, rank) if list(nxt.input).count(last.output[0]) == 1 else None
        if const is None:
            break
        if op_type == "Mul":
            scale = const
        else:
            shift = const
        last = nxt
        pattern.append(nxt)
    inside = {id(n) for n in pattern}
    if not all(ix.private(out, inside) for n in pattern if n is not last for out in n.output):
        return None
    return x, axes, eps, last, scale, shift, pattern


def _trailing_axes(ix: GraphIndex, reduce: Any, rank: int) -> int | None:
    """The first reduced axis when a keepdims ReduceMean reduces exactly the trailing axes, else None."""
    attrs = {a.name: a for a in reduce.attribute}
    if "keepdims" in attrs and attrs["keepdims"].i == 0:
        return None
    if "axes" in attrs:
        axes = list(attrs["axes"].ints)
    elif len(reduce.input) > 1 and reduce.input[1] in ix.ctx.constants:  # opset 18: axes is an input
        axes = [int(a) for a in ix.ctx.constants[reduce.input[1]].reshape(-1)]
    else:
        return None
    axes = sorted(a % rank for a in axes)
    if not axes or axes != list(range(axes[0], rank)):
        return None
    return axes[0]


def _as_normalized(const: np.ndarray | None, normalized: tuple[int, ...], rank: int) -> np.ndarray | None:
    """A scale/shift as an array of the normalized shape, when multiplying or adding it leaves the output's
    shape alone and varies only along the normalized axes (what LayerNormalization's inputs can hold)."""
    if const is None or not np.issubdtype(const.dtype, np.floating) or const.ndim > rank:
        return None
    lead = const.ndim - len(normalized)
    if lead > 0 and any(d != 1 for d in const.shape[:lead]):
        return None  # it varies along a non-normalized axis
    trimmed = const.reshape(const.shape[max(lead, 0):])
    try:
        if np.broadcast_shapes(trimmed.shape, normalized) != tuple(normalized):
            return None
    except ValueError:
        return None
    return np.broadcast_to(trimmed, normalized).astype(np.float32)
