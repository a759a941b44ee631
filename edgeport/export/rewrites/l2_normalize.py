"""x / clamp(||x||_2, eps) -> x / ||x||_2, which the TFLite converter fuses into one L2_NORMALIZATION.

`F.normalize` and `e / e.norm(dim=-1, keepdim=True).clamp_min(eps)` (every embedding model's last
step) export as ReduceL2 -> Clip(min=eps) [-> Expand] -> Div. With the clamp in the way, TFLite keeps
SQUARE/SUM/SQRT/MAXIMUM/DIV: a DIV by a computed value, which int8 runs badly and the converter's
older quantizer (needed for fused LSTMs) cannot quantize at all. Without the clamp the converter
fuses the pattern into L2_NORMALIZATION, an int8 op with a fixed output scale. The two differ only
for a vector whose norm is below eps (1e-12 to 1e-6 in practice), where the clamped form is
already meaningless.
"""

from __future__ import annotations

from typing import Any

_PASS = {"Clip", "Max", "Expand"}  # the clamp and the broadcast between the norm and the Div


def l2_normalize(model: Any, ctx) -> list[dict]:
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    done: list[dict] = []
    for node in graph.node:
        if node.op_type != "Div" or len(node.input) != 2:
            continue
        x, divisor = node.input
        source, passed = producers.get(divisor), []
        while source is not None and source.op_type in _PASS:
            passed.append(source.op_type)
            source = producers.get(source.input[0])
        if not passed or source is None or source.op_type != "ReduceL2" or source.input[0] != x:
            continue
        if not _keeps_last_axis_only(source, ctx.shapes.get(x, ()), ctx):
            continue
        node.input[1] = source.output[0]
        done.append({"rewrite": "l2_normalize", "node": node.name, "removed": passed})
    return done


def _keeps_last_axis_only(reduce, shape: tuple[int, ...], ctx) -> bool:
    attrs = {a.name: a for a in reduce.attribute}
    if "keepdims" in attrs and attrs["keepdims"].i == 0:
        return False
    axes = list(attrs["axes"].ints) if "axes" in attrs else None
    if axes is None and len(reduce.input) > 1 and reduce.input[1] in ctx.constants:
        axes = [int(a) for a in ctx.constants[reduce.input[1]].reshape(-1)]
    rank = len(shape)
    return bool(rank) and axes is not None and [a % rank for a in axes] == [rank - 1]
