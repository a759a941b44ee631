"""Latency for a device without the device: the simulator (profile roofline) and the Edge TPU check."""

from __future__ import annotations

from edgeport.latency.edgetpu import (
    EdgeTpuReport,
    check_edgetpu,
    compile_edgetpu,
    edgetpu_report,
    parse_compiler_output,
)
from edgeport.latency.simulator import SimResult, resolve_params, simulate, simulate_params

__all__ = [
    "EdgeTpuReport", "SimResult", "check_edgetpu", "compile_edgetpu", "edgetpu_report", "parse_compiler_output",
    "resolve_params", "simulate", "simulate_params",
]
