"""GRU to full int8 (issue 19 item 2): the gru_unroll ONNX rewrite and real conversions of a GRU keyword spotter.

TFLite has no fused GRU op and the TF converter segfaults quantizing onnx2tf's GRU loop, so an ONNX GRU
had no int8 model at all and a PyTorch one fell back to LiteRT Torch. The rewrite writes the GRU's steps
out as plain ops that share one copy of each weight (measured against the other routes in
benchmarks/results/gru_int8.json, benchmarks/bench_gru_int8.py).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeport.cli import main
from edgeport.export import rewrites
from edgeport.export.rewrites.gru_unroll import gru_unroll
from edgeport.zoo import sequence_models as seq

from onnx_checks import rewrite_only, run_onnx


# --- the rewrite on onnxruntime (fast) -------------------------------------------------------------------
def _gru_model(steps=5, batch=2, inputs=3, hidden=4, direction="forward", lbr=1, bias=True, initial=None,
               outputs=("Y", "Y_h"), seq_lens=False, **attrs):
    """One ONNX GRU node with seeded weights; `initial`: None, "const" or "input"."""
    rng = np.random.default_rng(0)
    dirs = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array(rng.normal(0, 0.6, (dirs, 3 * hidden, inputs)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(0, 0.6, (dirs, 3 * hidden, hidden)).astype(np.float32), "R")]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (dirs, 6 * hidden)).astype(np.float32), "B"))
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, batch, inputs])]
    if seq_lens:
        inits.append(numpy_helper.from_array(np.full(batch, steps, np.int32), "lens"))
    if initial == "const":
        inits.append(numpy_helper.from_array(rng.normal(0, 0.5, (dirs, batch, hidden)).astype(np.float32), "h0"))
    elif initial == "input":
        graph_inputs.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [dirs, batch, hidden]))
    node = helper.make_node("GRU", ["X", "W", "R", "B" if bias else "", "lens" if seq_lens else "", "h0" if initial else ""],
                            ["Y", "Y_h"], name="gru", hidden_size=hidden, direction=direction, linear_before_reset=lbr, **attrs)
    shapes = {"Y": [steps, dirs, batch, hidden], "Y_h": [dirs, batch, hidden]}
    graph = helper.make_graph([node], "g", graph_inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes[o])
                                                           for o in outputs], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("direction,lbr,bias,initial", [
    ("forward", 1, True, None), ("forward", 0, True, None), ("reverse", 1, True, "const"),
    ("bidirectional", 1, True, "input"), ("bidirectional", 0, False, None), ("forward", 0, False, "input"),
    ("forward", 1, False, None),
])
def test_unrolled_gru_computes_what_onnxruntime_s_gru_does(direction, lbr, bias, initial):
    model = _gru_model(direction=direction, lbr=lbr, bias=bias, initial=initial)
    original, out, records, notes = rewrite_only(model, "gru_unroll", gru_unroll)
    assert records and records[0]["rewrite"] == "gru_unroll" and records[0]["steps"] == 5, notes
    assert "GRU" not in {n.op_type for n in out.graph.node}
    # a zero state is written out of the first step, never as an all-zero constant (the TF converter's
    # int16x8 mode gives such a constant a scale of 0, and the model aborts at run time)
    assert not any(i.data_type == TensorProto.FLOAT and not numpy_helper.to_array(i).any() for i in out.graph.initializer)
    rng = np.random.default_rng(1)
    feed = {"X": rng.normal(0, 1, (5, 2, 3)).astype(np.float32)}
    if initial == "input":
        feed["h0"] = rng.normal(0, 0.5, (2 if direction == "bidirectional" else 1, 2, 4)).astype(np.float32)
    for want, got in zip(run_onnx(original, feed), run_onnx(out, feed), strict=True):
        assert want.shape == got.shape
        np.testing.assert_allclose(got, want, atol=2e-6)


def test_every_step_reads_the_same_weight_initializers():
    """One copy of each weight: the steps' Gemms share initializers, so the count does not grow with the steps."""
    counts = {}
    for steps in (4, 12):
        _, out, records, _ = rewrite_only(_gru_model(steps=steps), "gru_unroll", gru_unroll)
        gemms = [n for n in out.graph.node if n.op_type == "Gemm"]
        weights = {n.input[1] for n in gemms}
        counts[steps] = (len(gemms), len(weights), len(out.graph.initializer) - steps)  # one index constant a step
        assert records[0]["ops"] > 10 * steps
    assert counts[4][1] == counts[12][1] == 6  # W and R of the z, r and n gates
    assert counts[12][0] - counts[4][0] == 3 * 8  # three recurrent Gemms a step
    assert counts[4][2] == counts[12][2]  # weights, biases, h0: none of them per step


@pytest.mark.parametrize("kind", ["sequence_lens", "clip", "too_long", "activations"])
def test_grus_the_rewrite_cannot_write_out_keep_their_node(kind, monkeypatch):
    if kind == "too_long":
        # the package exports the function under the module's name: patch the module itself
        monkeypatch.setattr(sys.modules["edgeport.export.rewrites.gru_unroll"], "MAX_STEPS", 4)
    extra = {"sequence_lens": {"seq_lens": True}, "clip": {"clip": 3.0}, "too_long": {},
             "activations": {"activations": ["HardSigmoid", "Tanh"]}}[kind]
    _, out, records, _ = rewrite_only(_gru_model(**extra), "gru_unroll", gru_unroll)
    assert records == []
    assert [n.op_type for n in out.graph.node] == ["GRU"]


def _exported(module, shape, tmp_path):
    from edgeport.export.onnx_prep import prepare_onnx
    from edgeport.export.torch_to_onnx import export_onnx
    from edgeport.types import TensorSpec

    export_onnx(module.eval(), [TensorSpec("x", shape, "float32")], tmp_path / "raw.onnx")
    return prepare_onnx(tmp_path / "raw.onnx", tmp_path / "model.onnx", {})


def test_torch_gru_last_step_reads_the_state_directly(tmp_path):
    """`out[:, -1]` (Squeeze, Transpose, Gather of Y) becomes the last step's state: no Concat of every step."""
    torch.manual_seed(0)
    prepared = _exported(seq.GruKeywordSpotter(), (1, seq.KWS_FRAMES, seq.KWS_FEATURES), tmp_path)
    (record,) = [r for r in prepared.graph_rewrites if r["rewrite"] == "gru_unroll"]
    assert record["steps"] == seq.KWS_FRAMES and record["picked_step"] == seq.KWS_FRAMES - 1
    assert record["node"] == "/gru/GRU"  # the exporter's own name, as the report shows it
    ops = {n.op_type for n in onnx.load(str(prepared.path)).graph.node}
    assert "GRU" not in ops and "Concat" not in ops and {"Gemm", "Sigmoid", "Tanh"} <= ops
    assert any("gru_unroll" in n for n in prepared.notes)


def test_stacked_bidirectional_torch_gru_matches_onnxruntime(tmp_path):
    """A 2-layer bidirectional GRU: the second layer reads the first one's whole sequence (Y concatenated)."""
    class Stacked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(6, 8, num_layers=2, bidirectional=True, batch_first=True)

        def forward(self, x):
            out, h = self.gru(x)
            return out, h[-1]

    torch.manual_seed(0)
    model = Stacked()
    prepared = _exported(model, (1, 7, 6), tmp_path)
    assert len([r for r in prepared.graph_rewrites if r["rewrite"] == "gru_unroll"]) == 2
    x = np.random.default_rng(0).normal(0, 1, (1, 7, 6)).astype(np.float32)
    got = run_onnx(onnx.load(str(prepared.path)), {"x": x})
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(x))]
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_the_rewrite_is_registered():
    assert "gru_unroll" in [name for name, _ in rewrites.REWRITES]


# --- real conversions of a trained GRU keyword spotter ----------------------------------------------------
@pytest.fixture(scope="module")
def kws(tmp_path_factory):
    d = tmp_path_factory.mktemp("kws")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # seconds on one thread; oversubscribed threads were 20x slower on 2 busy cores
    try:
        torch.manual_seed(0)
        model = seq.train(seq.GruKeywordSpotter(), steps=400, data=seq.make_kws_data(4096, 100))
    finally:
        torch.set_num_threads(threads)
    torch.save(model.state_dict(), d / "kws.pt")
    shape = (1, seq.KWS_FRAMES, seq.KWS_FEATURES)
    torch.onnx.export(model, (torch.zeros(shape),), str(d / "kws.onnx"), input_names=["x"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    for name, (count, seed) in {"calib": (200, 1), "val": (600, 2)}.items():
        x, y = seq.make_kws_data(count, seed)
        np.savez(d / f"{name}.npz", x=x, y=y)
    return d


def _convert(args: list[str], capsys) -> tuple[int, dict]:
    code = main([*args, "--profile", "host", "--runs", "3", "--json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


def _data(d, out) -> list[str]:
    return ["--calib", str(d / "calib.npz"), "--val", str(d / "val.npz"), "--output", str(out)]


def _fc_weight_sharing(path) -> tuple[int, int]:
    """(FULLY_CONNECTED ops, distinct weight buffers they read) over every subgraph."""
    from edgeport.tflite.reader import _names, _schema, load_model

    model = load_model(path)
    names = _names(_schema().BuiltinOperator)
    fc = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) == "FULLY_CONNECTED":
                fc.append(int(sg.tensors[op.inputs[1]].buffer))
    return len(fc), len(set(fc))


def _check_int8_gru(rep: dict) -> None:
    from edgeport.tflite.reader import inspect_model

    info = inspect_model(rep["artifact"]["path"])
    assert info["subgraphs"] == 1 and "WHILE" not in info["op_counts"]
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL"} <= set(info["op_counts"])
    assert not info["float_ops"]  # every op between the graph's QUANTIZE/DEQUANTIZE is integer
    fc_ops, weight_buffers = _fc_weight_sharing(rep["artifact"]["path"])
    assert fc_ops >= 3 * seq.KWS_FRAMES and weight_buffers <= 8  # 32 steps x 3 gates read 6 GRU weights + the head
    full_integer = next(c for c in rep["verdict"]["checks"] if c["name"] == "full_integer")
    assert full_integer["passed"]
    (record,) = [r for r in rep["model"]["graph_rewrites"] if r["rewrite"] == "gru_unroll"]
    assert record["steps"] == seq.KWS_FRAMES
    assert any("gru_unroll" in n for n in rep["model"]["normalization_notes"])
    assert rep["float_conversion"]["matches"] is True
    acc = rep["accuracy"]
    # measured: agreement 1.0, drop 0.0 pp, cosine 0.9999 (benchmarks/results/gru_int8.json)
    assert acc["reference"] >= 0.93 and acc["drop_pp"] <= 1.5 and acc["top1_agreement"] >= 0.98, acc
    assert acc["cosine_mean"] >= 0.999, acc


@pytest.mark.slow
def test_an_onnx_gru_converts_to_full_int8(kws, tmp_path, capsys):
    """Before the rewrite the TF converter died (SIGSEGV) and an ONNX file has no other exporter: exit 3."""
    code, rep = _convert(["convert", str(kws / "kws.onnx"), "--quant", "int8", *_data(kws, tmp_path / "o")], capsys)
    assert rep["export"]["backend"] == "onnx2tf"
    _check_int8_gru(rep)
    assert code == 0, rep["verdict"]


@pytest.mark.slow
@pytest.mark.skipif(__import__("importlib").util.find_spec("litert_torch") is None, reason="the litert extra is not installed")
def test_a_pytorch_gru_int8_stays_on_onnx2tf_and_is_no_worse_than_litert_torch(kws, tmp_path, capsys):
    """auto settles on onnx2tf's int8 (before: it crashed and LiteRT Torch's int8 was kept); that model is at
    least as accurate as LiteRT Torch's, today's floor, and smaller (one copy of the weights, fewer ops)."""
    head = ["convert", str(kws / "kws.pt"), "--model-class", "edgeport.zoo.sequence_models:GruKeywordSpotter",
            "--input-shape", f"x=1x{seq.KWS_FRAMES}x{seq.KWS_FEATURES}", "--quant", "int8"]
    code, rep = _convert([*head, *_data(kws, tmp_path / "auto")], capsys)
    assert [a["backend"] for a in rep["export"]["attempts"]] == ["onnx2tf"], rep["export"]
    _check_int8_gru(rep)
    assert code == 0, rep["verdict"]
    floor_code, floor = _convert([*head, "--exporter", "litert-torch", *_data(kws, tmp_path / "floor")], capsys)
    assert floor["export"]["backend"] == "litert-torch" and floor_code in (0, 1)
    assert rep["accuracy"]["drop_pp"] <= floor["accuracy"]["drop_pp"] + 0.5
    assert rep["accuracy"]["top1_agreement"] >= floor["accuracy"]["top1_agreement"] - 0.005
    assert rep["artifact"]["size_bytes"] < floor["artifact"]["size_bytes"]


@pytest.mark.slow
def test_an_onnx_gru_in_int16x8_runs(kws, tmp_path, capsys):
    """The TF converter gave an all-zero initial-state constant an int16 scale of 0 and the a16w8 model
    aborted (SIGABRT) on every input; the rewrite writes the zero state out of the first step."""
    code, rep = _convert(["convert", str(kws / "kws.onnx"), "--quant", "int16x8", *_data(kws, tmp_path / "o")], capsys)
    runs = next(c for c in rep["verdict"]["checks"] if c["name"] == "runs_on_validation_data")
    assert runs["passed"], runs
    assert rep["accuracy"]["top1_agreement"] >= 0.98 and rep["accuracy"]["drop_pp"] <= 1.5, rep["accuracy"]
    assert code == 0, rep["verdict"]
