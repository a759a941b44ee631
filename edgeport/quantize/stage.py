"""Quantization stages the pipeline calls for `--quant mixed`: equalize first, then search, then record."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.data import calibration as cal
from edgeport.errors import ConversionError, InputError
from edgeport.export.backend import Conversion
from edgeport.export.onnx_prep import PreparedOnnx
from edgeport.profiles import DeviceProfile
from edgeport.quantize import mixed
from edgeport.quantize.equalize import equalize


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
           prof: DeviceProfile, work: Path, notes: list[str], *, diagnose_only: bool = False, task: Any = None) -> mixed.MixedResult:
    """Search the smallest float set that meets the accuracy budget; the result becomes the artifact.
    With diagnose_only the plain int8 model stays the artifact and only the per-layer table is built."""
    result = mixed.run_mixed(
        saved_model=conv.saved_model, input_map=conv.input_map, calibration=calibration,
        val_inputs=val.inputs, references=references, labels=val.labels,
        budget=mixed.budget_for(prof.budgets, references, val.labels, task), float_layers=prof.runtime.float_layers,
        io_dtype=prof.runtime.io_dtype, threads=min(prof.runtime.threads, os.cpu_count() or 1), work=work / "mixed",
        int8_model=conv.files.get("int8"), diagnose_only=diagnose_only,
    )
    sample = {k: v[:1] for k, v in val.inputs.items()}
    mixed.name_layers(result, conv.files["fp32"], prepared.path, sample, conv.input_map, prepared.original_node_names)
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
    from edgeport.quantize import mixed_aeq
    from edgeport.quantize.aeq_accept import accept_for

    calib = tflite_layout(calibration, conv.input_map)
    probe = tflite_layout({k: v[:8] for k, v in val.inputs.items()}, conv.input_map)
    accept = accept_for(val.inputs, conv.input_map, references, val.labels,
                        mixed.budget_for(prof.budgets, references, val.labels, task), threads)
    result = mixed_aeq.calibrate_and_search(conv.files["fp32"], calib, probe, accept, prof, work / "mixed", threads=threads)
    if conv.onnx is not None:
        sample = {k: v[:1] for k, v in val.inputs.items()}
        mixed.name_layers(result, conv.files["fp32"], conv.onnx.path, sample, conv.input_map, conv.onnx.original_node_names)
    else:
        notes.append(f"per-op rows name TFLite tensors only: the {conv.backend} path has no ONNX graph to trace names to")
    converter_rebuild(conv, calibration, result, accept, prof, work / "mixed", notes)
    conv.files["mixed"] = result.model
    a16 = f", {len(result.kept_a16w8)} at int16 activations (a16w8)" if result.kept_a16w8 else ""
    notes.append(f"mixed precision (AI Edge Quantizer, calibrated once): {result.stopped}; {len(result.kept)} op(s) "
                 f"kept in float{a16}")
    notes.extend(result.notes)
    return result


def converter_rebuild(conv: Conversion, calibration: dict[str, np.ndarray], result, accept, prof: DeviceProfile,
                      work: Path, notes: list[str]) -> None:
    """AEQ keeps ops it has no rule for in float (e.g. RELU_0_TO_1 from a hard-sigmoid), with (de)quantize
    ops around each; the TF converter quantizes them. So on the ONNX path the search's choice (the same
    ops float, no a16w8, which the converter cannot mix in) is also built by the converter, and that
    model replaces AEQ's when it meets the budget and is no worse on (simulated latency, bytes): then
    the answer is never worse than the converter-only search's for the same float set. Its levels are
    read back from the file, as AEQ's are."""
    from edgeport.quantize import aeq
    from edgeport.quantize.mixed_aeq import cost, no_worse

    if conv.saved_model is None or result.kept_a16w8 or not result.forced_float:
        return
    started = time.perf_counter()
    out = work / "converter_rebuild.tflite"
    try:
        mixed.build_with_float(saved_model=conv.saved_model, input_map=conv.input_map, calibration=calibration,
                               float_ops=list(result.kept), io_dtype=prof.runtime.io_dtype, out=out)
    except ConversionError as exc:
        notes.append(f"the TF converter could not rebuild the AEQ choice, AEQ's model is kept: {exc}")
        return
    got = aeq.read_levels(out, result.ops)
    # every op must be found in the converter's file, and every op the search put in float must be float there
    unread = [t for t, lv in got.items() if lv is None] + [t for t in result.kept if got.get(t) != "float"]
    mine = dict(zip(("sim_ms", "bytes"), cost(out, prof), strict=True))
    theirs = dict(zip(("sim_ms", "bytes"), cost(result.model, prof), strict=True))
    ok, metric = accept(out) if not unread else (False, None)
    result.timings["converter_rebuild_s"] = round(time.perf_counter() - started, 2)
    result.curve.append({"step": len(result.curve), "phase": "converter", "what": "the chosen float set, built by the TF converter",
                         "levels": {lv: sum(1 for v in got.values() if v == lv) for lv in aeq.LEVELS},
                         "sim_ms": round(mine["sim_ms"], 6), "size_bytes": mine["bytes"], "ok": bool(ok),
                         "metric": metric, "unread_ops": len(unread)})
    better = no_worse(mine, theirs) and (mine["sim_ms"], mine["bytes"]) != (theirs["sim_ms"], theirs["bytes"])
    if not (ok and better):
        why = (f"{len(unread)} op(s) are missing or not float as chosen in its file (e.g. '{unread[0]}')" if unread else
               "it misses the budget" if not ok else
               f"it is not better ({mine['sim_ms']:.4g} ms, {mine['bytes']:,} B vs {theirs['sim_ms']:.4g} ms, {theirs['bytes']:,} B)")
        notes.append(f"the TF converter's build of the same choice was not kept: {why}")
        out.unlink(missing_ok=True)
        return
    quantized = [t for t in result.forced_float if got.get(t) == "int8"]
    for row in result.layers:
        row["level"] = got[row["tensor"]]
        if row["tensor"] in quantized:
            row["reason"] = (f"int8 (TF converter): AI Edge Quantizer has no rule for {row['op']}; the converter's build "
                             "of the same choice met the budget and is no worse")
    result.model, result.levels, result.built_by = out, dict(got), "tf-converter"  # every op read: `unread` is empty
    notes.append(f"the TF converter rebuilt the same choice with {len(quantized)} op(s) AEQ cannot quantize in int8: "
                 f"{mine['sim_ms']:.4g} ms vs {theirs['sim_ms']:.4g} ms simulated, {mine['bytes']:,} B vs {theirs['bytes']:,} B; "
                 "that model is kept")
