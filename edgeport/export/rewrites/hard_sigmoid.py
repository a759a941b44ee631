"""HardSigmoid(x) = clip(αx + β, 0, 1) -> clip(6αx + 6β, 0, 6) · 1/6, a ReLU6 the converter fuses.

onnx2tf lowers HardSigmoid (MobileNetV3's squeeze-excite gate, torch's nn.Hardsigmoid) to
max(0, min(1, αx + β)), which TFLite writes as a RELU_0_TO_1 op. Measured with LiteRT 2.x: AI
Edge Quantizer has no int8 rule for RELU_0_TO_1 (it stays float, between QUANTIZE/DEQUANTIZE),
and XNNPACK does not take it in float or int8, so each one splits the delegated graph. The ReLU6
form is the same function up to float rounding; the converter folds the scale and shift into the
op before it and fuses the clip as a RELU6 activation, and the 1/6 is a MUL: ops that both AEQ and
XNNPACK run in int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.export.rewrites._graph import close, is_float32, replace


def hard_sigmoid(model: Any, ctx) -> list[dict]:
    done: list[dict] = []
    for node in list(model.graph.node):
        if node.op_type == "HardSigmoid" and node.domain in ("", "ai.onnx") and is_float32(model, node.input[0]):
            attrs = {a.name: a.f for a in node.attribute}
            alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
            replace(model, node, *_relu6_form(model, node, alpha, beta))
            done.append({"rewrite": "hard_sigmoid", "node": node.name, "alpha": alpha, "beta": beta})
    return done


def _relu6_form(model: Any, node: Any, alpha: float, beta: float) -> list:
    from onnx import helper, numpy_helper

    base = node.name or node.output[0]

    def const(suffix: str, value: float) -> str:
        name = f"{base}_relu6_{suffix}"
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    nodes, x = [], node.input[0]
    if not close(6 * alpha, 1.0, 1e-6):  # torch's α is 1/6: no scale at all
        nodes.append(helper.make_node("Mul", [x, const("scale", 6 * alpha)], [f"{base}_relu6_scaled"],
                                      name=f"{base}_relu6_scale"))
        x = nodes[-1].output[0]
    return [*nodes,
            helper.make_node("Add", [x, const("shift", 6 * beta)], [f"{base}_relu6_in"], name=f"{base}_relu6_shift"),
            helper.make_node("Clip", [f"{base}_relu6_in", const("lo", 0.0), const("hi", 6.0)], [f"{base}_relu6_out"],
                             name=f"{base}_relu6"),
            helper.make_node("Mul", [f"{base}_relu6_out", const("sixth", 1 / 6)], list(node.output), name=node.name)]
