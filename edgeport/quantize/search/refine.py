"""The search loop both searches share: the fewest ranked candidates that meet the budget, and the
objective that compares two models that both meet it.

smallest_prefix finds the fewest top-ranked candidates whose union fits, by doubling k and then
bisecting: more float never hurts accuracy much, so the number of real builds grows with log(n), not n.
The converter search ranks units by their measured effect on the final outputs; the AEQ search ranks
groups by proxy harm removed per simulated millisecond; a float-tail plan (rules.tail_steps) ranks
ops last first. Each search then refines its answer (drops what the budget does not need) on real runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Simulated latencies within 2% count as equal, and then the smaller model wins. The simulator's per-op
# costs are fitted to within about ±20% per model, and its int16 (reference-kernel) rates were measured on
# x86 only: a 1% difference between two candidates of one graph is below what it can tell apart, while
# the bytes are exact (HeadNet: its head at a16w8 is 0.5% slower simulated than in float and 33% smaller).
LATENCY_TIE = 0.02


def smallest_prefix(attempt: Callable[[int], tuple[bool, T]], n: int,
                    more: Callable[[], bool] = lambda: True) -> T | None:
    """The payload of the smallest k in 1..n for which attempt(k) fits: k doubles until one fits (n is
    tried when doubling passes it), then the gap is bisected. `more()` false stops doubling and
    bisecting early (a budget of real runs); None when no k tried fits."""
    lo, k, hit = 0, 1, None
    while k <= n and more():
        ok, payload = attempt(k)
        if ok:
            hit = (k, payload)
            break
        lo, k = k, k * 2
    if hit is None and lo < n:
        ok, payload = attempt(n)
        hit = (n, payload) if ok else None
    if hit is None:
        return None
    hi, best = hit
    while hi - lo > 1 and more():
        mid = (lo + hi) // 2
        ok, payload = attempt(mid)
        if ok:
            hi, best = mid, payload
        else:
            lo = mid
    return best


def tie(ms: float) -> float:
    """Milliseconds within which two simulated latencies around `ms` count as equal."""
    return LATENCY_TIE * max(ms, 1e-6)


def no_worse(got: Mapping[str, Any], res: Mapping[str, Any]) -> bool:
    """The objective: lower simulated latency, then fewer bytes. A gain below the simulator's resolution
    is no reason to keep a float layer's 4-byte weights, so latencies within LATENCY_TIE of each other tie."""
    margin = tie(res["sim_ms"])
    if got["sim_ms"] < res["sim_ms"] - margin:
        return True
    return got["sim_ms"] <= res["sim_ms"] + margin and got["bytes"] <= res["bytes"]


def cost(path: Path, profile: Any) -> tuple[float, int]:
    """(simulated p50 ms on `profile`, file bytes): the two axes the objective minimises, in that order."""
    from edgeport.latency.simulator import simulate
    from edgeport.tflite.reader import inspect_model

    return float(simulate(inspect_model(path), profile).p50_ms), path.stat().st_size
