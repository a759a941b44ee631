"""LSTMs that TFLite's fused op cannot express (carried state, Y_c read) written out per step, so full
int8 works: the lstm_unroll ONNX rewrite on onnxruntime, and real conversions of the streaming VAD
(edgeport/zoo/streaming.py, `cell="lstm"`), whose LSTM starts from its `state` input and returns Y_c.
Without the rewrite onnx2tf keeps a WHILE loop whose full int8 crashes the TF converter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.export import rewrites
from edgeport.export.fused_lstm import fusable_in_model, fusable_lstms
from edgeport.export.rewrites import apply_rewrites
from edgeport.export.rewrites.lstm_unroll import lstm_unroll


# --- the rewrite on onnxruntime (fast) -------------------------------------------------------------------
def _lstm_model(steps=4, batch=2, inputs=3, hidden=5, direction="forward", layout=0, initial="input", bias=True,
                outputs=("Y", "Y_h", "Y_c"), **attrs):
    """One ONNX LSTM node with seeded weights; `initial`: None (zero), "zero" (a zero constant), "const" or "input"."""
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.normal(0, 0.6, (dirs, 4 * hidden, inputs)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.6, (dirs, 4 * hidden, hidden)).astype(np.float32), "R")]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (dirs, 8 * hidden)).astype(np.float32), "B"))
    x_shape = [batch, steps, inputs] if layout else [steps, batch, inputs]
    state = [batch, dirs, hidden] if layout else [dirs, batch, hidden]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    for name in ("h0", "c0"):
        if initial == "input":
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, state))
        elif initial in ("const", "zero"):
            value = rng.normal(0, 0.5, state) if initial == "const" else np.zeros(state)
            inits.append(numpy_helper.from_array(value.astype(np.float32), name))
    node = helper.make_node("LSTM", ["X", "W", "R", "B" if bias else "", "", *(["h0", "c0"] if initial else [])],
                            ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=hidden, direction=direction, layout=layout,
                            **attrs)
    y_shape = [batch, steps, dirs, hidden] if layout else [steps, dirs, batch, hidden]
    shapes = {"Y": y_shape, "Y_h": state, "Y_c": state}
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o])
                                                           for o in outputs], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _run(model, feed):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def _rewrite(model):
    notes: list[str] = []
    original = onnx.ModelProto()
    original.CopyFrom(model)
    out, records = apply_rewrites(model, notes, [("lstm_unroll", lstm_unroll)])
    return original, out, records, notes


@pytest.mark.parametrize("direction,layout,initial,bias,outputs", [
    ("forward", 0, "input", True, ("Y", "Y_h", "Y_c")), ("forward", 0, "input", True, ("Y_h", "Y_c")),
    ("reverse", 0, "const", True, ("Y", "Y_c")), ("bidirectional", 0, "input", False, ("Y", "Y_h", "Y_c")),
    ("forward", 0, "zero", True, ("Y", "Y_c")), ("forward", 0, None, True, ("Y_h", "Y_c")),
])
def test_unrolled_lstm_computes_what_onnxruntime_s_lstm_does(direction, layout, initial, bias, outputs):
    model = _lstm_model(direction=direction, layout=layout, initial=initial, bias=bias, outputs=outputs)
    assert fusable_in_model(model)["lstm"] is not None  # carried state or Y_c read: the fused op refuses it
    original, out, records, notes = _rewrite(model)
    assert records and records[0]["rewrite"] == "lstm_unroll" and records[0]["steps"] == 4, notes
    assert records[0]["max_rel_error"] < 1e-5  # the framework's onnxruntime proof
    assert "LSTM" not in {n.op_type for n in out.graph.node}
    read = {name for n in out.graph.node for name in n.input}  # a zero state is left out, never a zero constant
    assert not any(i.name in read and i.data_type == TensorProto.FLOAT and not numpy_helper.to_array(i).any()
                   for i in out.graph.initializer)
    rng = np.random.default_rng(1)
    dirs = 2 if direction == "bidirectional" else 1
    feed = {"X": rng.normal(0, 1, (2, 4, 3) if layout else (4, 2, 3)).astype(np.float32)}
    if initial == "input":
        for name in ("h0", "c0"):
            feed[name] = rng.normal(0, 0.8, (2, dirs, 5) if layout else (dirs, 2, 5)).astype(np.float32)
    for want, got in zip(_run(original, feed), _run(out, feed), strict=True):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_a_fusable_lstm_is_left_to_the_fused_op():
    model = _lstm_model(initial="zero", outputs=("Y", "Y_h"))
    assert fusable_in_model(model) == {"lstm": None}
    _, out, records, _ = _rewrite(model)
    assert records == [] and [n.op_type for n in model.graph.node] == ["LSTM"]


@pytest.mark.parametrize("extra", [{"clip": 3.0}, {"input_forget": 1}, {"activations": ["Sigmoid", "Tanh", "Relu"]},
                                   {"layout": 1}])
def test_lstms_the_rewrite_cannot_write_out_keep_their_node(extra):
    model = _lstm_model(**extra)
    assert lstm_unroll(model, rewrites.RewriteContext.of(model)) == [] and [n.op_type for n in model.graph.node] == ["LSTM"]


def test_every_step_reads_the_same_weight_initializers():
    _, out, records, _ = _rewrite(_lstm_model(steps=9))
    gemms = [n for n in out.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 4 + 4 * 9 and len({n.input[1] for n in gemms}) == 8  # W and R of i, o, f, c


def test_fusable_lstms_reads_a_file_as_before(tmp_path):
    onnx.save(_lstm_model(), str(tmp_path / "m.onnx"))
    assert fusable_lstms(str(tmp_path / "m.onnx")) == {"lstm": "its final cell state (Y_c) is read, which the fused "
                                                                "op does not return"}


def test_the_rewrite_is_registered_between_gather_of_concat_and_gru_unroll():
    names = [name for name, _ in rewrites.REWRITES]
    assert names.index("gather_of_concat") < names.index("lstm_unroll") < names.index("gru_unroll")
