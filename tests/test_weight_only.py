"""`--quant w8` / `--quant w4`: weight-only int8 and blockwise int4 through AI Edge Quantizer.

Fast tests pin the rules (mode table, profiles, verdict, the simulator's classification, how XNNPACK's
delegation is read); the slow ones convert a small Linear-heavy model through each backend and read
the written file back. The >= 10 M-parameter measurement is benchmarks/bench_weight_only.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport import modes
from edgeport.cli import main
from edgeport.latency.simulator import DEFAULTS, cpu_op_ms, delegated, precision
from edgeport.profiles import load_profile
from edgeport.quantize import weight_only
from edgeport.tflite.reader import inspect_model
from edgeport.validate.judge import Evidence, judge
from edgeport.zoo import linear_heavy

# ---------------------------------------------------------------------------------------- rules


def test_weight_only_modes_need_no_data_keep_float_io_and_run_on_xnnpack() -> None:
    for name in ("w8", "w4"):
        mode = modes.MODES[name]
        assert mode.weight_only and not mode.calibrated and not mode.integer_io
        assert mode.delegates == ("xnnpack",)
        assert name not in modes.runs_on("edgetpu")


@pytest.mark.parametrize("profile", ["host", "raspberry-pi-4", "raspberry-pi-5", "pixel-7"])
def test_cpu_profiles_allow_w8_and_w4(profile: str) -> None:
    prof = load_profile(profile)
    assert prof.allows("w8") and prof.allows("w4")


@pytest.mark.parametrize("profile", ["coral-usb", "coral-dev-board"])
def test_edge_tpu_refuses_weight_only_before_any_work(tmp_path: Path, capsys, profile: str) -> None:
    ckpt = tmp_path / "m.pt"
    torch.save({"w": torch.zeros(1)}, ckpt)  # never loaded: the profile check comes first
    code = main(["convert", str(ckpt), "--profile", profile, "--quant", "w4", "--output", str(tmp_path / "o")])
    assert code == 2
    assert "does not allow --quant w4" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_verdict_demands_no_integer_ops_of_weight_only_models() -> None:
    from edgeport.profiles import Budgets

    for mode in ("w8", "w4"):
        found = judge(Evidence(mode=mode, size_bytes=1000, float_ops=("FULLY_CONNECTED#0", "GELU#1")), Budgets())
        assert "full_integer" not in {c["name"] for c in found["checks"]}
        assert found["passed"]
    int8 = judge(Evidence(mode="int8", size_bytes=1000, float_ops=("GELU#1",)), Budgets())
    assert not int8["passed"] and "full_integer" in {c["name"] for c in int8["checks"]}


def _tensor(index: int, shape: list[int], dtype: str = "FLOAT32", const: bool = False) -> dict:
    count = int(np.prod(shape))
    size = {"FLOAT32": 4, "FLOAT16": 2, "INT8": 1, "INT4": 0.5}[dtype]
    return {"index": index, "name": f"t{index}", "shape": shape, "dtype": dtype, "const": const, "bytes": int(count * size)}


def _fc(weight: dict, index: int = 0) -> dict:
    x, y = _tensor(0, [1, 8, 512]), _tensor(3, [1, 8, 2048])
    ins = [x, weight]
    return {"index": index, "op": "FULLY_CONNECTED", "macs": 8 * 512 * 2048, "inputs": ins, "outputs": [y],
            "dtype": "FLOAT32", "weight_bytes": sum(t["bytes"] for t in ins if t["const"]),
            "activation_bytes": sum(t["bytes"] for t in [*ins, y] if not t["const"]), "output_name": "t3"}


def test_simulator_prices_w4_as_fp32_compute_with_int4_weight_traffic() -> None:
    """w4's FULLY_CONNECTED reads int4 weights itself: XNNPACK's qd8-f32-qb4w kernels, measured at about
    the fp32 GEMM rate per MAC; its bytes are the int4 ones. A memory-bound op is then faster than fp32."""
    fp32 = _fc(_tensor(1, [2048, 512], "FLOAT32", const=True))
    w4 = _fc(_tensor(1, [2048, 512], "INT4", const=True))
    assert precision(w4) == "fp32" and delegated(w4, DEFAULTS)
    assert w4["weight_bytes"] == fp32["weight_bytes"] // 8
    p = {**DEFAULTS, "cpu_ghz": 1.0, "cpu_macs_per_cycle_fp32": 1000.0, "cpu_macs_per_cycle_int8": 4000.0,
         "mem_bw_gbps": 1.0, "cache_bw_gbps": 1.0}
    assert cpu_op_ms(w4, p, 1)[0] < cpu_op_ms(fp32, p, 1)[0] / 4  # memory-bound: 1/8 of the weight bytes
    slow_memory = {**p, "mem_bw_gbps": 1e6, "cache_bw_gbps": 1e6, "cpu_macs_per_cycle_fp32": 1.0}
    assert cpu_op_ms(w4, slow_memory, 1)[0] == pytest.approx(cpu_op_ms(fp32, slow_memory, 1)[0])  # compute: fp32's


def test_simulator_prices_w8_as_fp32_behind_a_free_dequantize() -> None:
    """w8: DEQUANTIZE(int8 constant) -> FULLY_CONNECTED on float weights. The DEQUANTIZE runs once (its
    input is constant), the op is an fp32 one reading float32 weights, as fp16's models are priced."""
    q = _tensor(1, [2048, 512], "INT8", const=True)
    w = _tensor(2, [2048, 512], "FLOAT32")
    deq = {"index": 0, "op": "DEQUANTIZE", "macs": 0, "inputs": [q], "outputs": [w], "dtype": "INT8",
           "weight_bytes": q["bytes"], "activation_bytes": w["bytes"], "output_name": "t2"}
    fc = _fc(w, 1)
    assert cpu_op_ms(deq, DEFAULTS | {"cpu_ghz": 1.0, "cpu_macs_per_cycle_fp32": 1.0, "cpu_macs_per_cycle_int8": 1.0}, 1)[0] == 0.0
    assert precision(fc) == "fp32" and delegated(fc, DEFAULTS)


def test_delegated_ops_follow_each_delegate_node_back_to_its_inputs() -> None:
    """The interpreter lists the model's ops, then one DELEGATE node per partition (its inputs and
    outputs): here XNNPACK took the GELU and the ADD but not the DEQUANTIZE/FULLY_CONNECTED pair."""
    details = [
        {"index": 0, "op_name": "DEQUANTIZE", "inputs": [9], "outputs": [20]},
        {"index": 1, "op_name": "FULLY_CONNECTED", "inputs": [0, 20, 10], "outputs": [11]},
        {"index": 2, "op_name": "GELU", "inputs": [11], "outputs": [12]},
        {"index": 3, "op_name": "ADD", "inputs": [0, 12], "outputs": [13]},
        {"index": 4, "op_name": "DELEGATE", "inputs": [11, 0], "outputs": [13]},
    ]
    assert weight_only.delegated_ops(details) == {2, 3}
    whole = [*details[:4], {"index": 4, "op_name": "DELEGATE", "inputs": [0, 9, 10], "outputs": [13]}]
    assert weight_only.delegated_ops(whole) == {0, 1, 2, 3}


# ------------------------------------------------------------------------------ real conversions

SMALL = {"dim": 80, "hidden": 256, "blocks": 2, "classes": 32}  # dim 80: the up-projections' input is no multiple of 32


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("linear_heavy")
    torch.save(linear_heavy.build(**SMALL).state_dict(), work / "lh.pt")
    np.savez(work / "val.npz", tokens=linear_heavy.make_tokens(48, 7, dim=SMALL["dim"]))
    return work


def _convert(work: Path, mode: str, exporter: str, capsys) -> tuple[int, dict]:
    code = main(["convert", str(work / "lh.pt"), "--model-class", "edgeport.zoo.linear_heavy:LinearHeavy",
                 "--model-kwargs", json.dumps(SMALL), "--input-shape", f"tokens=1x8x{SMALL['dim']}", "--val",
                 str(work / "val.npz"), "--profile", "raspberry-pi-4", "--quant", mode, "--exporter", exporter,
                 "--output", str(work / f"{mode}_{exporter}"), "--runs", "3", "--json"])
    return code, json.loads(capsys.readouterr().out)


def _weight_levels(path: Path) -> list[str]:
    """Each FULLY_CONNECTED's weight as written: INT4 read directly, or the dtype behind its DEQUANTIZE."""
    info = inspect_model(path)
    producer = {t["name"]: op for op in info["ops"] for t in op["outputs"]}
    found = []
    for op in info["ops"]:
        if op["op"] == "FULLY_CONNECTED":
            w = op["inputs"][1]
            found.append(w["dtype"] if w["const"] else f"{producer[w['name']]['op']}:{producer[w['name']]['inputs'][0]['dtype']}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["litert-torch", "onnx2tf"])
def test_w4_is_blockwise_int4_where_the_block_fits_and_int8_elsewhere(small_model: Path, capsys, exporter: str) -> None:
    code, rep = _convert(small_model, "w4", exporter, capsys)
    q = rep["quantization"]
    assert q["mode"] == "w4" and q["io_dtype"] == "float32" and rep["export"]["backend"] == exporter
    wo = q["weight_only"]
    assert wo["block_size"] == 32 and wo["levels"] == {"int4-blockwise": 2, "int8-weight-only": 3, "float": 0}, wo["levels"]
    assert {r["level"] for r in wo["ops"] if r["weight_shape"][-1] == SMALL["dim"]} == {"int8-weight-only"}
    assert any("no multiple of the int4 block" in n for n in rep["notes"])
    written = _weight_levels(Path(rep["artifact"]["path"]))  # the file itself, not the report's claim
    assert sorted(written) == sorted(["INT4"] * 2 + ["DEQUANTIZE:INT8"] * 3), written
    assert wo["xnnpack"]["by_op"]["FULLY_CONNECTED"] == [5, 5], wo["xnnpack"]  # XNNPACK takes every FC
    assert rep["accuracy"]["cosine_mean"] > 0.99
    cmp = q["fp16_comparison"]
    assert rep["artifact"]["size_bytes"] < 0.6 * cmp["size_bytes"] and cmp["dominated"] is False
    assert "mixed_not_dominated" not in {c["name"] for c in rep["verdict"]["checks"]}
    assert code in (0, 1)


@pytest.mark.slow
def test_w8_is_int8_weights_behind_dequantize_with_float_compute(small_model: Path, capsys) -> None:
    code, rep = _convert(small_model, "w8", "litert-torch", capsys)
    q = rep["quantization"]
    assert q["mode"] == "w8" and q["weight_only"]["levels"] == {"int4-blockwise": 0, "int8-weight-only": 5, "float": 0}
    assert _weight_levels(Path(rep["artifact"]["path"])) == ["DEQUANTIZE:INT8"] * 5
    assert q["weight_only"]["xnnpack"]["not_delegated"] == []
    assert rep["accuracy"]["cosine_mean"] > 0.9999 and rep["accuracy"]["top1_agreement"] >= 0.98
    cmp = q["fp16_comparison"]
    assert rep["artifact"]["size_bytes"] < 0.7 * cmp["size_bytes"]
    assert rep["latency"]["simulated"]["p50_ms"] == pytest.approx(cmp["simulated_p50_ms"], rel=0.05)  # fp16's kernels
    assert code == 0, rep["verdict"]
