"""Time a .tflite on a Linux board over ssh: copy, run remote_bench.py, read one JSON line, clean up.

Uses the system `ssh`/`scp`, so the user's ~/.ssh/config, agent and ProxyJump keep working. Safety
rules (DESIGN principle 4): argument lists only, every value inside a remote command goes through
`shlex.quote`, and host-key checking stays strict (`StrictHostKeyChecking=yes`, `BatchMode=yes`, so ssh
never prompts); an unknown or changed key is an error that tells the user how to verify it, never a
reason to switch checking off. Remote files keep fixed names in a private `mktemp -d` directory, so the
local model name (spaces, quotes, `$(...)`) never reaches a remote shell.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import DeviceError, InputError
from edgeport.profiles import DeviceProfile
from edgeport.runners.common import Deadline, RunOptions, Target
from edgeport.runners.common import last_line as _last_line
from edgeport.runners.common import show_text as _show
from edgeport.types import LatencyStats

SCRIPT = Path(__file__).with_name("remote_bench.py")
REMOTE_SCRIPT = "edgeport_bench.py"
REMOTE_MODEL = "model.tflite"
CLEANUP_TIMEOUT_S = 30.0  # cleanup gets its own budget: it must run even after the main one is spent
_BACKOFF_S = (0.5, 1.0, 2.0)
_SAFE_DIR_RE = re.compile(r"^/[A-Za-z0-9._/-]+/edgeport-[0-9a-f]{16}-[A-Za-z0-9]+$")
_DELEGATES = {None: "default", "xnnpack": "xnnpack", "edgetpu": "edgetpu"}

# ssh's own messages (OpenSSH 7.x-9.x) for failures before any remote command ran. Retrying these is
# safe because nothing happened on the device; anything after authentication is never retried.
_CONNECT_PATTERNS = (
    ("refused", re.compile(r"connect to host .*: Connection refused", re.I)),
    ("unreachable", re.compile(r"connect to host .*: (?:Connection timed out|Operation timed out|No route to host|"
                               r"Network is unreachable|Host is down)|kex_exchange_identification|banner exchange|"
                               r"Connection (?:closed|reset) by \S+ port \d+", re.I)),
    ("dns", re.compile(r"Could not resolve hostname", re.I)),
)
_PRE_SESSION_RE = re.compile(r"Permission denied \(|Too many authentication failures|Host key verification failed|"
                             r"host key is known|HOST IDENTIFICATION HAS CHANGED", re.I)


@dataclass(frozen=True)
class SshResult:
    returncode: int
    stdout: str
    stderr: str


def run_ssh(model: Path, target: Target, profile: DeviceProfile, opts: RunOptions, *, retries: int = 2) -> LatencyStats:
    """Measure `model` on `target`; the device returns raw per-run times, this host builds the stats."""
    if target.kind != "ssh" or not target.host:
        raise InputError(f"'{target}' is not an ssh target", hint="use ssh://[user@]host[:port]")
    delegate = _delegate(profile)
    with remote_session(target, profile, opts, retries=retries) as (session, remote_dir):
        session.upload(remote_dir, model)
        result = session.bench(remote_dir, profile, runs=opts.runs, warmup=opts.warmup, delegate=delegate)
    return _to_stats(result, target, profile, opts.warmup)


@contextmanager
def remote_session(target: Target, profile: DeviceProfile, opts: RunOptions, *,
                   retries: int = 2) -> Iterator[tuple[SshSession, str]]:
    """A session and its private remote temp dir, removed afterwards whatever happened (also after a
    dropped connection: cleanup opens a new one). Timing and device validation both run inside one."""
    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            raise DeviceError(f"'{tool}' is not installed on this machine",
                              hint="install the OpenSSH client (e.g. apt-get install openssh-client)")
    session = SshSession(target, list(opts.ssh_options), Deadline(opts.timeout_s or profile.connection.timeout_s), retries=retries)
    token = secrets.token_hex(8)  # names this run's remote dir, so cleanup finds it even if mktemp's reply is lost
    try:
        yield session, session.make_temp_dir(token)
    finally:
        if session.reached:  # an unreachable host has nothing to clean, and would only stall here again
            session.cleanup(token)


def _delegate(profile: DeviceProfile) -> str:
    delegate = profile.runtime.delegate
    if delegate not in _DELEGATES:
        raise InputError(f"delegate '{delegate}' of profile '{profile.name}' cannot be timed over ssh",
                         hint="the ssh runner supports the CPU (XNNPACK) and the Edge TPU; use adb:// for the Android GPU")
    return _DELEGATES[delegate]


class SshSession:
    """Builds ssh/scp argument lists for one target and maps their failures to DeviceError."""

    def __init__(self, target: Target, options: list[str], deadline: Deadline, *, retries: int = 2) -> None:
        self.target = target
        self.options = options
        self.deadline = deadline
        self.retries = max(0, retries)
        self.legacy_scp = False
        self.reached = False  # did any command get past connecting? (if not, there is nothing to clean up)

    # ------------------------------------------------------------------------------ argv building

    def _common(self, timeout: float) -> list[str]:
        # User options come first: ssh keeps the FIRST value it sees for an option, so an explicit
        # option from the caller wins, while edgeport's defaults hold everywhere else.
        connect = max(1, min(15, int(timeout)))
        return [*self.options, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={connect}"]

    def ssh_argv(self, remote_script: str, timeout: float) -> list[str]:
        """`ssh ... -- host 'sh -c SCRIPT'`: the remote login shell may be fish or csh, so wrap in sh."""
        argv = ["ssh", *self._common(timeout)]
        if self.target.port is not None:
            argv += ["-p", str(self.target.port)]
        if self.target.user:
            argv += ["-l", self.target.user]
        return [*argv, "--", self.target.host or "", "sh -c " + shlex.quote(remote_script)]

    def scp_argv(self, sources: list[str], remote_dir: str, timeout: float) -> list[str]:
        argv = ["scp", "-q", *(["-O"] if self.legacy_scp else []), *self._common(timeout)]
        if self.target.port is not None:
            argv += ["-P", str(self.target.port)]
        host = self.target.host or ""
        host = f"[{host}]" if ":" in host else host
        user = f"{self.target.user}@" if self.target.user else ""
        # remote_dir matched _SAFE_DIR_RE, so it needs no quoting in either scp protocol (legacy scp
        # hands the path to the remote shell, SFTP does not).
        return [*argv, "--", *sources, f"{user}{host}:{remote_dir}/"]

    # ---------------------------------------------------------------------------------- running

    def _run(self, argv: list[str], step: str, timeout: float) -> SshResult:
        """Run one ssh/scp command; retry only failures to connect, within the overall deadline."""
        attempt = 0
        while True:
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            except subprocess.TimeoutExpired as exc:
                self.reached = True  # the command may have started remotely: clean up to be safe
                raise DeviceError(f"{step} on {self.target} timed out (time budget {self.deadline.total:g} s)",
                                  hint="raise connection.timeout_s in the profile, or check the device's load and network") from exc
            except OSError as exc:
                raise DeviceError(f"cannot start {argv[0]}: {exc.strerror or exc}", hint="check the OpenSSH client installation") from exc
            result = SshResult(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
            kind = connect_failure_kind(result.stderr) if result.returncode == 255 else None
            if result.returncode != 255 or (kind is None and not _PRE_SESSION_RE.search(result.stderr)):
                self.reached = True
            if result.returncode != 255:
                return result
            pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            if kind is None or attempt >= self.retries or self.deadline.remaining() < pause + 1.0:
                return result
            time.sleep(pause)
            attempt += 1
            timeout = self.deadline.step()

    def _checked(self, argv: list[str], step: str, timeout: float) -> SshResult:
        result = self._run(argv, step, timeout)
        if result.returncode == 255:
            raise ssh_error(result.stderr, self.target, step)
        return result

    def make_temp_dir(self, token: str) -> str:
        script = ('umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/edgeport-' + token + '-XXXXXXXX") && '
                  'chmod 700 "$d" && printf "%s\\n" "$d"')
        result = self._checked(self.ssh_argv(script, self.deadline.step()), "creating a temp dir", self.deadline.step())
        remote_dir = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
        if result.returncode != 0 or not remote_dir:
            raise DeviceError(f"cannot create a temp dir on {self.target}: {_last_line(result.stderr) or 'mktemp failed'}",
                              hint="check that the device has mktemp and a writable $TMPDIR or /tmp")
        if not _SAFE_DIR_RE.match(remote_dir) or token not in remote_dir:
            raise DeviceError(f"the device created an unexpected temp dir '{_show(remote_dir)}'",
                              hint="set TMPDIR on the device to a plain path such as /tmp")
        return remote_dir

    def upload(self, remote_dir: str, model: Path, files: dict[str, Path] | None = None) -> None:
        """Copy the model and the runner (or `files`: remote name -> local path) into remote_dir."""
        files = files if files is not None else {REMOTE_MODEL: model, REMOTE_SCRIPT: SCRIPT}
        # Fixed names via symlinks in a private local dir: the user's file name never reaches scp's
        # remote side, and scp copies the files the links point to.
        with tempfile.TemporaryDirectory(prefix="edgeport-scp-") as tmp:
            sources = []
            for name, local in files.items():
                Path(tmp, name).symlink_to(Path(local).resolve())
                sources.append(str(Path(tmp, name)))
            result = self._run(self.scp_argv(sources, remote_dir, self.deadline.step()), "copying the model", self.deadline.step())
            if result.returncode != 0 and not self.legacy_scp and _sftp_missing(result.stderr):
                self.legacy_scp = True  # devices without an sftp-server (dropbear, minimal images)
                result = self._run(self.scp_argv(sources, remote_dir, self.deadline.step()), "copying the model",
                                   self.deadline.step())
        if result.returncode == 255 and connect_failure_kind(result.stderr) is not None:
            raise ssh_error(result.stderr, self.target, "copying the model")
        if result.returncode != 0:
            raise DeviceError(f"copying the model to {self.target} failed: {_last_line(result.stderr) or f'scp exit {result.returncode}'}",
                              hint="check free space in the device's /tmp")

    def download(self, remote_dir: str, name: str, local: Path) -> None:
        """Copy remote_dir/name (a fixed name) back to `local`."""
        argv = ["scp", "-q", *(["-O"] if self.legacy_scp else []), *self._common(self.deadline.step())]
        if self.target.port is not None:
            argv += ["-P", str(self.target.port)]
        host = self.target.host or ""
        host = f"[{host}]" if ":" in host else host
        user = f"{self.target.user}@" if self.target.user else ""
        step = "copying the outputs back"
        result = self._run([*argv, "--", f"{user}{host}:{remote_dir}/{name}", str(local)], step, self.deadline.step())
        if result.returncode == 255 and connect_failure_kind(result.stderr) is not None:
            raise ssh_error(result.stderr, self.target, step)
        if result.returncode != 0:
            raise DeviceError(f"copying the outputs back from {self.target} failed: "
                              f"{_last_line(result.stderr) or f'scp exit {result.returncode}'}",
                              hint="check the connection and free space on this machine, then run again")

    def bench(self, remote_dir: str, profile: DeviceProfile, *, runs: int, warmup: int, delegate: str) -> dict[str, Any]:
        python = profile.connection.remote_python or "python3"
        timeout = self.deadline.step()
        args = [f"{remote_dir}/{REMOTE_SCRIPT}", f"{remote_dir}/{REMOTE_MODEL}",
                "--runs", str(runs), "--warmup", str(warmup), "--threads", str(profile.runtime.threads),
                "--delegate", delegate, "--max-seconds", f"{timeout + 10.0:.1f}"]
        # The host's timeout is authoritative (it kills the session, cleanup kills the process); the
        # script's own limit, a little later, only stops a run whose kill got lost with the connection.
        result = self.run_python(remote_dir, python, args, "the benchmark")
        return interpret_bench(result, self.target, python)

    def run_python(self, remote_dir: str, python: str, args: list[str], step: str) -> SshResult:
        """`python args...` in remote_dir. Background + wait: the pid file lets cleanup stop a run that
        outlives the host's timeout, and `wait` reports a crash as 128+signal instead of ssh's ambiguous 255."""
        try:
            python_argv = shlex.split(python)
        except ValueError as exc:
            raise InputError(f"connection.remote_python '{_show(python)}' is not a valid command: {exc}",
                             hint="e.g. remote_python = \"python3\" or \"/opt/venv/bin/python\"") from exc
        if not python_argv:
            raise InputError("connection.remote_python is empty", hint="e.g. remote_python = \"python3\"")
        timeout = self.deadline.step()
        command = " ".join([*(_remote_word(w) for w in python_argv), *(shlex.quote(a) for a in args)])
        script = (f"cd {shlex.quote(remote_dir)} || exit 97; {command} & p=$!; "
                  f"echo \"$p\" > {shlex.quote(remote_dir + '/pid')}; wait \"$p\"")
        return self._run(self.ssh_argv(script, timeout), step, timeout)

    def cleanup(self, token: str) -> None:
        """Kill a still-running benchmark of this run and remove its temp dir; never raises."""
        script = ('for d in "${TMPDIR:-/tmp}"/edgeport-' + token + '-*; do [ -d "$d" ] || continue; '
                  'p=$(cat "$d/pid" 2>/dev/null); '
                  'if [ -n "$p" ] && grep -q ' + token + ' "/proc/$p/cmdline" 2>/dev/null; then kill "$p" 2>/dev/null; fi; '
                  'rm -rf "$d"; done')
        argv = self.ssh_argv(script, CLEANUP_TIMEOUT_S)
        try:
            subprocess.run(argv, capture_output=True, timeout=CLEANUP_TIMEOUT_S, check=False)
        except (subprocess.TimeoutExpired, OSError):
            pass  # best effort: the main error (if any) is the one the user needs to see


# --------------------------------------------------------------------------- result and errors


def interpret_bench(result: SshResult, target: Target, python: str) -> dict[str, Any]:
    """Turn the remote run's exit code, stdout JSON and stderr into data or one clear DeviceError."""
    data = interpret_remote(result, target, python, "edgeport_remote_bench", "the benchmark")
    if not isinstance(data.get("times_ms"), list) or not data["times_ms"]:
        raise DeviceError(f"the runner on {target} returned no timings", hint="run again with more --runs")
    return data


def interpret_remote(result: SshResult, target: Target, python: str, marker: str, step: str) -> dict[str, Any]:
    """A remote runner's one JSON line (the key `marker` names the runner), or one clear DeviceError."""
    data = find_json(result.stdout, marker)
    if data is not None and data.get("ok"):
        return data
    if data is not None:
        raise _reported_error(data, target, python)
    rc, stderr = result.returncode, result.stderr
    if rc == 255:
        if connect_failure_kind(stderr) is not None or _PRE_SESSION_RE.search(stderr):
            raise ssh_error(stderr, target, step)
        raise DeviceError(f"the connection to {target} dropped during {step}: {_last_line(stderr) or 'no message'}",
                          hint="check the network and the device's power supply, then run again")
    if rc == 127:
        raise DeviceError(f"remote python '{_show(python)}' was not found on {target}",
                          hint="install python3 on the device, or set connection.remote_python in the profile to its path")
    if rc == 126:
        raise DeviceError(f"remote python '{_show(python)}' on {target} is not executable",
                          hint="fix its permissions or point connection.remote_python at a working interpreter")
    if "SyntaxError" in stderr:
        raise DeviceError(f"remote python '{_show(python)}' on {target} is too old for the runner",
                          hint="use Python 3.7 or newer via connection.remote_python")
    if rc > 128:
        raise DeviceError(f"the runner of {step} crashed on {target} (signal {rc - 128}): {_last_line(stderr) or 'no message'}",
                          hint="the TFLite runtime aborted on this model; try another runtime version or delegate")
    raise DeviceError(f"the runner of {step} failed on {target} (exit {rc}): {_last_line(stderr) or 'no output'}",
                      hint="run it by hand on the device to see the full error")


def _reported_error(data: dict[str, Any], target: Target, python: str) -> DeviceError:
    kind, message = data.get("error"), _show(str(data.get("message", "")), 200)
    if kind == "no_runtime":
        also = " and no numpy" if data.get("numpy_error") else ""
        real = str(data.get("python") or "")
        runs_as = f" (it runs {_show(real)})" if real and real != python else ""
        if data.get("install"):  # the device runner's own line: what to pip install there
            return DeviceError(f"no TFLite runtime or numpy for remote python '{_show(python)}'{runs_as} on {target}",
                               hint=f"on the device: {_show(str(data['install']), 120)} (or tflite-runtime instead of ai-edge-litert)")
        return DeviceError(f"no TFLite runtime{also} for remote python '{_show(python)}'{runs_as} on {target}",
                           hint=f"install one on the device: {python} -m pip install ai-edge-litert (or tflite-runtime)")
    if kind == "delegate_failed":
        return DeviceError(f"the Edge TPU delegate did not load on {target}: {message}",
                           hint="install libedgetpu1-std on the device and check that the accelerator is connected")
    if kind == "model_failed":
        return DeviceError(f"the runtime on {target} could not load the model: {message}",
                           hint="the device's runtime may be older than the model's ops; upgrade ai-edge-litert / tflite-runtime")
    if kind == "deadline":
        return DeviceError(f"the benchmark on {target} ran out of time: {message}",
                           hint="lower --runs or raise connection.timeout_s in the profile")
    return DeviceError(f"the device runner failed on {target}: {message or kind}",
                       hint="run edgeport with --debug and check the device")


def connect_failure_kind(stderr: str) -> str | None:
    """'refused' / 'unreachable' / 'dns' for failures before the session started, else None."""
    if _PRE_SESSION_RE.search(stderr):
        return None  # authentication / host-key problems: retrying cannot help
    for kind, pattern in _CONNECT_PATTERNS:
        if pattern.search(stderr):
            return kind
    return None


def ssh_error(stderr: str, target: Target, step: str) -> DeviceError:
    """One-line DeviceError for an ssh exit status 255, from OpenSSH's own wording."""
    host = target.host or ""
    port = f" -p {target.port}" if target.port else ""
    login = f"{target.user}@{host}" if target.user else host
    keyscan_host = f"-p {target.port} {host}" if target.port else host
    known = f"[{host}]:{target.port}" if target.port else host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or ("Host key for" in stderr and "has changed" in stderr):
        return DeviceError(f"the host key of {target} has CHANGED since it was stored in known_hosts "
                           "(the device was reinstalled, or someone is intercepting the connection)",
                           hint=f"verify the new key with the device's owner, then remove the old one with "
                                f"`ssh-keygen -R '{known}'` and connect once with `ssh{port} {login}`; "
                                "edgeport never disables host-key checking")
    if "Host key verification failed" in stderr or re.search(r"No \S+ host key is known", stderr):
        return DeviceError(f"the host key of {target} is not in known_hosts, and edgeport checks host keys strictly",
                           hint=f"connect once with `ssh{port} {login}` and compare the fingerprint, or add it with "
                                f"`ssh-keyscan {keyscan_host} >> ~/.ssh/known_hosts` after checking it")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        user = target.user or "your user"
        return DeviceError(f"authentication to {target} failed (Permission denied for {user})",
                           hint="edgeport runs ssh with BatchMode=yes (no password prompts): install your key with "
                                f"`ssh-copy-id{port} {login}` or load it into ssh-agent")
    kind = connect_failure_kind(stderr)
    if kind == "refused":
        return DeviceError(f"{target} refused the connection (nothing listens on port {target.port or 22})",
                           hint="start sshd on the device, or put the right port in the target: ssh://user@host:PORT")
    if kind == "dns":
        return DeviceError(f"cannot resolve the host name '{host}'", hint="check the name, or use the device's IP address")
    if kind == "unreachable":
        return DeviceError(f"{target} is unreachable ({_last_line(stderr)})",
                           hint="check that the device is on and on the same network, or set ProxyJump in ~/.ssh/config")
    return DeviceError(f"ssh to {target} failed while {step}: {_last_line(stderr) or 'exit status 255'}",
                       hint=f"try `ssh{port} {login}` by hand to see the problem")


def _remote_word(word: str) -> str:
    """Quote one word for the remote shell, keeping a leading `~/` meaning the remote home."""
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def _sftp_missing(stderr: str) -> bool:
    return bool(re.search(r"subsystem request failed|sftp-server|Received message too long|Connection closed", stderr, re.I))


def find_json(stdout: str, marker: str = "edgeport_remote_bench") -> dict[str, Any] | None:
    """The last JSON line of a remote runner's stdout that carries `marker` (noise around it ignored)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and marker in data:
                return data
    return None


def _to_stats(data: dict[str, Any], target: Target, profile: DeviceProfile, warmup: int) -> LatencyStats:
    times = [float(t) for t in data["times_ms"]]
    extra = {
        "device": data.get("device", {}),
        "runtime": data.get("runtime"),
        "delegate": data.get("delegate"),
        "peak_memory_mb": data.get("peak_rss_mb"),
        "load_ms": data.get("load_ms"),
        "warmup_runs": warmup,
        "inputs": data.get("inputs"),
        "outputs": data.get("outputs"),
        "p50_is_avg": False,
        "measured_by": "edgeport remote_bench.py over ssh",
    }
    return LatencyStats.from_samples(times, str(target), threads=int(data.get("threads") or profile.runtime.threads), extra=extra)


