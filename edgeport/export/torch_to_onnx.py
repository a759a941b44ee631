"""Export a loaded torch model to ONNX at a stated opset with static shapes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError, InputError, cause_line
from edgeport.types import TensorSpec

DEFAULT_OPSET = 17


def example_tensors(specs: list[TensorSpec]) -> tuple[Any, ...]:
    import torch

    gen = torch.Generator().manual_seed(0)
    out = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype, None)
        if dtype is None:
            raise InputError(f"input '{spec.name}' has unsupported dtype '{spec.dtype}'", hint="use float32/int64/int32")
        if dtype.is_floating_point:
            out.append(torch.randn(spec.shape, generator=gen).to(dtype))
        else:
            out.append(torch.zeros(spec.shape, dtype=dtype))
    return tuple(out)


def output_names(count: int) -> list[str]:
    """The names every backend gives the model's outputs, in flattened order."""
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def probe_outputs(module: Any, inputs: list[TensorSpec]) -> list[TensorSpec]:
    """Run the model once on seeded inputs: it must work at these shapes, and its outputs name the
    tensors the data's labels and the validation compare against."""
    import torch

    try:
        with torch.no_grad():
            sample = flatten_outputs(module(*example_tensors(inputs)))
    except Exception as exc:
        shapes = ", ".join(s.describe() for s in inputs)
        raise InputError(
            f"the model failed on inputs {shapes}: {cause_line(exc)}",
            hint="pass the model's real input shape(s) with --input-shape [NAME=]1x3x224x224",
        ) from exc
    return [TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for name, t in zip(output_names(len(sample)), sample, strict=True)]


def export_onnx(module: Any, inputs: list[TensorSpec], path: Path, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write `path`; returns the output names. The TorchScript-based exporter is used on purpose:
    its node names carry the PyTorch module path (/features/features.3/conv/Conv), which per-layer
    diagnostics map back to `features.3.conv`."""
    import torch

    args = example_tensors(inputs)
    n_out = len(probe_outputs(module, inputs))
    if getattr(module, "trace_before_export", False):
        with torch.no_grad():
            module = torch.jit.trace(module, args, check_trace=False)
    names = output_names(n_out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module, args, str(path), opset_version=opset, dynamo=False,
                input_names=[s.name for s in inputs], output_names=names, do_constant_folding=True,
            )
    except Exception as exc:
        raise ConversionError(f"torch.onnx.export failed at opset {opset}: {cause_line(exc)}",
                              hint="try --opset 13..18 or rewrite the unsupported op in the model") from exc
    return names


def flatten_outputs(obj: Any) -> list[Any]:
    """Model outputs (tensors in nested tuples/lists/dicts) in a flat list, in ONNX output order."""
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in flatten_outputs(item)]
    if isinstance(obj, dict):
        return [x for item in obj.values() for x in flatten_outputs(item)]
    return [obj]

