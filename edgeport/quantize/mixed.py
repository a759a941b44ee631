"""Parent side of the mixed-precision search: prepare data, run the worker, name the layers.

The worker returns TFLite tensor names; this module traces each to its ONNX node and PyTorch module
so a user reads `features.3.conv.1`, not `model/tf.nn.convolution/convolution;Const_51`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import progress
from edgeport.errors import ConversionError
from edgeport.export import trace_names
from edgeport.export.layout import tflite_layout
from edgeport.validate.run import run_tflite


@dataclass(frozen=True)
class MixedResult:
    model: Path
    layers: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    kept: list[str]
    int8: dict[str, Any]
    stopped: str
    notes: list[str] = field(default_factory=list)


def run_mixed(*, saved_model: Path, input_map: dict[str, dict[str, Any]], calibration: dict[str, np.ndarray],
              val_inputs: dict[str, np.ndarray], references: list[np.ndarray], labels: np.ndarray | None,
              budget: dict[str, Any], float_layers: str, io_dtype: str, threads: int, work: Path,
              timeout_s: float = 3600, int8_model: Path | None = None, diagnose_only: bool = False) -> MixedResult:
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "mixed_calib.npz", **tflite_layout(calibration, input_map))
    np.savez(work / "mixed_val.npz", **tflite_layout(val_inputs, input_map))
    np.savez(work / "mixed_refs.npz", **{f"r{i}": r for i, r in enumerate(references)})
    req: dict[str, Any] = {
        "saved_model": str(saved_model), "calibration": str(work / "mixed_calib.npz"),
        "val_inputs": str(work / "mixed_val.npz"), "references": str(work / "mixed_refs.npz"),
        "budget": budget, "float_layers": float_layers, "io_dtype": io_dtype, "threads": threads,
        "out": str(work / "mixed.tflite"), "diagnose_only": diagnose_only,
    }
    if labels is not None:
        np.save(work / "mixed_labels.npy", labels)
        req["labels"] = str(work / "mixed_labels.npy")
    if int8_model is not None:
        # The TFLite debugger runs the int8 model on TensorFlow's builtin kernels; a model whose int8
        # kernels abort there would take the whole search down, so probe it in a throwaway process.
        probe = run_tflite(int8_model, None, {}, None, threads=1, runs=1, warmup=0, no_default_delegates=True)
        req["skip_local_stats"] = probe.latency is None
    status_path = work / "mixed_status.json"
    req["status"] = str(status_path)
    (work / "mixed_req.json").write_text(json.dumps(req))
    log = work / "mixed.log"
    title = "int8 diagnosis" if diagnose_only else "mixed search"
    with open(log, "w") as fh, progress.stage(title, "int8 model and per-layer statistics") as st:
        proc = subprocess.Popen([sys.executable, "-m", "edgeport.quantize.mixed_worker", str(work / "mixed_req.json"),
                                 str(work / "mixed_result.json")], stdout=fh, stderr=subprocess.STDOUT)
        try:
            progress.follow(proc, status_path, st, lambda status: _show(st, status), timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"mixed-precision search did not finish within {timeout_s:.0f} s",
                                  hint="use --quant int8, or fewer validation samples") from exc
        except BaseException:
            proc.kill()  # Ctrl-C or an error here must not leave the search running
            proc.wait()
            raise
    res_path = work / "mixed_result.json"
    if not res_path.exists():
        tail = " | ".join(ln.strip() for ln in log.read_text(errors="replace").splitlines()[-3:] if ln.strip())[-400:]
        raise ConversionError("the mixed-precision search process died (the TFLite runtime aborted on a candidate model)",
                              hint=f"use --quant int8 or fp16 for this model; last log lines: {tail}")
    res = json.loads(res_path.read_text())
    if not res.get("ok"):
        raise ConversionError(f"mixed-precision search failed: {res.get('error', '?')[:400]}", hint=f"see {log}")
    return MixedResult(work / "mixed.tflite", res["layers"], res["curve"], res["kept"] or [], res["int8"], res["stopped"],
                       list(res.get("notes") or []))


def build_with_float(*, saved_model: Path, input_map: dict[str, dict[str, Any]], calibration: dict[str, np.ndarray],
                     float_ops: list[str], io_dtype: str, out: Path, timeout_s: float = 3600) -> Path:
    """The TF converter's int8 model with `float_ops` (TFLite output tensor names) left float: one
    converter run in a child process (mixed_worker.build_one). The caller reads the file back."""
    work = out.parent
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "build_calib.npz", **tflite_layout(calibration, input_map))
    req = {"saved_model": str(saved_model), "calibration": str(work / "build_calib.npz"), "io_dtype": io_dtype,
           "denylist": list(float_ops), "out": str(out)}
    (work / "build_req.json").write_text(json.dumps(req))
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeport.quantize.mixed_worker", str(work / "build_req.json"),
                               str(work / "build_result.json")], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"the TF converter did not build the int8 model within {timeout_s:.0f} s") from exc
    res_path = work / "build_result.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {"ok": False, "error": f"exit status {proc.returncode}"}
    if not res.get("ok") or not out.exists():
        raise ConversionError(f"the TF converter could not build the int8 model: {str(res.get('error'))[:300]}")
    return out


def _show(st: progress.Stage, status: dict[str, Any]) -> None:
    """The worker's status file -> one progress update (see mixed_worker)."""
    phase = status.get("phase")
    if phase == "scoring":
        # one line per layer would flood a log on a fast model; the bar shows every step
        st.update(f"scoring each layer kept in float; {status['best']}", done=int(status["done"]),
                  total=int(status["total"]), throttle_s=10.0)
    elif phase == "search":
        st.update(f"candidate {status['attempt']} (at most {status['max_attempts']}): top {status['units']} of "
                  f"{status['max_units']} units in float; {status['best']}", done=int(status["attempt"]),
                  total=int(status["max_attempts"]))
    elif phase == "shrink":
        st.update(f"dropping unneeded float ops: trying {status['trial']} instead of {status['kept']}")


def name_layers(result: MixedResult, float_tflite: Path, onnx_path: Path, sample: dict[str, np.ndarray],
                input_map: dict[str, dict[str, Any]], original_names: dict[str, str]) -> None:
    """Adds onnx_node and pytorch_module to every row, in place."""
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


def budget_for(profile_budgets: Any, references: list[np.ndarray], labels: np.ndarray | None,
               task: Any = None) -> dict[str, Any]:
    """The searches' accuracy budget. With a task judged by its own metric (ctc, detect, embed, segment),
    that metric and the profile's floor for it are the objective (validate/task_score.objective)."""
    ref_acc = None
    ref = references[0]
    if labels is not None and ref.ndim == 2 and ref.shape[1] > 1:
        ref_acc = float(np.mean(np.argmax(ref, 1) == labels))
    return {
        "reference_accuracy": ref_acc,
        "accuracy_drop_pp": profile_budgets.accuracy_drop_pp if profile_budgets.accuracy_drop_pp is not None else 1.0,
        "min_top1_agreement": profile_budgets.min_top1_agreement,
        "min_snr_db": profile_budgets.min_snr_db,
        **_task_budget(profile_budgets, task),
    }


def _task_budget(profile_budgets: Any, task: Any) -> dict[str, Any]:
    floor = profile_budgets.task_minimum(task.name) if task is not None else None
    if floor is None:
        return {}
    return {"task": {"name": task.name, "options": dict(task.options)}, "task_min": floor}
