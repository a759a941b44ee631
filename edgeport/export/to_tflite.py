"""Parent side of the conversion worker: ONNX -> SavedModel -> one TFLite file per requested mode."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import progress
from edgeport.errors import ConversionError
from edgeport.export.onnx_prep import PreparedOnnx

# Ops that become Flex (Select TF) ops or fail as builtins, and that onnx2tf can replace by
# builtin-only approximations; tried automatically when a plain conversion needs Flex ops.
PSEUDO_OP_REMEDY = ["erf", "gelu", "asin", "acos", "atan"]  # onnx2tf spells them lower-case
FLEX_MARKERS = ("Select TF", "Flex", "flex op", "TFLITE_BUILTINS", "not supported by", "ops are not supported")


@dataclass(frozen=True)
class ConversionResult:
    saved_model: Path
    files: dict[str, Path]  # job key -> written tflite
    errors: dict[str, str]  # job key -> converter error
    input_map: dict[str, dict[str, Any]]  # signature key -> {source, perm, shape} (see export/backend.py)
    log_path: Path
    notes: tuple[str, ...] = field(default_factory=tuple)


def run_conversion(
    onnx_model: PreparedOnnx,
    workdir: Path,
    calibration: dict[str, np.ndarray] | None,
    jobs: list[dict[str, Any]],
    *,
    pseudo_ops: list[str] | None = None,
    timeout_s: float = 1800,
    saved_model: Path | None = None,
) -> ConversionResult:
    """jobs: [{"key": str, "mode": str, "io_dtype": str, "float_nodes": [...]}]."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = "pseudo" if pseudo_ops else "plain"
    saved = saved_model or workdir / f"saved_model_{tag}"
    req: dict[str, Any] = {
        "onnx": str(onnx_model.path),
        "saved_model": str(saved),
        "onnx_inputs": [s.name for s in onnx_model.inputs],
        "onnx_input_shapes": {s.name: list(s.shape) for s in onnx_model.inputs},
        # rank-3 inputs (sequences, signals) are kept as they are: onnx2tf would read them as NCW.
        "keep_layout_inputs": [s.name for s in onnx_model.inputs if len(s.shape) == 3 or s.name in onnx_model.keep_layout_inputs],
        "keep_shape_inputs": [s.name for s in onnx_model.inputs if len(s.shape) not in (3, 4, 5)],
        "pseudo_ops": pseudo_ops or [],
        "jobs": [],
    }
    if calibration:
        calib_path = workdir / "calibration.npz"
        np.savez(calib_path, **calibration)
        req["calibration"] = str(calib_path)
        first = calibration[onnx_model.inputs[0].name]
        if first.ndim == 4 and len(onnx_model.inputs) == 1 and not onnx_model.keep_layout_inputs:
            sample_path = workdir / "sample_images.npy"
            np.save(sample_path, first[:20].astype(np.float32))
            req["sample_images"] = str(sample_path)
    for job in jobs:
        out = workdir / f"{job['key']}.tflite"
        req["jobs"].append({**job, "out": str(out)})
    req_path = workdir / f"convert_{tag}_{len(jobs)}_{os.getpid()}.json"
    res_path = req_path.with_suffix(".result.json")
    log_path = req_path.with_suffix(".log")
    status_path = req_path.with_suffix(".status.json")
    req["status"] = str(status_path)
    req_path.write_text(json.dumps(req))
    what = "onnx2tf: ONNX -> SavedModel" + (" with builtin replacements for Flex ops" if pseudo_ops else "")
    # The result is analysed inside the stage: a failed conversion must not be reported as "done".
    with progress.stage("convert", what) as st:
        with open(log_path, "w") as log:
            argv = [sys.executable, "-m", "edgeport.export.tflite_worker", str(req_path), str(res_path)]
            try:
                returncode = progress.run_followed(argv, log, _worker_env(), status_path, st,
                                                   lambda status: _show(st, status), timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise ConversionError(f"ONNX->TFLite conversion did not finish within {timeout_s:.0f} s",
                                      hint=f"see {log_path}; simplify the model or raise --timeout") from exc
        how = progress.exit_description(returncode)
        if not res_path.exists():
            raise ConversionError(f"onnx2tf {how} before producing a SavedModel",
                                  hint=f"rerun with --keep-work to keep the log; last lines: {_tail(log_path)}")
        result = json.loads(res_path.read_text())
        if returncode != 0 and result.get("running"):
            raise ConversionError(
                f"the TFLite converter {how} while converting to {result['running']}",
                hint="that mode cannot be built for this model with this TensorFlow; try another --quant "
                     "(fp16, dynamic or fp32), and rerun with --keep-work to keep the converter log")
        if not result.get("ok"):
            where = _failing_node(log_path, onnx_model)
            # Only a failure onnx2tf pins on a node is about a layer; anything else (a crash in its own
            # checks, a SavedModel that did not load) says nothing about the model's layers.
            hint = ("rewrite that layer with ops onnx2tf supports, or give it static sizes; " if where else "") + \
                "rerun with --keep-work to keep the full converter log"
            raise ConversionError(f"onnx2tf could not convert {where or 'the model'}: {clean_error(result.get('error', 'unknown error'))}",
                                  hint=hint)
        files, errors = _collect(jobs, result)
    quantizer = tuple(f"{j['mode']}: {j['quantizer_note']}" for j in result["jobs"] if j.get("quantizer_note"))
    return ConversionResult(saved, files, errors, result.get("inputs", {}), log_path,
                            _lstm_notes(result.get("lstm") or {}) + quantizer)


def _lstm_notes(lstm: dict[str, str | None]) -> tuple[str, ...]:
    """Which ONNX LSTMs became TFLite's fused sequence op and why the others kept onnx2tf's loop."""
    fused = [name for name, why in lstm.items() if why is None]
    kept = {name: why for name, why in lstm.items() if why is not None}
    notes = []
    if fused:
        notes.append(f"{len(fused)} LSTM node(s) became fused UNIDIRECTIONAL_SEQUENCE_LSTM ops: {', '.join(fused[:6])}. "
                     "They keep their state in variable tensors between invocations: reset it before each independent "
                     "sequence (Interpreter.reset_all_variables() in Python, resetVariableTensors() on Android); "
                     "edgeport's validation does")
    if kept:
        notes.append(f"{len(kept)} LSTM node(s) kept onnx2tf's loop (int8 may be impossible): "
                     + "; ".join(f"{n} ({w})" for n, w in list(kept.items())[:4]))
    return tuple(notes)


def _collect(jobs: list[dict[str, Any]], result: dict[str, Any]) -> tuple[dict[str, Path], dict[str, str]]:
    files, errors = {}, {}
    for job, entry in zip(jobs, result["jobs"], strict=True):
        if entry.get("ok") and Path(entry["path"]).exists():
            files[job["key"]] = Path(entry["path"])
        else:
            # The TFLite converter can "succeed" with no file (a swallowed calibration failure):
            # a missing file is an error, never a silent skip.
            errors[job["key"]] = entry.get("error") or "converter reported success but wrote no file"
    return files, errors


def _show(st: progress.Stage, status: dict[str, Any]) -> None:
    """The worker's status file -> one progress update (see tflite_worker.main)."""
    phase = status.get("phase")
    if phase == "variant":
        st.update(f"{status['variant']} TFLite", done=int(status["index"]), total=int(status["count"]))
    elif phase == "calibration":
        last = status["done"] == status["total"]
        st.update(f"{status['variant']}: calibration sample {status['done']}/{status['total']}",
                  done=int(status["index"]), total=int(status["count"]), throttle_s=0.0 if last else 10.0)
    elif phase == "signature":
        st.update("reading the SavedModel signature")


def needs_flex(error: str) -> bool:
    return any(marker in error for marker in FLEX_MARKERS)


def unsupported_tf_ops(error: str) -> list[str]:
    """TF op names the TFLite converter could not lower to builtins, from its error text."""
    found = re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", error)
    found += re.findall(r"tf\.(\w+) \{", error)
    return sorted(set(found))


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    # onnx2tf prints rich progress; keep the log readable
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _failing_node(log_path: Path, onnx_model: PreparedOnnx) -> str | None:
    """onnx2tf names the ONNX node it failed on in its log; map it back to the user's own name."""
    try:
        text = _ANSI.sub("", log_path.read_text(errors="replace"))
    except OSError:
        return None
    found = re.findall(r"onnx_op_name: (\S+)", text)
    if not found:
        return None
    name = found[-1]
    op_type = None
    try:
        import onnx

        op_type = next((n.op_type for n in onnx.load(str(onnx_model.path)).graph.node if n.name == name), None)
    except Exception:  # noqa: BLE001 - the name alone is still useful
        pass
    original = onnx_model.original_node_names.get(name, name)
    return f"ONNX node '{original}'" + (f" ({op_type})" if op_type else "")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = [_ANSI.sub("", ln).strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return clean_error(" | ".join(text[-lines:]), limit=10**6)[-ERROR_CHARS:]  # the end says most


# A converter error can quote a whole constant ("... [[0.12 0.5 ...]]"): 750 characters of numbers in
# what must be one readable line. The full text stays in the log that --keep-work keeps.
_ARRAY = re.compile(r"(?:array\()?\[[\s\[\]0-9eE.,+\-]{24,}\]\)?")
ERROR_CHARS = 200


def clean_error(text: str, limit: int = ERROR_CHARS) -> str:
    """One line of a converter error: array dumps replaced by '[...]', at most `limit` characters."""
    line = _ARRAY.sub("[...]", " ".join(str(text).split()))
    return line if len(line) <= limit else line[: limit - 1] + "…"
