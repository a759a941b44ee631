"""Second export backend: torch.export -> LiteRT Torch (litert-torch) -> .tflite, quantized with AI
Edge Quantizer. No ONNX and no TensorFlow on this path.

The parent exports the module (so an export failure is a clean ConversionError that names the
construct) and saves the ExportedProgram; a child process (litert_torch_worker) converts it and
builds each mode, because native converter code can kill the process. When a child dies while
building a mode, that mode gets an error naming the signal and a new child builds the modes left.

Layout contract: rank-4 inputs are NHWC on the TFLite side (litert-torch's channel-last I/O wrapper),
every other input and every output keeps the torch layout. `input_map` says how to turn a
source-layout array into each TFLite signature input.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeport import progress
from edgeport.errors import ConversionError, captured_logs, cause_line
from edgeport.export.layout import channels_last_perm
from edgeport.modes import MODES
from edgeport.types import TensorSpec

# Files this backend builds per job. `--quant mixed` asks it for fp32 only: the AEQ search
# (edgeport.quantize.search.aeq_search) then runs on that float model.
SUPPORTED_MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")
# AEQ's static int8 recipe gives int8 graph I/O (its default, see edgeport.quantize.aeq_modes); it has no
# uint8 activations for the graph's inputs/outputs in the recipes used here.
INTEGER_IO = {"int8": ("int8",)}  # mode -> integer io_dtypes this backend builds


@dataclass(frozen=True)
class LitertConversion:
    files: dict[str, Path]  # job key -> .tflite
    errors: dict[str, str]  # job key -> why that job has no file
    # TFLite signature input -> {"source", "perm", "shape", "dtype"}; dtype is the float model's: a job
    # with integer I/O takes that input quantized with the scale/zero point in its own input details.
    input_map: dict[str, dict[str, Any]]
    log_path: Path
    notes: tuple[str, ...] = ()
    signature: str = "serving_default"
    seconds: dict[str, float] = field(default_factory=dict)  # export, float, calibration, per job key
    peak_rss_mb: float | None = None  # largest of the workers' own peak RSS


def convert_litert_torch(module: torch.nn.Module, inputs: list[TensorSpec], workdir: Path,
                         jobs: list[dict], calibration: dict[str, np.ndarray] | None,
                         *, timeout_s: float = 1800) -> LitertConversion:
    """Build one .tflite per job (`{"key", "mode", "io_dtype"}`) from `module`.

    Raises ConversionError when torch.export fails or no float model can be built; a failure of
    one mode is an entry in `errors`, never an exception and never a silent skip."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    errors = {job["key"]: why for job in jobs if (why := _unsupported(job, calibration))}
    todo = [{**job, "out": str(workdir / f"{job['key']}.tflite")} for job in jobs if job["key"] not in errors]
    seconds: dict[str, float] = {}

    start = time.monotonic()
    pt2 = export_program(module, inputs, workdir / "model.pt2")
    seconds["export"] = round(time.monotonic() - start, 3)

    specs = [_input_request(spec) for spec in inputs]
    req: dict[str, Any] = {"pt2": str(pt2), "float_out": str(workdir / "float.tflite"), "inputs": specs,
                           "calibration": None, "jobs": todo, "status": str(workdir / "litert.status.json")}
    if calibration and any(MODES[j["mode"]].calibrated for j in todo):
        missing = [s.name for s in inputs if s.name not in calibration]
        if missing:
            raise ConversionError(f"calibration data has no array for input(s) {', '.join(missing)}")
        np.savez(workdir / "calibration.npz", **{s.name: calibration[s.name] for s in inputs})
        req["calibration"] = str(workdir / "calibration.npz")

    log_path = workdir / "litert_torch.log"
    log_path.write_text("")
    deadline = time.monotonic() + timeout_s
    files: dict[str, Path] = {}
    ops: dict[str, list[str]] = {}
    signature: dict[str, Any] | None = None
    input_names: list[str] = []
    peak: float | None = None
    with progress.stage("convert", "litert-torch: torch.export program -> TFLite") as st:
        # Each pass builds the jobs left; a pass ends early only when its child dies, and then the
        # job it was building is settled as an error, so there are at most len(todo) + 1 passes.
        while True:
            left = [j for j in todo if j["key"] not in files and j["key"] not in errors]
            if not left and signature is not None:
                break
            result, code = _run_worker({**req, "jobs": left}, workdir, log_path, st, deadline - time.monotonic())
            fl = result.get("float") or {}
            if not fl.get("ok"):
                raise _float_failure(fl, code, result, log_path)
            signature, input_names = fl["signature"], fl["input_names"]
            seconds.update({k: v for k, v in result.get("seconds", {}).items() if k not in seconds})
            if result.get("peak_rss_mb"):
                peak = max(peak or 0.0, float(result["peak_rss_mb"]))
            for key, entry in result.get("jobs", {}).items():
                seconds[key] = entry.get("seconds", 0.0)
                if entry.get("ok") and Path(entry["path"]).is_file() and Path(entry["path"]).stat().st_size:
                    files[key] = Path(entry["path"])
                    ops[key] = entry.get("ops", [])
                else:
                    errors[key] = entry.get("error") or "the worker reported success but wrote no file"
            running = result.get("running")
            if code == 0:
                for job in left:  # a clean exit that forgot a job is still an error, never a skip
                    if job["key"] not in files and job["key"] not in errors:
                        errors[job["key"]] = "the worker finished without building this mode"
                break
            if running == "calibration":
                for job in left:
                    if MODES[job["mode"]].calibrated and job["key"] not in files:
                        errors[job["key"]] = f"AI Edge Quantizer calibration {progress.exit_description(code)}"
                req["calibration"] = None
            elif running in {j["key"] for j in left}:
                errors[running] = f"the converter {progress.exit_description(code)} while building this mode"
            else:  # died between steps: settle everything left rather than loop
                for job in left:
                    errors.setdefault(job["key"], f"the litert-torch worker {progress.exit_description(code)}")
    assert signature is not None
    input_map = {name: {"source": spec["source"], "perm": spec["perm"], "shape": spec["tflite_shape"],
                        "dtype": _sig_dtype(signature, name)}
                 for spec, name in zip(specs, input_names, strict=True)}
    return LitertConversion(files, errors, input_map, log_path, _notes(signature, ops),
                            signature["key"], seconds, peak)


def export_program(module: torch.nn.Module, inputs: list[TensorSpec], path: Path) -> Path:
    """torch.export the module in eval mode with seeded example inputs and save it as a .pt2."""
    args = tuple(_example(spec) for spec in inputs)
    # torch logs the failing graph to stderr as a warning before raising; keep the terminal to the
    # one error line (the exception carries the same cause).
    with captured_logs("torch") as logged:
        try:
            program = torch.export.export(module.eval(), args)
        except Exception as exc:  # noqa: BLE001 - every export failure becomes one clear line
            raise ConversionError(f"torch.export could not export the model: {export_failure(exc, logged)}",
                                  hint="litert-torch needs a torch.export-able module; rewrite that construct "
                                       "(e.g. torch.cond for data-dependent branches) or use the onnx2tf backend"
                                  ) from exc
    torch.export.save(program, str(path))
    return path


_USER_FRAME = re.compile(r'The following call raised this error:\s*File "([^"]+)", line (\d+), in (\w+)\s*\n\s*(.+)')


def export_failure(exc: BaseException, logged: list | None = None) -> str:
    """The cause, plus the user's source line that torch.export names ("if x.sum() > 0" ...)."""
    line = cause_line(exc, logged or [])
    frame = _USER_FRAME.search(str(exc))
    if frame:
        path, lineno, func, code = frame.groups()
        line = f"{line} (at {Path(path).name}:{lineno} in {func}: {code.strip()})"
    return line


def _example(spec: TensorSpec) -> torch.Tensor:
    dtype = getattr(torch, spec.dtype)
    if dtype.is_floating_point:
        return torch.randn(*spec.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    return torch.zeros(*spec.shape, dtype=dtype)


def _input_request(spec: TensorSpec) -> dict[str, Any]:
    perm = list(channels_last_perm(4)) if len(spec.shape) == 4 else None
    shape = [spec.shape[i] for i in perm] if perm else list(spec.shape)
    return {"source": spec.name, "source_shape": list(spec.shape), "dtype": spec.dtype, "perm": perm,
            "tflite_shape": shape}


def _unsupported(job: dict[str, Any], calibration: dict[str, np.ndarray] | None) -> str | None:
    mode, io = job["mode"], job.get("io_dtype") or "float32"
    if mode not in SUPPORTED_MODES:
        return f"mode {mode!r} is not available on the litert-torch path (it builds {', '.join(SUPPORTED_MODES)})"
    if io != "float32" and io not in INTEGER_IO.get(mode, ()):
        return (f"graph I/O {io} is not available for mode {mode} on the litert-torch path "
                f"(it builds float32 I/O, and int8 I/O for mode int8); use the onnx2tf backend for it")
    if MODES[mode].calibrated and not calibration:
        return f"mode {mode} needs calibration data"
    return None


def _run_worker(req: dict[str, Any], workdir: Path, log_path: Path, st: progress.Stage,
                budget_s: float) -> tuple[dict[str, Any], int]:
    """One child over `req`; returns its last result file and its exit code (negative: signal)."""
    tag = f"{os.getpid()}_{time.monotonic_ns()}"
    req_path, res_path = workdir / f"litert_{tag}.json", workdir / f"litert_{tag}.result.json"
    req_path.write_text(json.dumps(req))
    if budget_s <= 0:
        raise ConversionError("litert-torch conversion ran out of time before every mode was built",
                              hint=f"see {log_path}")
    with open(log_path, "a") as log:
        argv = [sys.executable, "-m", "edgeport.export.litert_torch_worker", str(req_path), str(res_path)]
        try:
            code = progress.run_followed(argv, log, worker_env(), Path(req["status"]), st, lambda s: _show(st, s), budget_s)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"litert-torch conversion did not finish within the time limit ({budget_s:.0f} s left)",
                                  hint=f"see {log_path}; simplify the model or raise the timeout") from exc
    result = json.loads(res_path.read_text()) if res_path.exists() else {}
    return result, code


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["JAX_PLATFORMS"] = "cpu"  # litert-torch imports jax; keep it from probing for accelerators
    env["HF_HUB_OFFLINE"] = "1"  # it imports transformers too; nothing may download at run time
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _show(st: progress.Stage, status: dict[str, Any]) -> None:
    phase = status.get("phase")
    if phase == "float":
        st.update("litert-torch: float model")
    elif phase == "calibration":
        st.update("AI Edge Quantizer: calibration")
    elif phase == "variant":
        st.update(f"{status['variant']} TFLite", done=int(status["index"]), total=int(status["count"]))


def _float_failure(fl: dict[str, Any], code: int, result: dict[str, Any], log_path: Path) -> ConversionError:
    if fl.get("error"):
        text = " ".join(str(fl["error"]).split())[:400]
        return ConversionError(f"litert-torch could not convert the exported program: {text}",
                               hint=f"full log: {log_path}")
    where = "calibration" if result.get("running") == "calibration" else "the float conversion"
    return ConversionError(f"the litert-torch worker {progress.exit_description(code)} during {where}", hint=f"full log: {log_path}")


def _sig_dtype(signature: dict[str, Any], name: str) -> str:
    return next(s["dtype"] for s in signature["inputs"] if s["name"] == name)


def _notes(signature: dict[str, Any], ops: dict[str, list[str]]) -> tuple[str, ...]:
    notes = [f"litert-torch signature {signature['key']!r}: inputs "
             f"{', '.join(s['name'] for s in signature['inputs'])}; outputs "
             f"{', '.join(s['name'] for s in signature['outputs'])}"]
    for key, names in ops.items():
        odd = [n for n in names if n == "CUSTOM" or n.startswith("Flex") or n == "DELEGATE"]
        if odd:
            notes.append(f"{key}: custom/Flex ops {', '.join(odd)} need a runtime with those kernels")
    return tuple(notes)
