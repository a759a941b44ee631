"""Quantization stages the pipeline calls for `--quant mixed`: equalize first, then search, then record."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.data import calibration as cal
from edgeport.errors import InputError
from edgeport.export.backend import Conversion
from edgeport.export.onnx_prep import PreparedOnnx
from edgeport.profiles import DeviceProfile
from edgeport.quantize.equalize import equalize
from edgeport.quantize.search import converter
from edgeport.quantize.search.budget import accept_for, budget_for
from edgeport.quantize.search.rows import name_layers


def equalize_stage(prepared: PreparedOnnx, sample: dict[str, np.ndarray], work: Path, notes: list[str]) -> PreparedOnnx:
    """Cross-layer equalization first: a float-equivalent rewrite is free, a float layer is not."""
    sample = {s.name: sample[s.name][:1] for s in prepared.inputs}
    result = equalize(prepared.path, work / "model_equalized.onnx", sample)
    if result.pairs == 0:
        return prepared
    if result.max_output_change > 1e-3:
        notes.append(f"cross-layer equalization skipped: it changed the float outputs by {result.max_output_change:.2e}")
        return prepared
    notes.append(f"cross-layer equalization rescaled {result.pairs} layer pair(s) (largest channel factor "
                 f"{result.max_scale:.1f}, float outputs unchanged within {result.max_output_change:.1e})")
    return replace(prepared, path=result.path)


def mixed_stage(conv: Conversion, prepared: PreparedOnnx, calibration: dict[str, np.ndarray], val: cal.Dataset, references: list[np.ndarray],
           prof: DeviceProfile, work: Path, notes: list[str], *, diagnose_only: bool = False, task: Any = None) -> converter.MixedResult:
    """Search the smallest float set that meets the accuracy budget; the result becomes the artifact.
    With diagnose_only the plain int8 model stays the artifact and only the per-layer table is built."""
    result = converter.run_mixed(
        saved_model=conv.saved_model, input_map=conv.input_map, calibration=calibration,
        val_inputs=val.inputs, references=references, labels=val.labels,
        budget=budget_for(prof.budgets, references, val.labels, task), float_layers=prof.runtime.float_layers,
        io_dtype=prof.runtime.io_dtype, threads=min(prof.runtime.threads, os.cpu_count() or 1), work=work / "mixed",
        int8_model=conv.files.get("int8"), diagnose_only=diagnose_only,
    )
    sample = {k: v[:1] for k, v in val.inputs.items()}
    name_layers(result, conv.files["fp32"], prepared.path, sample, conv.input_map, prepared.original_node_names)
    if diagnose_only:
        notes.append(f"per-layer int8 diagnosis of {len(result.layers)} ops (quantization.layers)")
        notes.extend(result.notes)
        return result
    conv.files["mixed"] = result.model
    notes.append(f"mixed precision: {result.stopped}; {len(result.kept)} op(s) kept in float")
    if result.kept and prof.runtime.float_layers == "tail":
        notes.append("the float ops sit at the graph's tail: on the Edge TPU they split the graph and run on the CPU")
    notes.extend(result.notes)
    return result


MIXED_SEARCHES = ("auto", "aeq", "converter")


def uses_aeq_search(prof: DeviceProfile, choice: str = "auto") -> bool:
    """Which `--quant mixed` search runs. `auto`: the AEQ search (calibrate once; int8, a16w8 or float
    per op) on CPU profiles; Edge TPU profiles keep the TF-converter search: they need uint8 graph I/O,
    which AEQ cannot write, and AEQ leaves some ops float that would cut the TPU's graph early.
    `converter` forces the older search (one converter run per candidate), e.g. to compare the two."""
    if choice == "converter":
        return False
    if choice == "aeq" and prof.runtime.delegate == "edgetpu":
        raise InputError("--mixed-search aeq cannot build Edge TPU models (uint8 I/O, float tail)",
                         hint="use --mixed-search auto for Edge TPU profiles")
    return prof.runtime.delegate != "edgetpu"


def aeq_mixed_stage(conv: Conversion, calibration: dict[str, np.ndarray], val: cal.Dataset, references: list[np.ndarray],
                    prof: DeviceProfile, work: Path, notes: list[str], threads: int, task: Any = None):
    """The AEQ search on the backend's float32 model; the result becomes the artifact."""
    from edgeport.export.layout import tflite_layout
    from edgeport.quantize.search import aeq_search

    calib = tflite_layout(calibration, conv.input_map)
    probe = tflite_layout({k: v[:8] for k, v in val.inputs.items()}, conv.input_map)
    accept = accept_for(val.inputs, conv.input_map, references, val.labels,
                        budget_for(prof.budgets, references, val.labels, task), threads)
    result = aeq_search.calibrate_and_search(conv.files["fp32"], calib, probe, accept, prof, work / "mixed", threads=threads)
    if conv.onnx is not None:
        sample = {k: v[:1] for k, v in val.inputs.items()}
        name_layers(result, conv.files["fp32"], conv.onnx.path, sample, conv.input_map, conv.onnx.original_node_names)
    else:
        notes.append(f"per-op rows name TFLite tensors only: the {conv.backend} path has no ONNX graph to trace names to")
    converter.rebuild_choice(conv, calibration, result, accept, prof, work / "mixed", notes)
    conv.files["mixed"] = result.model
    a16 = f", {len(result.kept_a16w8)} at int16 activations (a16w8)" if result.kept_a16w8 else ""
    notes.append(f"mixed precision (AI Edge Quantizer, calibrated once): {result.stopped}; {len(result.kept)} op(s) "
                 f"kept in float{a16}")
    notes.extend(result.notes)
    return result
