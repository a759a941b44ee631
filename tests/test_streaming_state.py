"""`--state IN=OUT`: streaming models are validated over whole sequences, closed-loop, and calibrated on
the states the float model really carries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.cli import main
from edgeport.errors import InputError
from edgeport.types import TensorSpec
from edgeport.validate import streaming
from edgeport.validate.run import reference_outputs, run_tflite

WIDTH, DECAY = 8, 0.9


def _integrator(path: Path) -> Path:
    """stateN = DECAY * state + x;  y = 2 * stateN. Shapes [1, WIDTH]; the state is batch-first."""
    nodes = [helper.make_node("Mul", ["state", "decay"], ["kept"]), helper.make_node("Add", ["kept", "x"], ["stateN"]),
             helper.make_node("Mul", ["stateN", "two"], ["y"])]
    inits = [numpy_helper.from_array(np.array(DECAY, np.float32), "decay"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, WIDTH])  # noqa: E731
    graph = helper.make_graph(nodes, "integrator", [io("x"), io("state")], [io("y"), io("stateN")], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def _closed_loop(x: np.ndarray) -> np.ndarray:
    """y for every chunk of x [S, T, WIDTH], state starting at zero."""
    state = np.zeros((x.shape[0], WIDTH), np.float32)
    ys = []
    for t in range(x.shape[1]):
        state = DECAY * state + x[:, t]
        ys.append(2 * state)
    return np.stack(ys, axis=1)


SPECS_IN = (TensorSpec("x", (1, WIDTH), "float32"), TensorSpec("state", (1, WIDTH), "float32"))
SPECS_OUT = (TensorSpec("y", (1, WIDTH), "float32"), TensorSpec("stateN", (1, WIDTH), "float32"))


def test_parse_states_checks_names_shapes_and_batch_axis():
    assert streaming.parse_states(["state=stateN"], SPECS_IN, SPECS_OUT) == {"state": "stateN"}
    for bad, words in (("state", "IN=OUT"), ("h=stateN", "not a model input"), ("state=h", "not a model output"),
                       ("state=y", None)):
        if words is None:  # same shape, so y would be accepted: a pairing is the user's to make
            assert streaming.parse_states([bad], SPECS_IN, SPECS_OUT) == {"state": "y"}
            continue
        with pytest.raises(InputError, match=words):
            streaming.parse_states([bad], SPECS_IN, SPECS_OUT)
    wide = (SPECS_IN[0], TensorSpec("state", (2, 1, WIDTH), "float32"))
    with pytest.raises(InputError, match="batch of 1"):
        streaming.parse_states(["state=stateN"], wide, (SPECS_OUT[0], TensorSpec("stateN", (2, 1, WIDTH), "float32")))


def test_unroll_writes_chunks_in_order_with_the_states_the_float_model_carried(tmp_path):
    model = _integrator(tmp_path / "m.onnx")
    x = np.random.default_rng(0).normal(size=(3, 5, WIDTH)).astype(np.float32)
    np.savez(tmp_path / "seq.npz", x=x)
    sequences, steps = streaming.unroll(str(tmp_path / "seq.npz"), {"state": "stateN"}, SPECS_IN, SPECS_OUT,
                                        lambda feed: reference_outputs(None, model, list(SPECS_IN), feed),
                                        tmp_path / "flat.npz", max_samples=1000)
    assert (sequences, steps) == (3, 5)
    flat = np.load(tmp_path / "flat.npz")
    assert flat["x"].shape == (15, WIDTH)
    np.testing.assert_allclose(flat["x"].reshape(3, 5, WIDTH), x)
    # the state fed to chunk t is the float model's state after chunk t-1 (zero at each sequence start)
    expected = np.concatenate([np.zeros((3, 1, WIDTH), np.float32), _closed_loop(x)[:, :-1] / 2], axis=1)
    np.testing.assert_allclose(flat["state"].reshape(3, 5, WIDTH), expected, rtol=1e-5, atol=1e-6)


def test_unroll_refuses_data_that_is_not_sequences(tmp_path):
    model = _integrator(tmp_path / "m.onnx")
    np.savez(tmp_path / "flat.npz", x=np.zeros((4, WIDTH), np.float32))
    with pytest.raises(InputError, match=r"not \[S, T, 8\]"):
        streaming.unroll(str(tmp_path / "flat.npz"), {"state": "stateN"}, SPECS_IN, SPECS_OUT,
                         lambda feed: reference_outputs(None, model, list(SPECS_IN), feed), tmp_path / "o.npz",
                         max_samples=100)


@pytest.mark.slow
def test_streaming_convert_judges_every_chunk_closed_loop(tmp_path, capsys):
    model = _integrator(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", x=rng.normal(size=(10, 12, WIDTH)).astype(np.float32))
    np.savez(tmp_path / "val.npz", x=rng.normal(size=(4, 12, WIDTH)).astype(np.float32))
    code = main(["convert", str(model), "--profile", "raspberry-pi-4", "--quant", "int8", "--state", "state=stateN",
                 "--calib", str(tmp_path / "calib.npz"), "--val", str(tmp_path / "val.npz"),
                 "--output", str(tmp_path / "o"), "--runs", "2", "--keep-work", "--json"])
    rep = json.loads(capsys.readouterr().out)
    assert any("closed-loop" in n for n in rep["notes"]), rep["notes"]
    assert rep["data"]["validation"]["samples"] == 48 if "validation" in rep["data"] else True
    assert rep["float_conversion"]["matches"] is True
    assert rep["accuracy"]["snr_db"] > 25, rep["accuracy"]
    assert rep["options"]["states"] == ["state=stateN"]
    assert code in (0, 1)

    # The TFLite runner feeds the model's own state: states in the data after each sequence start are
    # ignored (here: garbage), and the outputs still follow the closed loop.
    work = next((tmp_path / "o").glob(".edgeport-work-*"))
    fp32 = next(work.rglob("fp32.tflite"))
    x = np.load(tmp_path / "val.npz")["x"]
    garbage = {"x": x.reshape(-1, WIDTH), "state": np.full((x.shape[0] * x.shape[1], WIDTH), 1e3, np.float32)}
    garbage["state"][:: x.shape[1]] = 0.0  # sequence starts: zero state
    refs = [_closed_loop(x).reshape(-1, WIDTH), (_closed_loop(x) / 2).reshape(-1, WIDTH)]
    input_map = {"x": {"source": "x", "perm": None}, "state": {"source": "state", "perm": None}}
    streaming.attach(input_map, {"state": "stateN"}, x.shape[1], ["y", "stateN"])
    run = run_tflite(fp32, garbage, input_map, refs, threads=1, runs=0)
    np.testing.assert_allclose(run.outputs[0], refs[0], rtol=1e-4, atol=1e-4)
    open_loop = run_tflite(fp32, garbage, {k: {"source": k, "perm": None} for k in ("x", "state")}, refs, threads=1, runs=0)
    assert np.abs(open_loop.outputs[0] - refs[0]).max() > 100  # without the feedback the garbage states get in


def test_an_input_whose_first_axis_is_not_a_batch_is_one_line_exit_2(tmp_path, capsys):
    """Silero VAD's state is [2, 1, 128]: fed one sample at a time along axis 0 it reached onnxruntime
    as [1, 1, 128], an internal error; now it is refused before any work, naming the input."""
    nodes = [helper.make_node("Add", ["state", "x"], ["stateN"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, WIDTH]),
                                           helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, WIDTH])],
                              [helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, 1, WIDTH])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    code = main(["convert", str(path), "--profile", "raspberry-pi-4", "--quant", "fp32", "--output", str(tmp_path / "o")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("edgeport: error")]
    assert code == 2 and len(err) == 1 and "input 'state' is 2x1x8" in err[0] and "batch of 1" in err[0], err
    assert not (tmp_path / "o").exists()
