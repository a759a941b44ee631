"""Latency for a device without the device: the simulator (profile roofline) and the Edge TPU check.

Owns: the per-op roofline simulator over a device profile (simulator), the Edge TPU compatibility
check (edgetpu), and the host profile measured on this machine: its facts (host_machine), the child
that times the fit set (host_timing), and the fit and its per-machine cache (host_fit).
May import: edgeport.errors, edgeport.types, edgeport.profiles, edgeport.tflite, edgeport.report.summary
host_fit reads the fit set's models (tflite.reader) and writes its cache with the report's atomic
JSON write (report.summary); host_timing loads the interpreter as the runner does (tflite.runner).
"""

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
