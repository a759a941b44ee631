"""Which ops of an int8 model the XNNPACK delegate will refuse, and why, read from the flatbuffer.

Device runtimes (LiteRT on Android, iOS and Linux) apply XNNPACK by default, so a model that only
runs on the builtin kernels is not a working model. XNNPACK decides in two places: when the graph is
partitioned (op types and static shapes it supports; unsupported ops simply stay on builtin
kernels) and when the delegate's runtime is created. The second one is what int8 models trip on:
XNNPACK creates its quantized CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED / TRANSPOSE_CONV
operators only when the requantization scale input_scale * weight_scale / output_scale is below
256 (per output channel; xnn_status_unsupported_parameter otherwise), and a single such op makes the
whole delegate fail to prepare: "failed to create XNNPACK runtime ... Node number N
(TfLiteXNNPackDelegate) failed to prepare". Such a scale comes from a calibration range blown up by
an extreme value, such as the float32.min pad value onnx2tf gives padded max-pools (see
export/pool_padding.py), so the ops that *cause* it are reported too: tensors whose scale no real
activation range gives (above 1e6 per step) and the ops that write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

XNNPACK_MAX_REQUANT_SCALE = 256.0  # XNNPACK: qs8/qu8 conv, deconv and fully-connected creation
_ABSURD_SCALE = 1e6  # an int8 step of a million: no calibrated activation range gives that
_GEMM_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}  # op -> weight input slot


def scan(path: Path) -> dict[str, Any]:
    """{"rejected": [...], "causes": [...]}: rejected = ops XNNPACK refuses to create; causes = ops
    whose output carries an absurd quantization scale. Each row: index, op, tensor, reason."""
    from edgeport.tflite.reader import _names, _schema, load_model

    schema = _schema()
    model = load_model(path)
    op_names = _names(schema.BuiltinOperator)
    sg = model.subgraphs[0]

    def scales(i: int) -> np.ndarray | None:
        if i < 0:
            return None
        q = sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            return None
        return np.asarray(q.scale, np.float64)

    def name(i: int) -> str:
        raw = sg.tensors[i].name
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    # A tensor read only by a (DE)QUANTIZE is known in the float model by that op's output name
    # (e.g. a graph output: int8 "PartitionedCall:01" -> float "PartitionedCall:0").
    alias: dict[int, str] = {}
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) in ("DEQUANTIZE", "QUANTIZE") and op.inputs is not None:
            alias[int(op.inputs[0])] = name(int(op.outputs[0]))
    rejected, causes = [], []
    for idx, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        outs = [i for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        ins = list(op.inputs if op.inputs is not None else [])
        if not outs:
            continue
        out_scale = scales(outs[0])
        if kind in _GEMM_OPS and len(ins) > 1:
            s_in, s_w = scales(ins[0]), scales(ins[_GEMM_OPS[kind]])
            if s_in is not None and s_w is not None and out_scale is not None and out_scale[0] > 0:
                requant = float(np.max(s_in[0] * s_w / out_scale[0]))
                if requant >= XNNPACK_MAX_REQUANT_SCALE:
                    rejected.append({"index": idx, "op": kind, "tensor": name(outs[0]), "alias": alias.get(outs[0]),
                                     "input_tensor": name(ins[0]),
                                     "requant_scale": float(f"{requant:.4g}"),
                                     "reason": f"requantization scale {requant:.3g} >= {XNNPACK_MAX_REQUANT_SCALE:g} "
                                               f"(input scale {float(s_in[0]):.3g})"})
        if out_scale is not None and kind not in _GEMM_OPS and float(out_scale[0]) > _ABSURD_SCALE:
            row = {"index": idx, "op": kind, "tensor": name(outs[0]), "scale": float(f"{float(out_scale[0]):.4g}"),
                   "reason": f"output scale {float(out_scale[0]):.3g} per int8 step"}
            pad_value = _pad_constant(model, sg, op, kind)
            if pad_value is not None:
                row["pad_value"] = pad_value
                row["reason"] += f"; pad value {pad_value:.3g} entered the calibration range"
            causes.append(row)
    # The ops that wrote an absurd scale first: a chain of same-scale ops shares it.
    first_causes = _chain_heads(causes, sg)
    return {"rejected": rejected, "causes": first_causes}


def _pad_constant(model: Any, sg: Any, op: Any, kind: str) -> float | None:
    if kind != "PADV2" or len(op.inputs) < 3:
        return None
    t = sg.tensors[op.inputs[2]]
    buf = model.buffers[t.buffer].data if t.buffer > 0 else None
    if buf is None or len(buf) == 0 or t.quantization is None or not len(t.quantization.scale):
        return None
    raw = np.frombuffer(bytes(bytearray(buf)), np.int8)[0]
    return float((int(raw) - int(t.quantization.zeroPoint[0])) * float(t.quantization.scale[0]))


def _chain_heads(causes: list[dict[str, Any]], sg: Any) -> list[dict[str, Any]]:
    """PADV2 rows first (the usual origin); all rows are kept so a reader sees the whole chain."""
    return sorted(causes, key=lambda r: (r["op"] != "PADV2", r["index"]))


def is_xnnpack_failure(error: str | None) -> bool:
    return bool(error) and ("XNNPACK" in error or "TfLiteXNNPackDelegate" in error)


def summary(found: dict[str, Any]) -> str:
    parts = []
    for row in found["rejected"][:4]:
        parts.append(f"{row['op']}#{row['index']} {_where(row)}: {row['reason']}")
    for row in found["causes"][:2]:
        parts.append(f"caused by {row['op']}#{row['index']} {_where(row)}: {row['reason']}")
    return "; ".join(parts)


def _where(row: dict[str, Any]) -> str:
    if row.get("pytorch_module"):
        return f"(PyTorch {row['pytorch_module']}, ONNX {row.get('onnx_node')})"
    if row.get("onnx_node"):
        return f"(ONNX {row['onnx_node']})"
    return f"({row['tensor'][:60]})"


def diagnose(model: Path, float_model: Path, onnx_path: Path | None, sample: dict[str, np.ndarray],
             input_map: dict[str, dict[str, Any]], original_names: dict[str, str]) -> dict[str, Any]:
    """scan() plus, for every row, the ONNX node and PyTorch module it came from (matched by values
    on the float TFLite model, as the mixed search does). An op with no ONNX counterpart (the PADV2
    onnx2tf adds for a pool) takes the name of the op that reads its output."""
    from edgeport.export import trace_names

    found = scan(model)
    rows = [*found["rejected"], *found["causes"]]
    try:
        if onnx_path is None:
            raise LookupError("this export path has no ONNX graph to trace names to")
        tfl = trace_names.tflite_intermediates(float_model, sample, input_map)
        onnx_vals = trace_names.onnx_intermediates(onnx_path, sample)
        hits = trace_names.match(tfl, onnx_vals, [n for r in rows for n in (r["tensor"], r.get("alias")) if n])
    except Exception as exc:  # noqa: BLE001 - names are diagnostics; the finding stands without them
        found["trace_error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
        hits = {}
    for row in rows:
        hit = hits.get(row["tensor"]) or hits.get(row.get("alias") or "")
        node = original_names.get(hit["onnx_node"], hit["onnx_node"]) if hit else None
        row["onnx_node"] = node
        row["pytorch_module"] = trace_names.module_path(node) if node else None
    ordered = sorted(found["causes"], key=lambda r: r["index"])
    for i, row in enumerate(ordered):
        later = next((r for r in ordered[i + 1:] if r.get("onnx_node")), None)
        if not row["onnx_node"] and later is not None:
            row.update(onnx_node=later["onnx_node"], pytorch_module=later["pytorch_module"], traced_by="part of")
    return found


def check(found: dict[str, Any]):
    """The verdict's `runs_under_xnnpack`: a model that works only on builtin kernels fails it."""
    from edgeport.validate import verdict

    if found.get("accepted") is None:
        return None  # the model did not run at all: runs_on_validation_data says so
    accepted = bool(found.get("accepted"))
    detail = ""
    if not accepted:
        named = summary(found) if found.get("rejected") or found.get("causes") else ""
        detail = "XNNPACK refused the model" + (f": {named}" if named else f" ({(found.get('error') or '')[:200]})")
    return verdict.must("runs_under_xnnpack", accepted, accepted, detail)


def fallback(run: Any, model: Path, float_model: Path, onnx: Any, inputs: dict[str, np.ndarray],
             input_map: dict[str, dict[str, Any]], references: list[np.ndarray], threads: int, runs: int) -> tuple[Any, dict]:
    """Validation runs as devices run: with XNNPACK. When XNNPACK refuses the model, name the ops it
    refuses (traced to ONNX/PyTorch) and measure on builtin kernels, labelled so, never as a pass.
    Returns the run whose numbers the report shows, and the report's `xnnpack` section."""
    from edgeport.validate.run import run_tflite

    if not is_xnnpack_failure(run.error):
        accepted = None if run.error else run.delegate in ("xnnpack", "default")
        return run, {"accepted": accepted, "delegate": run.delegate}
    sample = {k: v[:1] for k, v in inputs.items()}
    found = diagnose(model, float_model, onnx.path if onnx else None, sample, input_map, onnx.original_node_names if onnx else {})
    builtin = run_tflite(model, inputs, input_map, references, threads=threads, runs=runs, no_default_delegates=True)
    return builtin, {"accepted": False, "delegate": "builtin", "error": run.error, **found}
