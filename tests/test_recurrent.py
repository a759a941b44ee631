"""Recurrent models: ONNX LSTMs become fused TFLite sequence ops that quantize to int8 and keep accuracy.

Fixtures are the trained zoo models (edgeport/zoo/recurrent.py): a 3-layer LSTM encoder returning a
normalised Linear(h_n[-1]) (the speaker-embedding shape) and a CRNN text recognizer with a
bidirectional LSTM and a CTC head, exported to ONNX as a third party would ship it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgeport.cli import main
from edgeport.export.fused_lstm import fusable_lstms
from edgeport.export.rewrites import apply_rewrites, float_difference
from edgeport.tflite.runner import invoke_each
from edgeport.zoo import recurrent, sequence_models

ZOO = Path(recurrent.__file__).parent
ENC_SHAPE = f"x=1x{sequence_models.SEQ}x{sequence_models.FEATURES}"


def _run(args: list[str], capsys) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _encoder() -> recurrent.LstmEncoder:
    model = recurrent.LstmEncoder()
    model.load_state_dict(torch.load(ZOO / "lstm_encoder.pt", weights_only=True))
    return model.eval()


def _crnn() -> recurrent.Crnn:
    model = recurrent.Crnn()
    model.load_state_dict(torch.load(ZOO / "crnn.pt", weights_only=True))
    return model.eval()


def _lstm_graph(*, read_cell_state: bool = False, state_input: bool = False, clip: float | None = None,
                lengths: int | None = None):
    """One ONNX LSTM node (seq 5, batch 1, input 3, hidden 4) with the variations fusable_lstms judges."""
    rng = np.random.default_rng(0)
    inits = [helper.make_tensor(n, TensorProto.FLOAT, s, rng.normal(0, 0.3, s).ravel().tolist())
             for n, s in (("W", [1, 16, 3]), ("R", [1, 16, 4]), ("B", [1, 32]))]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 3])]
    lstm_in = ["x", "W", "R", "B", "lens" if lengths else "", "h0" if state_input else "", "c0" if state_input else ""]
    if lengths:  # tf2onnx's constant sequence_lens
        inits.append(helper.make_tensor("lens", TensorProto.INT32, [1], [lengths]))
    if state_input:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 4]) for n in ("h0", "c0")]
    attrs = {"hidden_size": 4} | ({"clip": clip} if clip else {})
    node = helper.make_node("LSTM", lstm_in, ["y", "y_h", "y_c"], name="lstm", **attrs)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if read_cell_state:
        outputs.append(helper.make_tensor_value_info("y_c", TensorProto.FLOAT, None))
    graph = helper.make_graph([node], "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({}, None),
    ({"read_cell_state": True}, "final cell state"),
    ({"state_input": True}, "not a zero constant"),
    ({"clip": 3.0}, "clip"),
    ({"lengths": 5}, None),
    ({"lengths": 3}, "sequence_lens shorter"),
])
def test_fusable_lstms_fuses_only_what_the_fused_op_can_express(tmp_path, kwargs, reason):
    path = tmp_path / "lstm.onnx"
    onnx.save(_lstm_graph(**kwargs), str(path))
    found = fusable_lstms(str(path))
    if reason is None:
        assert found == {"lstm": None}
    else:
        assert reason in found["lstm"]


def test_encoder_rewrites_keep_h_n_last_layer_and_drop_the_norm_clamp_exactly(tmp_path):
    """torch writes h_n[-1] as Gather(Concat(layer states)), which onnx2tf gathered on the wrong axis;
    and x / clamp(||x||) as ReduceL2/Clip/Div, which TFLite cannot fuse into L2_NORMALIZATION."""
    path = tmp_path / "enc.onnx"
    torch.onnx.export(_encoder(), (torch.zeros(1, sequence_models.SEQ, sequence_models.FEATURES),), str(path),
                      input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
    import onnxslim

    model = onnx.shape_inference.infer_shapes(onnxslim.slim(onnx.load(str(path))))
    original = onnx.ModelProto()
    original.CopyFrom(model)
    notes: list[str] = []
    rewritten, records = apply_rewrites(model, notes)
    assert [r["rewrite"] for r in records] == ["gather_of_concat", "l2_normalize"]
    ops = {n.op_type for n in rewritten.graph.node}
    assert "Gather" not in ops and "Clip" not in ops
    assert float_difference(original, rewritten) == pytest.approx(0.0, abs=1e-6)
    assert "rewrote 2 place(s)" in notes[0]


def test_rewrites_that_change_the_float_function_are_dropped():
    """The framework never trusts a rewrite: one that moves an output is undone and said so."""
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])

    def wrong(m, _ctx):
        m.graph.node[0].op_type = "Sigmoid"
        return [{"rewrite": "wrong", "node": "relu"}]

    notes: list[str] = []
    kept, records = apply_rewrites(model, notes, [("wrong", wrong)])
    assert records == [] and kept.graph.node[0].op_type == "Relu"
    assert "dropped" in notes[0]


@pytest.fixture(scope="module")
def encoder_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("enc")
    torch.save(_encoder().state_dict(), d / "enc.pt")
    for name, (count, seed) in {"calib": (200, 11), "val": (120, 12)}.items():
        x, _ = sequence_models.make_data(count, seed)
        np.savez(d / f"{name}.npz", x=x)
    return d


def _encoder_args(d: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", str(d / "enc.pt"), "--model-class", "edgeport.zoo.recurrent:LstmEncoder", "--input-shape", ENC_SHAPE,
            "--profile", "raspberry-pi-4", "--output", str(out), "--runs", "3", *extra]


@pytest.mark.slow
def test_lstm_encoder_int8_is_fused_small_and_keeps_the_embedding(encoder_files, tmp_path, capsys):
    """3 fused LSTM ops, no WHILE loop; int8 within 35% of fp32 and embedding cosine >= 0.99 (the MLIR
    quantizer gave 0.09 on every layer after the first: this fails without the older quantizer)."""
    d = encoder_files
    _, rep = _run(_encoder_args(d, tmp_path / "o", "--quant", "int8", "--calib", str(d / "calib.npz"),
                                "--val", str(d / "val.npz")), capsys)
    ops = rep["model"]["ops"]
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3 and "WHILE" not in ops, ops
    assert rep["export"]["backend"] == "onnx2tf" and rep["float_conversion"]["matches"] is True
    assert rep["artifact"]["size_bytes"] <= 0.35 * rep["reference"]["size_bytes"]
    assert rep["accuracy"]["outputs"][0]["cosine_min"] >= 0.99, rep["accuracy"]
    assert {r["rewrite"] for r in rep["model"]["graph_rewrites"]} == {"gather_of_concat", "l2_normalize"}
    assert ops.get("L2_NORMALIZATION") == 1
    assert rep["model"]["variable_tensors"] == 6  # h and c of each fused layer
    assert any("fused UNIDIRECTIONAL_SEQUENCE_LSTM" in n for n in rep["notes"])


@pytest.mark.slow
def test_lstm_encoder_fp16_without_data_has_the_reference_output_shape(encoder_files, tmp_path, capsys):
    """onnx2tf once returned h_n of every layer (3x the batch) and the float check died on it."""
    code, rep = _run(_encoder_args(encoder_files, tmp_path / "o", "--quant", "fp16"), capsys)
    assert rep["float_conversion"]["matches"] is True, rep["float_conversion"]
    assert rep["accuracy"]["outputs"][0]["shape"][1:] == [recurrent.ENC_DIM]
    assert code in (0, 1)


@pytest.fixture(scope="module")
def crnn_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("crnn")
    torch.onnx.export(_crnn(), (torch.zeros(1, 1, recurrent.LINE_H, recurrent.LINE_W),), str(d / "crnn.onnx"),
                      input_names=["image"], output_names=["logits"], opset_version=17, dynamo=False)
    for name, (count, seed) in {"calib": (200, 21), "val": (150, 22)}.items():
        x, _ = recurrent.make_lines(count, seed)
        np.savez(d / f"{name}.npz", image=x)
    return d


@pytest.mark.slow
def test_crnn_onnx_int8_bidirectional_lstm_decodes_the_same_strings(crnn_files, tmp_path, capsys):
    d = crnn_files
    code, rep = _run(["convert", str(d / "crnn.onnx"), "--profile", "raspberry-pi-4", "--quant", "int8",
                      "--calib", str(d / "calib.npz"), "--val", str(d / "val.npz"), "--output", str(tmp_path / "o"),
                      "--runs", "3"], capsys)
    ops = rep["model"]["ops"]
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2 and "WHILE" not in ops, ops  # one per direction
    assert rep["artifact"]["size_bytes"] <= 0.35 * rep["reference"]["size_bytes"]
    assert code == 0, rep["verdict"]
    images = np.load(d / "val.npz")["image"]
    with torch.no_grad():
        float_text = recurrent.greedy_ctc(_crnn()(torch.from_numpy(images)).numpy())
    int8_text = recurrent.greedy_ctc(invoke_each(Path(rep["artifact"]["path"]), images, (0, 2, 3, 1)))
    same = np.mean([a == b for a, b in zip(float_text, int8_text, strict=True)])
    assert same >= 0.98, same


@pytest.mark.slow
def test_untrained_three_layer_lstm_int8_survives_the_mlir_quantizer_fault(tmp_path, capsys):
    """TF 2.21's MLIR quantizer ruins every fused LSTM after the first on this seeded encoder (cosine
    0.64 measured); the older quantizer, which edgeport picks for fused LSTMs, keeps it above 0.99."""
    torch.manual_seed(0)
    torch.save(recurrent.LstmEncoder(features=40).state_dict(), tmp_path / "enc.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(120, 50, 40)).astype(np.float32))
    _, rep = _run(["convert", str(tmp_path / "enc.pt"), "--model-class", "edgeport.zoo.recurrent:LstmEncoder",
                   "--model-kwargs", '{"features": 40}', "--input-shape", "x=1x50x40", "--profile", "raspberry-pi-4",
                   "--quant", "int8", "--calib", str(tmp_path / "calib.npz"), "--output", str(tmp_path / "o"),
                   "--runs", "3", "--exporter", "onnx2tf"], capsys)  # the quantizer is the subject, not auto's choice
    assert rep["model"]["ops"].get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3
    assert rep["accuracy"]["outputs"][0]["cosine_min"] >= 0.99, rep["accuracy"]
