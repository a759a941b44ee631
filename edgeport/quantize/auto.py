"""`--quant auto`: build the precisions the profile allows from one conversion, keep the best for the task.

The rule, in order:
1. keep the candidates that ran and meet the accuracy budget (the task metric, or top-1/SNR);
2. of those, keep the ones that meet the latency budget (simulated on the profile, or measured on a
   device target when one is given); when none does, all of step 1 stay, and the verdict fails on latency;
3. pick the smallest; candidates within SIZE_TIE of the smallest count as equal, and the fastest of
   those wins.
When no candidate meets the accuracy budget, the most accurate one is returned and the verdict says
why it fails. Every candidate, with its figures and the reason it lost, goes into report.json
(`quant_auto`).

The float conversion and the calibration are shared: one export writes every converter-built file
(fp32, fp16, dynamic, int8, int16x8), weight-only files come from that float32 model, and --quant
mixed runs only when plain int8 misses the budget (otherwise it could only keep more ops in float).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from edgeport.modes import MODES

# Tried in this order; the converter builds the first group in one export, AEQ the weight-only ones.
ORDER = ("fp32", "fp16", "dynamic", "int8", "int16x8", "w8", "w4", "mixed")
SIZE_TIE = 0.05  # sizes within 5% of the smallest are equal: then latency decides


@dataclass
class Candidate:
    mode: str
    size_bytes: int | None = None
    task_metric: dict[str, Any] | None = None  # {name, value, budget, passed}
    simulated_p50_ms: float | None = None
    host_p50_ms: float | None = None
    device_p50_ms: float | None = None
    ran: bool = False
    failed_checks: tuple[str, ...] = ()  # the accuracy checks it fails ("name: value vs budget")
    meets_latency: bool | None = None
    seconds: float | None = None  # its own build and validation time within the auto run
    skipped: str | None = None  # why it was not built
    chosen: bool = False
    lost_because: str | None = None

    @property
    def meets_task(self) -> bool:
        return self.ran and self.skipped is None and not self.failed_checks

    @property
    def latency_ms(self) -> float | None:
        """The latency the choice compares: the device's when measured, else the profile's simulation, else the host's."""
        return next((v for v in (self.device_p50_ms, self.simulated_p50_ms, self.host_p50_ms) if v is not None), None)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["failed_checks"] = list(self.failed_checks)
        row["meets_task"] = self.meets_task
        return row


def modes_for(allowed: tuple[str, ...] | list[str], calibrated: bool) -> tuple[list[str], dict[str, str]]:
    """(modes to build, {mode: why skipped}) among the profile's allowed modes."""
    build, skipped = [], {}
    for mode in ORDER:
        if mode not in allowed:
            continue
        if MODES[mode].calibrated and not calibrated:
            skipped[mode] = "needs calibration data (--calib)"
        else:
            build.append(mode)
    return build, skipped


def choose(cands: list[Candidate], latency_budget_ms: float | None) -> Candidate:
    """Mark the chosen candidate and write every other one's lost_because; returns the chosen one."""
    built = [c for c in cands if c.skipped is None]
    for c in built:
        c.meets_latency = None if latency_budget_ms is None or c.latency_ms is None else c.latency_ms <= latency_budget_ms
    accurate = [c for c in built if c.meets_task]
    if not accurate:
        ran = [c for c in built if c.ran] or built
        pick = max(ran, key=lambda c: (_task_value(c), -(c.size_bytes or 0)))
        _mark(cands, pick, lambda c: "less accurate than " + pick.mode if c.ran else "did not run: " + _first(c))
        return pick
    fast = [c for c in accurate if c.meets_latency is not False] or accurate
    smallest = min(c.size_bytes or 0 for c in fast)
    equals = [c for c in fast if (c.size_bytes or 0) <= smallest * (1 + SIZE_TIE)]
    pick = min(equals, key=lambda c: (c.latency_ms if c.latency_ms is not None else float("inf"), c.size_bytes or 0))

    def why(c: Candidate) -> str:
        if not c.ran:
            return "did not run: " + _first(c)
        if not c.meets_task:
            return "misses the accuracy budget: " + _first(c)
        if c.meets_latency is False and pick.meets_latency is not False:
            return f"misses the latency budget ({c.latency_ms:.3f} ms > {latency_budget_ms:g} ms)"
        if c in equals and c.latency_ms != pick.latency_ms:
            return f"as small as {pick.mode} (within {SIZE_TIE:.0%}) but slower ({_ms(c)} vs {_ms(pick)})"
        if c in equals:
            return f"ties with {pick.mode} in size (within {SIZE_TIE:.0%}) and latency; {pick.mode} is smaller"
        return f"larger than {pick.mode} ({c.size_bytes:,} vs {pick.size_bytes:,} bytes)"

    _mark(cands, pick, why)
    return pick


def _mark(cands: list[Candidate], pick: Candidate, why) -> None:
    for c in cands:
        c.chosen = c is pick
        if c is not pick and c.skipped is None:
            c.lost_because = why(c)
        elif c.skipped is not None:
            c.lost_because = f"not built: {c.skipped}"


def _task_value(c: Candidate) -> float:
    value = (c.task_metric or {}).get("value")
    return float("-inf") if value is None else float(value)


def _first(c: Candidate) -> str:
    return c.failed_checks[0] if c.failed_checks else "no outputs"


def _ms(c: Candidate) -> str:
    return "n/a" if c.latency_ms is None else f"{c.latency_ms:.3f} ms"


def summary_lines(section: dict[str, Any]) -> list[str]:
    """The table `edgeport convert --quant auto` prints."""
    lines = [f"  quant auto chose {section['chosen']} ({section['rule']})",
             f"    {'mode':<8} {'size KiB':>9} {'task metric':>20} {'sim ms':>9} {'host ms':>9}  result"]
    for c in section["candidates"]:
        metric = c.get("task_metric") or {}
        value = metric.get("value")
        shown = "" if value is None else f"{metric.get('name')} {value:.4g}"
        size = "" if c.get("size_bytes") is None else f"{c['size_bytes'] / 1024:.1f}"
        sim = "" if c.get("simulated_p50_ms") is None else f"{c['simulated_p50_ms']:.3f}"
        host = "" if c.get("host_p50_ms") is None else f"{c['host_p50_ms']:.3f}"
        result = "CHOSEN" if c.get("chosen") else (c.get("lost_because") or "")
        lines.append(f"    {c['mode']:<8} {size:>9} {shown:>20} {sim:>9} {host:>9}  {result}"[:220])
    return lines


@dataclass(frozen=True)
class Builders:
    """What the candidates need from the convert run, so this module holds the rule and not the plumbing."""

    validate: Any  # (key) -> export.arbitrate.ArtifactCheck of conv.files[key] on the validation data
    weight_only: Any  # (mode) -> None: writes conv.files[mode] from the float32 model (AI Edge Quantizer)
    mixed: Any  # () -> the mixed search's result; writes conv.files["mixed"]
    simulate: Any  # (path) -> simulated p50 ms on the profile, or None
    device: Any = None  # (path) -> p50 ms measured on the first device target, or None


@dataclass
class AutoResult:
    chosen: Candidate
    checks: dict[str, Any]  # mode -> ArtifactCheck
    mixed: Any
    section: dict[str, Any]  # report.json quant_auto


def evaluate(conv: Any, modes: list[str], skipped: dict[str, str], known: Any, build: Builders,
             latency_budget_ms: float | None, note) -> AutoResult:
    """Validate every candidate from the one conversion, then choose (see the module's rule)."""
    cands: list[Candidate] = []
    checks: dict[str, Any] = {}
    mixed_result = None
    failed_jobs = conv.extra.get("failed_jobs") or {}
    for mode in ORDER:
        if mode in skipped:
            cands.append(Candidate(mode, skipped=skipped[mode]))
        if mode not in modes:
            continue
        if mode in failed_jobs:
            cands.append(Candidate(mode, skipped=f"the converter refused it: {failed_jobs[mode][:160]}"))
            continue
        if mode == "mixed":
            int8 = next((c for c in cands if c.mode == "int8"), None)
            if int8 is not None and int8.meets_task:
                cands.append(Candidate(mode, skipped="int8 already meets the accuracy budget; mixed could only keep more ops in float"))
                continue
        t0 = time.perf_counter()
        try:
            if mode == "mixed":
                mixed_result = build.mixed()
            elif MODES[mode].weight_only:
                build.weight_only(mode)
            check = known if known is not None and known.key == mode else build.validate(mode)
        except Exception as exc:  # noqa: BLE001 - one candidate's failure is its row, not the run's end
            note(f"--quant auto: {mode} could not be built: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            cands.append(Candidate(mode, skipped=f"could not be built: {type(exc).__name__}"))
            continue
        checks[mode] = check
        path = conv.files[mode]
        task = check.task or {}
        metric = None if not task.get("metric") else {
            "name": task["metric"], "value": task.get("value"), "budget": task.get("budget"),
            "passed": not any(f.startswith(task["metric"]) for f in check.failed)}
        if metric is None:  # classify/raw: the figure the verdict judges
            name, value = ("top1_agreement", check.top1_agreement) if check.top1_agreement is not None else ("snr_db", check.snr_db)
            metric = {"name": name, "value": value, "budget": None, "passed": not any(f.startswith(name) for f in check.failed)}
        host = check.run.latency.p50_ms if check.run is not None and check.run.latency is not None else None
        cands.append(Candidate(
            mode, size_bytes=check.size_bytes, task_metric=metric, simulated_p50_ms=build.simulate(path), host_p50_ms=host,
            device_p50_ms=build.device(path) if build.device is not None and check.meets_budget else None,
            ran=check.ran and check.mismatch is None, failed_checks=tuple(check.failed) + ((check.mismatch,) if check.mismatch else ()),
            seconds=round(time.perf_counter() - t0, 3)))
    chosen = choose(cands, latency_budget_ms)
    section = {"chosen": chosen.mode, "rule": "smallest that meets the accuracy and latency budgets; within "
                                              f"{SIZE_TIE:.0%} in size the fastest",
               "candidates": [c.to_dict() for c in cands]}
    return AutoResult(chosen, checks, mixed_result, section)
