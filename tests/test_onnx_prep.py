"""ONNX normalisation: shapes, names, opsets, foreign-exporter quirks, unsupported ops."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.errors import InputError
from edgeport.export.onnx_prep import parse_shape, prepare_onnx


def _model(dims, node_name="conv", opset=17, op="Relu", domain="", init_as_input=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.ones((1,), np.float32), "w")
    nodes = [helper.make_node("Mul", ["x", "w"], ["t"], name=node_name),
             helper.make_node(op, ["t"], ["y"], name="Softmax@0", domain=domain)]
    inputs = [x]
    if init_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "g", inputs, [y], initializer=[w])
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 7
    return model


def _save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("text,expected", [("1x3x224x224", (None, (1, 3, 224, 224))), ("x=1x8", ("x", (1, 8))),
                                           ("in:0=1,3,4", ("in:0", (1, 3, 4)))])
def test_parse_shape(text, expected):
    assert parse_shape(text) == expected


@pytest.mark.parametrize("text", ["", "x=", "1x0x3", "ax3", "x=1x-2", "1x2x3x4x5x6x7x8x9"])
def test_parse_shape_rejects(text):
    with pytest.raises(InputError, match="--input-shape"):
        parse_shape(text)


def test_dynamic_batch_fixed_to_one_and_names_sanitised(tmp_path):
    prep = prepare_onnx(_save(_model(["N", 3, 8, 8]), tmp_path), tmp_path / "out.onnx")
    assert prep.inputs[0].shape == (1, 3, 8, 8)
    assert any("batch" in n for n in prep.notes)
    names = [n.name for n in onnx.load(str(prep.path)).graph.node]
    assert all("@" not in n for n in names)


def test_dynamic_spatial_dims_need_input_shape(tmp_path):
    path = _save(_model(["N", 3, "h", "w"]), tmp_path)
    with pytest.raises(InputError, match=r"--input-shape x=1x3xHxW with numbers for H, W") as err:
        prepare_onnx(path, tmp_path / "out.onnx")
    assert "dynamic" in str(err.value)
    prep = prepare_onnx(path, tmp_path / "out.onnx", {"x": (1, 3, 16, 16)})
    assert prep.inputs[0].shape == (1, 3, 16, 16)


def test_input_shape_errors(tmp_path):
    path = _save(_model([1, 3, 8, 8]), tmp_path)
    with pytest.raises(InputError, match="unknown input 'z'.*inputs are: x"):
        prepare_onnx(path, tmp_path / "o.onnx", {"z": (1, 3, 8, 8)})
    with pytest.raises(InputError, match="3 dims but the model input has 4"):
        prepare_onnx(path, tmp_path / "o.onnx", {"x": (1, 3, 8)})
    with pytest.raises(InputError, match="contradicts the model's fixed shape"):
        prepare_onnx(path, tmp_path / "o.onnx", {None: (1, 3, 9, 9)})


def test_initializers_listed_as_inputs_are_removed(tmp_path):
    prep = prepare_onnx(_save(_model([1, 4], init_as_input=True), tmp_path), tmp_path / "o.onnx")
    assert [s.name for s in prep.inputs] == ["x"]
    assert any("initializers" in n for n in prep.notes)


def test_old_opset_is_upgraded(tmp_path):
    prep = prepare_onnx(_save(_model([1, 4], opset=9), tmp_path), tmp_path / "o.onnx")
    assert prep.opset >= 11
    assert any("upgraded opset 9" in n for n in prep.notes)


def test_ir3_model_with_initializers_as_inputs_is_upgraded_before_they_are_removed(tmp_path):
    """Caffe2's model-zoo exports (IR 3, opset 9) list every initializer as a graph input, which IR 3
    requires; ONNX's version converter fails on them once those inputs are gone."""
    old = _model([1, 4], opset=9, init_as_input=True)
    old.ir_version = 3
    prep = prepare_onnx(_save(old, tmp_path), tmp_path / "o.onnx")
    assert prep.opset >= 11 and any("upgraded opset 9" in n for n in prep.notes)
    assert [i.name for i in onnx.load(str(prep.path)).graph.input] == ["x"]


def test_unsupported_op_names_op_and_node(tmp_path):
    with pytest.raises(InputError, match="custom op 'com.acme::FancyOp'.*Softmax_0|node 'Softmax_0'"):
        prepare_onnx(_save(_model([1, 4], op="FancyOp", domain="com.acme"), tmp_path), tmp_path / "o.onnx")


def test_corrupt_onnx_is_input_error(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(onnx.load(str(_save(_model([1, 4]), tmp_path))).SerializeToString()[:20])
    with pytest.raises(InputError, match="not a readable ONNX file"):
        prepare_onnx(path, tmp_path / "o.onnx")


@pytest.mark.parametrize("how", ["dynamic", "static"])
def test_file_quantized_by_onnxruntime_asks_for_the_float_export(tmp_path, how, capsys):
    """Real onnxruntime.quantization output (dynamic: DynamicQuantizeLinear + ConvInteger/MatMulInteger;
    static QOperator: QLinearConv/QLinearMatMul), refused with one line that says what the file is."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    from edgeport.cli import main

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    m = numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 5)).astype(np.float32), "m")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                               helper.make_node("Relu", ["c"], ["r"], name="relu"),
                               helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
                               helper.make_node("MatMul", ["f", "m"], ["y"], name="fc")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [w, m, shape])
    src, dst = tmp_path / "float.onnx", tmp_path / "quantized.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), src)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    if how == "dynamic":
        quantize_dynamic(str(src), str(dst))
    else:
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QOperator)
    ops = {n.op_type for n in onnx.load(str(dst)).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"}, ops
    with pytest.raises(InputError, match="already quantized by onnxruntime"):
        prepare_onnx(dst, tmp_path / "out.onnx")
    prepare_onnx(src, tmp_path / "out.onnx")  # the float export itself is fine
    code = main(["convert", str(dst), "--profile", "host", "--quant", "fp32", "-o", str(tmp_path / "o")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "pass the float ONNX export" in err[0], err
    assert not (tmp_path / "o").exists()
