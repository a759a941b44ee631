"""The host latency profile, measured on the machine that uses it and cached per machine.

Why: a fit belongs to the CPU it was made on. A profile fitted on an AVX-512 VNNI host predicted
MobileNetV2 int8 at 1.6 ms on an AVX2 host that takes 10.3 ms. So a profile with `host_fit = true`
(the shipped `host` profile) gets its [simulator] table from a short calibration on this machine: the
fit set shipped in `fit_set.tar.xz` (eight architectures, fp32 and int8) is timed at 1 and N threads,
and the roofline parameters are fitted by least squares on log latency. The fit is cached under a key
made of the CPU model, ISA flags, thread count, runtime version and fit-set version, so it runs once per
machine. The profile's own [simulator] table stays as a documented fallback, carried to this CPU by
its vector width and int8 dot-product class, for runs that must not spend the minute
(EDGEPORT_HOST_FIT=fallback).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import DeviceError, InputError
from edgeport.latency.host_machine import INT8_DOT_GAIN, HostMachine, detect, fit_key, runtime_version
from edgeport.profiles import DeviceProfile
from edgeport.report.summary import write_json_atomic

FIT_SET_ARCHIVE = Path(__file__).with_name("fit_set.tar.xz")
MODE_ENV, CACHE_ENV = "EDGEPORT_HOST_FIT", "EDGEPORT_CACHE_DIR"
MODES = ("auto", "cached", "fallback")
# Parameters the least-squares fit moves; the clock, vector width and cache size are read off the machine.
# cpu_eff_depthwise stays at 1: the per-output cost already explains depthwise convs (9-25 MACs per
# output), and fitting both left the class factor unidentified.
FREE = ("cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8", "cpu_eff_fc", "cpu_output_cycles_fp32",
        "cpu_output_cycles_int8", "cpu_thread_eff", "mem_thread_eff", "mem_bw_gbps", "cache_bw_gbps",
        "op_overhead_us", "thread_sync_us", "invoke_overhead_us", "cpu_eff_builtin", "cpu_builtin_ns_per_elem",
        "cache_mb", "cpu_builtin_ns_per_elem_fp32", "partition_overhead_us", "act_bw_gbps", "cpu_output_eff_depthwise")
UPPER = {"cpu_eff_fc": 4.0, "cpu_eff_builtin": 4.0, "cpu_output_eff_depthwise": 4.0}
# Fitted on a linear scale: on a shared machine a second thread can make an op slower than one thread.
LINEAR = {"cpu_thread_eff": (-0.5, 1.0), "mem_thread_eff": (-0.5, 1.0)}
TIMING_TIMEOUT_S = 300.0
# A fit that explains fewer of its own timings than this was most likely made while other work held
# the cores; the fit is kept (it is what this machine did), but the user hears how to redo it.
BUSY_SHARE = 0.6
BUSY_HINT = "the machine looked busy; rerun 'edgeport profiles fit-host' when it is idle"
# Repeats stop starting after this much timing (at least 3 always run): with model loading and the
# least-squares fit the whole calibration stays under a minute on 2 cores, even on a busy machine.
TIMING_BUDGET_S = 25.0
# Soft-L1 scale on log residuals: timings off by more than ~20% (a 10 us model hit by a timer tick) weigh
# linearly, not quadratically, so one of them cannot drag every parameter.
ROBUST = 0.2


@dataclass(frozen=True)
class Sample:
    """One (model, quant, threads) timing of the fit set, and what the fitted model predicts for it."""

    name: str
    quant: str
    threads: int
    measured_ms: float
    simulated_ms: float | None = None


@dataclass(frozen=True)
class HostFit:
    key: str
    machine: dict[str, Any]
    threads: int
    runtime: str
    fit_set: str
    fitted_at: str
    seconds: float
    params: dict[str, float]
    samples: tuple[Sample, ...] = field(default_factory=tuple)
    path: str | None = None

    def within(self, tol: float = 0.20) -> float:
        ok = [s for s in self.samples if s.simulated_ms is not None and abs(s.simulated_ms / s.measured_ms - 1) <= tol]
        return len(ok) / len(self.samples) if self.samples else 0.0

    def summary(self, cached: bool) -> dict[str, Any]:
        """What report.json says about the fit a simulation used."""
        return {"source": "host-fit", "key": self.key, "cached": cached, "cpu": self.machine["cpu_model"],
                "isa": self.machine["isa"], "int8_dot": self.machine["int8_dot"], "threads": self.threads,
                "runtime": self.runtime, "fit_set": self.fit_set, "fitted_at": self.fitted_at,
                "fit_seconds": round(self.seconds, 1), "in_sample_within_20pct": round(self.within(), 3),
                "path": self.path}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["samples"] = [dataclasses.asdict(s) for s in self.samples]
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any], path: Path) -> HostFit:
        samples = tuple(Sample(**s) for s in data.get("samples", ()))
        return HostFit(**{**data, "samples": samples, "path": str(path)})


# ------------------------------------------------------------------------------------------- cache


def cache_root() -> Path:
    """EDGEPORT_CACHE_DIR, else $XDG_CACHE_HOME/edgeport, else ~/.cache/edgeport."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgeport"


@functools.cache
def fit_set_version() -> str:
    """The shipped archive does not change while edgeport runs: hash its 1.2 MB once per process."""
    return hashlib.sha256(FIT_SET_ARCHIVE.read_bytes()).hexdigest()[:12]


def key_for(machine: HostMachine, threads: int) -> str:
    return fit_key(machine, threads, runtime_version(), fit_set_version())


def cached_fit(machine: HostMachine, threads: int) -> HostFit | None:
    path = cache_root() / "host-fits" / f"{key_for(machine, threads)}.json"
    try:
        return HostFit.from_json(json.loads(path.read_text()), path)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # absent or unreadable (e.g. written by an older edgeport): fit again


def _store(fit: HostFit) -> HostFit:
    folder = cache_root() / "host-fits"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{fit.key}.json"
    stored = dataclasses.replace(fit, path=str(path))
    write_json_atomic(path, stored.to_json())  # concurrent first uses both fit; the last rename wins
    return stored


# --------------------------------------------------------------------------------------------- fit


def fit_host(threads: int | None = None, *, repeats: int = 9, runs: int = 25, store: bool = True,
             log: Callable[[str], None] | None = None) -> HostFit:
    """Time the fit set on this machine at 1 and `threads` threads and fit the roofline parameters."""
    from edgeport.latency.simulator import fit_params, simulate_params
    from edgeport.tflite.reader import inspect_model

    say = log or (lambda _line: None)
    start = time.monotonic()
    machine = detect()
    n = max(1, min(int(threads or machine.cores), machine.cores))
    thread_counts = sorted({1, n})
    with tempfile.TemporaryDirectory(prefix="edgeport-hostfit-") as tmp:
        models = extract_fit_set(Path(tmp))
        say(f"timing {len(models)} fit-set models at {thread_counts} thread(s) on {machine.cpu_model}")
        measured = measure([m["path"] for m in models], thread_counts, repeats=repeats, runs=runs,
                           budget_s=TIMING_BUDGET_S)
        infos = {m["path"]: inspect_model(Path(m["path"])) for m in models}
    cases, labels = [], []
    for m in models:
        for t in thread_counts:
            cases.append((infos[m["path"]], t, measured[f"{m['path']}@{t}"], False))
            labels.append((m["name"], m["quant"]))
    say(f"fitting {len(FREE)} parameters to {len(cases)} timings")
    fitted = fit_params(cases, start_params(machine), FREE, cores=machine.cores, linear=LINEAR,
                        upper=upper_bounds(machine), robust=ROBUST)
    samples = tuple(Sample(name, quant, t, round(ms, 5),
                           round(simulate_params(info, fitted, threads=t, cores=machine.cores).p50_ms, 5))
                    for (name, quant), (info, t, ms, _tpu) in zip(labels, cases, strict=True))
    fit = HostFit(key=key_for(machine, n), machine=machine.to_dict(), threads=n, runtime=runtime_version(),
                  fit_set=fit_set_version(), fitted_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  seconds=time.monotonic() - start, params={k: float(v) for k, v in fitted.items()}, samples=samples)
    return _store(fit) if store else fit


def extract_fit_set(dest: Path) -> list[dict[str, Any]]:
    """The shipped fit-set models, unpacked into `dest`: [{name, quant, family, path}]."""
    with tarfile.open(FIT_SET_ARCHIVE, "r:xz") as tar:
        tar.extractall(dest, filter="data")
    manifest = json.loads((dest / "manifest.json").read_text())
    return [{**m, "path": str(dest / m["file"])} for m in manifest["models"]]


def measure(paths: list[str], threads: list[int], *, repeats: int = 7, runs: int = 25,
            budget_s: float | None = None) -> dict[str, float]:
    """{"<path>@<threads>": ms}: the lowest p50 of `repeats` interleaved repeats of `runs` runs each.

    The lowest, because a profile describes the hardware when nothing else runs (as device profiles
    describe idle devices): on a shared machine a repeat slowed by another process, which holds a core
    or the memory bus, is the machine being busy, not the hardware. The fit and its validation both use
    this statistic, so they compare like with like.
    """
    timings = time_models(paths, threads, repeats=repeats, runs=runs, budget_s=budget_s)
    return {key: min(p50s) for key, p50s in timings.items()}


def time_models(paths: list[str], threads: list[int], *, repeats: int, runs: int,
                budget_s: float | None = None) -> dict[str, list[float]]:
    """{"<path>@<threads>": [p50 per repeat]} from one child process (edgeport.latency.host_timing)."""
    with tempfile.TemporaryDirectory(prefix="edgeport-timing-") as tmp:
        req, out = Path(tmp, "req.json"), Path(tmp, "out.json")
        req.write_text(json.dumps({"models": paths, "threads": threads, "repeats": repeats, "runs": runs,
                                   "budget_s": budget_s}))
        try:
            proc = subprocess.run([sys.executable, "-m", "edgeport.latency.host_timing", str(req), str(out)],
                                  capture_output=True, text=True, timeout=TIMING_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"timing the host fit set did not finish within {TIMING_TIMEOUT_S:.0f} s",
                              hint="is the machine overloaded? set EDGEPORT_HOST_FIT=fallback to skip the fit") from exc
        if proc.returncode != 0 or not out.is_file():
            last = [ln for ln in (proc.stderr or "").splitlines() if ln.strip()][-1:] or [f"exit status {proc.returncode}"]
            raise DeviceError(f"timing the host fit set failed: {last[0][:200]}",
                              hint="set EDGEPORT_HOST_FIT=fallback to use the shipped host parameters")
        return json.loads(out.read_text())


def start_params(machine: HostMachine) -> dict[str, float]:
    """Where the fit starts: the shipped fallback carried to this machine, inside the fit's bounds."""
    from edgeport.latency.simulator import DEFAULTS
    from edgeport.profiles import SHIPPED_PROFILES_DIR, load_profile

    # The shipped file by path: EDGEPORT_PROFILES_DIR may point at a fleet's folder without a host profile.
    shipped = load_profile(SHIPPED_PROFILES_DIR / "host.toml")
    base = {**DEFAULTS, **carry_to(shipped.simulator, shipped.hardware.int8_dot, machine), "cpu_eff_depthwise": 1.0}
    base.setdefault("act_bw_gbps", base.get("cache_bw_gbps", base["mem_bw_gbps"]))
    upper = upper_bounds(machine)
    for key in FREE:
        lo, hi = LINEAR.get(key, (1e-3, 0.9 * upper.get(key, 1e6)))
        base[key] = min(max(float(base.get(key, 1.0)), lo), hi)
    return base


def upper_bounds(machine: HostMachine) -> dict[str, float]:
    """UPPER plus this machine's cache: the cache a single core streams weights from at cache speed lies
    between its L2 and the last level (on AMD's L3 a core reads fast, on Intel's mesh L3 barely faster
    than DRAM), so the timings decide, up to the largest cache there is."""
    return {**UPPER, "cache_mb": max(machine.cache_mb, machine.l2_mb, 0.01)}


def carry_to(simulator: Mapping[str, float], int8_dot: str | None, machine: HostMachine) -> dict[str, float]:
    """Parameters fitted on another CPU, scaled to this one's vector width and int8 dot-product class.

    MAC rates scale with fp32 lanes per vector; the int8 rate also with the dot-product gain (VNNI,
    SDOT, ...). The clock, tile and cache are read off this machine. An estimate, and reported as one.
    """
    params = dict(simulator)
    width = machine.simd_lanes / float(simulator.get("cpu_simd_lanes", machine.simd_lanes))
    dot = INT8_DOT_GAIN[machine.int8_dot] / INT8_DOT_GAIN.get(int8_dot or "none", 1.0)
    for key in ("cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8"):
        if key in params:
            params[key] = params[key] * width * (dot if key.endswith("int8") else 1.0)
    params.update(cpu_ghz=machine.cpu_ghz, cpu_channel_tile=machine.simd_lanes, cpu_simd_lanes=machine.simd_lanes,
                  cpu_channel_tile_int8=machine.int8_channel_tile)
    if machine.l2_mb > 0 or machine.cache_mb > 0:
        params["cache_mb"] = machine.l2_mb or machine.cache_mb
    return {k: v for k, v in params.items() if not k.startswith("heldout_")}


# ----------------------------------------------------------------------------------------- resolve


def resolve(profile: DeviceProfile, *, mode: str | None = None, may_fit: bool = True,
            log: Callable[[str], None] | None = None) -> DeviceProfile:
    """`profile` with its [simulator] table and hardware facts taken from this machine's fit.

    Profiles without `host_fit = true` come back unchanged. mode (default $EDGEPORT_HOST_FIT or auto):
    auto fits on first use and caches; cached uses a cached fit or the fallback, never fitting;
    fallback always uses the profile's own table, carried to this CPU. may_fit=False turns auto into
    cached (for commands that only show a profile).
    """
    if not profile.host_fit:
        return profile
    mode = (mode or os.environ.get(MODE_ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise InputError(f"{MODE_ENV}={mode!r} is not a host-fit mode", hint=f"use one of {', '.join(MODES)}")
    if mode == "auto" and not may_fit:
        mode = "cached"
    machine = detect()
    threads = max(1, min(profile.runtime.threads, machine.cores))
    fit, cached, reason = None, False, f"{MODE_ENV}={mode}"
    if mode != "fallback":
        fit = cached_fit(machine, threads)
        cached = fit is not None
        if fit is None and mode == "auto":
            say = log or (lambda _line: None)
            say(f"edgeport: fitting the host latency model to this machine (first use; cached in {cache_root()})")
            fit = fit_host(threads, log=lambda line: say(f"edgeport:   {line}"))
            say(f"edgeport:   done in {fit.seconds:.0f} s; {fit.within():.0%} of the fit-set timings within ±20%"
                + (f"; {BUSY_HINT}" if fit.within() < BUSY_SHARE else ""))
        elif fit is None:
            reason = f"no cached fit for this machine ({MODE_ENV}=cached)"
    hardware = dataclasses.replace(
        profile.hardware, soc=f"this host ({machine.arch}, {machine.simd_lanes:.0f} fp32 lanes, int8 {machine.int8_dot})",
        cpu=f"{machine.cpu_model} ({machine.cores} cores)", cores=machine.cores, memory_mb=machine.memory_mb,
        int8_dot=machine.int8_dot)
    if fit is not None:
        return dataclasses.replace(profile, hardware=hardware, simulator=dict(fit.params), fit=fit.summary(cached))
    carried = carry_to(profile.simulator, profile.hardware.int8_dot, machine)
    info = {"source": "fallback", "reason": reason, "cpu": machine.cpu_model, "isa": list(machine.isa),
            "int8_dot": machine.int8_dot, "threads": threads, "path": str(profile.path),
            "fitted_on": f"{profile.hardware.cpu} (int8 {profile.hardware.int8_dot or 'none'})"}
    return dataclasses.replace(profile, hardware=hardware, simulator=carried, fit=info)
