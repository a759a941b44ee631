"""Frozen records that flow between pipeline stages.

Stages take and return these instead of finding each other's files by name, so the order of the
pipeline lives in one place (pipeline.py) and every stage can be tested alone.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output in the source model's own layout (NCHW for torch vision models)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def describe(self) -> str:
        return f"{self.name}: {'x'.join(str(d) for d in self.shape)} {self.dtype}"


@dataclass(frozen=True)
class Artifact:
    """A file the run wrote, with its checksum so reports can be compared run to run."""

    path: Path
    sha256: str
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class LatencyStats:
    """Raw per-run wall times (ms) plus summaries; parsing happens on the host (principle 3)."""

    samples_ms: tuple[float, ...]
    source: str  # "host", "sim", "adb://SERIAL", "ssh://host"
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_samples(samples_ms: list[float] | tuple[float, ...], source: str, **kw: Any) -> LatencyStats:
        return LatencyStats(tuple(float(s) for s in samples_ms), source, **kw)

    def percentile(self, q: float) -> float | None:
        if not self.samples_ms:
            return None
        return float(np.percentile(np.asarray(self.samples_ms), q))

    @property
    def p50_ms(self) -> float | None:
        return self.percentile(50)

    @property
    def p90_ms(self) -> float | None:
        return self.percentile(90)

    def to_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": _round(self.p50_ms),
            "p90_ms": _round(self.p90_ms),
            "mean_ms": _round(float(np.mean(self.samples_ms))) if self.samples_ms else None,
            "runs": len(self.samples_ms),
            "threads": self.threads,
            "target": self.source,
            **self.extra,
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return value
    return round(value, digits)


def plain(obj: Any) -> Any:
    """Convert dataclasses/paths/numpy scalars into JSON-ready values."""
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if hasattr(obj, "__dataclass_fields__"):
        return plain(asdict(obj))
    return obj


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models and checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
