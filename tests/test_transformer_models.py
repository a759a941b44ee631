"""Trained transformer models reach full int8 with the default exporter and keep their accuracy.

The fixture is the zoo's TinyVit (edgeport/zoo/vit.py): `nn.TransformerEncoder` with pre-norm and GELU,
trained on the bundled digits, given as a state_dict plus its class, as a PyTorch user brings it.
Before the GELU/LayerNorm rewrites its int8 model aborted at run time in DIV and the verdict failed.
"""

from __future__ import annotations

import json

import pytest
import torch

from edgeport.cli import main
from edgeport.tflite.reader import inspect_model
from edgeport.zoo import vit


def test_tiny_vit_is_a_pre_norm_gelu_transformer_encoder():
    model = vit.load()
    layer = model.encoder.layers[0]
    assert isinstance(model.encoder, torch.nn.TransformerEncoder)
    assert layer.norm_first and layer.activation_relu_or_gelu == 2  # 2: GELU
    with torch.no_grad():
        assert model(torch.zeros(vit.INPUT_SHAPE)).shape == (1, 10)


@pytest.mark.slow
def test_vit_converts_to_full_int8_with_default_exporter(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["convert", str(vit.WEIGHTS), "--model-class", "edgeport.zoo.vit:TinyVit",
                 "--input-shape", "1x1x32x32", "--calib", "builtin:digits", "--val", "builtin:digits-val",
                 "--profile", "raspberry-pi-4", "--quant", "int8", "--runs", "1",
                 "--max-calib-samples", "64", "--max-val-samples", "200", "--output", str(out), "--json"])
    rep = json.loads(capsys.readouterr().out)
    failed = [c for c in rep["verdict"]["checks"] if not c["passed"]]
    assert code == 0 and rep["verdict"]["passed"], failed
    assert rep["export"]["requested"] == "auto" and rep["runtime_error"] is None
    assert rep["accuracy"]["reference"] >= 0.95  # a trained model, so the drop below means something
    assert rep["accuracy"]["drop_pp"] <= 1.0
    assert rep["artifact"]["size_bytes"] <= 0.35 * rep["reference"]["size_bytes"]
    rewrites = {r["rewrite"] for r in rep["model"]["graph_rewrites"]}
    assert {"gelu", "layer_norm"} <= rewrites
    info = inspect_model(rep["artifact"]["path"])
    assert "DIV" not in info["op_counts"] and not info["flex_ops"]
    assert info["op_counts"].get("GELU") == len(vit.load().encoder.layers)  # one GELU op per MLP
    assert not info["float_ops"]  # full integer: every compute op runs in int8
