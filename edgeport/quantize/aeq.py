"""Per-op int8 / a16w8 / float quantization of one float .tflite with Google's AI Edge Quantizer (AEQ).

Why AEQ and not the TFLite converter: the converter calibrates again on every run, so a search that
builds one candidate per converter run pays a full calibration per candidate. AEQ calibrates the float
.tflite once (min/max per tensor name) and turns any per-op recipe into a model in about a second, so
candidates are recipe rewrites of one calibration.

Levels are set per op by its output tensor names: "int8" (int8 activations and weights), "a16w8"
(int16 activations, int8 weights) or "float". AEQ leaves ops it cannot quantize at a level in float,
so every written model is read back and each op's level compared with what was asked (`verify_levels`):
a name that silently matched nothing is an error, not a float layer the report only claims.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import ConversionError, InputError

LEVELS = ("int8", "a16w8", "float")
_ACT_DTYPE = {"int8": "INT8", "a16w8": "INT16", "float": "FLOAT32"}
_LEVEL_OF = {"INT8": "int8", "INT16": "a16w8", "FLOAT32": "float", "FLOAT16": "float"}
_ACT_BITS = {"int8": 8, "a16w8": 16}
_INDEX_TYPES = {"INT32", "INT64", "BOOL"}  # shape/index inputs keep their type at every level
_IO_REGEX = r"^(?s:.*)$"  # a regex key of its own, added last, so no per-op rule overrides float graph I/O


class LevelMismatch(ConversionError):
    """The written model does not have the per-op levels that were asked for."""


@dataclass(frozen=True)
class OpRecord:
    """One op of the float model, as the search and the report see it."""

    index: int
    op: str
    tensor: str  # first output tensor name: the key of `levels`
    scope: str  # AEQ's scope string for the op ("out1;out2;"), matched exactly by the recipe
    outputs: tuple[str, ...]  # every output tensor name (SPLIT has several)
    inputs: tuple[str, ...]  # non-constant input tensor names
    weight_bytes: int
    macs: int
    levels: tuple[str, ...]  # levels AEQ can give this op ("float" always)


@dataclass(frozen=True)
class Calibration:
    """AEQ's per-tensor statistics (min/max by tensor name) of one float model, reusable by any recipe."""

    qsvs: dict[str, Any]
    signature: str
    samples: int
    seconds: float


def _aeq() -> tuple[Any, Any, Any, Any, Any]:
    try:
        from ai_edge_quantizer import algorithm_manager, calibrator, qtyping, quantizer
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils
    except ImportError as exc:  # the `aeq` extra is missing
        raise InputError("--quant mixed needs the AI Edge Quantizer (ai-edge-quantizer==0.10.0)",
                         hint="install edgeport's 'aeq' extra: pip install -c constraints.txt -e '.[aeq]'") from exc
    return quantizer, qtyping, algorithm_manager, calibrator, tfl_flatbuffer_utils


def _static_config(bits: int) -> Any:
    """The op config AEQ's own add_static_config builds: int16 activations symmetric, int8 asymmetric
    (LiteRT kernel limits), weights int8 symmetric per channel."""
    _, qtyping, *_ = _aeq()
    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(num_bits=bits, symmetric=bits == 16),
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True,
                                                              granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)


def quantizable_ops(float_tflite: Path) -> list[OpRecord]:
    """Every op of the model's main subgraph with the levels AEQ supports for it.

    Ops AEQ has no int8 rule for (e.g. RELU_0_TO_1 from a hard-sigmoid) list only "float": AEQ keeps
    them in float with (de)quantize ops around them, whatever the recipe says."""
    from edgeport.tflite.reader import inspect_model

    _, _, algorithm_manager, _, fbu = _aeq()
    info = inspect_model(Path(float_tflite))
    model = fbu.read_model(str(float_tflite))
    sg = model.subgraphs[0]
    configs = {lv: _static_config(bits) for lv, bits in _ACT_BITS.items()}
    records = []
    for op, fb in zip(info["ops"], sg.operators, strict=True):
        key = fbu.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[fb.opcodeIndex].builtinCode)
        levels = []
        for lv, cfg in configs.items():
            if key is None:
                break
            try:
                algorithm_manager.check_op_quantization_config(algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT, key, cfg)
                levels.append(lv)
            except ValueError:
                pass
        records.append(OpRecord(
            index=op["index"], op=op["op"], tensor=op["output_name"], scope=fbu.get_op_scope(fb, sg.tensors),
            outputs=tuple(t["name"] for t in op["outputs"]), inputs=tuple(t["name"] for t in op["inputs"] if not t["const"]), weight_bytes=int(op["weight_bytes"]),
            macs=int(op["macs"]), levels=(*levels, "float")))
    return records


def signature_inputs(float_tflite: Path) -> tuple[str, list[str]]:
    """(signature key, input names). AEQ keys calibration data by signature, so a model without one
    cannot be calibrated: say so here instead of deep inside AEQ."""
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_path=str(float_tflite)).get_signature_list()
    if not sigs:
        raise ConversionError(f"'{float_tflite}' has no SignatureDef; AI Edge Quantizer calibrates by signature",
                              hint="convert with onnx2tf (it writes 'serving_default') or add a signature")
    key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
    return key, list(sigs[key]["inputs"])


def _feed(samples: Mapping[str, np.ndarray], names: list[str]) -> Iterator[dict[str, np.ndarray]]:
    count = len(next(iter(samples.values())))
    for i in range(count):
        yield {n: samples[n][i : i + 1].astype(np.float32) if samples[n].dtype.kind == "f" else samples[n][i : i + 1]
               for n in names}


def calibrate(float_tflite: Path, samples: Mapping[str, np.ndarray], *, threads: int | None = None) -> Calibration:
    """Min/max of every tensor over `samples` ({signature input name: array of N samples, TFLite layout},
    one model call per sample)."""
    key, names = signature_inputs(float_tflite)
    missing = [n for n in names if n not in samples]
    if missing:
        raise InputError(f"calibration data has no array for input(s) {', '.join(missing)}",
                         hint=f"the model's signature '{key}' takes: {', '.join(names)}")
    return calibrate_calls(float_tflite, list(_feed(samples, names)), signature=key, threads=threads)


def calibrate_calls(float_tflite: Path, calls: list[dict[str, np.ndarray]], *, signature: str | None = None,
                    threads: int | None = None) -> Calibration:
    """Min/max of every tensor over `calls` (one {signature input name: array} per model call): the one
    calibration of the project, for the mixed search and for the LiteRT Torch backend's modes.

    Uses AEQ's profiler-based calibrator: it records every tensor regardless of the recipe (so one
    calibration serves int8, a16w8, int16x8 and any mix) and, on a 495-op 480x480 detector here, ran ~6x
    faster than the preserve-all-tensors mode with statistics equal to 1e-6."""
    quantizer, _, _, calibrator, _ = _aeq()
    from ai_edge_quantizer.utils import qsv_utils

    if not calls:
        raise InputError("calibration needs at least one sample", hint="pass calibration data with --calib")
    key = signature or signature_inputs(float_tflite)[0]
    start = time.perf_counter()
    q = quantizer.Quantizer(str(float_tflite))
    q.add_static_config(".*", "*", 8, 8)  # the profiler-based mode ignores the recipe; AEQ wants one
    # True min/max over the samples. Quantizer.calibrate would use AEQ's default moving average
    # (smoothing 0.95), which shrinks ranges towards a typical sample's and clips the rest: on the
    # 2-layer transformer encoder int8 output SNR was 21 dB with it and 41 dB with the TF converter.
    calib = calibrator.Calibrator(str(float_tflite), num_threads=threads or os.cpu_count() or 1,
                                  mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED,
                                  qsv_update_func=qsv_utils.min_max_update)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # AEQ's own progress bar
            manager = _recipe_manager(q.get_quantization_recipe())
            calib.calibrate({key: calls}, manager)
            qsvs = calib.get_model_qsvs()
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"AI Edge Quantizer could not calibrate '{Path(float_tflite).name}': {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
                              hint="check the calibration data's shapes and dtypes against the model's inputs") from exc
    return Calibration(qsvs=dict(qsvs), signature=key, samples=len(calls), seconds=time.perf_counter() - start)


def _recipe_manager(rules: list[dict[str, Any]]) -> Any:
    from ai_edge_quantizer import recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(rules)
    return manager


def effective_levels(ops: list[OpRecord], levels: Mapping[str, str], default: str = "int8") -> dict[str, str]:
    """The level every op must have in the written model: the asked one, else the default when AEQ
    supports it for that op, else float. Raises for a name that is no op or a level the op cannot take."""
    if default not in LEVELS:
        raise InputError(f"unknown default level '{default}'", hint=f"use one of {', '.join(LEVELS)}")
    by_name = {o.tensor: o for o in ops}
    unknown = [n for n in levels if n not in by_name]
    if unknown:
        raise InputError(f"{len(unknown)} level(s) name no op output tensor, e.g. '{unknown[0]}'",
                         hint="key levels by the op's first output tensor name (quantizable_ops(...).tensor)")
    bad = [(n, lv) for n, lv in levels.items() if lv not in by_name[n].levels]
    if bad:
        n, lv = bad[0]
        raise InputError(f"AI Edge Quantizer cannot put {by_name[n].op} '{n}' at {lv} ({len(bad)} such request(s))",
                         hint=f"that op supports {', '.join(by_name[n].levels)}")
    return {o.tensor: levels.get(o.tensor, default if default in o.levels else "float") for o in ops}


def recipe(ops: list[OpRecord], levels: Mapping[str, str], default: str = "int8") -> list[dict[str, Any]]:
    """The AEQ recipe as plain data: the default for every op, then one exact-scope rule per level
    (later rules win), then float graph inputs and outputs (apps feed the same tensors as the float model)."""
    want = effective_levels(ops, levels, default)
    rules: list[dict[str, Any]] = [{"regex": ".*", "operation": "*", "level": default}]
    for lv in LEVELS:
        scopes = [o.scope for o in ops if want[o.tensor] == lv and lv != default]
        if scopes:
            rules.append({"regex": "^(?:" + "|".join(re.escape(s) for s in scopes) + ")$", "operation": "*", "level": lv})
    rules += [{"regex": _IO_REGEX, "operation": io, "level": "float"} for io in ("INPUT", "OUTPUT")]
    return rules


def _quantizer_for(float_tflite: Path, rules: list[dict[str, Any]]) -> Any:
    quantizer, qtyping, algorithm_manager, _, _ = _aeq()
    q = quantizer.Quantizer(str(float_tflite))
    for rule in rules:
        op = qtyping.TFLOperationName(rule["operation"])
        if rule["level"] == "float":
            q.update_quantization_recipe(rule["regex"], op, None, algorithm_manager.AlgorithmName.NO_QUANTIZE)
        else:
            q.update_quantization_recipe(rule["regex"], op, _static_config(_ACT_BITS[rule["level"]]))
    return q


def quantize(float_tflite: Path, calibration: Calibration, levels: Mapping[str, str], default: str = "int8", *,
             out: Path | None = None, ops: list[OpRecord] | None = None) -> Path:
    """Write the model with `levels` ({op output tensor name: "int8" | "a16w8" | "float"}, the rest at
    `default`), read it back, and return its path. Raises LevelMismatch (and leaves no file) when an op's
    level in the written model is not the one asked for. `ops` saves re-reading the float model."""
    ops = ops if ops is not None else quantizable_ops(Path(float_tflite))
    rules = recipe(ops, levels, default)
    want = effective_levels(ops, levels, default)
    try:
        q = _quantizer_for(Path(float_tflite), rules)
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # AEQ's progress bars ignore the flag
            result = q.quantize(calibration.qsvs, enable_progress_bar=False, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:  # AEQ's own errors: a toolchain failure on a valid input
        raise ConversionError(f"AI Edge Quantizer could not quantize '{Path(float_tflite).name}': {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
                              hint="use --quant int8 (TFLite converter) for this model") from exc
    if out is None:
        fd, name = tempfile.mkstemp(prefix="aeq-", suffix=".tflite", dir=Path(float_tflite).parent)
        os.close(fd)
        out = Path(name)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(bytes(result.quantized_model))
    try:
        verify_levels(tmp, want, ops)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if out.exists() and out.stat().st_size == 0:
            out.unlink()  # the placeholder mkstemp made
        raise
    os.replace(tmp, out)  # atomically: a failed or wrong model never appears under `out`
    return out


def read_levels(model: Path, ops: list[OpRecord]) -> dict[str, str | None]:
    """Each float-model op's level in `model`, from tensor types: its output and every non-constant
    activation input must be int8 (int8), int16 (a16w8) or float32 (float); anything else is None."""
    from edgeport.tflite.reader import inspect_model

    info = inspect_model(Path(model))
    by_output: dict[str, dict[str, Any]] = {}
    for op in info["ops"]:
        for t in op["outputs"]:
            by_output[t["name"]] = op
    found: dict[str, str | None] = {}
    for rec in ops:
        op = by_output.get(rec.tensor)
        if op is not None and op["op"] == "DEQUANTIZE" != rec.op and op["inputs"]:
            # a graph output with float I/O in the TF converter's files: the op writes an int8 tensor of
            # another name and a DEQUANTIZE takes the output's name
            op = by_output.get(op["inputs"][0]["name"])
        if op is None or op["op"] != rec.op:
            found[rec.tensor] = None
            continue
        acts = {t["dtype"] for t in op["inputs"] if not t["const"] and t["dtype"] not in _INDEX_TYPES}
        acts.add(op["outputs"][0]["dtype"])
        level = _LEVEL_OF.get(op["outputs"][0]["dtype"])
        # a MAC op's weights: int8 at int8/a16w8, float at float (AEQ would otherwise leave them as they were)
        kernel = op["inputs"][1]["dtype"] if op["macs"] and len(op["inputs"]) > 1 and op["inputs"][1]["const"] else None
        kernel_ok = kernel is None or (kernel == "INT8") == (level in ("int8", "a16w8"))
        same = len({_LEVEL_OF.get(d) for d in acts}) == 1
        found[rec.tensor] = level if same and kernel_ok else None
    return found


def verify_levels(model: Path, want: Mapping[str, str], ops: list[OpRecord]) -> None:
    """The read-back proof: raise LevelMismatch naming the ops whose level differs from `want`."""
    got = read_levels(Path(model), ops)
    wrong = [(name, lv, got.get(name)) for name, lv in want.items() if got.get(name) != lv]
    if wrong:
        name, lv, seen = wrong[0]
        raise LevelMismatch(f"{len(wrong)} op(s) of the AEQ model are not at the level asked for, e.g. '{name}': "
                            f"asked {lv}, written {seen or 'mixed/unknown types'}",
                            hint="this is a bug in the recipe or in AEQ's op support; the model was not written")
