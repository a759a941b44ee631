"""Gather(Concat(a, b, c, axis=k), index i, axis=k) where every piece has size 1 on k -> Squeeze(piece_i, k).

torch.onnx writes `h_n[-1]` of a multi-layer nn.LSTM/GRU this way: each layer's final state
[1, batch, hidden] concatenated on axis 0, then a Gather of the last one. onnx2tf reads the
rank-3 concat as channels-first and gathers the wrong axis, so the float TFLite returned every
layer's state ([layers * batch, hidden]) instead of the last one. Picking the piece directly is the
same float function with no layout question left.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gather_of_concat(model: Any, ctx) -> list[dict]:
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    done: list[dict] = []
    for index, node in enumerate(list(graph.node)):
        if node.op_type != "Gather" or len(node.input) < 2:
            continue
        concat = producers.get(node.input[0])
        picked = ctx.constants.get(node.input[1])
        if concat is None or concat.op_type != "Concat" or picked is None or picked.ndim != 0:
            continue
        axis = _attr(node, "axis", 0)
        rank = len(ctx.shapes.get(node.input[0], ()))
        if rank == 0 or _attr(concat, "axis", 0) % rank != axis % rank:
            continue
        sizes = [ctx.shapes.get(name, ())[axis % rank] if len(ctx.shapes.get(name, ())) == rank else None
                 for name in concat.input]
        if any(s != 1 for s in sizes):
            continue
        piece = concat.input[int(picked) % len(concat.input)]
        if _opset(model) >= 13:
            axes = f"{node.name or node.output[0]}_squeeze_axes"
            graph.initializer.append(numpy_helper.from_array(np.array([axis % rank], np.int64), axes))
            squeeze = helper.make_node("Squeeze", [piece, axes], list(node.output), name=node.name)
        else:  # opset 11/12: axes is an attribute
            squeeze = helper.make_node("Squeeze", [piece], list(node.output), name=node.name, axes=[axis % rank])
        graph.node.remove(node)
        graph.node.insert(index, squeeze)
        done.append({"rewrite": "gather_of_concat", "node": node.name, "picked": piece})
    return done


def _attr(node, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _opset(model) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
