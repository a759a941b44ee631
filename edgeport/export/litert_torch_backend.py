"""The LiteRT Torch path as a registered backend: torch.export -> litert-torch -> AI Edge Quantizer.

No ONNX and no TensorFlow: it converts models onnx2tf cannot (GRU int8, where the TF converter
crashes; rank-3 token tensors onnx2tf mis-converts). The work itself is in export/litert_torch.py;
this file states what the path takes and turns its result into a `Conversion`.
"""

from __future__ import annotations

import importlib.util

from edgeport.errors import ConversionError
from edgeport.export.backend import Conversion, ExportRequest, optional_failures, register, required_failure


class LitertTorchBackend:
    name = "litert-torch"

    def refuses(self, kind: str, mode: str) -> str | None:
        if kind == "onnx":
            return "LiteRT Torch converts PyTorch models, not ONNX files"
        if importlib.util.find_spec("litert_torch") is None or importlib.util.find_spec("ai_edge_quantizer") is None:
            return "litert-torch is not installed (scripts/setup_env.sh installs it; or pip install 'edgeport[litert]')"
        return None

    def convert(self, req: ExportRequest) -> Conversion:
        from edgeport.export.litert_torch import convert_litert_torch

        if req.loaded.module is None:
            raise ConversionError("LiteRT Torch needs a PyTorch module", hint="use --exporter onnx2tf for ONNX files")
        result = convert_litert_torch(req.loaded.module, list(req.inputs), req.work, [job.to_dict() for job in req.jobs],
                                      req.calibration)
        key = required_failure(req.jobs, result.errors)
        if key:
            raise ConversionError(f"LiteRT Torch could not build the {key} model: {' '.join(result.errors[key].split())[:600]}",
                                  hint="run with --keep-work to keep the converter log")
        return Conversion(backend=self.name, files=dict(result.files), input_map=result.input_map, notes=tuple(result.notes),
                          log_path=result.log_path, extra={"seconds": result.seconds, "peak_rss_mb": result.peak_rss_mb,
                                 "failed_jobs": optional_failures(req.jobs, result.errors)})


register(LitertTorchBackend())
