"""Report rows of both searches (report.json `quantization.layers`): per op, its level and the evidence.

converter_row starts a converter-search row from the debugger's local statistics (the worker adds the
measured effect of keeping its unit float); name_layers adds the ONNX node and PyTorch module names to
either search's rows; verify_kept_float reads the written file back.

An AEQ-search row (layers) says which level the op has in the written model and the evidence behind
it: the proxy harm (output noise-to-signal on the probe samples with only that group int8 and the rest
float) of the candidate that set its level, else of the smallest measured group around it; the unit's
gain at a16w8 when it was measured; the task-metric gain measured by leaving the unit out of the final
choice; and the unit's simulated latency and byte cost against all-int8 (summed over its ops).
Rows keep the `tensor`/`unit` keys that name_layers reads to add the ONNX node and PyTorch module names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.export import trace_names
from edgeport.quantize.aeq import OpRecord


def converter_row(tensor: str, op: str | None, unit: list[str], stats: Mapping[str, float] | None) -> dict[str, Any]:
    """A converter-search row; stats: the TF quantization debugger's local error for this op, if any."""
    row: dict[str, Any] = {"tensor": tensor, "op": op, "unit": unit, "rmse_over_scale": None, "max_abs_error": None}
    if stats is not None:
        scale = float(stats.get("scale", 0.0)) or 1.0
        row["rmse_over_scale"] = round(float(np.sqrt(stats.get("mean_squared_error", 0.0))) / scale, 5)
        row["max_abs_error"] = float(stats.get("max_abs_error", 0.0))
    return row


def layers(ops: Sequence[OpRecord], levels: Mapping[str, str], owner: Mapping[str, Any], cands: Sequence[Any],
           metric_gain: Mapping[str, Any], int8: Mapping[str, Any], unit_of: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """owner: op tensor -> the candidate that set its searched level (aeq_search.owners)."""
    base_ms, base_bytes = int8.get("sim_ms"), int8.get("bytes")
    rows = []
    for op in ops:
        measured = [c for c in cands if c.node is not None and op.tensor in c.node.ops and c.gain is not None]
        # the evidence for an op: the candidate that set its level, else the smallest float group around it
        c = owner.get(op.tensor) or min((c for c in measured if c.level == "float"), key=lambda c: len(c.node.ops), default=None)
        own_16 = next((m for m in measured if m.level == "a16w8" and len(m.node.units) == 1 and m.node.units[0].key == op.tensor), None)
        row: dict[str, Any] = {
            "tensor": op.tensor, "index": op.index, "op": op.op, "level": levels[op.tensor], "supported": list(op.levels),
            "unit": unit_of.get(op.tensor, [op.tensor]), "weight_bytes": op.weight_bytes, "macs": op.macs,
            "evidence": c.label if c else None, "evidence_level": c.level if c else None,
            "evidence_ops": len(c.levels) if c else None, "proxy_gain": _r(c.gain) if c else None,
            "proxy_gain_a16w8": _r(own_16.gain) if own_16 else None,
            "metric_gain": _r(metric_gain[op.tensor]) if isinstance(metric_gain.get(op.tensor), int | float) else None,
            "kept_not_needed": metric_gain.get(op.tensor) if isinstance(metric_gain.get(op.tensor), dict) else None,
            "latency_cost_ms": _r(c.ms - base_ms) if c and c.ms is not None and base_ms is not None else None,
            "bytes_cost": c.bytes - base_bytes if c and c.bytes is not None and base_bytes is not None else None,
        }
        row["reason"] = _reason(op, row, op.tensor in owner)
        rows.append(row)
    return rows


def _reason(op: OpRecord, row: dict[str, Any], searched: bool) -> str:
    if op.levels == ("float",):
        return f"float: AI Edge Quantizer has no quantized kernel rule for {op.op}"
    if row["evidence"] and "faster in float on this profile" in row["evidence"]:  # aeq_search.SPEED_LABEL
        return (f"float for speed: {row['evidence']}; the model with these ops float meets the budget"
                + (f", {row['bytes_cost']:+,} bytes against all-int8" if row["bytes_cost"] is not None else ""))
    what = f"{row['evidence_ops']} op(s) incl. this one" if row["evidence"] else ""
    harm = row["proxy_gain"]
    if not searched:
        return "int8 (default)" + (f"; alone in int8 (the rest float), {what} add {harm:.3g} to the output NSR"
                                   if harm is not None else "")
    parts = [f"{row['level']} (searched, with {what})"]
    if row["metric_gain"] is not None:
        parts.append(f"without them the task metric drops by {row['metric_gain']:.4g}")
    elif row["kept_not_needed"]:
        k = row["kept_not_needed"]
        parts.append(f"the budget is met without them, but that model is not better: {k['ms_without']:+.4g} ms "
                     f"simulated and {k['bytes_without']:+,} bytes (latencies within the search's tie margin count as equal, then bytes decide)")
    else:
        parts.append("part of the fewest top-ranked candidates that met the budget")
    if harm is not None:
        parts.append(f"at {row['level']} instead of int8 they remove {harm:.3g} of the output NSR on the probe samples"
                     if row["level"] == "a16w8" else f"alone in int8 (the rest float) they add {harm:.3g} to the output NSR")
    if row["latency_cost_ms"] is not None:
        parts.append(f"cost about {row['latency_cost_ms']:+.4g} ms simulated and {row['bytes_cost']:+,} bytes (sum over their ops)")
    return "; ".join(parts)


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def name_layers(result: Any, float_tflite: Path, onnx_path: Path, sample: dict[str, np.ndarray],
                input_map: dict[str, dict[str, Any]], original_names: dict[str, str]) -> None:
    """Adds onnx_node and pytorch_module to every row of `result.layers`, in place (either search's result)."""
    wanted = [r["tensor"] for r in result.layers]
    try:
        tfl = trace_names.tflite_intermediates(float_tflite, sample, input_map)
        onnx_vals = trace_names.onnx_intermediates(onnx_path, sample)
        found = trace_names.match(tfl, onnx_vals, wanted)
    except Exception as exc:  # noqa: BLE001 - names are diagnostics; never fail the conversion for them
        result.notes.append(f"could not trace layers to ONNX/PyTorch names ({type(exc).__name__}: {str(exc)[:120]})")
        found = {}
    for row in result.layers:
        hit = found.get(row["tensor"])
        node = hit["onnx_node"] if hit else None
        original = original_names.get(node, node) if node else None
        row["onnx_node"] = original
        row["pytorch_module"] = trace_names.module_path(original) if original else None
        row["trace_cosine"] = hit["cosine"] if hit else None
        row["traced_by"] = "values" if hit else None
    # Ops with no ONNX counterpart (a LayerNormalization becomes MEAN/SQUARED_DIFFERENCE/RSQRT/...)
    # belong to the nearest traced op they feed: the ONNX node they were decomposed from.
    by_tensor = {r["tensor"]: r for r in result.layers}
    for _ in range(len(result.layers)):
        changed = False
        for row in result.layers:
            if row["onnx_node"]:
                continue
            for user in row.get("unit", [])[1:]:
                owner = by_tensor.get(user)
                if owner and owner["onnx_node"]:
                    row.update(onnx_node=owner["onnx_node"], pytorch_module=owner["pytorch_module"], traced_by="part of")
                    changed = True
                    break
        if not changed:
            break


def verify_kept_float(model_info: dict[str, Any], kept: list[str]) -> list[str]:
    """Names of layers the search kept in float that are NOT float in the written model.

    Denylist name matching is easy to get wrong, so the written file is read back, not trusted."""
    dtype_by_output = {op["output_name"]: op["dtype"] for op in model_info["ops"]}
    return [name for name in kept if dtype_by_output.get(name) not in ("FLOAT32", "FLOAT16")]
