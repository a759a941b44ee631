"""`--exporter`: real conversions through both backends, and auto's choice on the models that need it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeport.cli import main
from edgeport.zoo import sequence_models as seq

pytestmark = pytest.mark.skipif(__import__("importlib").util.find_spec("litert_torch") is None,
                                reason="the litert extra is not installed")


def _run(args: list[str], capsys) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def gru(tmp_path_factory):
    d = tmp_path_factory.mktemp("gru")
    torch.manual_seed(0)
    torch.save(seq.train(seq.GruClassifier()).state_dict(), d / "gru.pt")
    for name, (count, seed) in {"calib": (128, 1), "val": (300, 2)}.items():
        x, y = seq.make_data(count, seed)
        np.savez(d / f"{name}.npz", x=x, y=y)
    return d


def _gru_args(d, out, *extra: str) -> list[str]:
    return ["convert", str(d / "gru.pt"), "--model-class", "edgeport.zoo.sequence_models:GruClassifier",
            "--input-shape", f"x=1x{seq.SEQ}x{seq.FEATURES}", "--profile", "host", "--calib", str(d / "calib.npz"),
            "--val", str(d / "val.npz"), "--output", str(out), "--runs", "3", *extra]


@pytest.mark.slow
def test_gru_int8_falls_back_to_litert_torch_whose_int8_outweighs_its_fp32_and_the_verdict_says_so(gru, tmp_path, capsys,
                                                                                                 without_rewrites):
    """Without the GRU unrolling rewrite, the TF converter crashes quantizing a GRU to int8; auto gets an
    int8 model from LiteRT Torch. It is accurate and full-integer, but unrolled into ~310 ops it is larger
    than LiteRT Torch's own float32 model: a fallback that buys nothing is no answer (export/arbitrate.py).
    Nothing else exists, so it is kept and the verdict fails on that alone, saying why."""
    without_rewrites("gru_unroll")  # the subject is the no-answer rule; tests/test_gru_int8.py has the int8 route
    code, rep = _run(_gru_args(gru, tmp_path / "o", "--quant", "int8"), capsys)
    export = rep["export"]
    assert export["backend"] == "litert-torch", export
    first, second = export["attempts"]
    assert first["backend"] == "onnx2tf" and first["converted"] is False and "SIGSEGV" in first["error"]
    assert first["artifact"] is None and first["why"] == "not kept: it did not convert"
    art = second["artifact"]
    assert second["kept"] and second["float_matches"] is True and art["meets_budget"] and art["drop_pp"] <= 1.0
    assert art["size_bytes"] == rep["artifact"]["size_bytes"] and art["size_vs_fp32"] > 1
    assert "no answer: its int8 model is larger than its float32 model" in second["why"]
    assert rep["float_conversion"]["matches"] is True
    assert rep["accuracy"]["drop_pp"] <= 1.0, rep["accuracy"]
    checks = {c["name"]: c for c in rep["verdict"]["checks"]}
    assert checks["full_integer"]["passed"]  # read back from the written file: every op is integer
    answer = checks["fallback_exporter_is_an_answer"]
    assert not answer["passed"] and "litert-torch's int8 model is larger than its float32 model" in answer["detail"]
    assert "SIGSEGV" in answer["detail"]
    assert [c["name"] for c in rep["verdict"]["checks"] if not c["passed"]] == ["fallback_exporter_is_an_answer"]
    assert code == 1 and rep["verdict"]["passed"] is False


@pytest.mark.slow
def test_auto_int8_tries_litert_torch_when_onnx2tfs_int8_misses_the_budget_and_keeps_the_better(tmp_path, capsys):
    """attn_net: onnx2tf's float32 model matches, but its int8 model loses ~57 pp (the TF quantizer's
    calibration); LiteRT Torch's int8 loses none. Both attempts are reported with their figures."""
    code, rep = _run(["convert", "edgeport/zoo/attn_net.pt", "--model-class", "edgeport.zoo.hard_cases:AttnNet",
                      "--profile", "host", "--quant", "int8", "--calib", "builtin:digits", "--val", "builtin:digits-val",
                      "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    export = rep["export"]
    first, second = export["attempts"]
    assert [first["backend"], second["backend"]] == ["onnx2tf", "litert-torch"] and export["backend"] == "litert-torch"
    assert first["converted"] and first["float_matches"] and first["cosine_min"] >= 0.999 and not first["kept"]
    bad, good = first["artifact"], second["artifact"]
    assert bad["ran"] and not bad["meets_budget"] and bad["drop_pp"] > 10 and bad["cosine_mean"] < good["cosine_mean"]
    assert any(f.startswith("accuracy_drop_pp") for f in bad["failed_checks"]) and "misses the budget" in first["why"]
    assert good["meets_budget"] and good["drop_pp"] <= 1.0 and good["size_vs_fp32"] < 1 and second["kept"]
    assert good["size_bytes"] == rep["artifact"]["size_bytes"] and rep["accuracy"]["drop_pp"] == good["drop_pp"]
    assert "onnx2tf: its int8 model misses the budget" in export["reason"] and "litert-torch kept" in export["reason"]
    assert any("trying litert-torch" in n for n in rep["notes"])
    answer = next(c for c in rep["verdict"]["checks"] if c["name"] == "fallback_exporter_is_an_answer")
    assert answer["passed"]
    assert code == 0, rep["verdict"]


@pytest.mark.slow
def test_token_mlp_that_onnx2tf_misconverts_passes_through_litert_torch(tmp_path, capsys):
    from edgeport.zoo.hard_cases import AttnNet

    torch.manual_seed(0)
    torch.save(AttnNet(use_mlp=True).eval().state_dict(), tmp_path / "attn.pt")
    code, rep = _run(["convert", str(tmp_path / "attn.pt"), "--model-class", "edgeport.zoo.hard_cases:AttnNet",
                      "--model-kwargs", '{"use_mlp": true}', "--profile", "host", "--quant", "fp32", "--calib", "builtin:digits",
                      "--val", "builtin:digits-val", "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    attempts = rep["export"]["attempts"]
    assert [a["backend"] for a in attempts] == ["onnx2tf", "litert-torch"]
    assert attempts[0]["converted"] and attempts[0]["float_matches"] is False
    assert rep["export"]["backend"] == "litert-torch" and rep["float_conversion"]["matches"]
    assert rep["accuracy"]["snr_db"] > 40
    assert code == 0, rep["verdict"]


@pytest.mark.slow
def test_explicit_litert_torch_on_a_cnn_keeps_the_nhwc_contract(tmp_path, capsys):
    """Same I/O contract as onnx2tf: a rank-4 image input is NHWC on the TFLite side."""
    code, rep = _run(["convert", "edgeport/zoo/digits_net.pt", "--model-class", "edgeport.zoo.digits_net:DigitsNet",
                      "--profile", "raspberry-pi-4", "--quant", "int8", "--exporter", "litert-torch", "--calib", "builtin:digits",
                      "--val", "builtin:digits-val", "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    assert rep["export"]["backend"] == "litert-torch" and rep["export"]["reason"] == "--exporter litert-torch"
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=rep["artifact"]["path"])
    (inp,) = interp.get_signature_runner().get_input_details().values()
    assert tuple(inp["shape"]) == (1, 28, 28, 1) or tuple(inp["shape"])[-1] in (1, 3)
    assert rep["accuracy"]["drop_pp"] <= 1.0
    assert code == 0, rep["verdict"]


def test_an_onnx_file_with_litert_torch_is_one_line_exit_2(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    code = main(["convert", str(tmp_path / "m.onnx"), "--profile", "host", "--quant", "fp32", "--exporter", "litert-torch",
                 "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("edgeport: error: --exporter litert-torch cannot convert this model: LiteRT Torch converts PyTorch")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_mixed_runs_on_the_litert_torch_float_model(tmp_path, capsys):
    """The AEQ search needs only a float .tflite, so --quant mixed works on either export path."""
    code, rep = _run(["convert", "edgeport/zoo/attn_net.pt", "--model-class", "edgeport.zoo.hard_cases:AttnNet",
                      "--profile", "raspberry-pi-4", "--quant", "mixed", "--exporter", "litert-torch", "--calib",
                      "builtin:digits", "--val", "builtin:digits-val", "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    q = rep["quantization"]
    assert rep["export"]["backend"] == "litert-torch" and q["search"]["method"] == "aeq"
    assert sum(q["levels"].values()) == len(q["layers"]) and q["levels"]["int8"] > 0
    assert not any(name.endswith("int8.tflite") for name in (p.name for p in (tmp_path / "o").iterdir()))
    assert rep["accuracy"]["drop_pp"] <= 1.0
    assert code == 0, rep["verdict"]
