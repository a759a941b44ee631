"""Subprocess entry point: torch.export program (.pt2) -> float .tflite (litert-torch) -> quantized
variants (AI Edge Quantizer).

Runs in its own process because the converters are native code that can abort the process (the TF
converter segfaults on an int8 GRU; litert-converter and AEQ's interpreter are the same kind of code).
The result file is rewritten after every step, with the job being built named in "running", so when
this process dies the parent knows which mode killed it and what was finished before; the parent
then starts a new worker for the jobs left, which reuses the float model already written.

Usage: python -m edgeport.export.litert_torch_worker REQUEST.json RESULT.json
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.progress import write_status

# Test-only fault injection: the tests need a mode whose build really kills the process. When this
# variable names a mode, the worker aborts (SIGABRT) just before building it. Never set in real runs.
CRASH_HOOK_ENV = "EDGEPORT_TEST_CRASH_MODE"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the parent never reads a half-written result, even after a crash


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sample_args(inputs: list[dict[str, Any]]) -> tuple[Any, ...]:
    """Example tensors in the TFLite-side layout (the channel-last wrapper takes NHWC)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    args = []
    for spec in inputs:
        shape = spec["tflite_shape"]
        dtype = getattr(torch, spec["dtype"])
        if dtype.is_floating_point:
            args.append(torch.randn(*shape, generator=gen).to(dtype))
        else:
            args.append(torch.zeros(*shape, dtype=dtype))
    return tuple(args)


def convert_float(req: dict[str, Any], out: Path) -> None:
    """Load the exported program, put the channel-last I/O wrapper around it and convert it."""
    import litert_torch
    import torch

    module = torch.export.load(req["pt2"]).module()
    moved = [i for i, spec in enumerate(req["inputs"]) if spec["perm"] is not None]
    if moved:
        # litert-torch's wrapper takes NHWC inputs and permutes them back to NCHW in the graph; its
        # layout pass then folds those transposes into the convolutions.
        module = litert_torch.to_channel_last_io(module, args=moved)
    # The unlifted module from a .pt2 refuses .eval(); it was exported from module.eval(), so only
    # the flag litert-torch checks (to warn about training mode) needs setting.
    module.training = False
    model = litert_torch.convert(module, _sample_args(req["inputs"]))
    tmp = out.with_name(out.name + ".tmp")
    model.export(str(tmp))
    os.replace(tmp, out)


def read_signature(path: Path) -> dict[str, Any]:
    """Signature inputs/outputs (name, shape, dtype) and the op list of a written model."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    signatures = interp.get_signature_list()
    if not signatures:
        raise RuntimeError("the converted model has no SignatureDef")
    key = next(iter(signatures))
    runner = interp.get_signature_runner(key)

    def describe(details: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": n, "shape": [int(d) for d in v["shape"]], "dtype": np.dtype(v["dtype"]).name}
                for n, v in details.items()]

    return {"key": key, "keys": sorted(signatures), "inputs": describe(runner.get_input_details()),
            "outputs": describe(runner.get_output_details()), "ops": model_ops(interp)}


def match_inputs(inputs: list[dict[str, Any]], sig_inputs: list[dict[str, Any]]) -> list[str]:
    """The signature input name of each source input. litert-torch names positional argument i
    `args_i`; the name, not the listing order, decides (args_10 sorts before args_2), and the shape
    must be the one the request asked for."""
    by_index = {}
    for tfl in sig_inputs:
        match = re.fullmatch(r"args_(\d+)", tfl["name"])
        if match:
            by_index[int(match.group(1))] = tfl
    names = []
    for i, spec in enumerate(inputs):
        tfl = by_index.get(i)
        if tfl is None or list(tfl["shape"]) != list(spec["tflite_shape"]):
            found = [(t["name"], t["shape"]) for t in sig_inputs]
            raise ValueError(f"cannot match input {spec['source']!r} (expected args_{i} with shape "
                             f"{spec['tflite_shape']}) to the model's signature inputs {found}")
        names.append(tfl["name"])
    return names


def model_ops(interp: Any) -> list[str]:
    return sorted({op["op_name"] for op in interp._get_ops_details()})  # noqa: SLF001 - the only op list API


def calibration_samples(req: dict[str, Any], signature: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """Split the source-layout calibration arrays into model calls, in the TFLite layout and dtype."""
    data = np.load(req["calibration"])
    by_name = {s["name"]: s for s in signature["inputs"]}
    count, per_input = None, {}
    for spec in req["inputs"]:
        arr = data[spec["source"]]
        batch = int(spec["source_shape"][0])
        if spec["perm"] is not None:
            arr = arr.transpose(spec["perm"])
        dtype = by_name[spec["tflite_name"]]["dtype"]
        per_input[spec["tflite_name"]] = (np.ascontiguousarray(arr.astype(dtype)), batch)
        calls = arr.shape[0] // batch
        count = calls if count is None else min(count, calls)
    if not count:
        raise ValueError("calibration data holds fewer samples than one model batch")
    return [{name: arr[i * b:(i + 1) * b] for name, (arr, b) in per_input.items()} for i in range(count)]


def build_job(job: dict[str, Any], float_path: Path, calibration: Any) -> None:
    from edgeport.quantize import aeq_modes as aeq

    out = Path(job["out"])
    if job["mode"] == "fp32":
        _write_bytes(out, float_path.read_bytes())
        return
    recipe = aeq.recipe_for(job["mode"], float_io=(job.get("io_dtype") or "float32") == "float32")
    _write_bytes(out, aeq.quantize(float_path, recipe, calibration))


def main(argv: list[str]) -> int:
    req_path, res_path = Path(argv[0]), Path(argv[1])
    req = json.loads(req_path.read_text())
    status = req.get("status")
    result: dict[str, Any] = {"float": None, "jobs": {}, "running": "float", "seconds": {}}
    float_path = Path(req["float_out"])
    _write_json(res_path, result)
    try:
        start = time.monotonic()
        if not float_path.exists():
            write_status(status, phase="float")
            convert_float(req, float_path)
        result["seconds"]["float"] = round(time.monotonic() - start, 3)
        signature = read_signature(float_path)
        result["float"] = {"ok": True, "path": str(float_path), "signature": signature}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises ConversionError
        traceback.print_exc()
        result["float"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["running"] = None
        _write_json(res_path, result)
        return 1
    try:
        names = match_inputs(req["inputs"], signature["inputs"])
    except ValueError as exc:
        result["float"] = {"ok": False, "error": str(exc)}
        result["running"] = None
        _write_json(res_path, result)
        return 1
    for spec, name in zip(req["inputs"], names, strict=True):
        spec["tflite_name"] = name
    result["float"]["input_names"] = names

    calibration = None
    calibrated = [j for j in req["jobs"] if j["mode"] in ("int8", "int16x8")]
    if calibrated:
        result["running"] = "calibration"
        _write_json(res_path, result)
        write_status(status, phase="calibration")
        try:
            from edgeport.quantize import aeq_modes as aeq

            start = time.monotonic()
            calibration = aeq.calibrate(float_path, calibration_samples(req, signature))
            result["seconds"]["calibration"] = round(time.monotonic() - start, 3)
        except Exception as exc:  # noqa: BLE001 - every calibrated job gets this error
            traceback.print_exc()
            for job in calibrated:
                result["jobs"][job["key"]] = {"ok": False, "error": f"calibration failed: {type(exc).__name__}: {exc}"}

    for index, job in enumerate(req["jobs"]):
        if job["key"] in result["jobs"]:
            continue
        result["running"] = job["key"]
        _write_json(res_path, result)
        write_status(status, phase="variant", variant=job["key"], index=index, count=len(req["jobs"]))
        if os.environ.get(CRASH_HOOK_ENV) == job["mode"]:
            os.abort()
        start = time.monotonic()
        try:
            build_job(job, float_path, calibration)
            from ai_edge_litert.interpreter import Interpreter

            entry = {"ok": True, "path": job["out"], "ops": model_ops(Interpreter(model_path=job["out"]))}
        except Exception as exc:  # noqa: BLE001 - one mode's failure must not stop the others
            traceback.print_exc()
            entry = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        entry["seconds"] = round(time.monotonic() - start, 3)
        result["jobs"][job["key"]] = entry
    result["running"] = None
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    _write_json(res_path, result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main(sys.argv[1:]))
