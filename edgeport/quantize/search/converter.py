"""The TF-converter builder: the converter search's parent side, and the converter's rebuild of a choice.

run_mixed runs the converter search (converter_worker) in a child process: every candidate is one
converter run with its float ops denylisted. build_with_float builds one such model for a float set
chosen elsewhere, and rebuild_choice uses it to rebuild the AEQ search's choice when the converter
quantizes ops that AEQ has no rule for. The rows' TFLite tensor names are traced to ONNX nodes and
PyTorch modules by rows.name_layers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import progress
from edgeport.errors import ConversionError
from edgeport.export.layout import tflite_layout
from edgeport.quantize.search.refine import cost, no_worse
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
        proc = subprocess.Popen([sys.executable, "-m", "edgeport.quantize.search.converter_worker", str(work / "mixed_req.json"),
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
    converter run in a child process (converter_worker.build_one). The caller reads the file back."""
    work = out.parent
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "build_calib.npz", **tflite_layout(calibration, input_map))
    req = {"saved_model": str(saved_model), "calibration": str(work / "build_calib.npz"), "io_dtype": io_dtype,
           "denylist": list(float_ops), "out": str(out)}
    (work / "build_req.json").write_text(json.dumps(req))
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeport.quantize.search.converter_worker", str(work / "build_req.json"),
                               str(work / "build_result.json")], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"the TF converter did not build the int8 model within {timeout_s:.0f} s") from exc
    res_path = work / "build_result.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {"ok": False, "error": f"exit status {proc.returncode}"}
    if not res.get("ok") or not out.exists():
        raise ConversionError(f"the TF converter could not build the int8 model: {str(res.get('error'))[:300]}")
    return out


def _show(st: progress.Stage, status: dict[str, Any]) -> None:
    """The worker's status file -> one progress update (see converter_worker)."""
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


def rebuild_choice(conv: Any, calibration: dict[str, np.ndarray], result: Any, accept: Any, prof: Any,
                   work: Path, notes: list[str]) -> None:
    """AEQ keeps ops it has no rule for in float (e.g. RELU_0_TO_1 from a hard-sigmoid), with (de)quantize
    ops around each; the TF converter quantizes them. So on the ONNX path the search's choice (the same
    ops float, no a16w8, which the converter cannot mix in) is also built by the converter, and that
    model replaces AEQ's when it meets the budget and is no worse on (simulated latency, bytes): then
    the answer is never worse than the converter-only search's for the same float set. Its levels are
    read back from the file, as AEQ's are."""
    from edgeport.quantize import aeq

    if conv.saved_model is None or result.kept_a16w8 or not result.forced_float:
        return
    started = time.perf_counter()
    out = work / "converter_rebuild.tflite"
    try:
        build_with_float(saved_model=conv.saved_model, input_map=conv.input_map, calibration=calibration,
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
