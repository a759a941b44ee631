"""GELU written out with Erf or Tanh -> one GELU node, which TFLite runs as one int8-capable GELU op.

Before opset 20 ONNX has no Gelu, so torch.onnx writes `nn.GELU()` as
x * 0.5 * (1 + erf(x / 1.4142135)) and `nn.GELU(approximate="tanh")` as
0.5 * x * (1 + tanh(0.7978846 * (x + 0.044715 * x³))), other exporters in other orders. TFLite has
no ERF builtin: the plain conversion needs a Flex op, and the builtin retry makes onnx2tf write Erf
as a polynomial with two DIVs by computed values, which full int8 cannot run ("div.cc: data[i] !=
zero_point"). onnx2tf 1.28.8 has its own GELU detection in ops/Div.py, but it never fired on
torch's export: it tests `hasattr(divisor, "numpy")`, which the numpy constant it is handed lacks.

The pattern is matched by what it computes, not by node order: the product x · (1 + f(u)) · 0.5
through Mul (and Div-by-constant) nodes, and u a polynomial in x (x/√2 for Erf, √(2/π)·(x + 0.044715x³)
for Tanh), read off the nodes symbolically. The replacement is the default-domain Gelu from opset 20,
else onnxruntime's com.microsoft Gelu / FastGelu, so the float proof still runs on onnxruntime. onnx2tf
builds tf.nn.gelu from either (onnx2tf_ops.py keeps their domain through onnx2tf's op renaming and
teaches it FastGelu), and the TFLite converter fuses that into its GELU op.
"""

from __future__ import annotations

import math
from typing import Any

from edgeport.export.rewrites._graph import GraphIndex, close, opset, replace, use_domain

SQRT_HALF = 1 / math.sqrt(2)
TANH_SCALE, TANH_CUBIC = math.sqrt(2 / math.pi), 0.044715
MAX_DEGREE = 3


def gelu(model: Any, ctx) -> list[dict]:
    from onnx import helper

    ix = GraphIndex(model, ctx)
    done: list[dict] = []
    for node in list(model.graph.node):
        if node.op_type not in ("Erf", "Tanh"):
            continue
        found = _match(ix, node)
        if found is None:
            continue
        root, x = found
        form = "erf" if node.op_type == "Erf" else "tanh"
        if opset(model) >= 20:
            new = helper.make_node("Gelu", [x], list(root.output), name=root.name,
                                   approximate="none" if form == "erf" else "tanh")
        else:  # onnxruntime's contrib ops: the same functions, runnable for the float proof
            op_type = "Gelu" if form == "erf" else "FastGelu"
            new = helper.make_node(op_type, [x], list(root.output), name=root.name, domain="com.microsoft")
            use_domain(model, "com.microsoft")
        replace(model, root, new)
        done.append({"rewrite": "gelu", "node": root.name, "form": form,
                     "op": new.op_type if not new.domain else f"{new.domain}::{new.op_type}"})
    return done


def _match(ix: GraphIndex, fn: Any) -> tuple[Any, str] | None:
    """(the node whose output is GELU(x), x) when `fn` (Erf or Tanh) is the heart of a GELU."""
    one_plus = ix.only_reader(fn.output[0])
    if one_plus is None or one_plus.op_type != "Add":
        return None
    other = [t for t in one_plus.input if t != fn.output[0]]
    if len(other) != 1 or not close(ix.scalar(other[0]), 1.0):
        return None
    pattern = [fn, one_plus]
    root, x = _product_root(ix, one_plus.output[0], pattern)
    if root is None:
        return None
    inner = _polynomial(ix, fn.input[0], x, pattern)
    want = {1: SQRT_HALF} if fn.op_type == "Erf" else {1: TANH_SCALE, 3: TANH_SCALE * TANH_CUBIC}
    if inner is None or set(inner) != set(want) or not all(close(inner[k], v, 1e-4) for k, v in want.items()):
        return None
    inside = {id(n) for n in pattern}
    if not all(ix.private(out, inside) for n in pattern if n is not root for out in n.output):
        return None  # an intermediate value feeds something else: removing the chain would lose it
    return root, x


def _product_root(ix: GraphIndex, s: str, pattern: list) -> tuple[Any, str | None]:
    """Climb from s = 1 + f(u) through at most three Mul (or Div-by-constant) nodes until the product
    is x · s · 0.5."""
    current, scale, leaves = s, 1.0, []
    for _ in range(3):
        node = ix.only_reader(current)
        if node is None or list(node.input).count(current) != 1 or len(node.input) != 2:
            return None, None
        other = next(t for t in node.input if t != current)
        if node.op_type == "Mul":
            got = _factors(ix, other, pattern)
        elif node.op_type == "Div" and node.input[0] == current and ix.scalar(other) not in (None, 0.0):
            got = 1.0 / ix.scalar(other), []  # x · (1 + erf(...)) / 2
        else:
            return None, None
        pattern.append(node)
        scale, leaves = scale * got[0], leaves + got[1]
        current = node.output[0]
        if len(leaves) == 1 and close(scale, 0.5):
            return node, leaves[0]
    return None, None


def _factors(ix: GraphIndex, name: str, pattern: list) -> tuple[float, list[str]]:
    """`name` as constant × leaves, looking through a private Mul or Div by a constant (x * 0.5, x / 2)."""
    value = ix.scalar(name)
    if value is not None:
        return value, []
    node = ix.producer.get(name)
    if node is not None and ix.only_reader(name) is not None and len(node.input) == 2:
        a, b = node.input
        if node.op_type == "Mul" and (ix.scalar(a) is not None) != (ix.scalar(b) is not None):
            const, leaf = (a, b) if ix.scalar(a) is not None else (b, a)
            pattern.append(node)
            return ix.scalar(const), [leaf]
        if node.op_type == "Div" and ix.scalar(b) not in (None, 0.0) and ix.scalar(a) is None:
            pattern.append(node)
            return 1.0 / ix.scalar(b), [a]
    return 1.0, [name]


def _polynomial(ix: GraphIndex, name: str, x: str, pattern: list) -> dict[int, float] | None:
    """Coefficients {power: c} of `name` as a polynomial in x, read through Mul/Add/Sub/Div-by-constant/
    Pow-by-small-integer nodes (which join `pattern`); None when anything else is involved."""
    if name == x:
        return {1: 1.0}
    value = ix.scalar(name)
    if value is not None:
        return {0: value}
    node = ix.producer.get(name)
    if node is None or node.op_type not in ("Mul", "Add", "Sub", "Div", "Pow") or len(node.input) != 2:
        return None
    a, b = node.input
    if node.op_type in ("Div", "Pow"):
        k = ix.scalar(b)
        base = _polynomial(ix, a, x, pattern)
        if base is None or k is None:
            return None
        if node.op_type == "Div":
            result = None if k == 0 else {p: c / k for p, c in base.items()}
        else:
            result = _power(base, k)
    else:
        pa, pb = _polynomial(ix, a, x, pattern), _polynomial(ix, b, x, pattern)
        if pa is None or pb is None:
            return None
        if node.op_type == "Mul":
            result = _times(pa, pb)
        else:
            sign = -1.0 if node.op_type == "Sub" else 1.0
            result = dict(pa)
            for p, c in pb.items():
                result[p] = result.get(p, 0.0) + sign * c
    if result is None or any(p > MAX_DEGREE for p in result):
        return None
    pattern.append(node)
    return {p: c for p, c in result.items() if c != 0.0}


def _times(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    out: dict[int, float] = {}
    for pa, ca in a.items():
        for pb, cb in b.items():
            out[pa + pb] = out.get(pa + pb, 0.0) + ca * cb
    return out


def _power(base: dict[int, float], k: float) -> dict[int, float] | None:
    if k != int(k) or not 1 <= k <= MAX_DEGREE:
        return None
    out = {0: 1.0}
    for _ in range(int(k)):
        out = _times(out, base)
    return out
