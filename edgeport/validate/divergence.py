"""Is a disagreement the converter's fault or quantization's? Check the float32 TFLite against the
reference, and when it disagrees, point at the first ONNX node whose output the TFLite model no
longer reproduces (the place onnx2tf mis-converted), with its PyTorch module."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.validate.metrics import compare_output
from edgeport.validate.run import TfliteRun

FLOAT_MATCH_COSINE = 0.999
FLOAT_CHECK_SAMPLES = 8


def check_samples(inputs: dict[str, np.ndarray], references: list[np.ndarray], samples: int = FLOAT_CHECK_SAMPLES
                  ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The few samples the float32 model is run on when the artifact itself is not float32."""
    return {k: v[:samples] for k, v in inputs.items()}, [r[:samples] for r in references]


def float_conversion_check(fp32_run: TfliteRun, references: list[np.ndarray], fp32_model: Path, onnx_path: Path | None,
                           inputs: dict[str, np.ndarray], input_map: dict[str, dict[str, Any]],
                           original_names: dict[str, str]) -> dict[str, Any]:
    """Judge an existing run of the float32 model (any number of samples) against the reference."""
    if fp32_run.outputs is None:
        return {"matches": False, "cosine_min": None, "error": fp32_run.error, "first_divergent": None}
    if len(fp32_run.outputs) != len(references) or any(  # run_tflite reports these as `mismatch`; never a crash here
            o.shape[1:] != r.shape[1:] for o, r in zip(fp32_run.outputs, references, strict=False)):
        got = [tuple(o.shape) for o in fp32_run.outputs]
        return {"matches": False, "cosine_min": None, "first_divergent": None,
                "error": f"the float32 TFLite outputs {got} do not fit the reference {[tuple(r.shape) for r in references]}"}
    refs = [r[: len(o)] for r, o in zip(references, fp32_run.outputs, strict=True)]
    cos = min(compare_output("out", r, o).cosine_min for r, o in zip(refs, fp32_run.outputs, strict=True))
    result: dict[str, Any] = {"matches": bool(cos >= FLOAT_MATCH_COSINE), "cosine_min": round(float(cos), 6),
                              "first_divergent": None}
    if not result["matches"] and onnx_path is not None:  # only the ONNX path can point at a node
        result["first_divergent"] = first_divergent_node(fp32_model, onnx_path, {k: v[:1] for k, v in inputs.items()},
                                                          input_map, original_names)
    return result


def first_divergent_node(fp32_model: Path, onnx_path: Path, sample: dict[str, np.ndarray], input_map: dict[str, dict[str, Any]],
                         original_names: dict[str, str]) -> dict[str, Any] | None:
    """The first ONNX node after the last one whose output the float TFLite model still holds.

    Ops fused by the converter have no tensor of their own, so "unmatched" alone means nothing; what
    marks the break is that no later node output is reproduced either."""
    import onnx

    from edgeport.export import trace_names

    try:
        tfl = trace_names.tflite_intermediates(fp32_model, sample, input_map)
        onnx_vals = trace_names.onnx_intermediates(onnx_path, sample)
    except Exception:  # noqa: BLE001 - a diagnosis must never turn into the failure
        return None
    found = trace_names.match(tfl, onnx_vals, list(tfl), min_cosine=FLOAT_MATCH_COSINE)
    matched_nodes = {hit["onnx_node"] for hit in found.values()}
    nodes = list(onnx.load(str(onnx_path)).graph.node)
    last = max((i for i, n in enumerate(nodes) if n.name in matched_nodes), default=-1)
    if last + 1 >= len(nodes):
        return None
    node = nodes[last + 1]
    original = original_names.get(node.name, node.name)
    return {"onnx_node": original, "op": node.op_type, "pytorch_module": trace_names.module_path(original),
            "after": original_names.get(nodes[last].name, nodes[last].name) if last >= 0 else None}
