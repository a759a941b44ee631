"""ONNX LSTM -> TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, inside the onnx2tf worker.

onnx2tf builds every ONNX LSTM from its own Keras RNN cell, which the TFLite converter lowers to a
WHILE loop: the float model runs, but full int8 crashes the converter (SIGSEGV in calibration) and
AI Edge Quantizer cannot quantize the loop. The converter fuses only a Keras 2 (tf_keras) `LSTM`
layer, which it recognises by the function attribute that layer leaves in the graph. So, for each
LSTM node whose cell is the standard one, the worker swaps onnx2tf's layer for a tf_keras LSTM
carrying the same weights (onnx2tf already reorders ONNX's i,o,f,c gates to Keras's i,f,c,o and sums
the two biases). A bidirectional LSTM becomes two fused ops, one of them over the reversed sequence.

What the fused op cannot give back decides which nodes are swapped (`fusable_lstms`): it returns
the whole output sequence, so the final hidden state is its last step; the final cell state is not
an output at all, and the initial state is zero. A node whose Y_c is read, whose initial state is
not a zero constant (carried streaming state), or whose cell is non-standard (peepholes, clip,
input_forget, other activations, sequence_lens) keeps onnx2tf's loop.

Two converter faults are avoided here, both measured with TF 2.21 (tests/test_recurrent.py):
- full int8 through the MLIR quantizer ruins every fused LSTM after the first one (cosine 0.09
  on a 3-layer encoder); the older quantizer (`experimental_new_quantizer=False`) gives 0.9999, so
  `quantizer_for` picks it when the model holds a fused LSTM;
- the converter merges equal constants, so two layers with bit-identical biases (untrained or
  re-initialised layers) share one bias tensor that int8 quantizes with only one layer's scale.
  Such a bias is nudged by one float ulp, far below any tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STANDARD_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")


def fusable_lstms(onnx_path: str) -> dict[str, str | None]:
    """{LSTM node name: None when it becomes a fused op, else why it keeps onnx2tf's loop}."""
    import onnx

    return fusable_in_model(onnx.load(onnx_path, load_external_data=False))


def fusable_in_model(model: Any) -> dict[str, str | None]:
    """`fusable_lstms` of an in-memory onnx.ModelProto (the graph rewrites ask it before conversion)."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in graph.node if n.op_type == "Constant" and n.attribute})
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    found: dict[str, str | None] = {}
    for node in graph.node:
        if node.op_type != "LSTM":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        inputs = list(node.input) + [""] * (8 - len(node.input))
        acts = tuple(a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", []))
        why = None
        if acts and any(acts[i:i + 3] != STANDARD_ACTIVATIONS for i in range(0, len(acts), 3)):
            why = f"activations {', '.join(acts)}"
        elif attrs.get("clip") or attrs.get("input_forget"):
            why = "clip/input_forget cell"
        elif inputs[7]:
            why = "peephole weights"
        elif inputs[4] and not _full_lengths(inputs[4], inputs[0], consts, graph, attrs.get("layout", 0)):
            why = "sequence_lens shorter than the sequence (or not a constant)"
        elif len(node.output) > 2 and node.output[2] and node.output[2] in read:
            why = "its final cell state (Y_c) is read, which the fused op does not return"
        else:
            for state in (inputs[5], inputs[6]):
                if state and (state not in consts or np.any(numpy_helper.to_array(consts[state]))):
                    why = "its initial state is not a zero constant (carried state)"
        found[node.name] = why
    return found


def _full_lengths(lens_name: str, x_name: str, consts: dict, graph, layout: int) -> bool:
    """tf2onnx writes a constant sequence_lens equal to the sequence length: that is no masking at all."""
    from onnx import numpy_helper

    if lens_name not in consts:
        return False
    lens = numpy_helper.to_array(consts[lens_name])
    dims = next(([d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in [*graph.input, *graph.value_info]
                 if vi.name == x_name), None)
    steps = dims[1 if layout else 0] if dims and len(dims) == 3 else 0
    return steps > 0 and bool(np.all(lens == steps))


def quantizer_for(fused: dict[str, str | None]) -> dict[str, Any]:
    """Converter attributes for full-integer modes: the older quantizer when a fused LSTM is present."""
    return {"experimental_new_quantizer": False} if any(why is None for why in fused.values()) else {}


def install(fused: dict[str, str | None]) -> None:
    """Patch onnx2tf's LSTM builder so the nodes marked fusable get a tf_keras LSTM (see module doc)."""
    import onnx2tf.ops.LSTM as lstm_op

    if getattr(lstm_op, "_edgeport_fused", False):
        return
    original_layer = lstm_op.CustomLSTM
    original_make_node = lstm_op.make_node
    seen_biases: set[bytes] = set()

    def fused_layer(**kwargs):
        return _FusedLSTM(seen_biases, **kwargs)

    def make_node(*args, **kwargs):
        node = kwargs.get("graph_node")
        if node is None or fused.get(node.name, "unknown") is not None:
            return original_make_node(*args, **kwargs)
        # Only while this node is built: onnx2tf's own layer calls super(CustomLSTM, self), which needs
        # the module name to stay its class for every node that keeps the loop.
        lstm_op.CustomLSTM = fused_layer
        try:
            return original_make_node(*args, **kwargs)
        finally:
            lstm_op.CustomLSTM = original_layer

    lstm_op.make_node = make_node
    lstm_op._edgeport_fused = True


class _FusedLSTM:
    """Called like onnx2tf's CustomLSTM: (X, initial_state) -> (sequence, final h, final c)."""

    def __init__(self, seen_biases: set[bytes], *, hidden_size, kernel, recurrent_kernel, bias_i, bias_f, bias_c,
                 bias_o, go_backwards, **_unused) -> None:
        import tf_keras

        bias = np.concatenate([np.asarray(b, np.float32).reshape(-1) for b in (bias_i, bias_f, bias_c, bias_o)])
        while bias.tobytes() in seen_biases:
            bias[0] = np.nextafter(bias[0], np.float32(np.inf))
        seen_biases.add(bias.tobytes())
        const = tf_keras.initializers.Constant
        self.layer = tf_keras.layers.LSTM(
            int(hidden_size), return_sequences=True, go_backwards=bool(go_backwards), unit_forget_bias=False,
            kernel_initializer=const(np.asarray(kernel, np.float32)),
            recurrent_initializer=const(np.asarray(recurrent_kernel, np.float32)), bias_initializer=const(bias))

    def __call__(self, x, initial_state=None):
        import tensorflow as tf

        seq = self.layer(x)  # the initial state is zero: fusable_lstms admits no other
        last = seq[:, -1, :]
        return seq, last, tf.zeros_like(last)
