"""LayerNormalization -> the same normalisation written out, which 16-bit activations can run.

torch.onnx writes `nn.LayerNorm` as one LayerNormalization node from opset 17 (edgeport's default
export opset), and as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (+ Mul/Add) before. Measured with
onnx2tf 1.28.8 and TF 2.21 on the transformer fixtures (zoo/transformer_blocks.py):
- the written-out form converts to MEAN, SUB, MUL, MEAN, ADD, RSQRT, MUL: no DIV (the converter
  fuses the Div by a Sqrt into RSQRT and MUL), full int8 runs, cosine 0.9997 against float;
- the LayerNormalization node becomes tf_keras's layer, which TFLite writes with SQUARED_DIFFERENCE:
  int8 is no better (SVTR block cosine 0.99975 vs 0.99973), but int16x8 fails at run time
  ("SquaredDifference only supports FLOAT32 and INT32") and AI Edge Quantizer has no a16w8 rule for it.
So the node is written out the way the older exporter did: x - mean, its square's mean plus epsilon,
divided by its square root, then scale and bias, over the node's trailing axes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.export.rewrites._graph import GraphIndex, is_float32, opset, replace


def layer_norm(model: Any, ctx) -> list[dict]:
    ix = GraphIndex(model, ctx)
    done: list[dict] = []
    for node in list(model.graph.node):
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        rank = len(ctx.shapes.get(node.input[0], ()))
        attrs = {a.name: a for a in node.attribute}
        axis = attrs["axis"].i if "axis" in attrs else -1
        extra_outputs_read = any(out and (ix.readers.get(out) or out in ix.graph_outputs) for out in node.output[1:])
        if not rank or extra_outputs_read or not is_float32(model, node.input[0]) or \
                ("stash_type" in attrs and attrs["stash_type"].i != 1):
            continue  # unknown rank, Mean/InvStdDev outputs read, or not float32: leave the node alone
        eps = attrs["epsilon"].f if "epsilon" in attrs else 1e-5
        replace(model, node, *_written_out(model, node, list(range(axis % rank, rank)), eps))
        done.append({"rewrite": "layer_norm", "node": node.name, "axis": axis % rank - rank, "epsilon": eps})
    return done


def _written_out(model: Any, node: Any, axes: list[int], eps: float) -> list:
    from onnx import helper, numpy_helper

    base = node.name or node.output[0]
    x = node.input[0]

    def name(suffix: str) -> str:
        return f"{base}_ln_{suffix}"

    def mean(src: str, out: str):
        if opset(model) >= 18:  # ReduceMean's axes became an input
            model.graph.initializer.append(numpy_helper.from_array(np.array(axes, np.int64), name("axes")))
            return helper.make_node("ReduceMean", [src, name("axes")], [out], name=out, keepdims=1)
        return helper.make_node("ReduceMean", [src], [out], name=out, axes=axes, keepdims=1)

    model.graph.initializer.append(numpy_helper.from_array(np.array(eps, np.float32), name("eps")))
    nodes = [mean(x, name("mean")),
             helper.make_node("Sub", [x, name("mean")], [name("centered")], name=name("centered")),
             helper.make_node("Mul", [name("centered"), name("centered")], [name("square")], name=name("square")),
             mean(name("square"), name("var")),
             helper.make_node("Add", [name("var"), name("eps")], [name("var_eps")], name=name("var_eps")),
             helper.make_node("Sqrt", [name("var_eps")], [name("std")], name=name("std")),
             helper.make_node("Div", [name("centered"), name("std")], [name("normed")], name=name("normed"))]
    scale = node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    out = node.output[0]
    nodes.append(helper.make_node("Mul", [name("normed"), scale], [name("scaled") if bias else out],
                                  name=name("scaled") if bias else node.name))
    if bias:
        nodes.append(helper.make_node("Add", [name("scaled"), bias], [out], name=node.name))
    return nodes
