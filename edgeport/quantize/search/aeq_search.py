"""The AEQ builder of the search: calibrate once, score op groups, choose int8 / a16w8 / float per op.

Every candidate is a recipe rewrite of ONE calibrated float .tflite (edgeport.quantize.aeq), never a
converter run. The steps:

1. The all-int8 model: if the caller's `accept` passes it, that is the answer.
2. Sensitivity (a cheap proxy): the output noise-to-signal ratio (NSR) against the float model on a
   few probe samples, with ONE group of units in int8 and every other op float (the group's harm).
   The most harmful groups are split in halves, best first, down to single units; the most harmful
   units are also measured at a16w8. Measuring the effect on the model's outputs (not a tensor's
   local error) is what finds an outlier channel whose own tensor looks fine; measuring each group
   alone, not inside an all-int8 model, keeps errors that compound along a chain from hiding it.
3. Search: each measured group or unit is a candidate (those ops float, or a16w8), ordered by harm
   removed per simulated millisecond (bytes break ties; costs summed from per-op simulations); the
   fewest that meet the budget are found by refine.smallest_prefix on real `accept` runs.
4. Refine on real runs: a16w8 instead of float where the profile's simulator says it is no slower and
   it is smaller; then each chosen candidate is dropped in turn: one the budget does not need goes
   unless the model gets slower (then the report says so), a needed one gets its measured gain in the
   task metric for the report.

The objective is the issue's: meet the budget, then the lowest simulated latency on the profile, then
the fewest bytes (latencies within refine.LATENCY_TIE tie). int16 ops run TFLite's reference kernels (no
XNNPACK), which the simulator prices per op, so on CPU profiles a16w8 wins only where float is no
faster, typically small ops where it saves bytes.

Edge TPU profiles only take int8 with a float tail (rules.tail_only): there the candidates are the
rule's tail steps, the same loop finds the shortest tail, and a16w8 is never used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import ConversionError
from edgeport.quantize import aeq
from edgeport.quantize.search import refine, rows, rules
from edgeport.quantize.search.candidates import Node, adjustable, groups, units
from edgeport.quantize.search.probe_runner import CandidateRunner

Accept = Callable[[Path], tuple[bool, float]]  # real TFLite run on validation data -> (meets budget, metric; higher is better)
ABORTED_NSR = 1e6  # a candidate that aborts scores as if its outputs were pure noise, a million times over


@dataclass
class AeqMixedResult:
    model: Path  # the chosen model (read back and accepted), inside `work`
    levels: dict[str, str]  # every op's level in `model`, by output tensor name
    layers: list[dict[str, Any]]  # per op: level, reason, measured gains and costs (rows.layers)
    curve: list[dict[str, Any]]  # every evaluated candidate, proxy and real
    kept: list[str]  # ops the search put in float
    kept_a16w8: list[str]  # ops the search put at a16w8
    forced_float: list[str]  # ops AEQ cannot quantize at all (float in every candidate)
    int8: dict[str, Any]  # the all-int8 model: ok, metric, sim_ms, bytes
    stopped: str
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    built_by: str = "ai-edge-quantizer"  # or "tf-converter" when edgeport.quantize.stage rebuilt the choice
    ops: list[aeq.OpRecord] = field(default_factory=list)  # the float model's ops, as the search read them


@dataclass(eq=False)  # compared and hashed by identity: a candidate is one measurement
class _Cand:
    """One candidate: a level per adjustable op that is not int8, and what it was measured to do."""

    label: str
    levels: dict[str, str]
    node: Node | None = None
    level: str = "float"
    gain: float | None = None  # proxy NSR the action removes (a group's harm alone in int8; for a16w8, harm minus harm at a16w8)
    ms: float | None = None
    bytes: int | None = None


class _Search:
    def __init__(self, float_tflite: Path, calibration: aeq.Calibration, probe: dict[str, np.ndarray], accept: Accept,
                 profile: Any, work: Path, threads: int, progress: Callable[[str], None] | None) -> None:
        self.float_tflite, self.cal, self.accept_fn, self.profile = Path(float_tflite), calibration, accept, profile
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.ops = aeq.quantizable_ops(self.float_tflite)
        self.by_tensor = {o.tensor: o for o in self.ops}
        self.runner = CandidateRunner(probe, threads, self.work / "runner")
        self.curve: list[dict[str, Any]] = []
        self.accepted: dict[tuple, dict[str, Any]] = {}
        self.keep: set[Path] = set()
        self.built = 0
        self.costs: dict[str, dict[str, tuple[float, int]]] = {}  # op_costs(), once scoring has run
        self.say = progress or (lambda _text: None)
        self.t0 = time.perf_counter()
        ref, info = self.runner.run(self.float_tflite)
        if ref is None:
            raise ConversionError(f"the float model does not run on the probe samples: {info.get('error')}",
                                  hint="check the probe inputs' names, shapes and layout (TFLite layout, signature names)")
        self.ref = [r.astype(np.float64) for r in ref]

    # ------------------------------------------------------------------ building and measuring
    def build(self, levels: Mapping[str, str], tag: str) -> Path:
        self.built += 1
        return aeq.quantize(self.float_tflite, self.cal, dict(levels), out=self.work / f"{tag}_{self.built}.tflite",
                            ops=self.ops)

    def nsr(self, outs: list[np.ndarray] | None) -> float:
        """Noise-to-signal of the outputs against the float model, averaged over outputs (each output
        normalised by its own power, so a box head and a score head count alike)."""
        if outs is None or any(not np.all(np.isfinite(o)) for o in outs):
            return ABORTED_NSR
        ratios = [float(np.sum((o.astype(np.float64) - r) ** 2) / max(float(np.sum(r**2)), 1e-30))
                  for o, r in zip(outs, self.ref, strict=True)]
        return float(np.mean(ratios))

    def record(self, phase: str, cand: _Cand, **extra: Any) -> dict[str, Any]:
        counts = {lv: 0 for lv in aeq.LEVELS}
        for lv in aeq.effective_levels(self.ops, cand.levels).values():
            counts[lv] += 1
        row = {"step": len(self.curve), "phase": phase, "what": cand.label, "levels": counts, "sim_ms": _r(cand.ms),
               "size_bytes": cand.bytes, "elapsed_s": round(time.perf_counter() - self.t0, 2), **extra}
        self.curve.append(row)
        return row

    def probe_all(self, configs: list[tuple[str, dict[str, str]]], phase: str) -> list[float]:
        """Proxy NSR of each (label, levels) config; the next model is built while the child runs this one."""
        out: list[float] = []
        path = self.build(configs[0][1], "probe") if configs else None
        for i, (label, levels) in enumerate(configs):
            assert path is not None
            self.runner.submit(path)
            nxt = self.build(configs[i + 1][1], "probe") if i + 1 < len(configs) else None
            outs, info = self.runner.result()
            value = self.nsr(outs)
            self.record(phase, _Cand(label, levels), proxy_nsr=_r(value), proxy_snr_db=_db(value),
                        error=None if outs is not None else info.get("error"))
            path.unlink(missing_ok=True)
            out.append(value)
            path = nxt
        return out

    def op_costs(self) -> dict[str, dict[str, tuple[float, int]]]:
        """Simulated ms and weight bytes of every op at each level, read off three whole models (all
        int8, all a16w8 where AEQ can, all float): a unit's latency and byte cost is estimated as the sum
        over its ops, without building it (the (de)quantize ops at its borders are left out)."""
        from edgeport.latency.simulator import simulate
        from edgeport.tflite.reader import inspect_model

        can = adjustable(self.ops)
        table = {}
        for level, levels in (("int8", {}), ("a16w8", {o.tensor: "a16w8" for o in can if "a16w8" in o.levels}),
                              ("float", {o.tensor: "float" for o in can})):
            path = self.build(levels, "cost")
            info = inspect_model(path)
            ms = {info["ops"][o["index"]]["output_name"]: o["ms"] for o in simulate(info, self.profile).per_op}
            table[level] = {op["output_name"]: (ms.get(op["output_name"], 0.0), int(op["weight_bytes"])) for op in info["ops"]}
            path.unlink(missing_ok=True)
        return table

    def check(self, levels: Mapping[str, str], phase: str, label: str) -> dict[str, Any]:
        """A real run through the caller's `accept`; the same levels are never run twice."""
        key = tuple(sorted((k, v) for k, v in levels.items() if v != "int8"))
        if key in self.accepted:
            return self.accepted[key]
        cand = _Cand(label, dict(levels))
        path = self.build(levels, "check")
        cand.ms, cand.bytes = refine.cost(path, self.profile)
        ok, metric = self.accept_fn(path)
        res = {"ok": bool(ok), "metric": metric if metric is not None and math.isfinite(metric) else None,
               "sim_ms": cand.ms, "bytes": cand.bytes, "path": path, "levels": dict(levels)}
        self.record(phase, cand, ok=res["ok"], metric=_r(res["metric"]))
        self.say(f"{phase}: {label}: {'meets' if ok else 'misses'} the budget (metric {_r(res['metric'])})")
        if ok:
            self.keep.add(path)
        else:
            path.unlink(missing_ok=True)
        self.accepted[key] = res
        return res

    def close(self, final: Path | None) -> None:
        self.runner.close()
        for p in self.keep:
            if p != final:
                p.unlink(missing_ok=True)


def calibrate_and_search(float_tflite: Path, calib_samples: dict[str, np.ndarray], probe: dict[str, np.ndarray],
                         accept: Accept, profile: Any, work: Path, **options: Any) -> AeqMixedResult:
    """Calibrate once, then `search`: the entry point for `--quant mixed`."""
    cal = aeq.calibrate(float_tflite, calib_samples, threads=options.get("threads"))
    result = search(float_tflite, cal, probe, accept, profile, work, **options)
    result.timings["calibrate_s"] = round(cal.seconds, 2)
    return result


def search(float_tflite: Path, calibration: aeq.Calibration, probe: dict[str, np.ndarray], accept: Accept,
           profile: Any, work: Path, *, threads: int | None = None, first_groups: int = 16, max_probes: int = 48,
           a16w8_probes: int = 6, max_checks: int = 24, progress: Callable[[str], None] | None = None) -> AeqMixedResult:
    """Levels per op that meet `accept` with the lowest simulated latency on `profile`, then the fewest bytes.

    probe: a few samples ({signature input name: array}, TFLite layout) for the proxy; accept(path) runs
    the real model on validation data. `profile` is a DeviceProfile (host profiles: already fitted)."""
    import os

    s = _Search(float_tflite, calibration, probe, accept, profile, work, threads or os.cpu_count() or 1, progress)
    final: Path | None = None
    try:
        result = _run(s, first_groups, max_probes, a16w8_probes, max_checks)
        final = result.model
        return result
    finally:
        s.close(final)


def _run(s: _Search, first_groups: int, max_probes: int, a16w8_probes: int, max_checks: int) -> AeqMixedResult:
    forced = [o.tensor for o in s.ops if o.levels == ("float",)]
    notes = [f"AI Edge Quantizer cannot quantize {len(forced)} op(s) ({', '.join(sorted({s.by_tensor[t].op for t in forced}))}): "
             "in its models they stay float with (de)quantize ops around them"] if forced else []
    timings: dict[str, float] = {"reference_s": round(time.perf_counter() - s.t0, 2)}
    base = s.check({}, "int8", "all int8")
    base_nsr = s.probe_all([("all int8 (proxy)", {})], "int8")[0]
    int8 = {k: base[k] for k in ("ok", "metric", "sim_ms", "bytes")} | {"proxy_nsr": _r(base_nsr)}
    tpu = rules.tail_only(s.profile.runtime)

    def done(chosen: dict[str, str], res: dict[str, Any], stopped: str, cands: list[_Cand], gains: dict[str, Any]) -> AeqMixedResult:
        # cands is the ranked list when the search ran, so ownership follows the same first-wins order
        timings["total_s"] = round(time.perf_counter() - s.t0, 2)  # the calibration excluded
        levels = aeq.effective_levels(s.ops, chosen)
        aeq.verify_levels(res["path"], levels, s.ops)  # the read-back proof, on the file that is returned
        table = rows.layers(s.ops, levels, owners(cands, chosen), cands, gains, int8, _unit_index(s))
        return AeqMixedResult(res["path"], levels, table, s.curve, [t for t, v in chosen.items() if v == "float"],
                              [t for t, v in chosen.items() if v == "a16w8"], forced, int8, stopped, notes, timings,
                              ops=s.ops)

    if tpu:  # before the int8 check: an op AEQ keeps in float may sit mid-graph, which the TPU cannot take
        return _tail_search(s, base, done, notes, max_checks)
    if base["ok"]:
        chosen, res, speed = _faster_in_float(s, {}, base, max_checks)
        return done(chosen, res, "int8 already fits the accuracy budget" + (f"; {speed.label}" if speed else ""),
                    [speed] if speed else [], {})
    started = time.perf_counter()
    cands = _score(s, base, first_groups, max_probes, a16w8_probes)
    timings["scoring_s"] = round(time.perf_counter() - started, 2)
    ranked = _rank(cands, base["sim_ms"])
    if not ranked:
        return done({}, base, "no op group lowers the output error: the budget cannot be met by mixing levels", cands, {})
    found = _smallest_prefix(s, ranked, max_checks)
    if found is None:
        res = s.check({o.tensor: "float" for o in adjustable(s.ops)}, "search", "every op float")
        if res["ok"]:
            return done(res["levels"], res, "budget met only with every op in float: use --quant fp32 or fp16", cands, {})
        best = max(s.accepted.values(), key=lambda r: r["metric"] if r["metric"] is not None else -math.inf)
        return _fallback(s, best, done, "budget not met even with every op in float (the float model itself misses it)", cands)
    chosen, res = found
    chosen, res, gains = _refine(s, ranked, chosen, res, max_checks)
    chosen, res, speed = _faster_in_float(s, chosen, res, max_checks)
    order = ranked + [c for c in cands if c not in ranked] + ([speed] if speed else [])
    return done(chosen, res, "budget met" + (f"; {speed.label}" if speed else ""), order, gains)


def _fallback(s: _Search, best: dict[str, Any], done: Any, stopped: str, cands: list[_Cand]) -> AeqMixedResult:
    """No candidate met the budget: return the best one by metric (rebuilt when it failed: failed
    candidates are deleted)."""
    if not (best["ok"] and best["path"].exists()):
        best = best | {"path": s.build(best["levels"], "best")}
        s.keep.add(best["path"])
    return done(best["levels"], best, stopped, cands, {})


def _score(s: _Search, base: dict[str, Any], first_groups: int, max_probes: int, a16w8_probes: int) -> list[_Cand]:
    """Step 2. A group's harm = the output NSR with only that group int8 and every other op float (the
    per-op error with only that op quantized): it does not hide behind errors elsewhere, as a group's
    gain inside an all-int8 model does when the error compounds along a chain (a LayerNorm whose
    outlier channel runs through five tensors). Best groups are halved best-first down to single units;
    the top units are also measured at a16w8. Each becomes a candidate action: those ops float (gain =
    its harm) or a16w8 (gain = harm at int8 - harm at a16w8), with latency and bytes from op_costs."""
    every = {o.tensor: "float" for o in adjustable(s.ops)}
    costs = s.costs = s.op_costs()

    def level_of(t: str, level: str) -> str:
        return level if level in s.by_tensor[t].levels else "float"

    def alone(node: Node, level: str) -> tuple[str, dict[str, str]]:
        levels = {t: lv for t, lv in every.items() if t not in node.ops or level != "int8"}
        levels.update({t: level_of(t, level) for t in node.ops if level != "int8"})
        return f"{node.name} alone at {level}", levels

    def action(node: Node, level: str, gain: float) -> _Cand:
        c = _Cand(node.name, {t: level_of(t, level) for t in node.ordered_ops}, node, level, gain)
        c.ms = base["sim_ms"] + sum(costs[lv][t][0] - costs["int8"][t][0] for t, lv in c.levels.items())
        c.bytes = base["bytes"] + sum(costs[lv][t][1] - costs["int8"][t][1] for t, lv in c.levels.items())
        return c

    floor_nsr = s.probe_all([("every op float (proxy)", every)], "score")[0]  # ~0: the float model itself
    tops = groups(units(s.ops), first_groups)
    s.say(f"scoring {len(tops)} groups of ops: each alone in int8, the rest float")
    harms = s.probe_all([alone(n, "int8") for n in tops], "score")
    cands = [action(n, "float", h - floor_nsr) for n, h in zip(tops, harms, strict=True)]
    total = sum(max(c.gain or 0.0, 0.0) for c in cands)
    probes, split = len(cands) + 1, set()
    while probes + 2 <= max_probes:
        todo = [c for c in cands if c.node is not None and len(c.node.units) > 1 and id(c) not in split
                and (c.gain or 0.0) > 0.02 * total]  # under 2% of the summed harm: not worth splitting
        found = sum(c.gain or 0.0 for c in cands if c.node is not None and len(c.node.units) == 1 and (c.gain or 0.0) > 0)
        if not todo or found >= 0.9 * total:  # single units already explain the error: stop splitting
            break
        parent = max(todo, key=lambda c: c.gain or 0.0)
        split.add(id(parent))
        halves = parent.node.halves()  # type: ignore[union-attr]
        got = s.probe_all([alone(h, "int8") for h in halves], "split")
        cands += [action(h, "float", g - floor_nsr) for h, g in zip(halves, got, strict=True)]
        probes += 2
    singles = sorted((c for c in cands if c.node is not None and len(c.node.units) == 1 and (c.gain or 0.0) > 0.02 * total),
                     key=lambda c: -(c.gain or 0.0))[:a16w8_probes]
    singles = [c for c in singles if any("a16w8" in s.by_tensor[t].levels for t in c.node.ops)]  # type: ignore[union-attr]
    if singles:
        got = s.probe_all([alone(c.node, "a16w8") for c in singles], "a16w8")  # type: ignore[arg-type]
        cands += [action(c.node, "a16w8", (c.gain or 0.0) - (g - floor_nsr)) for c, g in zip(singles, got, strict=True)]  # type: ignore[arg-type]
    return cands


def _rank(cands: list[_Cand], base_ms: float) -> list[_Cand]:
    """Proxy NSR removed per simulated millisecond, then fewer bytes. A candidate that is no slower costs
    a floor of refine.LATENCY_TIE of the int8 model's time. Candidates under 5% of the largest gain come after
    all others: being nearly free in latency must not put a unit that barely matters ahead of the one
    that breaks the model (they still come in when the big ones are not enough)."""
    floor = max(base_ms * refine.LATENCY_TIE, 1e-6)
    useful = [c for c in cands if c.gain is not None and c.gain > 0 and c.ms is not None]
    top = max((c.gain or 0.0 for c in useful), default=0.0)

    def key(c: _Cand) -> tuple[bool, float, int]:
        return ((c.gain or 0.0) < 0.05 * top, -(c.gain or 0.0) / max((c.ms or 0.0) - base_ms, floor), c.bytes or 0)

    return sorted(useful, key=key)


def owners(order: list[_Cand], chosen: Mapping[str, str]) -> dict[str, _Cand]:
    """Which candidate put each chosen op at its level: the first in `order` that asks for that level,
    as _levels_of resolves overlaps (a group and one of its halves both name the op)."""
    out: dict[str, _Cand] = {}
    for c in order:
        for t, lv in c.levels.items():
            if chosen.get(t) == lv:
                out.setdefault(t, c)
    return out


def _levels_of(prefix: list[_Cand]) -> dict[str, str]:
    """Earlier (better-ranked) candidates win where candidates overlap."""
    levels: dict[str, str] = {}
    for c in prefix:
        for t, lv in c.levels.items():
            levels.setdefault(t, lv)
    return levels


def _smallest_prefix(s: _Search, ranked: list[_Cand], max_checks: int) -> tuple[dict[str, str], dict[str, Any]] | None:
    """Fewest top-ranked candidates that pass `accept` (refine.smallest_prefix: log(n) real runs)."""
    n = len(ranked)

    def attempt(k: int) -> tuple[bool, dict[str, Any]]:
        # doubling reaches k == n only when n is a power of two; otherwise k == n is the try of all of them
        every = k == n and n & (n - 1) != 0
        res = s.check(_levels_of(ranked[:k]), "search", f"all {n} candidates" if every else f"top {k} of {n} candidates")
        return res["ok"], res

    best = refine.smallest_prefix(attempt, n, more=lambda: len(s.accepted) < max_checks)
    return None if best is None else (best["levels"], best)


def _refine(s: _Search, ranked: list[_Cand], chosen: dict[str, str], res: dict[str, Any],
            max_checks: int) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Step 4: a16w8 where it is no slower and smaller; then leave each chosen candidate out once."""
    for alt in _a16w8_swaps(s, ranked, chosen, res):
        if len(s.accepted) >= max_checks:
            break
        if any(chosen.get(t) != "float" for t in alt.levels):  # an earlier swap took some of its ops
            continue
        trial = {**chosen, **alt.levels}
        got = s.check(trial, "refine", f"{alt.label} at a16w8 instead of float")
        if got["ok"] and not refine.no_worse(got, res):
            # The float unit that held these ops may have been float only to keep them float: a MEAN
            # whose consumer FC needs wide activations. Its other ops back at int8 save the
            # (de)quantize ops between them (HeadNet: 0.07% slower than float, 30% smaller).
            own = owners(ranked, chosen)
            holders = {id(own[t]) for t, lv in alt.levels.items() if lv == "a16w8" and t in own}
            rest = [t for t, c in own.items() if id(c) in holders and t not in alt.levels and chosen.get(t) == "float"]
            if rest and len(s.accepted) < max_checks:
                trial = {t: lv for t, lv in trial.items() if t not in rest}
                got = s.check(trial, "refine", f"{alt.label} at a16w8 and {len(rest)} op(s) of its float unit at int8")
        if got["ok"] and refine.no_worse(got, res):
            chosen, res = trial, got
    gains: dict[str, Any] = {}  # tensor -> metric drop without it, or {ms_without, bytes_without} when kept for speed/size
    for c in reversed(list(dict.fromkeys(owners(ranked, chosen).values()))):
        own = owners(ranked, chosen)
        others = {t for o in set(own.values()) - {c} for t, lv in o.levels.items() if chosen.get(t) == lv}
        mine = [t for t, o in own.items() if o is c and t not in others]  # ops another kept candidate needs stay
        if not mine or len(s.accepted) >= max_checks:
            continue
        trial = {t: lv for t, lv in chosen.items() if t not in mine}
        got = s.check(trial, "shrink", f"without {c.label}")
        if got["ok"] and refine.no_worse(got, res):
            chosen, res = trial, got
        elif got["ok"]:  # not needed for the budget, but the model is slower (or larger) without it
            for t in mine:
                gains[t] = {"ms_without": got["sim_ms"] - res["sim_ms"], "bytes_without": got["bytes"] - res["bytes"]}
        elif res["metric"] is not None and got["metric"] is not None:
            for t in mine:
                gains[t] = res["metric"] - got["metric"]
    return chosen, res, gains


SPEED_LABEL = "faster in float on this profile"


def _faster_in_float(s: _Search, chosen: dict[str, str], res: dict[str, Any],
                     max_checks: int) -> tuple[dict[str, str], dict[str, Any], _Cand | None]:
    """The objective's first axis, on its own: ops the profile's simulator prices at least twice as fast in
    float as at their chosen level (an int8 op outside the CPU delegate's kernels), tried in float together in
    one real run. Kept only when that model meets the budget and is faster beyond LATENCY_TIE: the
    per-op prices leave out the (de)quantize ops a float op adds at its borders, the real check does not."""
    if len(s.accepted) >= max_checks:
        return chosen, res, None
    if not s.costs:
        s.costs = s.op_costs()
    # at least twice as fast in float: a float op adds a DEQUANTIZE and a QUANTIZE at its borders, which
    # cost about what an elementwise float op over the same tensors does
    faster = {o.tensor: "float" for o in adjustable(s.ops) if chosen.get(o.tensor, "int8") != "float"
              and 2 * s.costs["float"][o.tensor][0] < s.costs[chosen.get(o.tensor, "int8")][o.tensor][0]}
    saving = sum(s.costs[chosen.get(t, "int8")][t][0] - s.costs["float"][t][0] for t in faster)
    tie = refine.tie(res["sim_ms"])
    if not faster or saving <= tie:
        return chosen, res, None
    trial = {**chosen, **faster}
    got = s.check(trial, "speed", f"{len(faster)} op(s) priced faster in float")
    if not (got["ok"] and got["sim_ms"] < res["sim_ms"] - tie):
        return chosen, res, None
    speed = _Cand(f"{len(faster)} op(s) {SPEED_LABEL} ({res['sim_ms'] - got['sim_ms']:.4g} ms less simulated)",
                  faster, None, "float", None, got["sim_ms"], got["bytes"])
    return trial, got, speed


def _a16w8_swaps(s: _Search, ranked: list[_Cand], chosen: Mapping[str, str], res: Mapping[str, Any]) -> list[_Cand]:
    """Measured a16w8 actions whose ops are all float in `chosen`, whatever candidate put them there
    (a unit's float candidate also floats the ops it feeds, so the unit that needs int16 activations is
    often another one's), that the per-op costs say are no slower (within refine.LATENCY_TIE) and smaller;
    the cheapest in latency first (a swap that is faster makes room for one that is slightly slower),
    then the most bytes saved."""
    if not s.costs:
        return []
    tie = refine.tie(res["sim_ms"])
    swaps = []
    for alt in (a for a in ranked if a.level == "a16w8"):
        if any(chosen.get(t) != "float" for t in alt.levels):
            continue
        raised = [t for t, lv in alt.levels.items() if lv == "a16w8"]
        if not raised:
            continue
        ms = sum(s.costs["a16w8"][t][0] - s.costs["float"][t][0] for t in raised)
        saved = sum(s.costs["float"][t][1] - s.costs["a16w8"][t][1] for t in raised)
        if ms <= tie and saved > 0:
            swaps.append((ms, -saved, alt))
    return [alt for *_key, alt in sorted(swaps, key=lambda row: row[:2])]


def _tail_search(s: _Search, base: dict[str, Any], done: Any, notes: list[str], max_checks: int) -> AeqMixedResult:
    """Edge TPU: the shortest float tail that passes `accept`, by the same doubling and bisection (a
    prefix of ops taken last-first is a tail). An op AEQ cannot quantize starts the tail at the latest."""
    in_order = sorted(adjustable(s.ops), key=lambda o: o.index)
    first_forced = min((o.index for o in s.ops if o.levels == ("float",)), default=None)
    forced = [o for o in in_order if first_forced is not None and o.index > first_forced]
    if forced:
        notes.append(f"AEQ keeps op {first_forced} in float, so the float tail starts there at the latest "
                     f"({len(forced)} quantizable ops after it run on the CPU)")
    elif base["ok"]:
        return done({}, base, "int8 already fits the accuracy budget", [], {})
    cands = [_Cand(f"the {len(forced)} ops after op {first_forced}" if forced and i == 0 else f"op {step[0].index} ({step[0].op})",
                   {o.tensor: "float" for o in step})
             for i, step in enumerate(rules.tail_steps(in_order, len(forced)))]
    found = _smallest_prefix(s, cands, max_checks)
    if found is None:
        best = max(s.accepted.values(), key=lambda r: r["metric"] if r["metric"] is not None else -math.inf)
        return _fallback(s, best, done, "budget not met even with every quantizable op in float", [])
    chosen, res = found
    return done(chosen, res, f"budget met with the last {len(chosen)} quantizable op(s) in float", [], {})


def _unit_index(s: _Search) -> dict[str, list[str]]:
    return {u.key: list(u.ops) for u in units(s.ops)}


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def _db(nsr: float) -> float | None:
    return None if nsr <= 0 else round(-10.0 * math.log10(nsr), 2)
