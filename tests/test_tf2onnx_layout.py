"""ONNX exported from Keras by tf2onnx (issue 23): detected, Transposes pushed through by onnxruntime,
NHWC inputs kept, converted in fp32, fp16 and int8 with the float check passing.

The fixture (tests/fixtures/tf2onnx/keras_conv3out.onnx) is a seeded tf_keras model exported by the
real tf2onnx 1.17 (scripts/make_tf2onnx_fixture.py): NHWC image in, conv front end, log and a per-row
normalisation in NHWC between Transpose pairs, three outputs (Reshape to a sequence, global average
pool, 1x1 conv map).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgeport.cli import main
from edgeport.export.onnx_prep import prepare_onnx
from edgeport.export.to_tflite import ERROR_CHARS, clean_error

FIXTURE = Path(__file__).parent / "fixtures" / "tf2onnx" / "keras_conv3out.onnx"
SHAPE = (1, 24, 20, 3)


def _data(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *SHAPE[1:]), dtype=np.float32)


def _run(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x}), strict=True))


def test_fixture_is_what_tf2onnx_writes():
    model = onnx.load(str(FIXTURE))
    assert model.producer_name == "tf2onnx"
    perms = [list(a.ints) for n in model.graph.node if n.op_type == "Transpose" for a in n.attribute]
    assert [0, 3, 1, 2] in perms and [0, 2, 3, 1] in perms, "NHWC <-> NCHW pairs around the convs"
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == list(SHAPE)
    assert len(model.graph.output) == 3


def test_prepare_pushes_transposes_and_keeps_the_nhwc_input(tmp_path):
    prepared = prepare_onnx(FIXTURE, tmp_path / "m.onnx")
    assert prepared.keep_layout_inputs == ("image",)
    assert any("exported by tf2onnx" in n and "keep their layout" in n for n in prepared.notes), prepared.notes
    count = lambda p: sum(n.op_type == "Transpose" for n in onnx.load(str(p)).graph.node)  # noqa: E731
    assert count(prepared.path) < count(FIXTURE)
    x = _data(1)
    want, got = _run(FIXTURE, x), _run(prepared.path, x)
    for name, ref in want.items():
        np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5)


def test_other_producers_are_left_alone(tmp_path):
    model = onnx.load(str(FIXTURE))
    model.producer_name = "pytorch"
    src = tmp_path / "renamed.onnx"
    onnx.save(model, str(src))
    prepared = prepare_onnx(src, tmp_path / "m.onnx")
    assert prepared.keep_layout_inputs == () and not any("tf2onnx" in n for n in prepared.notes)


def test_error_lines_never_carry_array_contents():
    dump = ", ".join(f"{v:.6f}" for v in np.linspace(0, 1, 120))
    text = (f"ValueError: Dimensions must be equal, but are 324 and 309 for '{{node tf.math.multiply/Mul}}' with "
            f"input shapes: [1,84,324], [1,84,309].\nCall arguments received: y=array([[{dump}]], dtype=float32)")
    line = clean_error(text)
    assert len(line) <= ERROR_CHARS and "\n" not in line
    assert "Dimensions must be equal, but are 324 and 309" in line and "0.5" not in line


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fp32", "fp16", "int8"])
def test_tf2onnx_export_converts_with_the_layout_kept(tmp_path, mode, capsys):
    np.savez(tmp_path / "calib.npz", image=_data(64))  # NHWC, as the Keras model and the ONNX file take it
    np.savez(tmp_path / "val.npz", image=_data(24, seed=1))
    out = tmp_path / "out"
    code = main(["convert", str(FIXTURE), "--profile", "host", "--quant", mode, "--calib", str(tmp_path / "calib.npz"),
                 "--val", str(tmp_path / "val.npz"), "--runs", "2", "-o", str(out), "--json", "--quiet"])
    report = json.loads(capsys.readouterr().out)
    assert report["float_conversion"]["matches"], report["float_conversion"]
    assert report["float_conversion"]["cosine_min"] > 0.9999
    assert any("exported by tf2onnx" in n for n in report["model"]["normalization_notes"])
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=report["artifact"]["path"])
    assert [list(d["shape"]) for d in interp.get_input_details()] == [list(SHAPE)], "NHWC in, as in Keras"
    assert "TRANSPOSE" not in report["model"]["ops"], "every Transpose pair cancelled"
    assert report["accuracy"]["cosine_mean"] > (0.999 if mode != "int8" else 0.99), report["accuracy"]
    assert code == 0, [c for c in report["verdict"]["checks"] if not c["passed"]]
