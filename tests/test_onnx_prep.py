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
