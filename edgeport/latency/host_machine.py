"""Facts of the machine edgeport runs on: CPU model, ISA flags, int8 dot-product support, cache, clock.

Why: a host latency fit belongs to the machine it was made on. Two x86-64 machines can differ by 6x in
int8 speed (AVX-512 VNNI against plain AVX2), so the fit is cached under a key made of these facts, and
a profile's `hardware.int8_dot` names the int8 path the simulator assumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeport.profiles import INT8_DOT_CLASSES

# The int8 dot-product classes a profile may declare (hardware.int8_dot), with the peak int8
# multiply-adds per instruction relative to the same ISA family's path without dot products, at the
# same vector width (the width itself is carried by simulator.cpu_simd_lanes):
# - ARM: SMLAL widens 8 int8 products per instruction; SDOT (Armv8.2 dotprod) does 16; SMMLA (i8mm) 32.
# - x86: without VNNI, int8 GEMMs chain VPMADDUBSW + VPMADDWD + VPADDD; VNNI's VPDPBUSD fuses them into
#   one instruction (about 2x), on 256-bit (AVX-VNNI) or 512-bit (AVX-512 VNNI) vectors. AMX tiles do far
#   more per instruction, but XNNPACK's AMX kernels write 64 output channels at a time (see
#   int8_channel_tile); host fits measured about 2x the AVX-512 VNNI int8 rate (388 vs 203 MACs/cycle).
# These are instruction-throughput ratios: realised end-to-end gains are smaller (memory, per-output
# requantization), which is why measured profiles fit cpu_macs_per_cycle_int8 directly and use these
# only to carry an int8 rate from one CPU to another.
INT8_DOT_GAIN: dict[str, float] = {
    "none": 1.0, "dotprod": 2.0, "i8mm": 4.0, "avx-vnni": 2.0, "avx512-vnni": 2.0, "amx": 4.0,
}
assert set(INT8_DOT_GAIN) == set(INT8_DOT_CLASSES), "every profile class needs a gain"
# /proc/cpuinfo flags that decide XNNPACK's kernel choice; the cache key uses only these, so a
# microcode flag appearing does not throw a fit away.
ISA_FLAGS = ("sse4_1", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx_vnni", "avx512_vnni",
             "amx_int8", "amx_tile", "asimd", "asimddp", "i8mm", "sve", "sve2", "bf16", "fphp", "asimdhp")


@dataclass(frozen=True)
class HostMachine:
    cpu_model: str
    arch: str
    isa: tuple[str, ...]
    cores: int
    memory_mb: int
    cpu_ghz: float
    cache_mb: float  # last-level cache
    l2_mb: float = 0.0  # per-core L2: on some CPUs (Intel mesh L3) the only level one core streams fast

    @property
    def int8_dot(self) -> str:
        return int8_dot_class(self.isa)

    @property
    def simd_lanes(self) -> float:
        """fp32 lanes per vector register XNNPACK uses here (its GEMM tiles follow the vector width)."""
        if "avx512f" in self.isa:
            return 16.0
        if "avx2" in self.isa or "avx" in self.isa:
            return 8.0
        return 4.0

    @property
    def int8_channel_tile(self) -> float:
        """Output channels per int8 GEMM tile: XNNPACK's AMX kernels write 64 at once (measured here: an
        int8 3x3 conv with 16, 32, 48 or 64 output channels takes the same time), the others a vector."""
        return 64.0 if self.int8_dot == "amx" else self.simd_lanes

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "isa": list(self.isa), "int8_dot": self.int8_dot, "simd_lanes": self.simd_lanes,
                "int8_channel_tile": self.int8_channel_tile}


def int8_dot_class(isa: tuple[str, ...] | list[str] | set[str]) -> str:
    """The best int8 dot-product path these ISA flags offer (x86 and ARM /proc/cpuinfo names)."""
    flags = set(isa)
    for flag, cls in (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"), ("avx_vnni", "avx-vnni"),
                      ("i8mm", "i8mm"), ("asimddp", "dotprod")):
        if flag in flags:
            return cls
    return "none"


def detect(cpuinfo: str | None = None) -> HostMachine:
    """This machine, read from /proc/cpuinfo, /sys and os; `cpuinfo` text may be given (tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    model = _first(cpuinfo, r"^(?:model name|Hardware|cpu model)\s*:\s*(.+)$") or platform.processor() or "unknown CPU"
    flags_line = _first(cpuinfo, r"^(?:flags|Features)\s*:\s*(.+)$") or ""
    present = set(flags_line.split())
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)]
    return HostMachine(
        cpu_model=" ".join(model.split()),
        arch=platform.machine() or "unknown",
        isa=tuple(f for f in ISA_FLAGS if f in present),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        memory_mb=_memory_mb(),
        cpu_ghz=round(statistics.median(mhz) / 1000.0, 3) if mhz else _max_freq_ghz(),
        cache_mb=_cache_mb(),
        l2_mb=_cache_mb(level=2),
    )


@functools.cache
def runtime_version() -> str:
    """The TFLite interpreter package and version that times models here (part of the fit key)."""
    from importlib import metadata

    for dist in ("ai-edge-litert", "tflite-runtime", "tensorflow"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown runtime"


def fit_key(machine: HostMachine, threads: int, runtime: str, fit_set: str) -> str:
    """Cache key of a host fit: CPU model, ISA flags, thread count, runtime and the fit-set version."""
    ident = {"cpu": machine.cpu_model, "arch": machine.arch, "isa": list(machine.isa), "threads": int(threads),
             "runtime": runtime, "fit_set": fit_set}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _first(text: str, pattern: str) -> str | None:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _memory_mb() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total // 2**20)
    except Exception:  # noqa: BLE001 - psutil missing or restricted: a profile still needs a number
        return 1024


def _max_freq_ghz() -> float:
    # ARM boards often print no "cpu MHz"; cpufreq has the maximum in kHz.
    try:
        return round(int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1e6, 3)
    except (OSError, ValueError):
        return 2.0


def _cache_mb(level: int | None = None) -> float:
    """Size of cpu0's cache at `level` (largest data/unified one), or of the last level when None."""
    sizes = [0.0]
    for folder in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if level is not None and int((folder / "level").read_text()) != level:
                continue
            if (folder / "type").read_text().strip() == "Instruction":
                continue
            m = re.fullmatch(r"(\d+)([KMG]?)", (folder / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if m:
            sizes.append(int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)] / 2**20)
    return max(sizes)
