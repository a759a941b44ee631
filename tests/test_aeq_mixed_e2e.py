"""`--quant mixed` with the AEQ search, end to end through the CLI on models that exercise its levels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.cli import main
from edgeport.tflite.reader import inspect_model

from fixture_models import TinySENet, image_data

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _run(args: list[str], capsys) -> tuple[int, dict]:
    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_sensitive_classifier_head_gets_a16w8_and_float_where_int8_collapses(tmp_path: Path, capsys) -> None:
    """HeadNet's hidden layer carries a massive activation: all-int8 collapses, equalization cannot
    help (hard-swish), and the search raises only the head, one op of it to int16 activations."""
    code, rep = _run(["convert", str(REPO / "edgeport/zoo/head_net.pt"), "--model-class", "edgeport.zoo.hard_cases:HeadNet",
                      "--calib", "builtin:digits", "--val", "builtin:digits-val", "--profile", "raspberry-pi-4",
                      "--quant", "mixed", "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    q = rep["quantization"]
    assert q["int8_only"]["ok"] is False and q["int8_only"]["metric"] < 0.5, q["int8_only"]  # all-int8 collapses
    assert rep["accuracy"]["drop_pp"] <= 1.0 and code == 0, rep["verdict"]
    assert q["search"]["method"] == "aeq" and q["search"]["stopped"] == "budget met"
    assert q["levels"]["a16w8"] >= 1 and q["levels"]["float"] >= 1, q["levels"]
    raised = [r for r in q["layers"] if r["level"] != "int8"]
    assert all(r["pytorch_module"] and r["pytorch_module"].startswith("classifier") or r["op"] == "MEAN" for r in raised), raised
    assert all("searched" in r["reason"] for r in raised)
    info = inspect_model(Path(rep["artifact"]["path"]))  # the written file, read back
    out_types = [op["outputs"][0]["dtype"] for op in info["ops"] if op["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    assert out_types.count("INT16") == q["levels"]["a16w8"] and out_types.count("FLOAT32") == q["levels"]["float"], out_types


def test_ops_aeq_cannot_quantize_are_int8_in_the_converter_rebuild(tmp_path: Path, capsys, without_rewrites) -> None:
    """A squeeze-excite hard-sigmoid is RELU_0_TO_1, which AEQ keeps float: on the ONNX path the same
    choice built by the TF converter is smaller and no slower, so that file is the artifact. (The
    HardSigmoid rewrite removes RELU_0_TO_1; the subject here is the rebuild, for ops like it.)"""
    without_rewrites("hard_sigmoid")
    from edgeport.zoo.cnn_families import randomize_norms

    torch.manual_seed(0)
    model = TinySENet()
    randomize_norms(model)
    torch.save(model.state_dict(), tmp_path / "se.pt")
    for name, seed in (("calib", 1), ("val", 2)):
        np.savez(tmp_path / f"{name}.npz", x=image_data(64, (3, 32, 32), seed=seed))
    code, rep = _run(["convert", str(tmp_path / "se.pt"), "--model-class", "fixture_models:TinySENet", "--input-shape",
                      "x=1x3x32x32", "--calib", str(tmp_path / "calib.npz"), "--val", str(tmp_path / "val.npz"),
                      "--profile", "raspberry-pi-4", "--quant", "mixed", "--output", str(tmp_path / "o"), "--runs", "3"], capsys)
    q = rep["quantization"]
    assert q["forced_float"], "the hard-sigmoid is an op AEQ cannot quantize"
    assert q["search"]["built_by"] == "tf-converter", rep["notes"]
    assert q["levels"]["float"] == 0 and code == 0, (q["levels"], rep["verdict"])
    rebuilt = [r for r in q["layers"] if r["tensor"] in q["forced_float"]]
    assert rebuilt and all(r["level"] == "int8" and "TF converter" in r["reason"] for r in rebuilt)
    step = q["curve"][-1]
    assert step["phase"] == "converter" and step["ok"] and step["size_bytes"] <= q["int8_only"]["bytes"]
    assert any("TF converter rebuilt the same choice" in n for n in rep["notes"])
