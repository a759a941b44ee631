"""Latency simulated from a device profile: a per-op roofline over the graph cost model.

Why a roofline and not one "GMAC/s" number: a single rate fits one model and misses the next. MobileNet
v2 has half the multiply-adds of v1 yet is not twice as fast anywhere, because depthwise convolutions and
the elementwise ops between them do few multiply-adds per output and per byte, and every op pays a fixed
dispatch cost. So each op costs

    compute = (MACs, output channels padded to the SIMD tile) / (MAC rate x op-class factor)
              + output elements x cycles per output / clock          (both / thread scaling)
    memory  = bytes moved / bandwidth  (cache bandwidth for the share of the model that fits the cache)
    time    = max(compute, memory) + per-op overhead (+ a sync cost when split over threads)

Ops outside the XNNPACK delegate's operator list run TFLite's built-in kernels, on one thread, at their
own rates. An inference adds a fixed invoke overhead. The numbers come from the profile's [simulator]
table (clocks and bandwidths from datasheets, the rest fitted to measured or published latencies; each
line says which). Edge TPU profiles run the ops the compatibility check maps to the TPU at TPU
throughput, stream parameters that do not fit the on-chip SRAM over the link, run everything after the
first unsupported op on the CPU, and move the TPU segment's inputs and outputs over the link (USB 3.0
for the USB Accelerator, PCIe on the Dev Board).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.errors import ProfileError
from edgeport.latency.edgetpu import EdgeTpuReport, check_edgetpu
from edgeport.profiles import DeviceProfile
from edgeport.types import LatencyStats

# Op classes: which efficiency factor applies. Dense convolutions are the reference (factor 1) because
# GEMM-like kernels reach the highest fraction of peak; depthwise convolutions reuse each weight only
# over one channel, so they run far below peak; fully-connected ops at batch 1 are matrix-vector products.
CONV_OPS = frozenset({"CONV_2D", "CONV_3D", "TRANSPOSE_CONV"})
DEPTHWISE_OPS = frozenset({"DEPTHWISE_CONV_2D"})
# A fused LSTM is mat-vecs per step (TFLite's built-in kernel; XNNPACK does not take it).
SEQUENCE_LSTM_OPS = frozenset({"UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM"})
FC_OPS = frozenset({"FULLY_CONNECTED", "BATCH_MATMUL"}) | SEQUENCE_LSTM_OPS
# Shape-only ops: TFLite/XNNPACK alias or copy small metadata; they cost dispatch overhead, not bandwidth.
LAYOUT_OPS = frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"})
# Ops the TFLite XNNPACK delegate takes, per precision (tensorflow/lite/delegates/xnnpack/README.md,
# "Floating-Point Operators" / "Quantized Operators"). Everything else runs on TFLite's built-in kernels,
# which for int8 elementwise and reduction ops are much slower per element (see cpu_builtin_ns_per_elem).
# BATCH_MATMUL/RSQRT/GELU fp32 were added to the delegate after that README list was written.
XNNPACK_FP32 = frozenset({
    "ABS", "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CEIL", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D", "DIV", "ELU", "FULLY_CONNECTED", "FLOOR", "GELU", "HARD_SWISH", "LEAKY_RELU", "LOGISTIC",
    "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "NEG", "PAD", "PRELU", "RELU", "RELU6", "RELU_N1_TO_1",
    "RESHAPE", "RESIZE_BILINEAR", "ROUND", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQRT", "SQUARE",
    "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "QUANTIZE", "DEQUANTIZE",
})
XNNPACK_QS8 = frozenset({
    "ADD", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "ELU", "FULLY_CONNECTED",
    "LEAKY_RELU", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "RESHAPE", "RESIZE_BILINEAR", "SLICE",
    "SPACE_TO_DEPTH", "SPLIT", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
INT16_REDUCE_OPS = frozenset({"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"})
INT_TYPES = frozenset({"INT8", "UINT8"})
FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16"})

# Used when a profile leaves a key out. Rates (clock, MACs per cycle, TPU peak) have no default: a
# profile without them cannot be simulated and says so.
DEFAULTS: dict[str, float] = {
    "cpu_eff_depthwise": 0.3,  # depthwise conv vs dense conv, per MAC
    "cpu_eff_fc": 1.0,  # fully-connected / batch-matmul vs dense conv, per MAC
    "cpu_eff_dynamic": 0.5,  # dynamic-range (int8 weights, float activations) vs fp32, per MAC
    # int16-activation ops (int16x8, AEQ a16w8) run TFLite's reference kernels: scalar loops, one thread, no
    # XNNPACK and no int8 dot products, so their rate is per cycle and not tied to the int8 SIMD rates.
    # Measured on this project's host (Intel Xeon, 2.6 GHz, ai-edge-litert 2.3, 1 thread, 56x56x64 single-op
    # models quantized by ai-edge-quantizer 0.10): 3x3 conv 35-50 ms and 1x1 conv 5.4 ms = 0.9-1.3 MACs/cycle,
    # 3x3 depthwise 2.4 ms = 0.3 MACs/cycle, MEAN over HxW 1.4 ms = 18 cycles per input element (int8: XNNPACK).
    "cpu_macs_per_cycle_int16": 1.0,
    "cpu_eff_depthwise_int16": 0.3,
    "cpu_int16_reduce_cycles_per_elem": 18.0,
    "cpu_output_cycles_fp32": 0.0,  # cycles per output element of a MAC op: bias, activation, store
    "cpu_output_cycles_int8": 0.0,  # same for int8 (requantize each output)
    "cpu_channel_tile": 1.0,  # output channels per SIMD tile: channel counts are padded up to a multiple
    "cpu_thread_eff": 0.9,  # speed-up each extra thread adds (1.0 = perfect; < 0 on a contended machine)
    "mem_thread_eff": 0.0,  # bandwidth each extra thread adds (per-core caches); 0 = shared bandwidth
    "cpu_xnnpack": 1.0,  # 1: the runtime hands XNNPACK-supported ops to XNNPACK; 0: built-in kernels only
    "cpu_eff_builtin": 0.5,  # built-in (non-XNNPACK) kernels vs XNNPACK, per MAC
    # Fused sequence LSTMs run TFLite's own kernel, one time step after another on one thread: per MAC vs
    # the fp32 GEMM rate. The integer kernel (int8 weights, int16 cell state, requantised gates) is slower
    # still. Both measured on this project's host only (benchmarks/results/recurrent.json: fp32 0.14 ms,
    # int8 1.03 ms for the zoo's 3-layer encoder); on devices they are assumptions until measured there.
    "cpu_eff_lstm": 0.1,
    "cpu_eff_lstm_int8": 0.14,
    "cpu_builtin_ns_per_elem": 1.0,  # built-in non-MAC ops: nanoseconds per tensor element (one thread)
    # cpu_builtin_ns_per_elem_fp32: the same for float ops; defaults to cpu_builtin_ns_per_elem
    "mem_bw_gbps": 10.0,  # DRAM bytes per second a memory-bound op achieves
    "cache_mb": 0.0,  # last-level cache; a model whose weights fit streams them at cache_bw_gbps
    "thread_sync_us": 0.0,  # extra cost per op when it is split over more than one thread
    "op_overhead_us": 5.0,  # fixed cost per executed op (dispatch, thread-pool sync)
    "invoke_overhead_us": 0.0,  # fixed cost per inference (interpreter call, I/O copies)
    "partition_overhead_us": 0.0,  # fixed cost per XNNPACK subgraph the interpreter enters (see xnnpack_partitions)
    # Optional, fitted on hosts: act_bw_gbps (activation traffic, default: the weights' bandwidth),
    # cpu_output_eff_depthwise (per-output cost of depthwise convs vs GEMMs, default 1),
    # cpu_channel_tile_int8 (output channels per int8 GEMM tile, default cpu_channel_tile).
    "tpu_eff_depthwise": 1.0,  # depthwise vs dense conv on the Edge TPU
    "tpu_op_overhead_us": 0.0,
    "link_efficiency": 0.8,  # payload share of the link's signalling rate (8b/10b line code)
    "link_overhead_us": 0.0,  # fixed cost per inference of a host <-> TPU round trip
    "sram_mb": 8.0,  # Edge TPU on-chip parameter cache
}
TOP_OPS = 10  # single ops named in a report's breakdown (every op type is listed)
REQUIRED_CPU = ("cpu_ghz", "cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8")
REQUIRED_TPU = ("tpu_peak_gmacs", "tpu_eff_conv", "link_mbps")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class SimResult:
    """Simulated latency of one inference, with the per-op breakdown that explains it."""

    p50_ms: float
    per_op: list[dict[str, Any]]  # {index, op, ms, bound: compute|memory|overhead, unit: cpu|tpu}
    params: dict[str, float]  # every parameter the model used, defaults included
    profile: str
    threads: int
    edgetpu: dict[str, Any] | None = None  # {tpu_ms, cpu_ms, transfer_ms, stream_ms, ops_on_tpu, ...}
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_latency_stats(self) -> LatencyStats:
        """The simulated p50 as a LatencyStats (source "sim"), so reports treat it like a timing."""
        extra: dict[str, Any] = {"simulated": True}
        if self.edgetpu is not None:
            extra["edgetpu"] = self.edgetpu
        return LatencyStats.from_samples([self.p50_ms], "sim", threads=self.threads, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": round(self.p50_ms, 4), "profile": self.profile, "threads": self.threads,
                "params": dict(self.params), "edgetpu": self.edgetpu, "notes": list(self.notes),
                "per_op": [dict(o) for o in self.per_op], **self.breakdown()}

    def breakdown(self, top: int = TOP_OPS) -> dict[str, Any]:
        """Where the simulated time goes, small enough for every report: the time per op type and the
        `top` most expensive single ops, each with its share of p50, and the fixed cost outside any op
        (invoke, delegate partitions, the Edge TPU link)."""
        share = (lambda ms: round(ms / self.p50_ms, 4)) if self.p50_ms > 0 else (lambda ms: None)
        groups: dict[str, list[float]] = {}
        for o in self.per_op:
            groups.setdefault(o["op"], []).append(o["ms"])
        by_type = sorted(({"op": op, "count": len(ms), "ms": _r(sum(ms)), "share": share(sum(ms))}
                          for op, ms in groups.items()), key=lambda r: (-r["ms"], r["op"]))
        ranked = sorted(self.per_op, key=lambda o: (-o["ms"], o["index"]))[:top]
        outside = self.p50_ms - sum(o["ms"] for o in self.per_op)
        return {"by_op_type": by_type,
                "top_ops": [{**{k: o[k] for k in ("index", "op", "bound", "unit")}, "ms": _r(o["ms"]),
                             "share": share(o["ms"])} for o in ranked],
                "outside_ops_ms": _r(max(outside, 0.0))}


def resolve_params(simulator: Mapping[str, float], *, edgetpu: bool = False, name: str = "profile") -> dict[str, float]:
    """Defaults overlaid with a profile's [simulator] table; refuses a table without the rates."""
    params = {**DEFAULTS, **{k: float(v) for k, v in simulator.items()}}
    params.setdefault("cache_bw_gbps", params["mem_bw_gbps"])
    missing = [k for k in REQUIRED_CPU + (REQUIRED_TPU if edgetpu else ()) if k not in params]
    if missing:
        raise ProfileError(f"profile '{name}' cannot be simulated: [simulator] lacks {', '.join(missing)}",
                           hint="add them (see device_profiles/host.toml for their meaning)")
    return params


def simulate(model_info: dict[str, Any], profile: DeviceProfile, threads: int | None = None, *,
             edgetpu_report: EdgeTpuReport | None = None) -> SimResult:
    """Predicted p50 latency of `inspect_model(...)` data on `profile`.

    threads defaults to the profile's runtime.threads and is capped at its core count. For Edge TPU
    profiles, `edgetpu_report` (e.g. from the real compiler) replaces the static compatibility check.
    """
    is_tpu = profile.runtime.delegate == "edgetpu"
    params = resolve_params(profile.simulator, edgetpu=is_tpu, name=profile.name)
    return simulate_params(model_info, params, threads=threads or profile.runtime.threads,
                           cores=profile.hardware.cores, edgetpu=is_tpu, name=profile.name,
                           edgetpu_report=edgetpu_report)


def simulate_params(model_info: dict[str, Any], params: Mapping[str, float], *, threads: int, cores: int,
                    edgetpu: bool = False, name: str = "custom",
                    edgetpu_report: EdgeTpuReport | None = None) -> SimResult:
    """simulate() on explicit parameters: what fitting scripts call with candidate values."""
    p = dict(params)
    p.setdefault("cache_bw_gbps", p["mem_bw_gbps"])
    p["effective_bw_gbps"] = effective_bandwidth(model_info, p)
    n = max(1, min(int(threads), int(cores)))
    notes: list[str] = []
    if edgetpu:
        report = edgetpu_report or check_edgetpu(model_info, sram_mb=p["sram_mb"])
        tpu = set(report.tpu_ops)
        if report.source != "static" and not tpu and report.ops_on_tpu:
            notes.append("compiler counts without op indices: the first ops_on_tpu ops are taken as mapped")
            tpu = set(range(report.ops_on_tpu))
    else:
        report, tpu = None, set()
    per_op: list[dict[str, Any]] = []
    for op in model_info["ops"]:
        ms, bound = tpu_op_ms(op, p) if op["index"] in tpu else cpu_op_ms(op, p, n)
        per_op.append({"index": int(op["index"]), "op": op["op"], "ms": ms, "bound": bound,
                       "unit": "tpu" if op["index"] in tpu else "cpu"})
    total = sum(o["ms"] for o in per_op) + p["invoke_overhead_us"] / 1000.0
    total += xnnpack_partitions(model_info, p, tpu) * p["partition_overhead_us"] / 1000.0
    info = None
    if report is not None:
        transfer, stream = _link_ms(model_info, tpu, report, p)
        total += transfer + stream
        info = {"tpu_ms": _r(sum(o["ms"] for o in per_op if o["unit"] == "tpu")),
                "cpu_ms": _r(sum(o["ms"] for o in per_op if o["unit"] == "cpu")),
                "transfer_ms": _r(transfer), "stream_ms": _r(stream), "ops_on_tpu": len(tpu),
                "ops_on_cpu": len(per_op) - len(tpu), "first_unsupported": report.first_unsupported,
                "param_bytes": report.param_bytes, "fits_sram": report.fits_sram, "source": report.source}
        if report.first_unsupported:
            notes.append(f"op {report.first_unsupported['index']} ({report.first_unsupported['op']}) and everything "
                         f"after it run on the CPU: {report.first_unsupported['reason']}")
    return SimResult(p50_ms=total, per_op=per_op, params=p, profile=name, threads=n, edgetpu=info, notes=tuple(notes))


# ------------------------------------------------------------------------------------------ per op


def xnnpack_partitions(model_info: dict[str, Any], p: Mapping[str, float], skip: set[int] | frozenset[int] = frozenset()) -> int:
    """Runs of consecutive XNNPACK ops: each is one delegate kernel that TFLite enters and leaves.

    Why it matters: an attention block whose LayerNorm MEAN or int8 BATCH_MATMUL falls back to the
    built-in kernels splits into many small XNNPACK subgraphs, and each switch costs about as much as a
    small op; a CNN is one subgraph.
    """
    runs, inside = 0, False
    for op in model_info["ops"]:
        if op["index"] in skip or op_class(op["op"]) == "layout" or (op["inputs"] and all(t["const"] for t in op["inputs"])):
            continue
        now = delegated(op, p)
        runs += now and not inside
        inside = now
    return runs


def effective_bandwidth(model_info: dict[str, Any], p: Mapping[str, float]) -> float:
    """GB/s for this model: the share of its working set that fits the cache moves at cache speed.

    Every inference re-reads all weights, so whether they stay cached between inferences depends on the
    whole model's weights (plus its largest activations), not on one op.
    """
    acts = sorted((op["activation_bytes"] for op in model_info["ops"]), reverse=True)[:2]
    working = float(model_info.get("weight_bytes", 0)) + float(sum(acts))
    fit = min(1.0, p["cache_mb"] * _MIB / working) if working > 0 else 1.0
    return 1.0 / (fit / p["cache_bw_gbps"] + (1.0 - fit) / p["mem_bw_gbps"])


def precision(op: dict[str, Any]) -> str:
    """fp32 | int8 | int16 | dynamic: which kernel family the runtime picks for this op."""
    act = op.get("dtype")
    if act in INT_TYPES:
        return "int8"
    if act == "INT16":
        return "int16"
    if act in FLOAT_TYPES and any(t["const"] and t["dtype"] in INT_TYPES for t in op["inputs"][1:2]):
        return "dynamic"  # int8 weights with float activations: dynamic-range kernels
    # --quant w4: int4 weights read by the float op itself. XNNPACK takes it (qd8-f32-qb4w kernels; measured
    # with ai_edge_litert 2.3, quantize/weight_only.xnnpack_coverage) at about the fp32 GEMM rate per MAC
    # (1.2x at 128 tokens on this project's host), so it is priced as fp32 compute, and its weight traffic
    # is the int4 bytes (the weight tensor's own size). --quant w8's int8 weights sit behind a DEQUANTIZE of
    # a constant, which costs nothing per inference (dequantized once, as fp16's weights): fp32 below too.
    return "fp32"


def op_class(name: str) -> str:
    if name in CONV_OPS:
        return "conv"
    if name in DEPTHWISE_OPS:
        return "depthwise"
    if name in FC_OPS:
        return "fc"
    if name in LAYOUT_OPS:
        return "layout"
    return "elementwise"


def mac_rate(op: dict[str, Any], p: Mapping[str, float]) -> float:
    """Multiply-adds per second one thread achieves on this op."""
    prec = precision(op)
    if prec == "int16":  # reference kernels (see DEFAULTS): already the built-in rate, depthwise far below dense
        return p["cpu_ghz"] * 1e9 * p["cpu_macs_per_cycle_int16"] * (
            p["cpu_eff_depthwise_int16"] if op_class(op["op"]) == "depthwise" else 1.0)
    base = p["cpu_macs_per_cycle_int8"] if prec == "int8" else p["cpu_macs_per_cycle_fp32"]
    rate = p["cpu_ghz"] * 1e9 * base
    if prec == "dynamic":
        rate *= p["cpu_eff_dynamic"]
    cls = op_class(op["op"])
    if cls == "depthwise":
        rate *= p["cpu_eff_depthwise"]
    elif cls == "fc":
        rate *= p["cpu_eff_fc"]
    return rate


def mac_op_seconds(op: dict[str, Any], p: Mapping[str, float], *, builtin: bool = False) -> float:
    """One thread's compute time for a MAC op: padded MACs at the MAC rate plus a per-output cost.

    Output channels are padded up to the SIMD tile (24 channels cost 32 on a 16-wide tile). The
    per-output term (bias, activation, requantize, store) is why a 1x1 or depthwise conv, with few MACs
    per output, runs below the MAC rate of a 3x3 dense conv with hundreds of MACs per output.
    `builtin`: TFLite's own kernels (not XNNPACK) run the MACs at cpu_eff_builtin of the rate, with
    neither XNNPACK's tiles nor a slower per-output step.
    """
    out = op["outputs"][0]["shape"] if op["outputs"] else []
    integer = precision(op) in ("int8", "int16")
    # int8 GEMMs may use wider tiles than fp32: XNNPACK's AMX kernels write 64 output channels at once,
    # so a 16-channel conv pays for 64 there (cpu_channel_tile_int8, set from the int8 dot-product class).
    tile = max(p.get("cpu_channel_tile_int8", p["cpu_channel_tile"]) if integer else p["cpu_channel_tile"], 1.0)
    pad = 1.0
    if out and out[-1] > 0 and op_class(op["op"]) != "depthwise" and not builtin:
        pad = math.ceil(out[-1] / tile) * tile / out[-1]
    n_out = 1
    for d in out:
        n_out *= max(int(d), 1)
    cycles = p["cpu_output_cycles_int8"] if integer else p["cpu_output_cycles_fp32"]
    if op_class(op["op"]) == "depthwise":  # no GEMM tile to drain: its own per-output factor when fitted
        cycles *= p.get("cpu_output_eff_depthwise", 1.0)
    # The per-output work (bias, activation, requantize) runs over whole register tiles too, so padded
    # channels cost it as well: on AMX a 16-channel int8 conv takes as long as a 64-channel one.
    rate = mac_rate(op, p) * (p["cpu_eff_builtin"] if builtin and precision(op) != "int16" else 1.0)
    return op["macs"] * pad / rate + n_out * pad * cycles / (p["cpu_ghz"] * 1e9)


def cpu_op_ms(op: dict[str, Any], p: Mapping[str, float], threads: int) -> tuple[float, str]:
    """(milliseconds, bound) of one op on the CPU with `threads` threads."""
    if op["inputs"] and all(t["const"] for t in op["inputs"]):
        return 0.0, "overhead"  # constant-folded at load time (e.g. DEQUANTIZE of fp16 weights)
    overhead = p["op_overhead_us"] * 1e-6
    if op_class(op["op"]) == "layout":
        return overhead * 1000.0, "overhead"
    if threads > 1 and delegated(op, p):
        overhead += p["thread_sync_us"] * 1e-6
    scale = max(1.0 + (threads - 1) * p["cpu_thread_eff"], 0.1)
    if op["op"] in SEQUENCE_LSTM_OPS:
        compute = lstm_seconds(op, p)
    elif delegated(op, p) or (precision(op) == "dynamic" and op["macs"]):
        # XNNPACK (and the hybrid dynamic-range kernels, rated by cpu_eff_dynamic) split ops over threads
        compute = (mac_op_seconds(op, p) if op["macs"] else 0.0) / scale
    else:  # TFLite built-in kernels: measured to run on one thread here
        compute = mac_op_seconds(op, p, builtin=True) if op["macs"] else 0.0
        if not op["macs"]:  # elementwise/reduction kernels: a per-element cost
            # float reductions (a LayerNorm's MEAN over channels) vectorise; int8 ones dequantize per element
            per_elem = p.get("cpu_builtin_ns_per_elem_fp32", p["cpu_builtin_ns_per_elem"]) if precision(op) == "fp32" \
                else p["cpu_builtin_ns_per_elem"]
            if precision(op) == "int16" and op["op"] in INT16_REDUCE_OPS:  # int16 reductions: reference loops
                per_elem = p["cpu_int16_reduce_cycles_per_elem"] / p["cpu_ghz"]
            elif op["op"] in ("QUANTIZE", "DEQUANTIZE") and _touches_int16(op):
                # the scale-and-round loops into and out of an int16 island: measured ~0.2 ns per element
                # on the host (a float elementwise rate), not the int8 built-in elementwise rate
                per_elem = p.get("cpu_builtin_ns_per_elem_fp32", p["cpu_builtin_ns_per_elem"])
            compute = _elements(op) * per_elem * 1e-9
    spread = 1.0 + (threads - 1) * p["mem_thread_eff"]
    bandwidth = p.get("effective_bw_gbps", p["mem_bw_gbps"]) * spread
    # Weights are re-read from wherever they fit each inference; activations were just written by the op
    # before and mostly still sit in a cache, at act_bw_gbps when a profile measured it.
    act_bw = p.get("act_bw_gbps", 0.0) * spread or bandwidth
    memory = op["activation_bytes"] / (act_bw * 1e9) + op["weight_bytes"] / (bandwidth * 1e9)
    return (max(compute, memory) + overhead) * 1000.0, _bound(compute, memory, overhead)


def lstm_seconds(op: dict[str, Any], p: Mapping[str, float]) -> float:
    """A fused sequence LSTM: its mat-vec MACs at the fp32 rate scaled by the LSTM kernel's efficiency."""
    rate = p["cpu_ghz"] * 1e9 * p["cpu_macs_per_cycle_fp32"] * p["cpu_eff_lstm"]
    prec = precision(op)
    if prec == "int8":
        rate *= p["cpu_eff_lstm_int8"]
    elif prec == "dynamic":
        rate *= p["cpu_eff_dynamic"]
    return op["macs"] / rate


def delegated(op: dict[str, Any], p: Mapping[str, float]) -> bool:
    """Whether XNNPACK runs this op (per its README's operator list and MEAN's axis limits)."""
    if p["cpu_xnnpack"] < 0.5:
        return False
    if _touches_int16(op):
        # XNNPACK has no int16 activation kernels, so neither the int16 ops nor the QUANTIZE/DEQUANTIZE
        # ops into and out of an a16w8 island (int8 <-> int16, float <-> int16) are delegated.
        return False
    prec = precision(op)
    supported = XNNPACK_QS8 if prec == "int8" else XNNPACK_FP32 if prec == "fp32" else frozenset()
    if op["op"] not in supported:
        return False
    if op["op"] == "MEAN":  # 4-D input, reduction over [1, 2] or [2] only
        axes = next((t.get("data") for t in op["inputs"][1:] if t["const"]), None)
        return len(op["inputs"][0]["shape"]) == 4 and axes is not None and sorted(axes) in ([1, 2], [2])
    return True


def _touches_int16(op: dict[str, Any]) -> bool:
    return any(t["dtype"] == "INT16" for t in op["inputs"] + op["outputs"] if not t["const"])


def _elements(op: dict[str, Any]) -> int:
    def count(t: dict[str, Any]) -> int:
        n = 1
        for d in t["shape"]:
            n *= max(int(d), 1)
        return n

    sizes = [count(t) for t in op["inputs"] + op["outputs"] if not t["const"]]
    return max(sizes) if sizes else 0


def tpu_op_ms(op: dict[str, Any], p: Mapping[str, float]) -> tuple[float, str]:
    """(milliseconds, bound) of one op on the Edge TPU; activations stay on chip, so no memory term."""
    overhead = p["tpu_op_overhead_us"] * 1e-6
    eff = p["tpu_eff_conv"] * (p["tpu_eff_depthwise"] if op["op"] in DEPTHWISE_OPS else 1.0)
    compute = op["macs"] / (p["tpu_peak_gmacs"] * 1e9 * eff) if op["macs"] else 0.0
    return (compute + overhead) * 1000.0, _bound(compute, 0.0, overhead)


def _bound(compute: float, memory: float, overhead: float) -> str:
    if overhead >= max(compute, memory):
        return "overhead"
    return "compute" if compute >= memory else "memory"


def _link_ms(model_info: dict[str, Any], tpu: set[int], report: EdgeTpuReport, p: Mapping[str, float]) -> tuple[float, float]:
    """(transfer, stream) ms: TPU segment inputs/outputs over the link, and parameters beyond the SRAM."""
    if not tpu:
        return 0.0, 0.0
    link = p["link_mbps"] * 1e6 / 8.0 * p["link_efficiency"]  # payload bytes per second
    produced: dict[int, int] = {}
    consumed_in: dict[int, int] = {}
    for op in model_info["ops"]:
        if op["index"] in tpu:
            for t in op["outputs"]:
                produced[t["index"]] = t["bytes"]
            for t in op["inputs"]:
                if not t["const"] and t["index"] not in produced:
                    consumed_in[t["index"]] = t["bytes"]
    used_by_cpu = {t["index"] for op in model_info["ops"] if op["index"] not in tpu for t in op["inputs"]}
    graph_out = {t["index"] for t in model_info["outputs"]}
    out_bytes = sum(b for i, b in produced.items() if i in used_by_cpu or i in graph_out)
    transfer = (sum(consumed_in.values()) + out_bytes) / link + p["link_overhead_us"] * 1e-6
    overflow = max(0.0, report.param_bytes - p["sram_mb"] * _MIB) if report.source == "static" else float(report.off_chip_param_bytes or 0)
    return transfer * 1000.0, overflow / link * 1000.0


def _r(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else x


# ----------------------------------------------------------------------------------------- fitting


def published_figures(simulator: Mapping[str, float]) -> list[tuple[str, str, str, float, bool]]:
    """[(key, model, quant, ms, cpu_only)] from a profile's bench_<model>_<quant>_ms keys.

    bench_cpu_<model>_<quant>_ms are figures measured on the device's CPU alone (no accelerator), e.g.
    the "Embedded CPU" column of Coral's benchmark table.
    """
    out = []
    for key, ms in simulator.items():
        m = re.fullmatch(r"bench_(cpu_)?(.+)_(fp32|int8)_ms", key)
        if m:
            out.append((key, m.group(2), m.group(3), float(ms), bool(m.group(1))))
    return sorted(out)


def simulate_published(profile: DeviceProfile, key: str, model_info: dict[str, Any]) -> float:
    """Simulated ms for one bench_* figure of `profile`; bench_cpu_* figures leave the accelerator out."""
    if not key.startswith("bench_cpu_"):
        return simulate(model_info, profile).p50_ms
    return simulate_params(model_info, resolve_params(profile.simulator, name=profile.name),
                           threads=profile.runtime.threads, cores=profile.hardware.cores, name=profile.name).p50_ms


def fit_params(cases: Sequence[tuple[dict[str, Any], int, float, bool]], base: Mapping[str, float],
               free: Sequence[str], *, cores: int, linear: Mapping[str, tuple[float, float]] | None = None,
               upper: Mapping[str, float] | None = None, iterations: int = 60,
               robust: float | None = None) -> dict[str, float]:
    """Fit `free` parameters to (model_info, threads, measured_ms, on_edgetpu) cases.

    Least squares on log(simulated / measured), so a 0.01 ms and a 20 ms model weigh alike; parameters
    move on a log scale (they are positive) unless `linear` gives them bounds, e.g. a thread efficiency
    that may go negative. A small Levenberg-Marquardt with a numerical Jacobian: numpy only.
    """
    linear, upper = dict(linear or {}), dict(upper or {})
    lo = np.array([linear[k][0] if k in linear else math.log(1e-4) for k in free])
    hi = np.array([linear[k][1] if k in linear else math.log(upper.get(k, 1e6)) for k in free])

    def params(x: np.ndarray) -> dict[str, float]:
        return {**base, **{k: float(v) if k in linear else math.exp(v) for k, v in zip(free, x, strict=True)}}

    def residuals(x: np.ndarray) -> np.ndarray:
        p = params(x)
        r = np.array([math.log(simulate_params(info, p, threads=n, cores=cores, edgetpu=tpu).p50_ms / ms)
                      for info, n, ms, tpu in cases])
        if robust is None:
            return r
        # soft-L1 loss: quadratic below `robust`, linear above, so one odd timing cannot drag every parameter
        return np.sign(r) * robust * np.sqrt(2.0 * (np.sqrt(1.0 + (r / robust) ** 2) - 1.0))

    x = np.clip([base[k] if k in linear else math.log(max(base[k], 1e-6)) for k in free], lo, hi)
    r = residuals(x)
    damping = 1e-2
    for _ in range(iterations):
        jac = np.empty((len(r), len(x)))
        for j in range(len(x)):
            step = 1e-4 * (1.0 + abs(x[j]))
            probe = x.copy()
            probe[j] += step
            jac[:, j] = (residuals(probe) - r) / step
        grad, hess = jac.T @ r, jac.T @ jac
        for _ in range(12):  # raise the damping until a step lowers the cost
            trial = np.clip(x - np.linalg.solve(hess + damping * (np.diag(np.diag(hess)) + 1e-9 * np.eye(len(x))), grad), lo, hi)
            r_trial = residuals(trial)
            if r_trial @ r_trial < r @ r:
                break
            damping *= 4.0
        else:
            break
        done = (r @ r - r_trial @ r_trial) < 1e-10 * (r @ r + 1e-12)
        x, r, damping = trial, r_trial, max(damping / 3.0, 1e-9)
        if done:
            break
    return params(x)
