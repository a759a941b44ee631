"""Quantization modes as one table: what each needs, what its graph I/O can be, which delegates run it.

Why one table: the CLI choices, profile validation, the pipeline's "needs calibration data" check and
the Edge TPU rule used to be four parallel lists that had to agree by hand. Code asks this table a
question (`MODES[m].calibrated`) instead of testing mode names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantMode:
    name: str
    calibrated: bool  # needs representative data (--calib) to set activation ranges
    integer_io: bool  # graph inputs/outputs may follow the profile's int8/uint8 runtime.io_dtype
    delegates: tuple[str, ...]  # runtimes whose fast kernels take it; the rest fall back to builtin kernels
    summary: str
    # Built by AI Edge Quantizer from the backend's float32 .tflite (quantize/weight_only.py), not by a
    # backend job: the same recipe whichever backend converted.
    weight_only: bool = False


_TABLE = (
    QuantMode("fp32", False, False, ("xnnpack", "gpu"), "float32"),
    QuantMode("fp16", False, False, ("gpu", "xnnpack"), "float16 weights, float32 compute on CPUs"),
    QuantMode("dynamic", False, False, ("xnnpack",), "int8 weights, float activations (dynamic range)"),
    # Measured with ai_edge_litert 2.3 (quantize/weight_only.xnnpack_coverage): XNNPACK takes w8's DEQUANTIZE
    # of int8 weights (dequantized once, fp32 kernels) and w4's blockwise-int4 FULLY_CONNECTED (its qd8-f32-qb4w
    # kernels); TFLite's builtin blockwise-int4 kernel is a reference loop, far slower.
    QuantMode("w8", False, False, ("xnnpack",),
              "weight-only int8 (per channel) behind a DEQUANTIZE: float activations and float compute",
              weight_only=True),
    QuantMode("w4", False, False, ("xnnpack",),
              "blockwise int4 FULLY_CONNECTED weights (block 32), float activations; int8 weight-only elsewhere",
              weight_only=True),
    QuantMode("int8", True, True, ("xnnpack", "edgetpu"),
              "full integer, per-channel int8 weights and int8 activations"),
    # XNNPACK has no int16 activation kernels: int16x8 runs on TFLite's builtin kernels everywhere.
    QuantMode("int16x8", True, False, (), "int16 activations, int8 weights"),
    QuantMode("mixed", True, True, ("xnnpack", "edgetpu"),
              "int8 with the most sensitive layers kept in float, searched against the accuracy budget; "
              "on the Edge TPU only a float tail, which runs on the CPU"),
)
MODES: dict[str, QuantMode] = {m.name: m for m in _TABLE}
NAMES: tuple[str, ...] = tuple(MODES)
# `--quant auto` is not a mode: it builds the modes the profile allows and keeps the best (quantize/auto.py).
QUANT_CHOICES: tuple[str, ...] = (*NAMES, "auto")
CALIBRATED: tuple[str, ...] = tuple(m.name for m in _TABLE if m.calibrated)


def runs_on(delegate: str) -> tuple[str, ...]:
    """Modes a delegate can run: e.g. the Edge TPU compiler takes only int8 graphs (mixed: a float tail)."""
    return tuple(m.name for m in _TABLE if delegate in m.delegates)
