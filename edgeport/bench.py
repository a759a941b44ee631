"""`edgeport bench`: time a .tflite on several targets at once — simulated, this host, real devices.

Targets run concurrently (each device is its own process/connection); a failing target does not
hide the others' results, and the exit code says whether any failed.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from edgeport import options, progress
from edgeport.errors import DeviceError, EdgeportError
from edgeport.profiles import DeviceProfile, load_profile
from edgeport.report.summary import fit_label
from edgeport.runners.common import RunOptions
from edgeport.runners.device import run_device
from edgeport.runners.targets import Target, parse_target
from edgeport.tflite.reader import inspect_model, load_model
from edgeport.types import LatencyStats
from edgeport.validate.judge import EMULATED_NOTE
from edgeport.validate.run import run_tflite


def measure(model: Path, target: Target, prof: DeviceProfile, opts: RunOptions) -> dict[str, Any]:
    """One target's latency as a report dict ({p50_ms, p90_ms, ..., target})."""
    if target.kind == "sim":
        from edgeport.latency.simulator import simulate

        sim = simulate(inspect_model(model), prof)
        return {"p50_ms": round(sim.p50_ms, 4), "target": "sim", "profile": prof.name, "fit": prof.fit}
    if target.kind == "local":
        threads = min(prof.runtime.threads, os.cpu_count() or 1)
        run = run_tflite(model, None, {}, None, threads=threads, runs=opts.runs, warmup=opts.warmup)
        if run.latency is None:
            raise DeviceError(run.error or "the model did not run on this host", hint="check it with 'edgeport inspect'")
        return {**run.latency.to_dict(), "target": "local", "runtime": run.runtime}
    stats: LatencyStats = run_device(model, target, prof, opts)
    if prof.connection.emulated:  # an emulator's time: kept, marked, never judged (judge.EMULATED_NOTE)
        return {**stats.to_dict(), "emulated": True}
    return stats.to_dict()


def bench(model: Path, profile: str, *, targets: list[str] | None = None, opts: RunOptions | None = None) -> dict[str, Any]:
    opts = opts or RunOptions(runs=100)
    load_model(model)  # a clear error for a non-TFLite file before anything runs
    prof = load_profile(profile)
    runs = options.runs(opts.runs)
    if opts.timeout_s is not None:
        options.timeout(opts.timeout_s)
    parsed = [parse_target(t) for t in (targets or ["local"])]
    if any(t.kind == "sim" for t in parsed):
        from edgeport.latency.host_fit import resolve

        prof = resolve(prof, log=progress.note)
    results: dict[str, Any] = {}
    names = [str(t) for t in parsed]
    with ThreadPoolExecutor(max_workers=max(1, len(parsed))) as pool, \
            progress.stage("bench", f"{runs} runs on {', '.join(names)}", total=len(parsed)) as st:
        futures = {pool.submit(measure, model, t, prof, opts): str(t) for t in parsed}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                results[name] = fut.result()
            except EdgeportError as exc:
                results[name] = {"error": exc.one_line(), "exit_code": exc.exit_code}
            waiting = [n for n in names if n not in results]
            st.update(f"{name} {'failed' if 'error' in results[name] else 'done'}"
                      + (f"; waiting for {', '.join(waiting)}" if waiting else ""), done=len(results))
    results = {n: results[n] for n in names}  # the order the targets were given
    lines = [f"{model} on profile '{prof.name}'"]
    for name, res in results.items():
        if "error" in res:
            lines.append(f"  {name:<28} FAILED: {res['error']}")
        elif res.get("p90_ms") is not None:
            emulated = f"  [{EMULATED_NOTE}: not a device time]" if res.get("emulated") else ""
            lines.append(f"  {name:<28} p50 {res['p50_ms']:.3f} ms  p90 {res['p90_ms']:.3f} ms  ({res.get('runs')} runs){emulated}")
        else:
            lines.append(f"  {name:<28} p50 {res['p50_ms']:.3f} ms{fit_label(res.get('fit'))}")
    failed = [r["exit_code"] for r in results.values() if "error" in r]
    return {"model": str(model), "profile": prof.name, "results": results,
            "exit_code": max(failed) if failed else 0, "_lines": lines}
