"""Time a .tflite on an Android device with TFLite's `benchmark_model` over adb.

The phone only runs benchmark_model and returns its text; benchmark_log.py parses it on the host
(DESIGN principle 3). Every command is an argument list; the one string that reaches the device shell
is assembled with `shlex.quote` for each value. The device is resolved once with `adb devices` and
then pinned with `-s SERIAL`, so a second phone plugged in mid-run cannot receive half the commands.
A random `/data/local/tmp/edgeport-<hex>` dir is always removed, also after a failure or timeout, and a
benchmark still running after a host-side timeout is killed through its pid file.
"""

from __future__ import annotations

import re
import secrets
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import DeviceError, InputError
from edgeport.profiles import DeviceProfile
from edgeport.runners.benchmark_log import BenchmarkLog, parse_benchmark_log, to_latency_stats
from edgeport.runners.common import Deadline, RunOptions, Target
from edgeport.runners.common import last_line as _last_line
from edgeport.runners.common import show_text as _show
from edgeport.types import LatencyStats, file_sha256

REMOTE_BASE = "/data/local/tmp"
PROPS = ("ro.product.model", "ro.product.manufacturer", "ro.board.platform", "ro.build.version.release",
         "ro.product.cpu.abi")
CLEANUP_TIMEOUT_S = 30.0
_RC_MARK = "__EDGEPORT_RC="
_DELEGATE_FLAGS = {None: [], "xnnpack": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"]}
# What sh / toybox print when benchmark_model cannot even start (missing file, noexec mount, wrong ABI).
_EXEC_FAIL_RE = re.compile(r"not found|No such file|Permission denied|not executable|Exec format error|"
                           r"cannot execute|can't execute|inaccessible", re.I)
_STATE_HINTS = {
    "unauthorized": ("is unauthorized", "unlock the phone and accept the 'Allow USB debugging?' RSA key prompt, then run again"),
    "offline": ("is offline", "reconnect the cable or run `adb reconnect`; restart adb with `adb kill-server` if it stays offline"),
    "no permissions": ("cannot be opened (no permissions)", "add a udev rule for the phone or run `adb kill-server` and retry with the right group"),
    "authorizing": ("is still authorizing", "wait a moment and accept the USB debugging prompt on the phone"),
    "connecting": ("is still connecting", "wait a moment and run again"),
}


@dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str


def run_adb(model: Path, target: Target, profile: DeviceProfile, opts: RunOptions) -> LatencyStats:
    """Push model + benchmark_model, run it pinned with taskset, parse its output, always clean up."""
    binary = _resolve_binary(opts.benchmark_binary, profile)
    delegate_flags = _delegate_flags(profile)
    adb = shutil.which("adb")
    if adb is None:
        raise DeviceError("adb is not installed or not on PATH",
                          hint="install Android platform-tools (https://developer.android.com/tools/releases/platform-tools) and add it to PATH")
    deadline = Deadline(opts.timeout_s or profile.connection.timeout_s)
    serial = pick_device(list_devices(adb, deadline), target)
    client = AdbClient(adb, serial, target, deadline)
    fingerprint = client.fingerprint()
    remote = f"{REMOTE_BASE}/edgeport-{secrets.token_hex(8)}"
    try:
        client.shell_ok(f"mkdir -m 700 {shlex.quote(remote)}", "creating the temp dir")
        client.push(model, f"{remote}/model.tflite")
        client.push(binary, f"{remote}/benchmark_model")
        client.shell_ok(f"chmod 755 {shlex.quote(remote + '/benchmark_model')}", "making benchmark_model executable",
                        hint=f"the pushed benchmark_model is missing on the device; check free space in {REMOTE_BASE} and run again")
        args = benchmark_args(remote, profile, runs=opts.runs, warmup=opts.warmup, delegate_flags=delegate_flags)
        rc, output = client.shell(bench_command(remote, args, profile.runtime.taskset), "running benchmark_model")
    finally:
        client.cleanup(remote)
    log = parse_benchmark_log(output)
    _check_run(rc, output, log, target, fingerprint)
    extra: dict[str, Any] = {
        "device": fingerprint,
        "runtime": {"name": "benchmark_model", "binary": binary.name, "sha256": file_sha256(binary)},
        "delegate": profile.runtime.delegate,
        "taskset": profile.runtime.taskset,
        "warmup_runs": opts.warmup,
        "measured_by": "TFLite benchmark_model over adb",
        "delegate_log": list(log.delegate_lines),
    }
    return to_latency_stats(log, source=str(target), threads=profile.runtime.threads, extra=extra)


def _resolve_binary(explicit: str | None, profile: DeviceProfile) -> Path:
    text = explicit or profile.connection.benchmark_binary
    if not text:
        raise InputError("timing on an Android device needs TFLite's benchmark_model binary",
                         hint="pass --benchmark-binary PATH with the benchmark_model built for the device ABI "
                              "(e.g. android_aarch64_benchmark_model), or set connection.benchmark_binary in the profile")
    path = Path(text).expanduser()
    if not path.is_file():
        raise InputError(f"benchmark binary {text} does not exist",
                         hint="pass --benchmark-binary with the path of benchmark_model for the device ABI")
    return path


def _delegate_flags(profile: DeviceProfile) -> list[str]:
    delegate = profile.runtime.delegate
    if delegate not in _DELEGATE_FLAGS:
        raise InputError(f"delegate '{delegate}' of profile '{profile.name}' cannot be timed with benchmark_model over adb",
                         hint="Edge TPU boards are timed over ssh (ssh://user@host); adb supports xnnpack and gpu")
    return list(_DELEGATE_FLAGS[delegate])


def benchmark_args(remote: str, profile: DeviceProfile, *, runs: int, warmup: int, delegate_flags: list[str]) -> list[str]:
    # min_secs / warmup_min_secs = 0 make the counts exact: by default benchmark_model keeps running for
    # at least 1 s (0.5 s of warm-up), so --num_runs would only be a lower bound.
    return ["./benchmark_model", f"--graph={remote}/model.tflite", f"--num_threads={profile.runtime.threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0",
            "--enable_op_profiling=true", *delegate_flags]


def bench_command(remote: str, args: list[str], taskset: str | None) -> str:
    """Device shell command: the inner `sh -c` writes its pid, then execs (taskset →) benchmark_model,
    so the pid file names the benchmark process itself and cleanup can stop it after a timeout."""
    argv = (["taskset", taskset] if taskset else []) + args
    inner = f"echo $$ > {shlex.quote(remote + '/pid')}; exec \"$@\""
    return f"cd {shlex.quote(remote)} && sh -c {shlex.quote(inner)} edgeport {shlex.join(argv)} 2>&1"


def list_devices(adb: str, deadline: Deadline) -> list[AdbDevice]:
    try:
        proc = subprocess.run([adb, "devices"], capture_output=True, text=True, errors="replace",
                              timeout=deadline.step(cap=30.0), check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError("`adb devices` timed out", hint="restart the adb server with `adb kill-server`") from exc
    except OSError as exc:
        raise DeviceError(f"cannot run adb: {exc.strerror or exc}", hint="check the platform-tools installation") from exc
    if proc.returncode != 0:
        raise DeviceError(f"`adb devices` failed: {_last_line(proc.stderr or proc.stdout) or f'exit {proc.returncode}'}",
                          hint="restart the adb server with `adb kill-server`")
    return parse_devices(proc.stdout)


def parse_devices(text: str) -> list[AdbDevice]:
    """`adb devices` output → devices; skips the header and the daemon start-up chatter."""
    devices = []
    for line in text.replace("\r", "").splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb server")):
            continue
        serial, sep, state = line.partition("\t")
        if sep:
            devices.append(AdbDevice(serial.strip(), state.strip()))
    return devices


def pick_device(devices: list[AdbDevice], target: Target) -> str:
    """The one device to use, or a DeviceError that tells the user what to plug, accept or choose."""
    if target.serial:
        chosen = [d for d in devices if d.serial == target.serial]
        if not chosen:
            attached = ", ".join(d.serial for d in devices) or "none"
            raise DeviceError(f"device '{target.serial}' is not attached (attached: {attached})",
                              hint="copy the serial from `adb devices`, or `adb connect HOST:PORT` for Wi-Fi debugging")
        device = chosen[0]
    elif not devices:
        raise DeviceError("no Android device found: `adb devices` lists no devices/emulators",
                          hint="connect the phone with USB debugging enabled (Developer options), or `adb connect HOST:PORT`")
    elif len(devices) > 1:
        listed = ", ".join(f"{d.serial} ({d.state})" for d in devices)
        raise DeviceError(f"more than one device is attached: {listed}",
                          hint=f"choose one with --target adb://SERIAL, e.g. adb://{devices[0].serial}")
    else:
        device = devices[0]
    if device.state != "device":
        what, hint = _STATE_HINTS.get(device.state.split(" (")[0], (f"is in state '{device.state}'", "reboot it into Android and retry"))
        raise DeviceError(f"device {device.serial} {what}", hint=hint)
    return device.serial


class AdbClient:
    """adb commands pinned to one serial, under one deadline, with failures mapped to DeviceError."""

    def __init__(self, adb: str, serial: str, target: Target, deadline: Deadline) -> None:
        self.adb, self.serial, self.target, self.deadline = adb, serial, target, deadline

    def _run(self, args: list[str], step: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        timeout = self.deadline.step() if timeout is None else timeout
        try:
            return subprocess.run([self.adb, "-s", self.serial, *args], capture_output=True, text=True,
                                  errors="replace", timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"adb timed out while {step} on {self.target} (time budget {self.deadline.total:g} s)",
                              hint="raise connection.timeout_s in the profile, or lower --runs") from exc
        except OSError as exc:
            raise DeviceError(f"cannot run adb: {exc.strerror or exc}", hint="check the platform-tools installation") from exc

    def shell(self, command: str, step: str) -> tuple[int, str]:
        """Run a device shell command; returns (exit code, merged output). The exit code travels in a
        marker line because adb before Android 7 (no shell protocol) always exits 0."""
        # stderr is merged explicitly: with adb's shell protocol (Android 7+) it would arrive separately
        proc = self._run(["shell", f"{{ {command}; }} 2>&1; echo {_RC_MARK}$?"], step)
        output = proc.stdout.replace("\r\n", "\n")
        match = re.search(rf"^{_RC_MARK}(\d+)\s*$", output, re.M)
        if match is None:
            raise self._error(proc.stderr or proc.stdout, step)
        return int(match.group(1)), output[: match.start()] + output[match.end():]

    def shell_ok(self, command: str, step: str, hint: str | None = None) -> str:
        rc, output = self.shell(command, step)
        if rc != 0:
            raise DeviceError(f"{step} failed on {self.target}: {_last_line(output) or f'exit {rc}'}",
                              hint=hint or f"check free space and permissions in {REMOTE_BASE} on the device")
        return output

    def push(self, local: Path, remote: str) -> None:
        proc = self._run(["push", str(local), remote], f"pushing {local.name}")
        if proc.returncode != 0:
            raise self._error(proc.stderr or proc.stdout, f"pushing {local.name}")

    def pull(self, remote: str, local: Path) -> None:
        """Copy a device file back (device validation's outputs)."""
        proc = self._run(["pull", remote, str(local)], f"copying {remote.rsplit('/', 1)[-1]} back")
        if proc.returncode != 0 or not local.exists():
            raise DeviceError(f"copying {remote.rsplit('/', 1)[-1]} back from {self.target} failed: "
                              f"{_last_line(proc.stderr or proc.stdout) or f'exit {proc.returncode}'}",
                              hint="the device runner wrote no outputs; run again with --debug")

    def fingerprint(self) -> dict[str, Any]:
        command = "; ".join(f"echo {shlex.quote(p)}=$(getprop {shlex.quote(p)})" for p in PROPS)
        _, output = self.shell(command, "reading device properties")
        props = {"serial": self.serial}
        for line in output.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key in PROPS:
                props[key] = value.strip()
        return props

    def cleanup(self, remote: str) -> None:
        """Stop a benchmark that outlived a timeout, then remove the dir; never raises."""
        pid_file = shlex.quote(remote + "/pid")
        token = remote.rsplit("/", 1)[-1]
        command = (f"p=$(cat {pid_file} 2>/dev/null); "
                   f"if [ -n \"$p\" ] && grep -q {shlex.quote(token)} /proc/$p/cmdline 2>/dev/null; then kill $p; fi; "
                   f"rm -rf {shlex.quote(remote)}")
        try:
            subprocess.run([self.adb, "-s", self.serial, "shell", command], capture_output=True,
                           timeout=CLEANUP_TIMEOUT_S, check=False)
        except (subprocess.TimeoutExpired, OSError):
            pass  # best effort; the error that brought us here is the one to report

    def _error(self, text: str, step: str) -> DeviceError:
        return adb_error(text, self.serial, step)


def adb_error(text: str, serial: str, step: str) -> DeviceError:
    """DeviceError from adb's own wording (platform-tools 28-35)."""
    low = text.lower()
    if "no devices/emulators found" in low:
        return DeviceError("no Android device found (adb: no devices/emulators found)",
                           hint="connect the phone with USB debugging enabled, or `adb connect HOST:PORT`")
    if "unauthorized" in low:
        return DeviceError(f"device {serial} is unauthorized", hint=_STATE_HINTS["unauthorized"][1])
    if "offline" in low:
        return DeviceError(f"device {serial} is offline", hint=_STATE_HINTS["offline"][1])
    if "more than one device" in low:
        return DeviceError("more than one device is attached", hint="choose one with --target adb://SERIAL (see `adb devices`)")
    if re.search(r"device '.*' not found", low):
        return DeviceError(f"device {serial} disappeared while {step}", hint="reconnect it and run again")
    if "cannot connect to daemon" in low or "failed to start daemon" in low:
        return DeviceError("the adb server is not running and could not be started", hint="run `adb kill-server; adb start-server`")
    return DeviceError(f"adb failed while {step} on {serial}: {_last_line(text) or 'no message'}",
                       hint="check the connection with `adb devices`")


def _check_run(rc: int, output: str, log: BenchmarkLog, target: Target, fingerprint: dict[str, Any]) -> None:
    if log.completed and rc == 0:
        return
    started = bool(log.params) or "STARTING" in output
    if not started and (rc in (126, 127) or _EXEC_FAIL_RE.search(output)):
        abi = fingerprint.get("ro.product.cpu.abi") or "the device's ABI"
        if "permission denied" in output.lower():
            hint = (f"the device refuses to execute files in {REMOTE_BASE} (a noexec mount or a restricted shell); "
                    "check `adb shell ls -l` of the pushed binary and the device's mount options")
        else:
            hint = (f"pass --benchmark-binary with a benchmark_model built for {abi} "
                    "(e.g. android_aarch64_benchmark_model for arm64-v8a)")
        raise DeviceError(f"benchmark_model could not be started on {target}: {_last_line(output) or f'exit {rc}'}",
                          hint=hint)
    errors = [e for e in log.errors if e.startswith(("ERROR", "FATAL"))] or list(log.errors)
    cause = errors[0] if errors else _last_line(output) or f"exit {rc}"
    last = log.last_error
    detail = f"{cause} (last: {last})" if last and last != cause else cause
    raise DeviceError(f"benchmark_model failed on {target}: {_show(detail, 300)}",
                      hint="an old benchmark_model may lack ops of a newer model; use a build matching your TFLite version")



