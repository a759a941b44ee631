"""`--quant w8` and `--quant w4`: weight-only int8 and blockwise int4, written by AI Edge Quantizer (AEQ)
from the float32 .tflite of whichever backend converted. No calibration: activations stay float.

- w8: every weight op AEQ's weight-only policy covers (FULLY_CONNECTED, BATCH_MATMUL with a constant
  operand, CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, EMBEDDING_LOOKUP) gets int8 weights, symmetric per
  output channel, behind an explicit DEQUANTIZE: the op itself computes in float. XNNPACK takes a
  DEQUANTIZE of a constant as a "quasi-static" tensor (dequantized once when the delegate is built), so
  the file is int8 and the kernels are the fp32 ones: fp16's latency at half fp16's size.
- w4: FULLY_CONNECTED ops get int4 weights in blocks of W4_BLOCK input elements with one float16 scale
  each (blockwise, symmetric), read directly by the op (no DEQUANTIZE): XNNPACK's dynamically quantized
  qd8-f32-qb4w kernels take it. AEQ 0.10 has blockwise int4 for FULLY_CONNECTED (and EMBEDDING_LOOKUP)
  only, and only without an explicit DEQUANTIZE; asked for one, it silently writes float weights. Every
  other weight op, and a FULLY_CONNECTED whose input size is no multiple of the block, gets w8's int8.

Why not int4 behind a DEQUANTIZE (float compute, like w8): measured with ai_edge_litert 2.3, XNNPACK does
not take a DEQUANTIZE of int4, so each FULLY_CONNECTED fell back to TFLite's builtin kernels (4x slower
than fp32 on a five-Linear MLP here). TFLite's builtin kernel for blockwise int4 is a reference loop (270x
slower than XNNPACK on the same MLP): w4 is for runtimes with XNNPACK.

Every written model is read back (`read_levels`): an op that AEQ supports at the asked level but wrote
otherwise is an error, never a claim the report cannot back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError

W4_BLOCK = 32  # input elements per int4 scale: the finest AEQ 0.10 offers (32/64/128/256), the most accurate
WEIGHT_MODES = ("w8", "w4")
# Ops with a weight tensor at input 1 that AEQ's weight-only int8 policy covers (default_policy.py:
# "weightonly_wi8_afp32"); TRANSPOSE_CONV is AEQ's CONV_2D_TRANSPOSE.
WEIGHT_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "EMBEDDING_LOOKUP")
LEVELS = ("int4-blockwise", "int8-weight-only", "float")


@dataclass(frozen=True)
class WeightOp:
    index: int
    op: str
    tensor: str  # first output tensor name
    scope: str  # AEQ's scope string for the op, matched exactly by a recipe rule
    weight_shape: tuple[int, ...]
    want: str  # level asked for (one of LEVELS)
    why_float: str = ""  # when want == "float"


@dataclass
class WeightOnlyResult:
    mode: str
    model: Path
    block_size: int | None
    ops: list[dict[str, Any]]  # per weight op: index, op, tensor, level, (reason when float)
    levels: dict[str, int]  # ops per level
    xnnpack: dict[str, Any] | None = None  # delegation as measured by ai_edge_litert (xnnpack_coverage)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": recipe_summary(self.mode), "block_size": self.block_size, "levels": dict(self.levels),
                "ops": list(self.ops), "xnnpack": self.xnnpack}


def recipe_summary(mode: str) -> str:
    if mode == "w8":
        return "AI Edge Quantizer weight-only int8, symmetric per output channel, explicit DEQUANTIZE (float compute)"
    return (f"AI Edge Quantizer int4 blockwise (block {W4_BLOCK}, symmetric, float16 scales) on FULLY_CONNECTED, "
            "float activations; weight-only int8 on the other weight ops")


def _aeq() -> tuple[Any, Any, Any, Any]:
    from edgeport.quantize.aeq import _aeq as load

    quantizer, qtyping, algorithm_manager, _, fbu = load()
    return quantizer, qtyping, algorithm_manager, fbu


def _config(level: str) -> Any:
    _, qtyping, _, _ = _aeq()
    if level == "int4-blockwise":
        weights = qtyping.TensorQuantizationConfig(num_bits=4, symmetric=True,
                                                   granularity=qtyping.QuantGranularity(f"BLOCKWISE_{W4_BLOCK}"))
        return qtyping.OpQuantizationConfig(weight_tensor_config=weights, compute_precision=qtyping.ComputePrecision.INTEGER,
                                            explicit_dequantize=False)
    weights = qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE)
    return qtyping.OpQuantizationConfig(weight_tensor_config=weights, compute_precision=qtyping.ComputePrecision.FLOAT,
                                        explicit_dequantize=True)


def plan(float_tflite: Path, mode: str) -> list[WeightOp]:
    """Each weight op of the float model with the level `mode` asks for it, after AEQ's own policy check."""
    from edgeport.tflite.reader import inspect_model

    if mode not in WEIGHT_MODES:
        raise ValueError(f"not a weight-only mode: {mode!r}")
    _, _, algorithm_manager, fbu = _aeq()
    info = inspect_model(Path(float_tflite))
    model = fbu.read_model(str(float_tflite))
    sg = model.subgraphs[0]
    found = []
    for op, fb in zip(info["ops"], sg.operators, strict=True):
        if op["op"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        weight = op["inputs"][1]
        if not weight["const"] or weight["dtype"] != "FLOAT32":
            continue  # an activation x activation product (attention scores) has no weight to quantize
        key = fbu.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[fb.opcodeIndex].builtinCode)
        want, why = "int8-weight-only", ""
        if mode == "w4" and op["op"] == "FULLY_CONNECTED":
            if weight["shape"] and weight["shape"][-1] % W4_BLOCK == 0:
                want = "int4-blockwise"
            else:
                why = f"input size {weight['shape'][-1] if weight['shape'] else '?'} is no multiple of the int4 block ({W4_BLOCK})"
        if not _supported(algorithm_manager, key, _config(want)):
            want, why = "float", f"AI Edge Quantizer has no weight-only rule for {op['op']}"
        found.append(WeightOp(op["index"], op["op"], op["output_name"], fbu.get_op_scope(fb, sg.tensors),
                              tuple(weight["shape"]), want, why))
    return found


def _supported(algorithm_manager: Any, key: str | None, config: Any) -> bool:
    if key is None:
        return False
    try:
        algorithm_manager.check_op_quantization_config(algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT, key, config)
    except ValueError:
        return False
    return True


def recipe(ops: list[WeightOp]) -> list[tuple[str, str, str]]:
    """(regex, operation, level) rules, later ones winning: int8 weight-only for every op, then the
    int4 FULLY_CONNECTED ops by their exact scopes, then float for ops that must stay float."""
    rules = [(".*", "*", "int8-weight-only")]
    for level in ("int4-blockwise", "float"):
        scopes = [o.scope for o in ops if o.want == level]
        if scopes:
            rules.append(("^(?:" + "|".join(re.escape(s) for s in scopes) + ")$", "*", level))
    return rules


def build(float_tflite: Path, mode: str, out: Path) -> WeightOnlyResult:
    """Write `mode`'s model to `out` and read it back; raises ConversionError when AEQ fails or wrote an
    op at another level than asked (nothing is left under `out` then)."""
    quantizer, qtyping, algorithm_manager, _ = _aeq()
    ops = plan(Path(float_tflite), mode)
    q = quantizer.Quantizer(str(float_tflite))
    for regex, operation, level in recipe(ops):
        name = qtyping.TFLOperationName(operation)
        if level == "float":
            q.update_quantization_recipe(regex, name, None, algorithm_manager.AlgorithmName.NO_QUANTIZE)
        else:
            q.update_quantization_recipe(regex, name, _config(level))
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):  # AEQ's progress bars
            result = q.quantize(None, enable_progress_bar=False, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ConversionError(f"AI Edge Quantizer could not write the {mode} model: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:300] if str(exc) else ''}",
                              hint="use --quant fp16 or dynamic for this model") from exc
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(bytes(result.quantized_model))
    try:
        got = read_levels(tmp)
        wrong = [(o, got.get(o.tensor)) for o in ops if got.get(o.tensor) != o.want]
        if wrong:
            o, seen = wrong[0]
            raise ConversionError(f"{len(wrong)} weight op(s) of the {mode} model are not at the level asked for, e.g. "
                                  f"{o.op} '{o.tensor}': asked {o.want}, written {seen or 'unknown'}",
                                  hint="a bug in the recipe or in AI Edge Quantizer's op support; the model was not written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    rows = [{"index": o.index, "op": o.op, "tensor": o.tensor, "weight_shape": list(o.weight_shape), "level": o.want,
             **({"reason": o.why_float} if o.why_float else {})} for o in ops]
    counts = {lv: sum(1 for o in ops if o.want == lv) for lv in LEVELS}
    result_ = WeightOnlyResult(mode, out, W4_BLOCK if mode == "w4" else None, rows, counts)
    odd = [o for o in ops if o.why_float and o.want != "float"]
    if odd:
        result_.notes.append(f"{mode}: {len(odd)} FULLY_CONNECTED op(s) got int8 instead of int4, e.g. '{odd[0].tensor}': "
                             f"{odd[0].why_float}")
    kept = [o for o in ops if o.want == "float"]
    if kept:
        result_.notes.append(f"{mode}: {len(kept)} weight op(s) stay float: {kept[0].why_float}")
    return result_


def stage(conv: Any, mode: str, *, coverage: bool = False) -> WeightOnlyResult:
    """The mode's file for one conversion (`conv.files[mode]`), built once from its float32 model and kept
    with the result in `conv.extra["weight_only"]`; `coverage` adds XNNPACK's delegation of the file."""
    found = conv.extra.get("weight_only")
    if found is None or found.mode != mode or mode not in conv.files:
        fp32 = conv.files["fp32"]
        found = build(fp32, mode, fp32.with_name(f"{mode}_aeq.tflite"))
        conv.files[mode] = found.model
        conv.extra["weight_only"] = found
    if coverage and found.xnnpack is None:
        found.xnnpack = xnnpack_coverage(found.model)
        _coverage_note(found)
    return found


def _coverage_note(found: WeightOnlyResult) -> None:
    cov = found.xnnpack or {}
    if cov.get("error"):
        found.notes.append(f"{found.mode}: could not read XNNPACK's delegation: {cov['error']}")
        return
    missed = {op: row for op, row in cov.get("by_op", {}).items() if row[0] < row[1] and op in WEIGHT_OPS}
    if missed:
        found.notes.append(f"{found.mode}: XNNPACK did not take {', '.join(f'{row[1] - row[0]} of {row[1]} {op}' for op, row in missed.items())}; "
                           "those run TFLite's builtin kernels" + (" (blockwise int4: a slow reference loop)" if found.mode == "w4" else ""))


def read_levels(model: Path) -> dict[str, str | None]:
    """Each weight op's level in a written model, by its first output tensor name (AEQ keeps the float
    model's tensor names and adds a DEQUANTIZE per int8 weight)."""
    from edgeport.tflite.reader import inspect_model, load_model

    info = inspect_model(Path(model))
    producer = {t["name"]: op for op in info["ops"] for t in op["outputs"]}
    tensors = load_model(Path(model)).subgraphs[0].tensors
    found: dict[str, str | None] = {}
    for op in info["ops"]:
        if op["op"] not in WEIGHT_OPS or len(op["inputs"]) < 2:
            continue
        weight = op["inputs"][1]
        src = producer.get(weight["name"]) if not weight["const"] else None
        level: str | None = None
        if weight["const"] and weight["dtype"] == "INT4":
            q = tensors[weight["index"]].quantization
            block = getattr(getattr(q, "details", None), "blockSize", 0) if q is not None else 0
            level = "int4-blockwise" if block == W4_BLOCK else None
        elif weight["const"] and weight["dtype"] == "FLOAT32":
            level = "float"
        elif src is not None and src["op"] == "DEQUANTIZE" and src["inputs"][0]["const"] and src["inputs"][0]["dtype"] == "INT8":
            level = "int8-weight-only"
        found[op["output_name"]] = level
    return found


def xnnpack_coverage(model: Path, *, timeout_s: float = 300) -> dict[str, Any]:
    """Which ops the XNNPACK delegate took, as ai_edge_litert builds the interpreter: in a child process
    (a delegate that aborts must not take the run down). {"ops", "delegated", "by_op": {op: [delegated,
    total]}, "not_delegated": ["OP#index", ...]} or {"error": ...}."""
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeport.quantize.weight_only", str(model)], capture_output=True,
                              text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the interpreter did not load the model within {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"error": f"the interpreter failed on the model (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def delegated_ops(details: list[dict[str, Any]]) -> set[int]:
    """Indices of the model's own ops that a DELEGATE node replaced, from `Interpreter._get_ops_details()`:
    every op on a path from a delegate node's outputs back to its inputs. (The interpreter lists the
    model's ops first, then one DELEGATE node per partition, with the partition's inputs and outputs.)"""
    own = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): d["index"] for d in own for t in d["outputs"]}
    by_index = {d["index"]: d for d in own}
    taken: set[int] = set()
    for node in (d for d in details if d["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        seen: set[int] = set()
        while todo:
            t = todo.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            i = producer[t]
            taken.add(i)
            todo.extend(int(x) for x in by_index[i]["inputs"] if int(x) >= 0)
    return taken


def _coverage_main(path: str) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=1)
    interp.allocate_tensors()
    details = interp._get_ops_details()  # noqa: SLF001 - the only view of the delegated graph
    taken = delegated_ops(details)
    own = [d for d in details if d["op_name"] != "DELEGATE"]
    by_op: dict[str, list[int]] = {}
    for d in own:
        row = by_op.setdefault(d["op_name"], [0, 0])
        row[0] += d["index"] in taken
        row[1] += 1
    return {"ops": len(own), "delegated": len(taken), "partitions": sum(1 for d in details if d["op_name"] == "DELEGATE"),
            "by_op": by_op, "not_delegated": [f"{d['op_name']}#{d['index']}" for d in own if d["index"] not in taken][:50]}


if __name__ == "__main__":
    print(json.dumps(_coverage_main(sys.argv[1])))
