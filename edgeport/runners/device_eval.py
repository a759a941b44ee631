"""Run the validation inputs ON the device and judge what comes back (issue 22: accuracy on the device).

The device only runs the model (DESIGN principle 3): one .npz of inputs goes over, one .npz of outputs
comes back, and every figure is computed here, three ways:
- against the host's TFLite run of the same samples: the device/host agreement (the verdict's
  `device_agrees_with_host` check; ARM's int8/fp16 kernels do not round as x86's do);
- against the float reference, when there is one: the verdict's accuracy figures on the device;
- against the labels, when the data has them.

How the outputs are made on the device:
- ssh, or adb when the phone's shell finds a Python (Termux): runners/remote_eval.py with
  tflite/runner.py beside it, the host's own per-sample loop (variable tensors reset per sample,
  streaming state fed back), in the private temp dir of the ssh session / adb runner, always removed;
- adb with `--eval-binary`: the user's binary, on the contract in `eval_binary_argv` (README);
- adb with neither: `CannotValidate`; convert records why, `edgeport check` stops with it.
The transfer is sized first and capped at MAX_TRANSFER_BYTES: a larger validation set is sampled evenly
(whole sequences for streaming models) and the report says so.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import progress
from edgeport.errors import DeviceError, InputError
from edgeport.profiles import DeviceProfile
from edgeport.runners.common import Deadline, RunOptions, Target, last_line, show_text
from edgeport.validate import metrics

HERE = Path(__file__).resolve().parent
MAX_TRANSFER_BYTES = 32 * 1024 * 1024  # inputs + outputs of one device run; a Pi on Wi-Fi moves this in ~10 s
FAULT_ENV = "EDGEPORT_TEST_DEVICE_FAULT"  # test-only: "flip-sign" (or "flip-sign:K") negates output K on the device
MARKER = "edgeport_remote_eval"
STEP = "device validation"
OUTPUTS = "outputs.npz"
RUNNER = "edgeport_eval.py"
# The remote runner and the two files it imports, under the names it imports them by.
RUNNER_FILES = {RUNNER: HERE / "remote_eval.py", "edgeport_tflite_exec.py": HERE.parent / "tflite" / "runner.py",
                "edgeport_bench.py": HERE / "remote_bench.py"}


class CannotValidate(DeviceError):
    """The device can be timed but cannot run validation inputs (adb without Python or --eval-binary)."""


@dataclass(frozen=True)
class DeviceOutputs:
    arrays: dict[str, np.ndarray]  # tflite_exec's result layout: "out::<signature key>" -> [N, ...] float
    runtime: dict[str, Any]  # {name, version} of the TFLite runtime on the device
    device: dict[str, Any]  # the device fingerprint (machine, python, cpu, ...)
    how: str
    bytes_to_device: int
    bytes_from_device: int
    seconds: float


def pick_samples(count: int, bytes_per_sample: int, *, steps: int = 1, cap: int | None = None) -> np.ndarray:
    """Indices of the samples that fit `cap` bytes (MAX_TRANSFER_BYTES): all of them, or an even spread (first
    and last included, deterministic). Streaming data (`steps` chunks per sequence) is sampled in whole sequences."""
    cap = MAX_TRANSFER_BYTES if cap is None else cap
    steps = max(1, steps)
    sequences = count // steps
    fits = max(1, cap // max(1, bytes_per_sample * steps))
    if sequences <= fits:
        return np.arange(count)
    chosen = np.unique(np.linspace(0, sequences - 1, fits).round().astype(np.int64))
    return (chosen[:, None] * steps + np.arange(steps)[None, :]).ravel()


def fault_args() -> list[str]:
    """The planted fault for tests (FAULT_ENV=flip-sign[:K]): the device runner negates output K."""
    text = os.environ.get(FAULT_ENV, "")
    if not text:
        return []
    kind, _, index = text.partition(":")
    if kind != "flip-sign" or not (index or "0").isdigit():
        raise InputError(f"{FAULT_ENV}={show_text(text)} is not understood", hint="it is test-only: flip-sign or flip-sign:K")
    return ["--flip-sign-output", index or "0"]


def run_on_device(model: Path, target: Target, profile: DeviceProfile, opts: RunOptions, inputs: dict[str, np.ndarray],
                  input_map: dict[str, dict[str, Any]], *, eval_binary: str | None = None,
                  stateful: bool = False) -> DeviceOutputs:
    """Outputs of `model` for `inputs` (source layout, by source name) computed on the device."""
    with tempfile.TemporaryDirectory(prefix="edgeport-deval-") as tmp:
        stage = Path(tmp)
        np.savez(stage / "inputs.npz", **inputs)
        request = {"model": "model.tflite", "inputs": "inputs.npz", "input_map": input_map, "runs": 0,
                   "threads": profile.runtime.threads, "validate": True}
        (stage / "request.json").write_text(json.dumps(request))
        files = {**RUNNER_FILES, "model.tflite": Path(model), "inputs.npz": stage / "inputs.npz",
                 "request.json": stage / "request.json"}
        local_out = stage / OUTPUTS
        t0 = time.monotonic()
        if target.kind == "ssh":
            info = _via_ssh(target, profile, opts, files, local_out)
        elif target.kind == "adb":
            info = _via_adb(target, profile, opts, files, local_out, eval_binary, stateful, stage)
        else:
            raise InputError(f"target '{target}' is not a device", hint="device validation runs on adb:// and ssh:// targets")
        seconds = time.monotonic() - t0
        with np.load(local_out, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k.startswith("out::")}
        if not arrays:
            raise DeviceError(f"the device {target} returned no outputs", hint="run it again with --debug")
        sent = info.get("sent_bytes") or sum(Path(p).stat().st_size for p in files.values())
        return DeviceOutputs(arrays, info.get("runtime") or {}, info.get("device") or {}, info.get("how", ""), sent,
                             local_out.stat().st_size, round(seconds, 3))


def _via_ssh(target: Target, profile: DeviceProfile, opts: RunOptions, files: dict[str, Path], local_out: Path) -> dict[str, Any]:
    from edgeport.runners.ssh import interpret_remote, remote_session

    python = profile.connection.remote_python or "python3"
    with remote_session(target, profile, opts) as (session, remote_dir):
        session.upload(remote_dir, files["model.tflite"], files)
        # Absolute paths: the session's cleanup recognises a still-running runner by its dir in argv.
        args = [f"{remote_dir}/{RUNNER}", f"{remote_dir}/request.json", f"{remote_dir}/{OUTPUTS}", *fault_args()]
        result = session.run_python(remote_dir, python, args, STEP)
        data = interpret_remote(result, target, python, MARKER, STEP)
        session.download(remote_dir, OUTPUTS, local_out)
    return {**data, "how": "edgeport_eval.py (python) over ssh"}


def _via_adb(target: Target, profile: DeviceProfile, opts: RunOptions, files: dict[str, Path], local_out: Path,
             eval_binary: str | None, stateful: bool, stage: Path) -> dict[str, Any]:
    from edgeport.runners.adb import REMOTE_BASE, AdbClient, list_devices, pick_device

    adb = shutil.which("adb")
    if adb is None:
        raise DeviceError("adb is not installed or not on PATH", hint="install Android platform-tools and add it to PATH")
    deadline = Deadline(opts.timeout_s or profile.connection.timeout_s)
    client = AdbClient(adb, pick_device(list_devices(adb, deadline), target), target, deadline)
    python = profile.connection.remote_python or "python3"
    rc, found = client.shell(f"command -v {shlex.quote(python)}", "looking for python on the device")
    has_python = rc == 0 and bool(found.strip())
    if not has_python and not eval_binary:
        raise CannotValidate(f"{target} has no '{show_text(python)}' in its adb shell and no --eval-binary was given: "
                             "adb can only time this device, its accuracy was not checked",
                             hint="install Python there (Termux: pkg install python; pip install ai-edge-litert numpy) "
                                  "or pass --eval-binary with an evaluation tool built for the device")
    if not has_python and stateful:
        raise CannotValidate(f"--eval-binary cannot be trusted to reset this model's state per sample on {target}: "
                             "accuracy on the device was not checked",
                             hint="give the device a Python with ai-edge-litert (the runner resets state as the host does)")
    remote = f"{REMOTE_BASE}/edgeport-{secrets.token_hex(8)}"
    try:
        client.shell_ok(f"mkdir -m 700 {shlex.quote(remote)}", "creating the temp dir")
        if has_python:
            for name, local in files.items():
                client.push(Path(local), f"{remote}/{name}")
            command = " ".join(shlex.quote(w) for w in [python, f"{remote}/{RUNNER}", f"{remote}/request.json",
                                                         f"{remote}/{OUTPUTS}", *fault_args()])
            _, output = client.shell(f"cd {shlex.quote(remote)} && {command}", STEP)
            from edgeport.runners.ssh import SshResult, interpret_remote

            data = interpret_remote(SshResult(0, output, output), target, python, MARKER, STEP)
            client.pull(f"{remote}/{OUTPUTS}", local_out)
            return {**data, "how": "edgeport_eval.py (python) over adb shell"}
        return _eval_binary(client, remote, Path(eval_binary or ""), files, local_out, profile, stage)
    finally:
        client.cleanup(remote)


def eval_binary_argv(remote: str, threads: int) -> list[str]:
    """The --eval-binary contract: run in `remote`, read in/<signature input>.npy (all samples stacked,
    already in the model's input dtype and layout), write out/<signature output>.npy, one row per sample,
    in the output's own dtype. Exit 0 on success."""
    return ["./eval_binary", f"--model={remote}/model.tflite", f"--inputs={remote}/in", f"--outputs={remote}/out",
            f"--num_threads={threads}"]


def _eval_binary(client: Any, remote: str, binary: Path, files: dict[str, Path], local_out: Path, profile: DeviceProfile,
                 stage: Path) -> dict[str, Any]:
    from edgeport.tflite.runner import dequantize_output, load_interpreter_class, quantize_input

    if not binary.is_file():
        raise InputError(f"--eval-binary {show_text(str(binary), 200)} does not exist", hint="pass the host path of the tool built for the device")
    interpreter_cls, _ = load_interpreter_class()
    runner = interpreter_cls(model_path=str(files["model.tflite"])).get_signature_runner()
    in_details, out_details = runner.get_input_details(), runner.get_output_details()
    request = json.loads(Path(files["request.json"]).read_text())
    with np.load(files["inputs.npz"]) as data:
        feeds = {key: data[spec["source"]] if spec.get("perm") is None else data[spec["source"]].transpose(spec["perm"])
                 for key, spec in request["input_map"].items()}
    (stage / "in").mkdir()
    for key, array in feeds.items():
        np.save(stage / "in" / f"{key}.npy", quantize_input(np.ascontiguousarray(array), in_details[key]))
    client.shell_ok(f"mkdir {shlex.quote(remote + '/in')} {shlex.quote(remote + '/out')}", "creating the data dirs")
    client.push(Path(files["model.tflite"]), f"{remote}/model.tflite")
    client.push(binary, f"{remote}/eval_binary")
    for path in sorted((stage / "in").iterdir()):
        client.push(path, f"{remote}/in/{path.name}")
    client.shell_ok(f"chmod 755 {shlex.quote(remote + '/eval_binary')}", "making the eval binary executable")
    rc, output = client.shell(f"cd {shlex.quote(remote)} && {shlex.join(eval_binary_argv(remote, profile.runtime.threads))}", STEP)
    if rc != 0:
        raise DeviceError(f"--eval-binary failed on {client.target} (exit {rc}): {last_line(output) or 'no output'}",
                          hint="run it by hand on the device; it must follow the contract in the README (in/*.npy -> out/*.npy)")
    arrays = {}
    for key, detail in out_details.items():
        got = stage / f"out_{len(arrays)}.npy"
        client.pull(f"{remote}/out/{key}.npy", got)
        arrays[f"out::{key}"] = dequantize_output(np.load(got, allow_pickle=False), detail)
    np.savez(local_out, **arrays)
    sent = sum(p.stat().st_size for p in [Path(files["model.tflite"]), binary, *(stage / "in").iterdir()])
    return {"runtime": {"name": "--eval-binary", "version": binary.name}, "device": {}, "how": "--eval-binary over adb",
            "sent_bytes": sent}


def _layout(arrays: dict[str, np.ndarray], references: list[np.ndarray] | None) -> list[np.ndarray]:
    """Device outputs in the reference's order and layout, read exactly as validate/run reads the host's."""
    from edgeport.validate.run import _reference_layout

    return _reference_layout(arrays, [k[len("out::"):] for k in arrays], references)


# ------------------------------------------------------------------------------------------- figures


def figures(device: list[np.ndarray], host: list[np.ndarray], names: list[str], references: list[np.ndarray] | None,
            labels: np.ndarray | None) -> dict[str, Any]:
    """Device vs host (agreement), device vs float (accuracy) and vs labels, all on the same samples."""
    agreement = [metrics.compare_output(n, h, d) for n, h, d in zip(names, host, device, strict=True)]
    found: dict[str, Any] = {"agreement": _summary(agreement), "accuracy": None, "labels": None}
    if references is not None:
        found["accuracy"] = _summary([metrics.compare_output(n, r, d) for n, r, d in zip(names, references, device, strict=True)])
    if labels is not None:
        scored = {"device": metrics.label_accuracy(device[0], labels), "host": metrics.label_accuracy(host[0], labels),
                  "reference": metrics.label_accuracy(references[0], labels) if references is not None else None}
        found["labels"] = scored
        if found["accuracy"] is not None and scored["device"] is not None and scored["reference"] is not None:
            found["accuracy"]["drop_pp"] = round((scored["reference"] - scored["device"]) * 100, 4)
    return found


def _summary(per_output: list[metrics.OutputMetrics]) -> dict[str, Any]:
    """Every output's figures, plus the worst output's cosine and SNR and the first output's top-1."""
    rows = [m.to_dict() for m in per_output]
    cosines = [m.cosine_mean for m in per_output]
    return {"outputs": rows, "cosine_mean": float("nan") if any(c != c for c in cosines) else min(cosines),
            "cosine_min": min(m.cosine_min for m in per_output), "snr_db": min(m.snr_db for m in per_output),
            "top1_agreement": per_output[0].top1_agreement}


def host_side() -> dict[str, Any]:
    """The host's runtime and Python, beside the device's in the report."""
    from edgeport.runners.remote_bench import module_version

    try:
        import ai_edge_litert  # noqa: F401

        name, version = "ai_edge_litert", module_version("ai_edge_litert", "ai-edge-litert")
    except ImportError:
        name, version = "tflite_runtime", module_version("tflite_runtime", "tflite-runtime")
    return {"runtime": {"name": name, "version": version}, "python": platform.python_version(), "machine": platform.machine()}


def section(target: Target, out: DeviceOutputs, found: dict[str, Any], samples: int, sampled_from: int) -> dict[str, Any]:
    """report.json's `device_validation`."""
    device = out.device
    sampled = samples < sampled_from
    return {
        "checked": True, "target": str(target), "how": out.how, "samples": samples, "sampled_from": sampled_from,
        "sampled": sampled,
        "note": (f"the validation set was sampled evenly to {samples} of {sampled_from} samples to keep the transfer under "
                 f"{MAX_TRANSFER_BYTES / 2**20:g} MiB") if sampled else None,
        "device": {"runtime": out.runtime, "python": device.get("python"), "machine": device.get("machine"),
                   "cpu_model": device.get("cpu_model") or device.get("hardware"), "system": device.get("system")},
        "host": host_side(),
        **found,
        "transfer_bytes": {"to_device": out.bytes_to_device, "from_device": out.bytes_from_device,
                           "total": out.bytes_to_device + out.bytes_from_device},
        "seconds": out.seconds,
        "fault_planted": bool(os.environ.get(FAULT_ENV)),
    }


def not_checked(target: Target, reason: str) -> dict[str, Any]:
    return {"checked": False, "target": str(target), "reason": reason}


def validate_on_device(model: Path, target: Target, profile: DeviceProfile, opts: RunOptions, input_map: dict[str, dict[str, Any]],
                       inputs: dict[str, np.ndarray], host: list[np.ndarray] | None, names: list[str],
                       references: list[np.ndarray] | None, labels: np.ndarray | None, *, eval_binary: str | None = None,
                       stateful: bool = False) -> dict[str, Any]:
    """The validation samples (source layout) on the device, judged against `host` (the host's TFLite outputs
    of the same samples, in reference layout), `references` and `labels`: report.json's device_validation."""
    if host is None:
        return not_checked(target, "the model did not run on this host's validation data: nothing to compare the device with")
    count = len(host[0])
    per_sample = sum(int(a[0].nbytes) for a in inputs.values()) + sum(int(h[0].nbytes) for h in host)
    steps = max([int(spec.get("steps", 1)) for spec in input_map.values() if spec.get("state_from") is not None] or [1])
    idx = pick_samples(count, per_sample, steps=steps)
    try:
        out = run_on_device(model, target, profile, opts, {k: v[idx] for k, v in inputs.items()}, input_map,
                            eval_binary=eval_binary, stateful=stateful or steps > 1)
    except CannotValidate as exc:
        return not_checked(target, exc.one_line())
    refs = [r[idx] for r in references] if references is not None else None
    device = _layout(out.arrays, refs if refs is not None else [h[idx] for h in host])
    found = figures(device, [h[idx] for h in host], names, refs, labels[idx] if labels is not None else None)
    return section(target, out, found, len(idx), count)


def convert_stage(model: Path, profile: DeviceProfile, req: Any, input_map: dict[str, dict[str, Any]], val: Any,
                  references: list[np.ndarray], run: Any, io: Any, info: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """`convert --target adb://|ssh://`: the artifact's validation data on the first device target, or None
    without one. A device that can only be timed (adb without Python) is a note, not an error."""
    from edgeport.runners.targets import parse_target

    target = next((t for t in (parse_target(text) for text in req.targets) if t.is_device), None)
    if target is None:
        return None
    with progress.stage("device validation", f"{target}: the validation data on the device"):
        found = validate_on_device(model, target, profile, req.run_options, input_map, val.inputs, run.outputs,
                                   [o.name for o in io.outputs], references, val.labels,
                                   eval_binary=getattr(req, "eval_binary", None),
                                   stateful=bool(info.get("variable_tensors")))
    if not found["checked"]:
        notes.append(f"accuracy on the device was not checked: {found['reason']}")
    elif found["sampled"]:
        notes.append(f"device validation: {found['note']}")
    return found
