"""Fast unit tests of the mixed-precision pieces: naming, search order, equalization, verification."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from edgeport.export.trace_names import match, module_path
from edgeport.quantize.equalize import equalize
from edgeport.quantize.search.budget import fits
from edgeport.quantize.search.converter_worker import _smallest_k
from edgeport.quantize.search.rows import verify_kept_float
from edgeport.zoo.hard_cases import OutlierNet


def test_module_path_from_torchscript_exporter_names():
    assert module_path("/features/features.3/conv/conv.1/Conv") == "features.3.conv.1"
    assert module_path("/stem/stem.0/Conv") == "stem.0"
    assert module_path("/classifier/Gemm") == "classifier"
    assert module_path("Softmax_12") is None


def test_smallest_k_bisects_to_the_minimum():
    calls = []

    def attempt(k):
        calls.append(k)
        return k >= 11, [f"n{i}" for i in range(k)], b"m"

    nodes, _ = _smallest_k(attempt, 40)
    assert len(nodes) == 11
    assert len(calls) <= 10  # doubling then bisecting, not 11 linear steps
    assert _smallest_k(lambda k: (False, [], b""), 5) is None


def test_budget_uses_labels_then_agreement():
    budget = {"reference_accuracy": 0.9, "accuracy_drop_pp": 1.0, "min_top1_agreement": 0.98}
    assert fits({"ok": True, "accuracy": 0.895, "top1": 0.5}, budget)
    assert not fits({"ok": True, "accuracy": 0.88, "top1": 1.0}, budget)
    assert not fits({"ok": False, "accuracy": 0.9}, budget)
    assert fits({"ok": True, "accuracy": None, "top1": 0.99}, {**budget, "reference_accuracy": None})


def test_verify_kept_float_reads_the_written_model():
    info = {"ops": [{"output_name": "a", "dtype": "FLOAT32"}, {"output_name": "b", "dtype": "INT8"}]}
    assert verify_kept_float(info, ["a", "b", "missing"]) == ["b", "missing"]


def test_match_pairs_by_values_in_either_layout():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    onnx_vals = {"t_a": ("/blk/conv/Conv", a), "t_b": ("/blk/other/Conv", b)}
    found = match({"tfl_a": a.transpose(0, 2, 3, 1), "tfl_b": b}, onnx_vals, ["tfl_a", "tfl_b", "nope"])
    assert found["tfl_a"]["onnx_node"] == "/blk/conv/Conv"
    assert found["tfl_b"]["onnx_node"] == "/blk/other/Conv"
    assert "nope" not in found


def test_equalization_removes_the_outlier_and_keeps_the_function(tmp_path):
    torch.manual_seed(0)
    model = OutlierNet().eval()
    model.inject_outlier(factor=500.0)
    x = torch.randn(1, 1, 32, 32)
    torch.onnx.export(model, x, tmp_path / "m.onnx", opset_version=17, dynamo=False, input_names=["x"])
    import onnxslim

    onnx.save(onnxslim.slim(onnx.load(str(tmp_path / "m.onnx"))), str(tmp_path / "s.onnx"))  # folds BN into conv
    res = equalize(tmp_path / "s.onnx", tmp_path / "e.onnx", {"x": x.numpy()})
    assert res.pairs >= 1 and res.max_scale > 100
    assert res.max_output_change < 1e-4
    from onnx import numpy_helper

    def weight_ranges(path):
        g = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        return [float(np.abs(inits[n.input[1]]).max()) for n in g.node if n.op_type == "Conv"]

    assert max(weight_ranges(tmp_path / "e.onnx")) < max(weight_ranges(tmp_path / "s.onnx")) / 10
