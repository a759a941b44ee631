"""`edgeport check MODEL.tflite --val DATA --target ssh://…|adb://…`: an already converted model's validation
data run on the device and judged here (runners/device_eval.py), as `convert --target` does for a new one.

The device is compared with this host's TFLite run of the same samples (always), with the float model
(`--reference` .npz of its outputs, or the convert report.json for its float label accuracy and its input
layout) and with the labels in DATA. Exit 0 when the verdict passes, 1 when it does not.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import options
from edgeport.data import calibration
from edgeport.data.preprocessing import parse_preprocessing
from edgeport.errors import DeviceError, InputError
from edgeport.export.layout import ShapeMismatch, channels_last_perm, input_perm
from edgeport.profiles import load_profile
from edgeport.runners import device_eval
from edgeport.runners.common import RunOptions
from edgeport.runners.targets import parse_target
from edgeport.tflite.reader import load_model
from edgeport.types import TensorSpec, file_sha256
from edgeport.validate import verdict
from edgeport.validate.judge import device_checks
from edgeport.validate.run import run_tflite


@dataclass(frozen=True)
class CheckRequest:
    model: Path
    val: str
    target: str
    profile: str = "host"
    reference: Path | None = None
    opts: RunOptions = RunOptions()
    eval_binary: str | None = None
    max_samples: int = 1000
    preprocessing: dict[str, str] | None = None


def run_check(req: CheckRequest) -> dict[str, Any]:
    target = parse_target(req.target)
    if not target.is_device:
        raise InputError(f"check runs the model on a device, not on '{target}'", hint="use --target ssh://user@host or adb://SERIAL")
    options.max_samples(req.max_samples)
    load_model(req.model)  # one clear line for a file that is not a .tflite
    prof = load_profile(req.profile)
    report, ref_outputs = _reference(req.reference)
    specs, input_map = _inputs(req.model, req.val, report)
    pre = parse_preprocessing(req.preprocessing) if req.preprocessing else None
    val = calibration.load_data(req.val, specs, pre, max_samples=req.max_samples)
    if ref_outputs is not None:
        ref_outputs = _aligned(ref_outputs, val.count, req.reference)
    threads = min(prof.runtime.threads, os.cpu_count() or 1)
    host = run_tflite(req.model, val.inputs, input_map, ref_outputs, threads=threads, runs=0)
    if host.outputs is None:
        raise DeviceError(f"the model does not run on this host's validation data: {host.error}",
                          hint="check the model with 'edgeport inspect' and the data's shapes")
    names = [f"output_{i}" for i in range(len(host.outputs))]
    found = device_eval.validate_on_device(req.model, target, prof, req.opts, input_map, val.inputs, host.outputs, names,
                                           ref_outputs, val.labels, eval_binary=req.eval_binary,
                                           stateful=bool(report and report.get("model", {}).get("variable_tensors")))
    if not found["checked"]:  # check exists to validate: a device that can only be timed is this command's failure
        raise device_eval.CannotValidate(found["reason"])
    _report_accuracy(found, report)
    result = {"model": {"path": str(req.model), "sha256": file_sha256(req.model)}, "profile": prof.name,
              "data": {"source": val.source, "samples": val.count, "sha256": val.sha256, "labels": val.labels is not None},
              "device_validation": found, "verdict": verdict.decide(device_checks(found, prof.budgets))}
    result["exit_code"] = 0 if result["verdict"]["passed"] else 1
    return result


def lines(result: dict[str, Any]) -> list[str]:
    dev = result["device_validation"]
    agree = dev["agreement"]
    side = dev["device"]
    out = [f"device check of {result['model']['path']} on {dev['target']} ({side.get('machine')}, Python {side.get('python')}, "
           f"{side['runtime'].get('name')} {side['runtime'].get('version')})",
           f"  samples    {dev['samples']} of {dev['sampled_from']}" + (" (sampled)" if dev["sampled"] else ""),
           f"  vs host    cosine {agree['cosine_mean']:.6f} (worst output), top-1 agreement {_pct(agree['top1_agreement'])}"]
    if dev.get("accuracy"):
        acc = dev["accuracy"]
        out.append(f"  vs float   cosine {_num(acc.get('cosine_mean'))}, top-1 agreement {_pct(acc.get('top1_agreement'))}"
                   + (f", drop {acc['drop_pp']:.2f} pp" if acc.get("drop_pp") is not None else ""))
    if dev.get("labels"):
        out.append(f"  labels     device {_pct(dev['labels']['device'])}, host {_pct(dev['labels']['host'])}")
    out.append(f"  transfer   {dev['transfer_bytes']['total'] / 1e6:.2f} MB in {dev['seconds']:.1f} s")
    for check in result["verdict"]["checks"]:
        out.append(f"  {'PASS' if check['passed'] else 'FAIL'}       {check['name']}: {check['value']} (budget {check['budget']})"
                   + (f" — {check['detail']}" if check.get("detail") else ""))
    out.append(f"  verdict    {'PASSED' if result['verdict']['passed'] else 'FAILED'}")
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def _reference(path: Path | None) -> tuple[dict[str, Any] | None, list[np.ndarray] | None]:
    """--reference: a convert report.json (input layout, float label accuracy) or an .npz of float outputs."""
    if path is None:
        return None, None
    if not path.is_file():
        raise InputError(f"--reference {path} does not exist", hint="pass the convert's report.json or an .npz of float outputs")
    if path.suffix == ".json":
        try:
            report = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"--reference {path} is not a JSON report: {exc}", hint="pass the report.json that convert wrote") from None
        if not isinstance(report, dict) or "model" not in report:
            raise InputError(f"--reference {path} is not an edgeport report", hint="pass the report.json that convert wrote")
        if (report.get("options") or {}).get("states"):
            raise InputError("check does not carry streaming state (--state) between chunks",
                             hint="validate a streaming model on the device with convert --target")
        return report, None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [np.asarray(data[k], dtype=np.float32) for k in data.files]
    except (OSError, ValueError) as exc:
        raise InputError(f"--reference {path} is not a readable .npz: {exc}",
                         hint="save the float model's outputs with np.savez(path, out0, out1, ...) in output order") from None
    if not arrays:
        raise InputError(f"--reference {path} holds no arrays", hint="one array per model output, samples first")
    return None, arrays


def _aligned(arrays: list[np.ndarray], count: int, path: Path | None) -> list[np.ndarray]:
    short = [a.shape for a in arrays if a.ndim == 0 or len(a) < count]
    if short:
        raise InputError(f"--reference {path} has fewer rows than the {count} validation samples (shape {short[0]})",
                         hint="save one row of float outputs per validation sample, in the same order")
    return [a[:count] for a in arrays]


def _inputs(model: Path, val: str, report: dict[str, Any] | None) -> tuple[list[TensorSpec], dict[str, dict[str, Any]]]:
    """Source-layout specs for the data and the input map to the model's signature: from the report's
    model inputs when given, else from the data's own sample shape (NCHW data for an NHWC model is moved)."""
    from edgeport.tflite.runner import load_interpreter_class

    interpreter_cls, _ = load_interpreter_class()
    try:
        details = interpreter_cls(model_path=str(model)).get_signature_runner().get_input_details()
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"{model} has no signature to feed: {exc}", hint="check needs a model converted with a signature (edgeport convert writes one)") from None
    sources = [dict(s) for s in (report or {}).get("model", {}).get("inputs") or []]
    specs, input_map = [], {}
    for i, (key, detail) in enumerate(details.items()):
        shape = tuple(int(d) for d in detail["shape"])
        quantized = detail["quantization"][0] != 0
        dtype = "float32" if quantized or np.issubdtype(detail["dtype"], np.floating) else np.dtype(detail["dtype"]).name
        if sources:
            src = next((s for s in sources if s["name"] == key), sources[min(i, len(sources) - 1)])
            name, src_shape = src["name"], tuple(int(d) for d in src["shape"])
        else:
            name = key
            src_shape = _source_shape(shape, calibration.sample_shape(val) if len(details) == 1 else None)
        try:
            perm = input_perm(src_shape, shape, moved_by_default=True)
        except ShapeMismatch as exc:
            raise InputError(f"input '{key}': {exc}", hint="pass data in the model's source layout (NCHW for an image model)") from None
        specs.append(TensorSpec(name, src_shape, dtype))
        input_map[key] = {"source": name, "perm": list(perm) if perm is not None else None}
    return specs, input_map


def _source_shape(shape: tuple[int, ...], sample: tuple[int, ...] | None) -> tuple[int, ...]:
    """The layout the data is in: the model's own, or channels-first (edgeport's source layout) for rank >= 3."""
    if len(shape) < 3 or (sample is not None and tuple(sample) == shape[1:]):
        return shape
    perm = channels_last_perm(len(shape))
    first = tuple(shape[perm.index(i)] for i in range(len(shape)))  # the shape that channels_last_perm turns into `shape`
    return first


def _report_accuracy(found: dict[str, Any], report: dict[str, Any] | None) -> None:
    """With a report and labelled data: the device's drop against the float model is the report's drop
    (float vs this host's TFLite, on the report's samples) plus the device's own change against the host
    on the samples it ran. Comparing the report's float accuracy directly with a sample would mix sets."""
    labels = found.get("labels") or {}
    acc = (report or {}).get("accuracy") or {}
    if found.get("accuracy") is not None or acc.get("drop_pp") is None or labels.get("device") is None or labels.get("host") is None:
        return
    labels["reference"] = acc.get("reference")
    found["accuracy"] = {"drop_pp": round(acc["drop_pp"] + (labels["host"] - labels["device"]) * 100, 4), "top1_agreement": None,
                         "reference_from": "the report's float-vs-TFLite drop, plus the device's change against this host "
                                           "on the samples the device ran"}
