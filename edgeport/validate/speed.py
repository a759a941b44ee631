"""Speed warnings: a quantized artifact that runs slower than the float32 model, and the ops to blame.

Why: int8 is chosen for speed, yet on some CPUs a model gets slower. A PP-LCNet-class classifier in int8
ran 4x slower than fp32 on an AVX2 host because its 28 HARD_SWISH ops have no int8 XNNPACK kernel and
run on TFLite's builtin loops. The verdict used to pass it without a word. Both sources are
compared: the profile's simulation (deterministic) and the host's measurement (both models timed
side by side in the same run, so the ratio holds on a noisy machine).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from edgeport.latency.simulator import SimResult, delegated, simulate
from edgeport.profiles import DeviceProfile

# Simulated times are deterministic: any real slowdown counts. The host times the float32 model and the
# artifact one after the other in the same run; on a shared machine other work can still move one of
# them by tens of percent, so the host warns only from 1.5x (the slowdowns worth a warning are 2-10x).
SIMULATED_MARGIN = 1.02
HOST_MARGIN = 1.5
MAX_OPS_NAMED = 3


def outside_xnnpack(info: dict[str, Any], prof: DeviceProfile, sim: SimResult | None = None) -> list[dict[str, Any]]:
    """Op types of the model that XNNPACK does not take on this profile, most expensive first, priced by
    `sim` (simulate(info, prof), run here when not given)."""
    if prof.runtime.delegate != "xnnpack":
        return []
    sim = sim or simulate(info, prof)
    params = sim.params
    costs = {row["index"]: row["ms"] for row in sim.per_op}
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "ms": 0.0})
    for op in info["ops"]:
        if op["inputs"] and all(t["const"] for t in op["inputs"]):
            continue  # folded at load time: costs nothing wherever it runs
        if not delegated(op, params):
            group = groups[op["op"]]
            group["count"] += 1
            group["ms"] += costs.get(op["index"], 0.0)
    rows = [{"op": name, "count": g["count"], "simulated_ms": round(g["ms"], 4)} for name, g in groups.items()]
    return sorted(rows, key=lambda r: (-r["simulated_ms"], -r["count"], r["op"]))


def slowdowns(mode: str, info: dict[str, Any], fp32_info: dict[str, Any] | None, prof: DeviceProfile,
              host_ms: float | None, host_fp32_ms: float | None) -> list[dict[str, Any]]:
    """One warning per source (simulated on the profile, measured on the host) where `mode` is slower
    than float32: {source, ratio, ms, fp32_ms, ops, text}."""
    if mode == "fp32" or fp32_info is None:
        return []
    found = []
    sim = simulate(info, prof)
    pairs = (("simulated", sim.p50_ms, simulate(fp32_info, prof).p50_ms, SIMULATED_MARGIN, f"simulated on {prof.name}"),
             ("host", host_ms, host_fp32_ms, HOST_MARGIN, "measured on this host"))
    blamed: list[dict[str, Any]] | None = None
    for source, ms, fp32_ms, margin, where in pairs:
        if not ms or not fp32_ms or ms <= fp32_ms * margin:
            continue
        if blamed is None:
            blamed = outside_xnnpack(info, prof, sim)
        ratio = ms / fp32_ms
        found.append({"source": source, "ratio": round(ratio, 3), "ms": round(ms, 4), "fp32_ms": round(fp32_ms, 4),
                      "ops": blamed, "text": f"{mode} is {ratio:.1f}x slower than fp32 ({where}): {_blame(blamed, mode)}"})
    return found


def _blame(rows: list[dict[str, Any]], mode: str) -> str:
    if not rows:
        return f"every op runs in XNNPACK, so its {mode} kernels themselves are slower here than float32"
    named = ", ".join(f"{r['count']} {r['op']}" for r in rows[:MAX_OPS_NAMED])
    more = f" and {len(rows) - MAX_OPS_NAMED} more op type(s)" if len(rows) > MAX_OPS_NAMED else ""
    return f"{named}{more} run outside XNNPACK, on TFLite's builtin kernels"
