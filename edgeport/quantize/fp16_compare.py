"""The artifact beside an fp16 build of the same float model: size from the file, latency simulated.

Why: `--quant mixed` keeps sensitive ops in float32, with (de)quantize ops around each int8 island.
When most ops stay float, the result can be larger than fp16 (float32 weights) and, with the extra
ops, no faster, and then fp16 is the better answer. The mixed search never sees fp16 (it mixes int8,
a16w8 and float32), so the run compares afterwards and says so; the artifact is never swapped silently.
w8 and w4 get the same comparison (their point is size next to fp16) without a verdict check.

The fp16 model is AI Edge Quantizer's float16 weight-only cast of the backend's float32 .tflite (about a
second, either backend; `quantize/aeq_modes.recipe_for("fp16")`, what `--quant fp16` builds on the
LiteRT Torch path). Through onnx2tf, `--quant fp16` is the TF converter's, which also casts the float
constants of non-weight ops: a few bytes smaller, the same kernels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError
from edgeport.export.backend import Conversion
from edgeport.profiles import DeviceProfile
from edgeport.quantize.search.refine import LATENCY_TIE

COMPARED_MODES = ("mixed", "w8", "w4")
CHECK = "mixed_not_dominated"


# tie: simulated latencies within 2% are equal, as in the mixed searches, and then the smaller model wins
def dominated(size: int, ms: float | None, fp16_size: int, fp16_ms: float | None, tie: float = LATENCY_TIE) -> bool | None:
    """True when fp16 is the better answer on both axes: the model is larger than fp16 and not faster
    than it beyond the simulator's tie. None when either latency is unknown (nothing to judge)."""
    if ms is None or fp16_ms is None:
        return None
    return size > fp16_size and ms > fp16_ms * (1.0 - tie)


@dataclass(frozen=True)
class Fp16Comparison:
    mode: str
    size_bytes: int  # the fp16 build
    simulated_p50_ms: float | None
    artifact_size_bytes: int
    artifact_simulated_p50_ms: float | None
    profile: str
    built_by: str = "ai-edge-quantizer float16 weight-only"

    @property
    def dominated(self) -> bool | None:
        return dominated(self.artifact_size_bytes, self.artifact_simulated_p50_ms, self.size_bytes, self.simulated_p50_ms)

    def recommendation(self) -> str | None:
        """The one line a user acts on when fp16 is better: how much smaller and faster it is."""
        if not self.dominated:
            return None
        assert self.artifact_simulated_p50_ms is not None and self.simulated_p50_ms is not None
        smaller = 100.0 * (1.0 - self.size_bytes / self.artifact_size_bytes)
        faster = 100.0 * (1.0 - self.simulated_p50_ms / self.artifact_simulated_p50_ms)
        speed = f"{faster:.0f}% faster" if faster >= 0.5 else "as fast within the simulator's 2% resolution"
        return f"use --quant fp16: {smaller:.0f}% smaller and {speed} (simulated on {self.profile})"

    def detail(self) -> str:
        ms = "n/a" if self.simulated_p50_ms is None else f"{self.simulated_p50_ms:.4g} ms"
        own = "n/a" if self.artifact_simulated_p50_ms is None else f"{self.artifact_simulated_p50_ms:.4g} ms"
        return (f"fp16 of the same model: {self.size_bytes:,} B, {ms} simulated; --quant {self.mode}: "
                f"{self.artifact_size_bytes:,} B, {own}")

    def to_dict(self) -> dict[str, Any]:
        return {"size_bytes": self.size_bytes, "simulated_p50_ms": self.simulated_p50_ms, "dominated": self.dominated,
                "size_ratio": round(self.artifact_size_bytes / self.size_bytes, 4) if self.size_bytes else None,
                "latency_ratio": (round(self.artifact_simulated_p50_ms / self.simulated_p50_ms, 4)
                                  if self.artifact_simulated_p50_ms and self.simulated_p50_ms else None),
                "profile": self.profile, "built_by": self.built_by, "recommendation": self.recommendation()}


def build_fp16(float_tflite: Path, out: Path) -> Path:
    from edgeport.quantize import aeq_modes

    try:
        out.write_bytes(aeq_modes.quantize(float_tflite, aeq_modes.recipe_for("fp16")))
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ConversionError(f"AI Edge Quantizer could not build the fp16 comparison: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return out


def compare(conv: Conversion, mode: str, artifact: Path, simulated: dict[str, Any] | None, prof: DeviceProfile,
            work: Path, notes: list[str]) -> Fp16Comparison | None:
    """The comparison for mixed/w8/w4 on profiles that can run fp16 (not the Edge TPU); a failure to build
    the fp16 model is a note, never a failed run. Appends the recommendation to `notes` when dominated."""
    from edgeport.latency.simulator import simulate
    from edgeport.tflite.reader import inspect_model

    if mode not in COMPARED_MODES or not prof.allows("fp16") or "fp32" not in conv.files:
        return None
    try:
        fp16 = build_fp16(conv.files["fp32"], work / "fp16_comparison.tflite")
        fp16_ms: float | None = round(float(simulate(inspect_model(fp16), prof).p50_ms), 4)
    except (ConversionError, ValueError, RuntimeError) as exc:
        notes.append(f"no fp16 comparison: {exc}")
        return None
    found = Fp16Comparison(mode=mode, size_bytes=fp16.stat().st_size, simulated_p50_ms=fp16_ms,
                           artifact_size_bytes=artifact.stat().st_size,
                           artifact_simulated_p50_ms=simulated.get("p50_ms") if simulated else None, profile=prof.name)
    if mode == "mixed" and found.dominated:
        notes.append(f"--quant mixed is larger and no faster than fp16 of the same model ({found.detail()}): "
                     f"{found.recommendation()}; the mixed model is still the artifact")
    return found
