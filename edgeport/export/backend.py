"""The converter interface: what every export backend takes and gives back.

A backend turns the loaded model into TFLite files, one per requested mode, plus a map from each
TFLite signature input to the source model's input (name, layout permutation, shape). Everything after
conversion (validation, timing, the verdict) reads only this record, so a backend is one file under
`export/` that calls `register()`; `export/select.py` picks among them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from edgeport.export.checkpoint import LoadedModel
    from edgeport.export.onnx_prep import PreparedOnnx
    from edgeport.types import TensorSpec


@dataclass(frozen=True)
class Job:
    """One TFLite file to write: `key` names it in `Conversion.files` (e.g. "fp32", "int8")."""

    key: str
    mode: str
    io_dtype: str = "float32"
    # An optional job's failure does not fail the conversion: --quant auto builds every allowed mode
    # and a mode the converter refuses (int16x8 of a fused LSTM) is just a candidate that was not built.
    optional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "mode": self.mode, "io_dtype": self.io_dtype}


@dataclass(frozen=True)
class ExportRequest:
    """What a backend gets: the model, its static input shapes (source layout) and, for calibrated
    modes, the calibration arrays keyed by input name (source layout, batch first)."""

    loaded: LoadedModel
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    jobs: tuple[Job, ...]
    calibration: dict[str, np.ndarray] | None
    work: Path
    opset: int
    onnx: PreparedOnnx | None = None  # an ONNX input, already normalised by model_io
    # A float-equivalent rewrite of the ONNX graph before conversion (--quant mixed: cross-layer
    # equalization); given by the caller so that export/ never depends on quantize/.
    rewrite_onnx: Callable[[PreparedOnnx], PreparedOnnx] | None = None
    rewrite_pools: bool = True  # export/pool_padding.py; off only to study the unrewritten model


@dataclass(frozen=True)
class Conversion:
    """What a backend gives back; `input_map` is backend-neutral:
    {signature input: {"source": source input name, "perm": source->TFLite axes or None, "shape": [...]}}."""

    backend: str
    files: dict[str, Path]
    input_map: dict[str, dict[str, Any]]
    notes: tuple[str, ...] = ()
    log_path: Path | None = None
    # ONNX-path details that let later stages trace a TFLite tensor to an ONNX node and a PyTorch
    # module (divergence, per-layer tables, the mixed search); None on paths without ONNX.
    onnx: PreparedOnnx | None = None
    saved_model: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def required_failure(jobs: tuple[Job, ...], errors: dict[str, str]) -> str | None:
    """The first required job that failed (checked from the last, as the file a user asked for is last)."""
    return next((job.key for job in reversed(jobs) if job.key in errors and not job.optional), None)


def optional_failures(jobs: tuple[Job, ...], errors: dict[str, str]) -> dict[str, str]:
    """{key: one-line error} of the optional jobs that failed (Conversion.extra["failed_jobs"])."""
    return {job.key: " ".join(errors[job.key].split())[:300] for job in jobs if job.optional and job.key in errors}


class Backend(Protocol):
    name: str

    def refuses(self, kind: str, mode: str) -> str | None:
        """Why this backend cannot take this kind of model (LoadedModel.kind) or mode at all (None: it can try)."""

    def convert(self, req: ExportRequest) -> Conversion:
        """Write every job's file or raise ConversionError/InputError naming what failed."""


BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    BACKENDS[backend.name] = backend
    return backend
