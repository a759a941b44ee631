"""The ONNX path: torch.onnx (or the user's ONNX file) -> onnx2tf SavedModel -> TFLite converter.

The default backend. Its extra gift to later stages is the ONNX graph: a TFLite tensor can be traced
to an ONNX node and from there to the PyTorch module, which the divergence check, the per-layer
tables and the mixed search use.
"""

from __future__ import annotations

from pathlib import Path

from edgeport import progress
from edgeport.errors import ConversionError
from edgeport.export import memory
from edgeport.export.backend import Conversion, ExportRequest, optional_failures, register, required_failure
from edgeport.export.checkpoint import LoadedModel
from edgeport.export.onnx_prep import PreparedOnnx, prepare_onnx
from edgeport.export.to_tflite import (
    PSEUDO_OP_REMEDY,
    clean_error,
    needs_flex,
    run_conversion,
    unsupported_tf_ops,
)
from edgeport.export.torch_to_onnx import export_onnx


class Onnx2tfBackend:
    name = "onnx2tf"

    def refuses(self, kind: str, mode: str) -> str | None:
        return None  # takes every input kind and mode; it is the reference path

    def convert(self, req: ExportRequest) -> Conversion:
        notes: list[str] = []
        prepared = req.onnx or self._export(req, notes)
        notes.extend(n for n in prepared.notes if n.startswith("rewrote") and "max-pool" in n)
        if req.rewrite_onnx is not None:
            prepared = req.rewrite_onnx(prepared)
        jobs = [job.to_dict() for job in req.jobs]
        conv = run_conversion(prepared, req.work, req.calibration, jobs)
        if conv.errors and any(needs_flex(e) for e in conv.errors.values()):
            notes.append("plain conversion needed Flex (Select TF) ops; retried with builtin replacements for "
                         f"{', '.join(PSEUDO_OP_REMEDY)}")
            conv = run_conversion(prepared, req.work, req.calibration, jobs, pseudo_ops=PSEUDO_OP_REMEDY)
        notes.extend(conv.notes)
        failed = required_failure(req.jobs, conv.errors)
        if failed:
            raise _job_error(failed, conv.errors[failed])
        return Conversion(backend=self.name, files=dict(conv.files), input_map=conv.input_map, notes=tuple(notes),
                          log_path=conv.log_path, onnx=prepared, saved_model=conv.saved_model,
                          extra={"failed_jobs": optional_failures(req.jobs, conv.errors)})

    @staticmethod
    def _export(req: ExportRequest, notes: list[str]) -> PreparedOnnx:
        raw = req.work / "exported.onnx"
        with progress.stage("export", f"{req.loaded.kind} -> ONNX"):
            export_onnx(req.loaded.module, list(req.inputs), raw, opset=req.opset)
            notes.append(f"exported {req.loaded.kind} to ONNX opset {req.opset}")
            return prepare_onnx(raw, req.work / "model.onnx", {}, rewrite_pools=req.rewrite_pools)


def _job_error(key: str, error: str) -> ConversionError:
    ops = unsupported_tf_ops(error)
    if ops:
        return ConversionError(f"TFLite conversion to {key} failed: TensorFlow ops {', '.join(ops)} have no builtin TFLite kernel "
                               "(they would need Flex/Select TF ops, which Coral, GPU delegates and standard runtimes cannot run)",
                               hint="replace those layers in the model (e.g. nn.GELU(approximate='tanh') for Erf)")
    return ConversionError(f"TFLite conversion to {key} failed: {clean_error(error)}",
                           hint="rerun with --keep-work to keep the full converter log")


def prepare_onnx_input(loaded: LoadedModel, shapes: dict, work: Path, rewrite_pools: bool) -> PreparedOnnx:
    """An ONNX file is normalised before anything else: its graph states the inputs the data must match."""
    prepared = prepare_onnx(loaded.path, work / "model.onnx", shapes, rewrite_pools=rewrite_pools)
    memory.check_fits(memory.estimate_onnx(prepared.path), prepared.inputs)
    return prepared


register(Onnx2tfBackend())
