"""The latency simulator's roofline on hand-built model data: each term does what its docstring says."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from test_edgetpu import make_model, make_op, small_cnn, tensor

from edgeport.errors import ProfileError
from edgeport.latency.edgetpu import check_edgetpu
from edgeport.latency.simulator import (
    DEFAULTS,
    SimResult,
    cpu_op_ms,
    delegated,
    effective_bandwidth,
    precision,
    resolve_params,
    simulate,
    simulate_params,
    xnnpack_partitions,
)
from edgeport.profiles import list_profiles, load_profile

BASE: dict[str, float] = {
    **DEFAULTS, "cpu_ghz": 1.0, "cpu_macs_per_cycle_fp32": 10.0, "cpu_macs_per_cycle_int8": 40.0,
    "cpu_thread_eff": 1.0, "mem_bw_gbps": 10.0, "op_overhead_us": 0.0, "thread_sync_us": 0.0,
    "cpu_eff_depthwise": 1.0, "cpu_eff_fc": 1.0, "cpu_channel_tile": 1.0,
}


def conv(macs_per_out: int, out_shape: list[int], dtype: str = "FLOAT32", name: str = "CONV_2D") -> dict[str, Any]:
    """A conv op with `macs_per_out` MACs per output element and tiny tensors (compute-bound)."""
    n = 1
    for d in out_shape:
        n *= d
    op = make_op(0, name, [tensor(0, [1, 1, 1, 1], dtype), tensor(9, [1], dtype, const=True)],
                 [tensor(1, [1, 1, 1, 1], dtype)], macs=macs_per_out * n)
    op["outputs"][0]["shape"] = list(out_shape)  # the shape drives padding and per-output cost, not the bytes
    return op


def test_compute_bound_op_costs_macs_over_rate_plus_overhead() -> None:
    op = conv(100, [1, 10, 10, 100])  # 1e6 MACs at 10 GMAC/s = 0.1 ms
    ms, bound = cpu_op_ms(op, {**BASE, "op_overhead_us": 5.0}, 1)
    assert ms == pytest.approx(0.1 + 0.005) and bound == "compute"


def test_memory_bound_fully_connected_costs_bytes_over_bandwidth() -> None:
    x, w, y = tensor(0, [1, 4096], "FLOAT32"), tensor(1, [4096, 4096], "FLOAT32", const=True), tensor(2, [1, 4096], "FLOAT32")
    op = make_op(0, "FULLY_CONNECTED", [x, w], [y], macs=4096 * 4096)
    ms, bound = cpu_op_ms(op, BASE, 1)
    assert bound == "memory"
    assert ms == pytest.approx((4096 * 4096 * 4 + 2 * 4096 * 4) / 10e9 * 1000)


def test_overhead_bound_tiny_op_and_free_layout_ops() -> None:
    op = conv(1, [1, 1, 1, 8])
    assert cpu_op_ms(op, {**BASE, "op_overhead_us": 50.0}, 1)[1] == "overhead"
    reshape = make_op(0, "RESHAPE", [tensor(0, [1, 64], "FLOAT32")], [tensor(1, [8, 8], "FLOAT32")])
    assert cpu_op_ms(reshape, {**BASE, "op_overhead_us": 2.0}, 1) == (pytest.approx(0.002), "overhead")
    folded = make_op(0, "DEQUANTIZE", [tensor(0, [64], "FLOAT16", const=True)], [tensor(1, [64], "FLOAT32")])
    assert cpu_op_ms(folded, BASE, 1) == (0.0, "overhead")  # constant-folded at load time


def test_threads_scale_compute_and_are_capped_at_the_core_count() -> None:
    model = make_model([conv(100, [1, 10, 10, 100])])
    p = {**BASE, "cpu_thread_eff": 0.5}
    one = simulate_params(model, p, threads=1, cores=4).p50_ms
    two = simulate_params(model, p, threads=2, cores=4).p50_ms
    assert two == pytest.approx(one / 1.5)
    capped = simulate_params(model, p, threads=8, cores=2)
    assert capped.threads == 2 and capped.p50_ms == pytest.approx(two)


def test_negative_thread_efficiency_models_a_contended_host() -> None:
    model = make_model([conv(100, [1, 10, 10, 100])])
    p = {**BASE, "cpu_thread_eff": -0.1, "thread_sync_us": 3.0}
    one, two = (simulate_params(model, p, threads=n, cores=2).p50_ms for n in (1, 2))
    assert two > one  # a second thread waiting for a busy core makes the op slower


def test_int8_uses_its_own_rate_and_depthwise_and_fc_factors_apply() -> None:
    fp32, int8 = conv(100, [1, 10, 10, 100]), conv(100, [1, 10, 10, 100], "INT8")
    assert cpu_op_ms(int8, BASE, 1)[0] == pytest.approx(cpu_op_ms(fp32, BASE, 1)[0] / 4)
    dw = conv(100, [1, 10, 10, 100], name="DEPTHWISE_CONV_2D")
    assert cpu_op_ms(dw, {**BASE, "cpu_eff_depthwise": 0.25}, 1)[0] == pytest.approx(0.4)
    fc = conv(100, [1, 10, 10, 100], name="FULLY_CONNECTED")
    assert cpu_op_ms(fc, {**BASE, "cpu_eff_fc": 2.0}, 1)[0] == pytest.approx(0.05)


def test_per_output_cost_makes_pointwise_slower_than_3x3_at_equal_macs() -> None:
    p = {**BASE, "cpu_output_cycles_fp32": 2.0}
    wide = conv(288, [1, 10, 10, 100])  # 3x3 conv over 32 channels: 288 MACs per output
    narrow = conv(32, [1, 30, 30, 100])  # 1x1 conv, same 2.88e6 MACs spread over 9x more outputs
    assert wide["macs"] == narrow["macs"]
    assert cpu_op_ms(narrow, p, 1)[0] > cpu_op_ms(wide, p, 1)[0]
    assert cpu_op_ms(narrow, p, 1)[0] == pytest.approx((2.88e6 / 10e9 + 90000 * 2.0 / 1e9) * 1000)


def test_output_channels_are_padded_to_the_simd_tile() -> None:
    p = {**BASE, "cpu_channel_tile": 16.0}
    c24, c32 = conv(100, [1, 10, 10, 24]), conv(100, [1, 10, 10, 32])
    assert cpu_op_ms(c24, p, 1)[0] == pytest.approx(cpu_op_ms(c32, p, 1)[0])  # 24 channels cost 32


def test_precision_and_xnnpack_delegation() -> None:
    x8, w8 = tensor(0, [1, 4, 8, 8]), tensor(1, [8, 8], "INT8", const=True)
    dyn = make_op(0, "FULLY_CONNECTED", [tensor(0, [1, 8], "FLOAT32"), w8], [tensor(2, [1, 8], "FLOAT32")], macs=64)
    assert precision(dyn) == "dynamic" and not delegated(dyn, DEFAULTS)
    bmm = make_op(0, "BATCH_MATMUL", [x8, x8], [x8], macs=4 * 8 * 8 * 8)
    assert precision(bmm) == "int8" and not delegated(bmm, DEFAULTS)  # not in XNNPACK's quantized list
    mean_hw = make_op(0, "MEAN", [x8, tensor(3, [2], "INT32", const=True, data=[1, 2])], [tensor(4, [1, 1, 1, 8])])
    mean_c = make_op(0, "MEAN", [x8, tensor(3, [1], "INT32", const=True, data=[3])], [tensor(4, [1, 4, 8, 1])])
    assert delegated(mean_hw, DEFAULTS) and not delegated(mean_c, DEFAULTS)
    assert not delegated(mean_hw, {**DEFAULTS, "cpu_xnnpack": 0.0})


def test_builtin_kernels_pay_their_own_rates() -> None:
    x8 = tensor(0, [1, 4, 8, 8])
    bmm = make_op(0, "BATCH_MATMUL", [x8, x8], [x8], macs=1_000_000)
    p = {**BASE, "cpu_eff_builtin": 0.1, "cpu_builtin_ns_per_elem": 10.0}
    assert cpu_op_ms(bmm, p, 1)[0] == pytest.approx(1e6 / (40e9 * 0.1) * 1000)
    softmax = make_op(0, "SOFTMAX", [tensor(0, [1, 1000])], [tensor(1, [1, 1000])])
    assert cpu_op_ms(softmax, p, 1)[0] == pytest.approx(1000 * 10e-9 * 1000)


def test_cache_bandwidth_applies_to_the_share_of_the_working_set_that_fits() -> None:
    model = small_cnn("FLOAT32")
    p = {**BASE, "mem_bw_gbps": 10.0, "cache_bw_gbps": 100.0}
    assert effective_bandwidth(model, {**p, "cache_mb": 0.0}) == pytest.approx(10.0)
    assert effective_bandwidth(model, {**p, "cache_mb": 64.0}) == pytest.approx(100.0)
    half = effective_bandwidth(model, {**p, "cache_mb": 1e-6})
    assert 10.0 < half < 11.0


def test_result_sums_per_op_times_and_reports_parameters() -> None:
    model = small_cnn("INT8")
    res = simulate_params(model, {**BASE, "invoke_overhead_us": 30.0}, threads=1, cores=1, name="unit")
    assert isinstance(res, SimResult) and res.profile == "unit" and res.threads == 1
    assert res.p50_ms == pytest.approx(sum(o["ms"] for o in res.per_op) + 0.03)
    assert [o["index"] for o in res.per_op] == list(range(7))
    assert all(o["bound"] in ("compute", "memory", "overhead") and o["unit"] == "cpu" for o in res.per_op)
    assert res.params["cpu_macs_per_cycle_int8"] == 40.0 and "effective_bw_gbps" in res.params
    stats = res.to_latency_stats()
    assert stats.source == "sim" and stats.p50_ms == pytest.approx(res.p50_ms) and stats.threads == 1
    assert res.to_dict()["p50_ms"] == round(res.p50_ms, 4)


# ------------------------------------------------------------------------------------ Edge TPU path

TPU: dict[str, float] = {**BASE, "tpu_peak_gmacs": 1000.0, "tpu_eff_conv": 0.5, "tpu_op_overhead_us": 10.0,
                         "link_mbps": 800.0, "link_efficiency": 1.0, "link_overhead_us": 0.0, "sram_mb": 8.0}


def test_full_int8_model_runs_on_the_tpu_with_io_over_the_link() -> None:
    model = small_cnn("INT8")
    res = simulate_params(model, TPU, threads=1, cores=1, edgetpu=True)
    info = res.edgetpu
    assert info["ops_on_tpu"] == 7 and info["ops_on_cpu"] == 0 and info["cpu_ms"] == 0.0
    macs = model["total_macs"]
    assert info["tpu_ms"] == pytest.approx(macs / 500e9 * 1000 + 7 * 0.01, abs=1e-4)
    io = 32 * 32 * 3 + 10  # the input image in, the probabilities out, 100 MB/s
    assert info["transfer_ms"] == pytest.approx(io / 100e6 * 1000, abs=1e-4)
    assert info["stream_ms"] == 0.0 and all(o["unit"] == "tpu" for o in res.per_op)


def test_ops_after_the_first_unsupported_op_run_on_the_cpu() -> None:
    model = small_cnn("INT8")
    model["ops"][4]["op"] = "ARG_MAX"
    res = simulate_params(model, TPU, threads=1, cores=1, edgetpu=True)
    assert [o["unit"] for o in res.per_op] == ["tpu"] * 4 + ["cpu"] * 3
    assert res.edgetpu["first_unsupported"]["index"] == 4 and res.edgetpu["cpu_ms"] > 0
    assert any("run on the CPU" in n for n in res.notes)
    # the ADD output goes back over the link to the CPU part
    assert res.edgetpu["transfer_ms"] == pytest.approx((32 * 32 * 3 + 32 * 32 * 16) / 100e6 * 1000, abs=1e-4)


def test_parameters_beyond_the_sram_stream_over_the_link_every_inference() -> None:
    model = small_cnn("INT8")
    big = tensor(40, [4096, 4096], "INT8", const=True)  # 16 MiB: 8 MiB over the cache
    model["ops"][5] = make_op(5, "FULLY_CONNECTED", [model["ops"][5]["inputs"][0], big], model["ops"][5]["outputs"],
                              macs=4096 * 4096, options={"weightsFormat": 0})
    res = simulate_params(model, TPU, threads=1, cores=1, edgetpu=True)
    overflow = check_edgetpu(model).param_bytes - 8 * 1024 * 1024
    assert res.edgetpu["stream_ms"] == pytest.approx(overflow / 100e6 * 1000, rel=1e-3)


def test_compiler_report_replaces_the_static_check() -> None:
    model = small_cnn("INT8")
    compiled = replace(check_edgetpu(model), tpu_ops=(0, 1), ops_on_tpu=2, ops_on_cpu=5, source="edgetpu_compiler",
                       off_chip_param_bytes=0)
    res = simulate_params(model, TPU, threads=1, cores=1, edgetpu=True, edgetpu_report=compiled)
    assert res.edgetpu["ops_on_tpu"] == 2 and res.edgetpu["source"] == "edgetpu_compiler"


# ------------------------------------------------------------------------------ shipped profiles


def test_missing_rates_are_a_clear_profile_error() -> None:
    with pytest.raises(ProfileError, match="lacks cpu_ghz"):
        resolve_params({"cpu_macs_per_cycle_fp32": 1.0, "cpu_macs_per_cycle_int8": 1.0}, name="mine")
    with pytest.raises(ProfileError, match="tpu_peak_gmacs"):
        resolve_params({k: 1.0 for k in ("cpu_ghz", "cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8")}, edgetpu=True)


@pytest.mark.parametrize("profile", list_profiles(), ids=lambda p: p.name)
def test_every_shipped_profile_simulates(profile: Any) -> None:
    for dtype in ("INT8", "FLOAT32"):
        res = simulate(small_cnn(dtype), profile)
        assert math.isfinite(res.p50_ms) and res.p50_ms > 0
        assert res.threads == min(profile.runtime.threads, profile.hardware.cores)
        assert (res.edgetpu is not None) == (profile.runtime.delegate == "edgetpu")


def test_int8_is_faster_than_fp32_on_the_arm_profiles_and_tpu_beats_its_cpu() -> None:
    for name in ("raspberry-pi-4", "pixel-7"):
        prof = load_profile(name)
        assert simulate(small_cnn("INT8"), prof).p50_ms < simulate(small_cnn("FLOAT32"), prof).p50_ms
    coral = load_profile("coral-dev-board")
    tpu = simulate(small_cnn("INT8"), coral).edgetpu
    cpu_only = simulate(small_cnn("FLOAT32"), coral).edgetpu
    assert tpu["ops_on_tpu"] == 7 and cpu_only["ops_on_tpu"] == 0


def test_int16_activation_ops_run_reference_kernels_on_one_thread() -> None:
    """a16w8 (int16 activations, int8 weights): no XNNPACK for the op nor for the QUANTIZE ops around it,
    MACs at the per-cycle reference rate (not the int8 SIMD rate), on one thread, depthwise slower."""
    x8, x16, xf = tensor(0, [1, 8, 8, 16]), tensor(1, [1, 8, 8, 16], "INT16"), tensor(2, [1, 8, 8, 16], "FLOAT32")
    w8 = tensor(3, [16, 1, 1, 16], "INT8", const=True)
    conv16 = make_op(0, "CONV_2D", [x16, w8], [tensor(4, [1, 8, 8, 16], "INT16")], macs=1_000_000)
    conv8 = make_op(0, "CONV_2D", [x8, w8], [tensor(4, [1, 8, 8, 16])], macs=1_000_000)
    dw16 = make_op(0, "DEPTHWISE_CONV_2D", [x16, w8], [tensor(4, [1, 8, 8, 16], "INT16")], macs=1_000_000)
    into, out_of = make_op(0, "QUANTIZE", [x8], [x16]), make_op(0, "QUANTIZE", [xf], [x16])
    assert precision(conv16) == "int16"
    assert delegated(conv8, DEFAULTS) and not any(delegated(o, DEFAULTS) for o in (conv16, dw16, into, out_of))
    p = {**BASE, "cpu_macs_per_cycle_int16": 0.5, "cpu_eff_depthwise_int16": 0.25, "cpu_eff_builtin": 0.1}
    ms16 = 1e6 / (1e9 * 0.5) * 1000  # 1 GHz x 0.5 MACs/cycle, cpu_eff_builtin not applied again
    assert cpu_op_ms(conv16, p, 1)[0] == pytest.approx(ms16)
    assert cpu_op_ms(conv16, p, 4)[0] == pytest.approx(ms16)  # reference kernels: one thread
    assert cpu_op_ms(dw16, p, 1)[0] == pytest.approx(ms16 / 0.25)
    assert cpu_op_ms(conv8, p, 1)[0] < ms16 / 10  # the same op in int8 under XNNPACK (40 MACs/cycle)
    mean16 = make_op(0, "MEAN", [x16, tensor(5, [2], "INT32", const=True, data=[1, 2])], [tensor(6, [1, 1, 1, 16], "INT16")])
    assert cpu_op_ms(mean16, {**p, "cpu_int16_reduce_cycles_per_elem": 20.0}, 1)[0] == pytest.approx(1024 * 20 / 1e9 * 1000)
    # the (de)quantize loops at the island's borders run at the float per-element rate, not the int8 one
    rates = {**p, "cpu_builtin_ns_per_elem": 10.0, "cpu_builtin_ns_per_elem_fp32": 0.5, "mem_bw_gbps": 1e6}
    assert cpu_op_ms(into, rates, 1)[0] == pytest.approx(1024 * 0.5e-9 * 1000)
    assert cpu_op_ms(make_op(0, "DEQUANTIZE", [x16], [xf]), rates, 1)[0] == pytest.approx(1024 * 0.5e-9 * 1000)


def test_an_int16_island_splits_the_xnnpack_graph() -> None:
    x8, x16 = tensor(0, [1, 8, 8, 16]), tensor(1, [1, 8, 8, 16], "INT16")
    w8 = tensor(3, [16, 1, 1, 16], "INT8", const=True)
    conv = lambda i, x, y: make_op(i, "CONV_2D", [x, w8], [y], macs=16384)  # noqa: E731
    all8 = make_model([conv(0, x8, x8), conv(1, x8, x8), conv(2, x8, x8)])
    island = make_model([conv(0, x8, x8), make_op(1, "QUANTIZE", [x8], [x16]), conv(2, x16, x16),
                         make_op(3, "QUANTIZE", [x16], [x8]), conv(4, x8, x8)])
    p = {**BASE, "partition_overhead_us": 7.0}
    assert xnnpack_partitions(all8, p) == 1 and xnnpack_partitions(island, p) == 2
