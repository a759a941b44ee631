"""Float-exact ONNX rewrites for transformer and mobile blocks (export/rewrites/): GELU, LayerNorm, HardSigmoid.

The unit tests build exporter-shaped graphs with onnx.helper and run them through `apply_rewrites`,
which keeps a rewrite only when onnxruntime gives the same outputs before and after; the slow ones
convert seeded models (zoo/transformer_blocks.py) and read the TFLite ops back.
"""

from __future__ import annotations

import collections
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from edgeport.export.rewrites import apply_rewrites
from edgeport.zoo import transformer_blocks as tb

SQRT2 = math.sqrt(2)
TANH_K = math.sqrt(2 / math.pi)


def _graph(nodes, consts: dict[str, float | np.ndarray], shape=(2, 8), opset=11, outputs=("y",), extra_inits=()):
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()] + list(extra_inits)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _node(op, inputs, out, **attrs):
    return helper.make_node(op, inputs, [out], name=out, **attrs)


def _ops(model) -> collections.Counter:
    return collections.Counter(f"{n.domain}::{n.op_type}" if n.domain else n.op_type for n in model.graph.node)


def _rewrite(model):
    notes: list[str] = []
    out, records = apply_rewrites(model, notes)
    return out, records, notes


# The erf form as torch.onnx writes it, and in the other orders exporters and hand-written code use.
ERF_GELUS = {
    "torch": [_node("Div", ["x", "sqrt2"], "u"), _node("Erf", ["u"], "e"), _node("Add", ["e", "one"], "s"),
              _node("Mul", ["x", "s"], "xs"), _node("Mul", ["xs", "half"], "y")],
    "half_first": [_node("Mul", ["x", "inv_sqrt2"], "u"), _node("Erf", ["u"], "e"), _node("Add", ["one", "e"], "s"),
                   _node("Mul", ["half", "x"], "hx"), _node("Mul", ["hx", "s"], "y")],
    "half_on_erf": [_node("Div", ["x", "sqrt2"], "u"), _node("Erf", ["u"], "e"), _node("Add", ["e", "one"], "s"),
                    _node("Mul", ["s", "half"], "hs"), _node("Mul", ["x", "hs"], "y")],
    "div_by_two": [_node("Mul", ["x", "inv_sqrt2"], "u"), _node("Erf", ["u"], "e"), _node("Add", ["e", "one"], "s"),
                   _node("Mul", ["s", "x"], "xs"), _node("Div", ["xs", "two"], "xs2"), _node("Identity", ["xs2"], "y")],
}
TANH_GELUS = {
    "torch": [_node("Mul", ["x", "x"], "x2"), _node("Mul", ["x", "x2"], "x3"), _node("Mul", ["cubic", "x3"], "c"),
              _node("Add", ["x", "c"], "p"), _node("Mul", ["k", "p"], "u"), _node("Tanh", ["u"], "t"),
              _node("Add", ["one", "t"], "s"), _node("Mul", ["x", "s"], "xs"), _node("Mul", ["half", "xs"], "y")],
    "pow": [_node("Pow", ["x", "three"], "x3"), _node("Mul", ["x3", "kc"], "c"), _node("Mul", ["x", "k"], "kx"),
            _node("Add", ["kx", "c"], "u"), _node("Tanh", ["u"], "t"), _node("Add", ["t", "one"], "s"),
            _node("Mul", ["half", "x"], "hx"), _node("Mul", ["hx", "s"], "y")],
}
CONSTS = {"sqrt2": SQRT2, "inv_sqrt2": 1 / SQRT2, "one": 1.0, "half": 0.5, "two": 2.0, "three": 3.0,
          "cubic": 0.044715, "k": TANH_K, "kc": TANH_K * 0.044715}


def _used(nodes) -> dict[str, float]:
    names = {i for n in nodes for i in n.input}
    return {k: v for k, v in CONSTS.items() if k in names}


@pytest.mark.parametrize("variant", sorted(ERF_GELUS))
def test_erf_gelu_in_any_order_becomes_one_contrib_gelu(variant):
    nodes = ERF_GELUS[variant]
    out, records, notes = _rewrite(_graph(nodes, _used(nodes)))
    ops = _ops(out)
    assert ops["com.microsoft::Gelu"] == 1 and "Erf" not in ops, ops
    assert [r["rewrite"] for r in records] == ["gelu"] and records[0]["form"] == "erf"
    assert records[0]["max_rel_error"] < 1e-5 and any("gelu" in n for n in notes)  # proved on onnxruntime
    assert any(o.domain == "com.microsoft" for o in out.opset_import)


@pytest.mark.parametrize("variant", sorted(TANH_GELUS))
def test_tanh_gelu_becomes_fast_gelu(variant):
    nodes = TANH_GELUS[variant]
    out, records, _ = _rewrite(_graph(nodes, _used(nodes)))
    ops = _ops(out)
    assert ops["com.microsoft::FastGelu"] == 1 and "Tanh" not in ops and "Pow" not in ops, ops
    assert records[0]["form"] == "tanh"


def test_from_opset_20_the_standard_gelu_is_used():
    nodes = TANH_GELUS["torch"]
    out, records, _ = _rewrite(_graph(nodes, _used(nodes), opset=20))
    gelu = [n for n in out.graph.node if n.op_type == "Gelu"]
    assert len(gelu) == 1 and gelu[0].domain == "" and helper.get_attribute_value(gelu[0].attribute[0]) == b"tanh"
    assert records[0]["op"] == "Gelu"


@pytest.mark.parametrize("case", ["wrong_constant", "shared_intermediate", "wrong_cubic"])
def test_lookalikes_are_left_alone(case):
    if case == "wrong_constant":  # erf(x / 2): not a GELU
        nodes, consts, outputs = ERF_GELUS["torch"], {**_used(ERF_GELUS["torch"]), "sqrt2": 2.0}, ("y",)
    elif case == "shared_intermediate":  # 1 + erf(...) is also a graph output: removing it would lose it
        nodes, consts, outputs = ERF_GELUS["torch"], _used(ERF_GELUS["torch"]), ("y", "s")
    else:
        nodes, consts, outputs = TANH_GELUS["torch"], {**_used(TANH_GELUS["torch"]), "cubic": 0.05}, ("y",)
    out, records, _ = _rewrite(_graph(nodes, consts, outputs=outputs))
    assert records == [] and _ops(out) == _ops(_graph(nodes, consts, outputs=outputs))


@pytest.mark.parametrize("opset", [17, 18])
def test_layer_normalization_is_written_out(opset):
    scale = numpy_helper.from_array(np.linspace(0.5, 1.5, 8).astype(np.float32), "scale")
    bias = numpy_helper.from_array(np.linspace(-0.2, 0.2, 8).astype(np.float32), "bias")
    nodes = [_node("LayerNormalization", ["x", "scale", "bias"], "y", axis=-1, epsilon=1e-6)]
    out, records, _ = _rewrite(_graph(nodes, {}, shape=(1, 5, 8), opset=opset, extra_inits=[scale, bias]))
    ops = _ops(out)
    assert "LayerNormalization" not in ops and ops["ReduceMean"] == 2 and ops["Sqrt"] == 1 and ops["Div"] == 1, ops
    assert records[0]["rewrite"] == "layer_norm" and records[0]["axis"] == -1 and records[0]["max_rel_error"] < 1e-5


def test_layer_normalization_whose_statistics_are_read_is_kept():
    scale = numpy_helper.from_array(np.ones(8, np.float32), "scale")
    ln = helper.make_node("LayerNormalization", ["x", "scale"], ["y", "mean"], name="ln", axis=-1)
    out, records, _ = _rewrite(_graph([ln], {}, shape=(1, 5, 8), opset=17, outputs=("y", "mean"), extra_inits=[scale]))
    assert records == [] and _ops(out)["LayerNormalization"] == 1


@pytest.mark.parametrize("alpha,beta", [(1 / 6, 0.5), (0.2, 0.5)])  # torch's nn.Hardsigmoid, Keras's hard_sigmoid
def test_hard_sigmoid_becomes_a_relu6_clip(alpha, beta):
    nodes = [_node("HardSigmoid", ["x"], "y", alpha=alpha, beta=beta)]
    out, records, _ = _rewrite(_graph(nodes, {}, shape=(4, 16)))
    ops = _ops(out)
    assert "HardSigmoid" not in ops and ops["Clip"] == 1, ops
    assert ops["Mul"] == (1 if alpha == 1 / 6 else 2)  # torch's 6α is 1: no scale
    clip = next(n for n in out.graph.node if n.op_type == "Clip")
    consts = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    assert [float(consts[t]) for t in clip.input[1:]] == [0.0, 6.0]
    assert records[0]["rewrite"] == "hard_sigmoid"


def test_onnx2tf_op_renaming_keeps_contrib_domains_and_shapes(tmp_path):
    """onnx2tf renames ops through sng4onnx, which drops node domains and re-infers shapes that ONNX
    cannot infer past a contrib op; the installed wrapper puts both back into the file onnx2tf reads."""
    from sng4onnx import generate

    from edgeport.export.rewrites.onnx2tf_ops import _keeping_domains

    nodes = ERF_GELUS["torch"] + [_node("Relu", ["y"], "r"), _node("Neg", ["r"], "z")]
    model, _, _ = _rewrite(_graph(nodes, _used(nodes), outputs=("z",)))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    _keeping_domains(generate)(input_onnx_file_path=str(path), onnx_graph=None, output_onnx_file_path=str(path),
                               non_verbose=True)
    back = onnx.load(str(path))
    assert _ops(back)["com.microsoft::Gelu"] == 1
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in back.graph.value_info}
    assert shapes["y"] == [2, 8] and shapes["r"] == [2, 8]  # past the contrib op, shapes are still known


# --- real conversions ------------------------------------------------------------------------------


def _convert(onnx_path: Path, calib: Path, quant: str, out: Path) -> dict:
    from edgeport.pipeline import convert

    return convert(str(onnx_path), "raspberry-pi-4", calib=str(calib), quant=quant, output=out, runs=3).data


def _tflite_ops(path: str) -> collections.Counter:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return collections.Counter(op["op_name"] for op in it._get_ops_details())


def _checks(rep: dict) -> dict:
    return {c["name"]: c for c in rep["verdict"]["checks"]}


@pytest.mark.slow
def test_svtr_block_at_opset_11_runs_in_full_int8_with_gelu_ops(tmp_path):
    """Without the GELU rewrite this model needs Flex Erf, the builtin retry writes Erf with DIVs, and
    full int8 aborts at run time in DIV ("data[i] != zero_point")."""
    onnx_path = tb.export("svtr", tmp_path / "svtr.onnx", opset=11)
    rep = _convert(onnx_path, tb.calibration("svtr", tmp_path / "calib.npz"), "int8", tmp_path / "o")
    checks = _checks(rep)
    assert checks["runs_on_validation_data"]["passed"] and checks["full_integer"]["passed"], checks
    ops = _tflite_ops(rep["artifact"]["path"])
    assert ops["GELU"] == 4 and "DIV" not in ops and ops["RSQRT"] == 5, ops  # 4 GELUs, 5 LayerNorms
    assert rep["accuracy"]["cosine_mean"] > 0.999
    assert collections.Counter(r["rewrite"] for r in rep["model"]["graph_rewrites"]) == {"gelu": 4}
    assert not any("Flex" in n for n in rep["notes"]), rep["notes"]


@pytest.mark.slow
def test_convnext_at_opset_17_runs_in_int16x8(tmp_path):
    """At opset 17 LayerNorm is one LayerNormalization node; tf_keras's lowering of it has a
    SQUARED_DIFFERENCE, which has no int16 kernel: without the LayerNorm rewrite int16x8 aborts."""
    onnx_path = tb.export("convnext", tmp_path / "convnext.onnx", opset=17)
    rep = _convert(onnx_path, tb.calibration("convnext", tmp_path / "calib.npz"), "int16x8", tmp_path / "o")
    assert _checks(rep)["runs_on_validation_data"]["passed"], _checks(rep)
    ops = _tflite_ops(rep["artifact"]["path"])
    assert "SQUARED_DIFFERENCE" not in ops and "DIV" not in ops and ops["RSQRT"] == 3 and ops["GELU"] == 2, ops
    assert rep["accuracy"]["cosine_mean"] > 0.999
    assert collections.Counter(r["rewrite"] for r in rep["model"]["graph_rewrites"]) == {"layer_norm": 3, "gelu": 2}


@pytest.mark.slow
def test_tanh_gelu_converts_to_gelu_ops(tmp_path):
    """Without the rewrite the tanh form stays TANH plus a dozen MUL/ADD per activation."""
    onnx_path = tb.export("svtr", tmp_path / "svtr.onnx", opset=11, depth=1, approximate="tanh")
    rep = _convert(onnx_path, tb.calibration("svtr", tmp_path / "calib.npz"), "fp32", tmp_path / "o")
    ops = _tflite_ops(rep["artifact"]["path"])
    assert ops["GELU"] == 3 and "TANH" not in ops, ops
    assert rep["accuracy"]["cosine_mean"] > 0.9999


class _GeluAndBareErf(torch.nn.Module):
    """A GELU plus an Erf that is not part of one: the Erf still needs the builtin (pseudo-op) retry."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = torch.nn.Linear(16, 24), torch.nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.gelu(self.a(x))
        return self.b(h + torch.erf(h))


@pytest.mark.slow
def test_pseudo_op_retry_still_works_and_keeps_the_gelu(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_GeluAndBareErf().eval(), (torch.zeros(1, 16),), str(tmp_path / "m.onnx"), opset_version=11,
                          dynamo=False, input_names=["x"], output_names=["output"])
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32))
    rep = _convert(tmp_path / "m.onnx", tmp_path / "calib.npz", "fp32", tmp_path / "o")
    assert any("Flex" in n and "erf" in n for n in rep["notes"]), rep["notes"]  # the retry ran
    assert _checks(rep)["builtin_ops_only"]["passed"]
    ops = _tflite_ops(rep["artifact"]["path"])
    assert ops["GELU"] == 1, ops  # the GELU survived the retry as one op; the bare Erf became builtin math
    assert rep["accuracy"]["cosine_mean"] > 0.999


@pytest.mark.slow
def test_hard_sigmoid_is_int8_for_aeq_and_one_xnnpack_partition(tmp_path):
    """onnx2tf's HardSigmoid is a RELU_0_TO_1 op: AEQ keeps it float and XNNPACK splits the graph at
    it. The ReLU6 form folds into the conv before it and a MUL."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.export.onnx_prep import prepare_onnx
    from edgeport.export.to_tflite import run_conversion
    from edgeport.quantize.aeq import quantizable_ops

    torch.manual_seed(0)
    se = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 1),
                             torch.nn.Hardsigmoid(), torch.nn.Conv2d(16, 8, 1)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(se, (torch.zeros(1, 3, 16, 16),), str(tmp_path / "e.onnx"), opset_version=11, dynamo=False,
                          input_names=["x"], output_names=["output"])
    prep = prepare_onnx(tmp_path / "e.onnx", tmp_path / "m.onnx", {})
    assert [r["rewrite"] for r in prep.graph_rewrites] == ["hard_sigmoid"]
    calib = {"x": np.random.default_rng(0).random((16, 3, 16, 16), dtype=np.float32)}
    conv = run_conversion(prep, tmp_path / "tf", calib, [{"key": "fp32", "mode": "fp32"}, {"key": "int8", "mode": "int8"}])
    fp32 = conv.files["fp32"]
    assert "RELU_0_TO_1" not in _tflite_ops(str(fp32))
    assert all("int8" in op.levels for op in quantizable_ops(Path(fp32))), "AEQ has an int8 rule for every op"
    it = Interpreter(model_path=str(conv.files["int8"]))
    it.allocate_tensors()
    assert [op["op_name"] for op in it._get_ops_details()].count("DELEGATE") == 1  # one XNNPACK partition

