"""Edge TPU compatibility: the static check on inspect data, and the edgetpu_compiler output parser.

The fast tests build inspect-style model data by hand (no TensorFlow); the slow ones convert two tiny
Keras models for real. The parser runs against recorded output whose format is documented in
tests/fixtures/edgetpu/SOURCES.md.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from edgeport.errors import ConversionError
from edgeport.latency.edgetpu import (
    check_edgetpu,
    compile_edgetpu,
    edgetpu_report,
    op_problem,
    parse_compiler_output,
)

FIXTURES = Path(__file__).parent / "fixtures" / "edgetpu"


# ------------------------------------------------------------------- inspect-style model builders


def tensor(index: int, shape: list[int], dtype: str = "INT8", *, const: bool = False,
           data: list[int] | None = None, dynamic_batch: bool = False) -> dict[str, Any]:
    size = {"FLOAT32": 4, "INT32": 4, "INT64": 8}.get(dtype, 1)
    n = 1
    for d in shape:
        n *= d
    t: dict[str, Any] = {"index": index, "name": f"t{index}", "shape": list(shape), "dtype": dtype, "const": const,
                         "bytes": n * size, "shape_signature": ([-1] + list(shape[1:])) if dynamic_batch else list(shape)}
    if data is not None:
        t["data"] = data
    return t


def make_op(index: int, name: str, ins: list[dict[str, Any]], outs: list[dict[str, Any]], *, macs: int = 0,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "index": index, "op": name, "macs": macs,
        "weight_bytes": sum(t["bytes"] for t in ins if t["const"]),
        "activation_bytes": sum(t["bytes"] for t in ins if not t["const"]) + sum(t["bytes"] for t in outs),
        "dtype": next((t["dtype"] for t in ins if not t["const"]), outs[0]["dtype"] if outs else None),
        "inputs": ins, "outputs": outs, "output_name": outs[0]["name"] if outs else "", "options": dict(options or {}),
    }


def make_model(ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"path": "synthetic.tflite", "size_bytes": 0, "ops": ops,
            "inputs": [ops[0]["inputs"][0]], "outputs": [ops[-1]["outputs"][0]],
            "total_macs": sum(o["macs"] for o in ops), "weight_bytes": sum(o["weight_bytes"] for o in ops),
            "op_counts": {}, "flex_ops": [], "float_ops": [], "subgraphs": 1}


def small_cnn(dtype: str = "INT8") -> dict[str, Any]:
    """conv 3x3 -> depthwise 3x3 -> conv 1x1 -> add -> mean -> fully connected -> softmax, 32x32x3 input."""
    x = tensor(0, [1, 32, 32, 3], dtype)
    a, b, c, d = (tensor(i, [1, 32, 32, 16], dtype) for i in (1, 2, 3, 4))
    pooled, logits, probs = tensor(5, [1, 16], dtype), tensor(6, [1, 10], dtype), tensor(7, [1, 10], dtype)
    wdt = "INT8" if dtype == "INT8" else "FLOAT32"
    conv = {"padding": 0, "strideW": 1, "strideH": 1, "fusedActivationFunction": 3, "dilationWFactor": 1, "dilationHFactor": 1}
    ops = [
        make_op(0, "CONV_2D", [x, tensor(20, [16, 3, 3, 3], wdt, const=True), tensor(21, [16], "INT32", const=True)], [a],
                macs=32 * 32 * 16 * 27, options=conv),
        make_op(1, "DEPTHWISE_CONV_2D", [a, tensor(22, [1, 3, 3, 16], wdt, const=True)], [b], macs=32 * 32 * 16 * 9, options=conv),
        make_op(2, "CONV_2D", [b, tensor(23, [16, 1, 1, 16], wdt, const=True)], [c], macs=32 * 32 * 16 * 16, options=conv),
        make_op(3, "ADD", [a, c], [d]),
        make_op(4, "MEAN", [d, tensor(24, [2], "INT32", const=True, data=[1, 2])], [pooled], options={"keepDims": False}),
        make_op(5, "FULLY_CONNECTED", [pooled, tensor(25, [10, 16], wdt, const=True)], [logits], macs=160,
                options={"weightsFormat": 0}),
        make_op(6, "SOFTMAX", [logits], [probs], options={"beta": 1.0}),
    ]
    return make_model(ops)


# ------------------------------------------------------------------------------------ static check


def test_full_int8_small_cnn_maps_every_op() -> None:
    rep = check_edgetpu(small_cnn())
    assert (rep.ops_on_tpu, rep.ops_on_cpu, rep.share_on_tpu) == (7, 0, 1.0)
    assert rep.first_unsupported is None and rep.reasons == ()
    assert rep.tpu_ops == tuple(range(7))
    assert rep.param_bytes == 16 * 27 + 16 * 4 + 16 * 9 + 16 * 16 + 8 + 160 and rep.fits_sram


def test_float_model_runs_entirely_on_the_cpu() -> None:
    rep = check_edgetpu(small_cnn("FLOAT32"))
    assert rep.ops_on_tpu == 0 and rep.ops_on_cpu == 7
    assert rep.first_unsupported["index"] == 0
    assert "FLOAT32" in rep.first_unsupported["reason"]


def test_float_op_in_the_middle_splits_the_graph_there() -> None:
    model = small_cnn()
    model["ops"][3]["outputs"] = [tensor(4, [1, 32, 32, 16], "FLOAT32")]  # a float ADD
    model["ops"][3]["dtype"] = "INT8"
    rep = check_edgetpu(model)
    assert rep.first_unsupported["index"] == 3 and rep.first_unsupported["op"] == "ADD"
    assert rep.tpu_ops == (0, 1, 2) and rep.ops_on_cpu == 4
    assert any("op 3 (ADD)" in r and "3 ops after it" in r for r in rep.reasons)


def test_unsupported_op_splits_even_when_later_ops_are_supported() -> None:
    model = small_cnn()
    model["ops"][4]["op"] = "ARG_MAX"
    rep = check_edgetpu(model)
    assert rep.first_unsupported == {"index": 4, "op": "ARG_MAX", "reason": "ARG_MAX is not in the Edge TPU supported-operations table"}
    assert rep.tpu_ops == (0, 1, 2, 3)  # FULLY_CONNECTED and SOFTMAX after it stay on the CPU


@pytest.mark.parametrize(("index", "change", "needle"), [
    (4, lambda op: op["inputs"][1].update(data=[0, 1]), "batch dimension"),
    (6, lambda op: op["inputs"].__setitem__(0, tensor(6, [1, 20000])), "16,000"),
    (6, lambda op: op["inputs"].__setitem__(0, tensor(6, [4, 10])), "1-D"),
    (0, lambda op: op["options"].update(dilationWFactor=2), "dilation"),
    (5, lambda op: op["outputs"][0].update(shape=[1, 4, 10]), "one-dimensional"),
    (1, lambda op: op["inputs"].__setitem__(0, {**tensor(1, [1, 32, 32, 16]), "shape_signature": [1, -1, 32, 16]}),
     "dynamic shape"),
    (2, lambda op: op["outputs"][0].update(shape=[2, 2, 32, 32, 16]), "3 innermost"),
])
def test_per_op_limits_from_corals_table(index: int, change: Any, needle: str) -> None:
    model = small_cnn()
    change(model["ops"][index])
    assert needle in (op_problem(model["ops"][index]) or "")
    assert check_edgetpu(model).first_unsupported["index"] == index


def test_dynamic_batch_alone_is_accepted() -> None:
    model = small_cnn()
    model["ops"][0]["inputs"][0]["shape_signature"] = [-1, 32, 32, 3]  # how TF2/Keras converters write every model
    assert check_edgetpu(model).ops_on_tpu == 7


def test_float_io_quantize_and_dequantize_stay_on_cpu_without_splitting() -> None:
    model = small_cnn()
    fin, fout = tensor(30, [1, 32, 32, 3], "FLOAT32"), tensor(31, [1, 10], "FLOAT32")
    ops = [make_op(0, "QUANTIZE", [fin], [model["ops"][0]["inputs"][0]])]
    for i, op in enumerate(model["ops"], start=1):
        ops.append({**op, "index": i})
    ops.append(make_op(8, "DEQUANTIZE", [ops[-1]["outputs"][0]], [fout]))
    rep = check_edgetpu(make_model(ops))
    assert rep.tpu_ops == tuple(range(1, 8)) and rep.ops_on_cpu == 2
    assert any("float input" in r for r in rep.reasons) and any("float output" in r for r in rep.reasons)


def test_parameters_beyond_the_sram_are_reported() -> None:
    model = small_cnn()
    big = tensor(40, [4096, 2560], "INT8", const=True)  # 10 MiB of weights
    model["ops"][5] = make_op(5, "FULLY_CONNECTED", [model["ops"][5]["inputs"][0], big], model["ops"][5]["outputs"],
                              macs=4096 * 2560, options={"weightsFormat": 0})
    rep = check_edgetpu(model)
    assert rep.ops_on_tpu == 7 and not rep.fits_sram and rep.param_bytes > 8 * 1024 * 1024
    assert any("streamed" in r for r in rep.reasons)
    assert check_edgetpu(model, sram_mb=16).fits_sram


# ------------------------------------------------------------------------------- compiler output


def _split_model() -> dict[str, Any]:
    """QUANTIZE, FC, RESHAPE, BATCH_MATMUL, RESHAPE, FC, DEQUANTIZE: the model behind split_v16_s.txt."""
    t = [tensor(i, [1, 16]) for i in range(8)]
    names = ["QUANTIZE", "FULLY_CONNECTED", "RESHAPE", "BATCH_MATMUL", "RESHAPE", "FULLY_CONNECTED", "DEQUANTIZE"]
    return make_model([make_op(i, n, [t[i]], [t[i + 1]]) for i, n in enumerate(names)])


def test_parse_all_mapped_console_and_log() -> None:
    out = (FIXTURES / "all_mapped_v16.txt").read_text()
    log = (FIXTURES / "all_mapped_v16.log").read_text()
    rep = parse_compiler_output(out, log, small_cnn())
    assert (rep.ops_on_tpu, rep.ops_on_cpu, rep.share_on_tpu) == (7, 0, 1.0)
    assert rep.source == "edgetpu_compiler" and rep.compiler_version == "16.0.384591198"
    assert rep.compiled_model == "tiny_cnn_int8_edgetpu.tflite"
    assert rep.param_bytes == int(21.25 * 1024) and rep.off_chip_param_bytes == 0 and rep.fits_sram
    assert rep.first_unsupported is None and rep.tpu_ops == tuple(range(7))
    assert {r["op"]: r["count"] for r in rep.op_status}["CONV_2D"] == 2


def test_parse_split_maps_counts_onto_graph_indices() -> None:
    out = (FIXTURES / "split_v16_s.txt").read_text()
    rep = parse_compiler_output(out, None, _split_model())
    assert (rep.ops_on_tpu, rep.ops_on_cpu) == (3, 4)
    assert rep.tpu_ops == (0, 1, 2)
    assert rep.first_unsupported == {"index": 3, "op": "BATCH_MATMUL", "reason": "Operation not supported"}
    assert "1 x DEQUANTIZE: Operation is working on an unsupported data type" in rep.reasons
    assert len(rep.op_status) == 7


def test_parse_split_without_model_data_still_names_the_culprit() -> None:
    rep = parse_compiler_output((FIXTURES / "split_v16_s.txt").read_text())
    assert rep.tpu_ops == () and rep.first_unsupported == {"index": None, "op": "BATCH_MATMUL", "reason": "Operation not supported"}


def test_parse_streamed_parameters_v2_format() -> None:
    rep = parse_compiler_output((FIXTURES / "streamed_v2.txt").read_text())
    assert (rep.ops_on_tpu, rep.ops_on_cpu) == (74, 0)
    assert rep.off_chip_param_bytes == int(17.52 * 1024 * 1024) and not rep.fits_sram
    assert any("streamed on every inference" in r for r in rep.reasons)


def test_parse_failed_compilation_raises_with_the_compilers_reason() -> None:
    with pytest.raises(ConversionError, match="large activation tensors"):
        parse_compiler_output((FIXTURES / "failed_v16.txt").read_text())


def test_compile_returns_none_without_the_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert compile_edgetpu(tmp_path / "m.tflite", tmp_path / "out") is None
    assert edgetpu_report(tmp_path / "m.tflite", small_cnn(), out_dir=tmp_path / "out").source == "static"


def test_compile_runs_the_compiler_and_parses_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in edgetpu_compiler on PATH prints the recorded output and writes the files the real one writes."""
    fake = tmp_path / "bin" / "edgetpu_compiler"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        "# usage as called: edgetpu_compiler -s -o OUT MODEL\n"
        'out="$3"; base=$(basename "$4" .tflite)\n'
        f'cp "{FIXTURES / "all_mapped_v16.log"}" "$out/${{base}}_edgetpu.log"\n'
        'printf "TFL3" > "$out/${base}_edgetpu.tflite"\n'
        f'cat "{FIXTURES / "all_mapped_v16.txt"}"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    rep = compile_edgetpu(tmp_path / "tiny_cnn_int8.tflite", out, model_info=small_cnn())
    assert rep is not None and rep.ops_on_tpu == 7 and rep.tpu_ops == tuple(range(7))
    assert rep.compiled_model == str(out / "tiny_cnn_int8_edgetpu.tflite")


# -------------------------------------------------------------------------- real converted models


def _convert_int8(model: Any, path: Path) -> Path:
    import numpy as np
    import tensorflow as tf

    def rep() -> Any:
        rng = np.random.default_rng(0)
        for _ in range(4):
            yield [rng.uniform(-1, 1, tuple(int(d) for d in model.inputs[0].shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


@pytest.mark.slow
def test_real_int8_cnn_maps_fully_and_matmul_head_splits(tmp_path: Path) -> None:
    import tensorflow as tf

    from edgeport.tflite.reader import inspect_model

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inp = tf.keras.Input(shape=(32, 32, 3), batch_size=1)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    y = layers.Conv2D(16, 1)(layers.DepthwiseConv2D(3, padding="same", activation="relu")(x))
    z = layers.Dense(10)(layers.GlobalAveragePooling2D()(layers.Add()([x, y])))
    cnn = _convert_int8(tf.keras.Model(inp, layers.Softmax()(z)), tmp_path / "cnn.tflite")
    rep = check_edgetpu(inspect_model(cnn))
    assert rep.ops_on_cpu == 0 and rep.share_on_tpu == 1.0 and rep.first_unsupported is None

    inp = tf.keras.Input(shape=(16,), batch_size=1)
    h = layers.Reshape((4, 4))(layers.Dense(16)(inp))
    m = layers.Lambda(lambda t: tf.matmul(t, t, transpose_b=True))(h)  # BATCH_MATMUL: not in Coral's table
    head = _convert_int8(tf.keras.Model(inp, layers.Dense(10)(layers.Flatten()(m))), tmp_path / "head.tflite")
    info = inspect_model(head)
    rep = check_edgetpu(info)
    split = next(op["index"] for op in info["ops"] if op["op"] == "BATCH_MATMUL")
    assert rep.first_unsupported["op"] == "BATCH_MATMUL" and rep.first_unsupported["index"] == split
    assert rep.tpu_ops == tuple(range(split)) and rep.ops_on_cpu == len(info["ops"]) - split
