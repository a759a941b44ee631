"""Edge TPU compatibility: which ops of a .tflite the Edge TPU would run, checked statically or by the compiler.

Why static: most users have no `edgetpu_compiler` (x86-64 Debian only), yet they need to know before
buying a Coral whether their model maps. The rules below restate Coral's "TensorFlow models on the
Edge TPU" page (https://coral.ai/docs/edgetpu/models-intro/#supported-operations, runtime 14 / compiler
16 table): 8-bit tensors only, static sizes, at most 3 non-unit innermost dimensions, parameters constant
at compile time, the supported-operations table with its per-op limits, and "the compiler cannot
partition the model more than once, so as soon as an unsupported operation occurs, that operation and
everything after it executes on the CPU". When the compiler is on PATH its own verdict replaces ours.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError

INT8_TYPES = ("INT8", "UINT8")
# Integer side tensors the Edge TPU accepts next to 8-bit data: int32 biases and shape/axis constants.
_ALLOWED_CONST_TYPES = ("INT8", "UINT8", "INT32", "INT64")
SRAM_MB_DEFAULT = 8.0  # "roughly 8 MB of SRAM" for parameters — https://coral.ai/docs/edgetpu/compiler/#parameter-data-caching
_MIB = 1024 * 1024
_FUSED_NONE = 0  # ActivationFunctionType.NONE in the TFLite schema


@dataclass(frozen=True)
class EdgeTpuReport:
    """Where each op runs. Counts are ops; `tpu_ops` are graph indices (empty if only counts are known)."""

    ops_on_tpu: int
    ops_on_cpu: int
    share_on_tpu: float
    first_unsupported: dict[str, Any] | None  # {index, op, reason}; index None when only the compiler log knows
    param_bytes: int  # parameter bytes of the ops mapped to the Edge TPU
    fits_sram: bool
    reasons: tuple[str, ...]
    tpu_ops: tuple[int, ...] = ()
    source: str = "static"  # "static" or "edgetpu_compiler"
    compiled_model: str | None = None
    compiler_version: str | None = None
    off_chip_param_bytes: int | None = None  # compiler: parameters streamed on every inference
    op_status: tuple[dict[str, Any], ...] = field(default_factory=tuple)  # compiler table rows

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tpu_ops"] = list(self.tpu_ops)
        data["reasons"] = list(self.reasons)
        data["op_status"] = [dict(r) for r in self.op_status]
        return data


# ------------------------------------------------------------------------------------ static check


def _nonunit_outer(shape: list[int]) -> bool:
    """True if a dimension outside the 3 innermost is > 1 (Coral: tensors are 1-, 2- or 3-D)."""
    return any(d > 1 for d in shape[:-3])


def _single_axis(op: dict[str, Any]) -> int | None:
    const = [t for t in op["inputs"] if t["const"] and "data" in t]
    return const[0]["data"][0] if const and const[0]["data"] else None


def _no_fused(op: dict[str, Any]) -> str | None:
    act = op.get("options", {}).get("fusedActivationFunction", _FUSED_NONE)
    return None if act == _FUSED_NONE else "fused activation function is not supported on this op"


def _same_dilation(op: dict[str, Any]) -> str | None:
    o = op.get("options", {})
    if o.get("dilationWFactor", 1) != o.get("dilationHFactor", 1):
        return "dilation must be the same in x and y"
    return None if op["inputs"][1:2] and op["inputs"][1]["const"] else "weights must be constant at compile time"


def _fully_connected(op: dict[str, Any]) -> str | None:
    if op.get("options", {}).get("weightsFormat", 0) != 0:
        return "only the default fully-connected weights format is supported"
    if len(op["inputs"]) < 2 or not op["inputs"][1]["const"]:
        return "weights must be constant at compile time"
    if op["outputs"] and sum(d > 1 for d in op["outputs"][0]["shape"]) > 1:
        return "output tensor must be one-dimensional"
    return None


def _reduce(op: dict[str, Any]) -> str | None:
    axes = next((t.get("data") for t in op["inputs"][1:] if t["const"]), None)
    rank = len(op["inputs"][0]["shape"])
    if axes is None:
        return "reduction axes must be constant"
    return "cannot reduce over the batch dimension" if any(a % max(rank, 1) == 0 for a in axes) else None


def _pad(op: dict[str, Any]) -> str | None:
    pads = next((t.get("data") for t in op["inputs"][1:] if t["const"]), None)
    if pads is None:
        return "paddings must be constant"
    return "no padding in the batch dimension" if pads[:2] != [0, 0] else None


def _axis_not_batch(what: str) -> Callable[[dict[str, Any]], str | None]:
    def check(op: dict[str, Any]) -> str | None:
        axis = op.get("options", {}).get("axis")
        if axis is None:
            axis = _single_axis(op)
        return f"no {what} in the batch dimension" if axis == 0 else None
    return check


def _softmax(op: dict[str, Any]) -> str | None:
    shape = op["inputs"][0]["shape"]
    n = 1
    for d in shape:
        n *= d
    if sum(d > 1 for d in shape) > 1:
        return "softmax input must be a 1-D tensor"
    return "softmax input is limited to 16,000 elements" if n > 16000 else None


def _strided_slice(op: dict[str, Any]) -> str | None:
    o = op.get("options", {})
    strides = next((t.get("data") for t in op["inputs"][3:4] if t["const"]), None)
    if strides is None or any(s != 1 for s in strides):
        return "strided slice needs all strides equal to 1"
    if o.get("ellipsisMask", 0) or o.get("newAxisMask", 0):
        return "strided slice needs ellipsis_mask == 0 and new_axis_mask == 0"
    return None


def _prelu(op: dict[str, Any]) -> str | None:
    alpha = op["inputs"][1] if len(op["inputs"]) > 1 else None
    if alpha is None or not alpha["const"]:
        return "PReLU alpha must be constant"
    return "PReLU alpha must be 1-dimensional" if sum(d > 1 for d in alpha["shape"]) > 1 else None


def _ok(op: dict[str, Any]) -> str | None:
    return None


# Coral's supported-operations table (runtime 14+), TFLite builtin names -> limit check.
SUPPORTED_OPS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "ADD": _ok, "SUB": _ok, "MUL": _ok, "MAXIMUM": _ok, "MINIMUM": _ok, "SQUARED_DIFFERENCE": _ok,
    "LOGISTIC": _ok, "TANH": _ok, "RELU": _ok, "RELU6": _ok, "RELU_N1_TO_1": _ok, "RSQRT": _ok,
    "L2_NORMALIZATION": _ok, "RESHAPE": _ok, "SQUEEZE": _ok, "EXPAND_DIMS": _ok, "SLICE": _ok,
    "SPACE_TO_DEPTH": _ok, "TRANSPOSE": _ok, "QUANTIZE": _ok, "UNIDIRECTIONAL_SEQUENCE_LSTM": _ok,
    "LSTM": _ok, "RESIZE_BILINEAR": _ok, "RESIZE_NEAREST_NEIGHBOR": _ok,
    "AVERAGE_POOL_2D": _no_fused, "MAX_POOL_2D": _no_fused, "CONCATENATION": _no_fused,
    "CONV_2D": _same_dilation, "DEPTHWISE_CONV_2D": _same_dilation, "TRANSPOSE_CONV": _ok,
    "FULLY_CONNECTED": _fully_connected, "MEAN": _reduce, "SUM": _reduce, "REDUCE_MAX": _reduce,
    "REDUCE_MIN": _reduce, "PAD": _pad, "PACK": _axis_not_batch("packing"), "SPLIT": _axis_not_batch("splitting"),
    "SOFTMAX": _softmax, "STRIDED_SLICE": _strided_slice, "PRELU": _prelu,
}
EDGETPU_CUSTOM_OP = "CUSTOM:edgetpu-custom-op"  # an already compiled segment runs on the Edge TPU


def op_problem(op: dict[str, Any]) -> str | None:
    """Why this op cannot run on the Edge TPU, or None if it can."""
    name = op["op"]
    if name == EDGETPU_CUSTOM_OP:
        return None
    for t in op["inputs"] + op["outputs"]:
        # A -1 batch dimension alone is how TF2/Keras converters write every model, and Coral's own TF2
        # retraining notebook compiles such files at batch 1; any other -1 is a truly dynamic size.
        if any(d < 0 for d in t.get("shape_signature", t["shape"])[1:]):
            return f"tensor '{t['name']}' has a dynamic shape {t.get('shape_signature')}; the compiler needs static sizes"
        if t["const"]:
            if t["dtype"] not in _ALLOWED_CONST_TYPES:
                return f"constant '{t['name']}' is {t['dtype']}; the Edge TPU needs 8-bit parameters"
            continue
        if t["dtype"] not in INT8_TYPES:
            return f"tensor '{t['name']}' is {t['dtype']}; the Edge TPU runs 8-bit (int8/uint8) tensors only"
        if _nonunit_outer(t["shape"]):
            return f"tensor '{t['name']}' has shape {t['shape']}; only the 3 innermost dimensions may exceed 1"
    check = SUPPORTED_OPS.get(name)
    if check is None:
        return f"{name} is not in the Edge TPU supported-operations table"
    return check(op)


def check_edgetpu(model_info: dict[str, Any], *, sram_mb: float = SRAM_MB_DEFAULT) -> EdgeTpuReport:
    """Static compatibility report from `inspect_model(...)` data (no compiler needed)."""
    ops = model_info["ops"]
    reasons: list[str] = []
    cpu_edge: set[int] = set()
    # Float I/O: the QUANTIZE that turns a float input into int8 (and the DEQUANTIZE at the tail) stay on
    # the CPU without splitting the graph, as compiled models with float I/O show; everything else is strict.
    for op in ops:
        if op["op"] == "QUANTIZE" and op["inputs"] and op["inputs"][0]["dtype"] not in INT8_TYPES and op["index"] == len(cpu_edge):
            cpu_edge.add(op["index"])
    if cpu_edge:
        reasons.append("float input: the QUANTIZE at the graph input runs on the CPU (use int8/uint8 model I/O)")
    first: dict[str, Any] | None = None
    tpu: list[int] = []
    for op in ops:
        if op["index"] in cpu_edge:
            continue
        problem = op_problem(op)
        if problem is not None:
            first = {"index": op["index"], "op": op["op"], "reason": problem}
            break
        tpu.append(op["index"])
    if first is not None:
        after = len(ops) - first["index"] - 1
        tail_only = all(o["op"] == "DEQUANTIZE" for o in ops[first["index"]:])
        if tail_only:
            reasons.append("float output: the DEQUANTIZE at the graph output runs on the CPU")
        else:
            reasons.append(f"op {first['index']} ({first['op']}): {first['reason']}; it and the {after} ops after it run on the CPU")
    param_bytes = int(sum(ops[i]["weight_bytes"] for i in tpu))
    fits = param_bytes <= sram_mb * _MIB
    if not fits:
        reasons.append(f"parameters of the Edge TPU ops take {param_bytes / _MIB:.2f} MiB, more than the "
                       f"{sram_mb:g} MiB on-chip cache: the rest is streamed from host memory on every inference")
    n = len(ops)
    return EdgeTpuReport(
        ops_on_tpu=len(tpu), ops_on_cpu=n - len(tpu), share_on_tpu=(len(tpu) / n) if n else 0.0,
        first_unsupported=first, param_bytes=param_bytes, fits_sram=fits, reasons=tuple(reasons), tpu_ops=tuple(tpu),
    )


# -------------------------------------------------------------------------------- compiler run/parse

_SIZE = re.compile(r"([\d.]+)\s*(B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": _MIB, "GiB": 1024 * _MIB}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*(?::\S+)?)\s+(\d+)\s+(\S.*?)\s*$")
_MAPPED = "Mapped to Edge TPU"


def _size(text: str | None) -> int | None:
    m = _SIZE.search(text or "")
    return int(float(m.group(1)) * _UNITS[m.group(2)]) if m else None


def _field(text: str, label: str) -> str | None:
    m = re.search(rf"^{re.escape(label)}:?\s*(.+?)\s*$", text, re.MULTILINE)
    return m.group(1) if m else None


def parse_compiler_output(output: str, log: str | None = None, model_info: dict[str, Any] | None = None,
                          *, sram_mb: float = SRAM_MB_DEFAULT) -> EdgeTpuReport:
    """Turn edgetpu_compiler's console output (and its .log file) into an EdgeTpuReport.

    The format is the one in Coral's compiler docs (https://coral.ai/docs/edgetpu/compiler/) and in
    real logs quoted in google-coral/edgetpu issues; see tests/fixtures/edgetpu/SOURCES.md.
    """
    text = output + "\n" + (log or "")
    if "Model compiled successfully" not in output:
        # The most specific line first: "Compilation failed: <why>", then "Invalid model", then any ERROR.
        for pattern in (r"^Compilation failed:\s*(.+)$", r"^(Invalid model.*)$", r"^ERROR:\s*(.+)$"):
            m = re.search(pattern, output, re.MULTILINE)
            if m:
                raise ConversionError(f"edgetpu_compiler failed: {m.group(1).strip()}")
        raise ConversionError("edgetpu_compiler failed: no 'Model compiled successfully' line in its output")
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int, str]] = set()
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m and m.group(1) != "Operator":
            row = (m.group(1), int(m.group(2)), m.group(3))
            if row not in seen:  # the console (-s) and the .log carry the same table
                seen.add(row)
                rows.append({"op": row[0], "count": row[1], "status": row[2]})
    total = int(_field(text, "Total number of operations") or sum(r["count"] for r in rows))
    on_tpu_text = _field(text, "Number of operations that will run on Edge TPU")
    on_tpu = int(on_tpu_text) if on_tpu_text else sum(r["count"] for r in rows if r["status"] == _MAPPED) if rows else total
    used = _size(_field(text, "On-chip memory used for caching model parameters")) or 0
    off = _size(_field(text, "Off-chip memory used for streaming uncached model parameters")) or 0
    unmapped = [r for r in rows if r["status"] != _MAPPED]
    reasons = [f"{r['count']} x {r['op']}: {r['status']}" for r in unmapped]
    if off:
        reasons.append(f"{off / _MIB:.2f} MiB of parameters do not fit on chip and are streamed on every inference")
    tpu_ops, first = _locate(rows, model_info)
    if first is None and unmapped:
        # Only counts are known: the first op type the compiler left on the CPU for its own reason.
        own = [r for r in unmapped if "More than one subgraph" not in r["status"]] or unmapped
        first = {"index": None, "op": own[0]["op"], "reason": own[0]["status"]}
    return EdgeTpuReport(
        ops_on_tpu=on_tpu, ops_on_cpu=total - on_tpu, share_on_tpu=on_tpu / total if total else 0.0,
        first_unsupported=first, param_bytes=used + off, fits_sram=off == 0 and used <= sram_mb * _MIB,
        reasons=tuple(reasons), tpu_ops=tuple(tpu_ops), source="edgetpu_compiler",
        compiled_model=_field(text, "Output model"), compiler_version=_field(text, "Edge TPU Compiler version"),
        off_chip_param_bytes=off, op_status=tuple(rows),
    )


def _locate(rows: list[dict[str, Any]], model_info: dict[str, Any] | None) -> tuple[list[int], dict[str, Any] | None]:
    """Map the compiler's per-type counts onto graph indices: the first k ops of a type marked mapped.

    Exact when the mapped ops form the prefix before the first unsupported op, which is what a single
    Edge TPU subgraph means.
    """
    if model_info is None or not rows:
        return [], None
    mapped = {r["op"]: r["count"] for r in rows if r["status"] == _MAPPED}
    status = {r["op"]: r["status"] for r in rows if r["status"] != _MAPPED}
    tpu: list[int] = []
    first = None
    for op in model_info["ops"]:
        if mapped.get(op["op"], 0) > 0:
            mapped[op["op"]] -= 1
            tpu.append(op["index"])
        elif first is None:
            first = {"index": op["index"], "op": op["op"], "reason": status.get(op["op"], "not mapped by the compiler")}
    return tpu, first


def compile_edgetpu(model: Path, out_dir: Path, *, model_info: dict[str, Any] | None = None,
                    compiler: str = "edgetpu_compiler", timeout_s: float = 300.0,
                    sram_mb: float = SRAM_MB_DEFAULT) -> EdgeTpuReport | None:
    """Run edgetpu_compiler if it is installed (writes `<stem>_edgetpu.tflite` in out_dir); else None."""
    exe = shutil.which(compiler)
    if exe is None:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([exe, "-s", "-o", str(out_dir), str(model)], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"edgetpu_compiler did not finish within {timeout_s:.0f} s") from exc
    log_path = out_dir / f"{Path(model).stem}_edgetpu.log"
    log = log_path.read_text(errors="replace") if log_path.is_file() else None
    report = parse_compiler_output(proc.stdout + "\n" + proc.stderr, log, model_info, sram_mb=sram_mb)
    if proc.returncode != 0:
        raise ConversionError(f"edgetpu_compiler exited with status {proc.returncode}")
    compiled = out_dir / f"{Path(model).stem}_edgetpu.tflite"
    return replace(report, compiled_model=str(compiled) if compiled.is_file() else report.compiled_model)


def edgetpu_report(model: Path, model_info: dict[str, Any], *, out_dir: Path | None = None,
                   sram_mb: float = SRAM_MB_DEFAULT) -> EdgeTpuReport:
    """The compiler's verdict when it is installed and out_dir is given, else the static check."""
    if out_dir is not None:
        compiled = compile_edgetpu(model, out_dir, model_info=model_info, sram_mb=sram_mb)
        if compiled is not None:
            return compiled
    return check_edgetpu(model_info, sram_mb=sram_mb)
