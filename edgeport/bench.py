"""`edgeport bench`: time a .tflite on the host with the profile's thread count."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeport.errors import DeviceError, InputError
from edgeport.inspect_tflite import load_model
from edgeport.profiles import load_profile
from edgeport.validate.run import run_tflite


def bench_local(model: Path, profile: str, *, runs: int = 100, targets: list[str] | None = None) -> dict[str, Any]:
    load_model(model)  # a clear error for a non-TFLite file before any subprocess
    prof = load_profile(profile)
    unknown = [t for t in (targets or []) if t not in ("local", "host")]
    if unknown:
        raise InputError(f"--target '{unknown[0]}' is not available yet", hint="use --target local")
    if runs < 1:
        raise InputError(f"--runs {runs} must be at least 1", hint="e.g. --runs 100")
    threads = min(prof.runtime.threads, os.cpu_count() or 1)
    run = run_tflite(model, None, {}, None, threads=threads, runs=runs)
    if run.latency is None:
        raise DeviceError(run.error or "the model did not run on this host", hint="check the model with 'edgeport inspect'")
    stats = run.latency.to_dict()
    lines = [f"{model}: host p50 {stats['p50_ms']:.3f} ms  p90 {stats['p90_ms']:.3f} ms  "
             f"({runs} runs, {threads} threads, {run.runtime})"]
    return {"model": str(model), "profile": prof.name, "latency": {"host": stats}, "_lines": lines}
