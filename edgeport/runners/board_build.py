"""Build, start and stop the emulated arm64 board (run as root: `scripts/arm64_board.sh CMD`).

The recipe (measured on this kind of machine, no Docker): qemu-user-static registers qemu-aarch64
with binfmt_misc (fix-binary, so the root needs no copy of qemu); debootstrap lays down a minimal
Debian arm64 root; a venv in it gets the pinned ai-edge-litert and numpy from the pip index (the only
step that needs the network); the root's own sshd then listens on a free 127.0.0.1 port. /proc and
/dev are bind-mounted into the root while it runs, and /sys never is: with the host's x86 sysfs
visible, XNNPACK's cpuinfo segfaults in every aarch64 process.

Stdlib only, so the script can run before the project's venv exists (CI builds the board first).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from edgeport.runners.board import (
    PACKAGES,
    PIP_PINS,
    QEMU_CPU,
    SUITE,
    VENV,
    BoardPaths,
    BoardState,
    built_info,
    paths,
    read_json,
    recipe_hash,
    ssh_options,
    state,
)

HOST_TOOLS = {"debootstrap": "debootstrap", "qemu-aarch64-static": "qemu-user-static", "update-binfmts": "binfmt-support"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOARD_PATH = f"{VENV}/bin:{CLEAN_PATH}"  # `python3` over ssh is the venv's: the runner's default finds the runtime
# Host settings the board's pip may need to reach the index; everything else of the host's pip
# environment (PIP_FIND_LINKS to host folders, ...) is left out on purpose.
PASS_ENV = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
CA_IN_ROOT = "/etc/ssl/certs/edgeport-pip-ca.pem"


class BoardUnavailable(Exception):
    """The board cannot be built or started here; the message is the one-line reason (tests skip with it)."""


# ------------------------------------------------------------------------------------------ helpers


def _log(msg: str) -> None:
    print(f"arm64-board: {msg}", file=sys.stderr, flush=True)


def _run(argv: list[str], log: Path | None = None, *, timeout: float = 1800, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a step; its output goes to the build log (long, and only needed when something fails)."""
    try:
        if log is not None:
            with log.open("a") as fh:
                fh.write(f"\n$ {' '.join(argv)}\n")
                fh.flush()
                proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)
        else:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise BoardUnavailable(f"`{' '.join(argv[:4])}` took more than {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        where = f"; see {log}" if log is not None else f": {(proc.stderr or proc.stdout).strip()[-300:]}"
        raise BoardUnavailable(f"`{' '.join(argv[:4])}` failed with exit {proc.returncode}{where}")
    return proc


def _in_root(root: Path, script: str, extra_env: dict[str, str] | None = None) -> list[str]:
    """argv running `sh -c script` inside root with a clean environment (env -i): the host's PIP_*,
    SSL_* and PATH point at host files that do not exist in the board."""
    env = {"PATH": BOARD_PATH, "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU, **(extra_env or {})}
    return ["chroot", str(root), "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", script]


@contextlib.contextmanager
def _locked(p: BoardPaths) -> Iterator[None]:
    """One build/start/stop at a time (CI's build step and a test session may overlap)."""
    p.base.mkdir(parents=True, exist_ok=True)
    with (p.base / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first (from /proc/self/mountinfo)."""
    top = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])  # \040 is a space
        if point == top or point.startswith(top + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda m: len(m.parts), reverse=True)


def _unmount_all(root: Path) -> None:
    for _pass in range(3):  # a point can hold stacked mounts (one umount takes off the top one)
        for point in _mounts_under(root):
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)  # busy: detach lazily
        if not _mounts_under(root):
            return
    left = _mounts_under(root)
    if left:
        raise BoardUnavailable(f"cannot unmount {', '.join(map(str, left))}; unmount them by hand")


def _wipe(root: Path) -> None:
    """Remove a half-built root. Never while anything is mounted in it: rm would descend into the
    host's /dev and /proc."""
    if not root.exists():
        return
    _stop_processes(root)
    _unmount_all(root)
    _run(["rm", "-rf", "--one-file-system", str(root)])  # and never cross into a mount, whatever happens


# ------------------------------------------------------------------------------------ host set-up


def preflight() -> None:
    if sys.platform != "linux":
        raise BoardUnavailable("the arm64 board needs Linux (binfmt_misc and qemu-user)")
    if os.geteuid() != 0:
        raise BoardUnavailable("building or starting the arm64 board needs root (debootstrap, chroot, mount)")


def ensure_host_tools(log: Path) -> None:
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise BoardUnavailable(f"missing {', '.join(missing)} and no apt-get to install them")
    _log(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], log, check=False, env=env)
    _run(["apt-get", "install", "-y", "-qq", *missing], log, env=env)


def ensure_binfmt(log: Path | None = None) -> None:
    """binfmt_misc mounted and qemu-aarch64 enabled (both are lost when the host restarts)."""
    if not (BINFMT / "register").exists():
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BoardUnavailable(f"cannot mount binfmt_misc ({proc.stderr.strip() or 'no kernel support'})")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        if shutil.which("update-binfmts") is None:
            raise BoardUnavailable("qemu-aarch64 is not registered with binfmt_misc and update-binfmts is missing")
        _run(["update-binfmts", "--enable", "qemu-aarch64"], log, check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise BoardUnavailable("binfmt_misc did not take qemu-aarch64 (install qemu-user-static and binfmt-support)")
    if "F" not in (re.search(r"^flags: *(\S*)", entry.read_text(), re.M) or [None, ""])[1]:
        raise BoardUnavailable("qemu-aarch64 is registered without the fix-binary flag; use Debian's qemu-user-static")


def debian_mirror() -> str:
    """The host's Debian mirror (apt sources), so the board comes from where this machine's packages do."""
    if os.environ.get("EDGEPORT_BOARD_MIRROR"):
        return os.environ["EDGEPORT_BOARD_MIRROR"]
    texts = [p.read_text() for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for text in texts:  # deb822 stanzas
        for stanza in re.split(r"\n\s*\n", text):
            uris, suites = re.search(r"^URIs:\s*(\S+)", stanza, re.M), re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE and "security" not in m.group(1):
                return m.group(1)
    return DEFAULT_MIRROR


# ------------------------------------------------------------------------------------------- build


@contextlib.contextmanager
def _bound(root: Path) -> Iterator[None]:
    """/proc and /dev of the host inside root for the duration (never /sys, see the module doc)."""
    _mount_runtime(root)
    try:
        yield
    finally:
        _stop_processes(root)
        _unmount_all(root)


def _mount_runtime(root: Path) -> None:
    mounted = set(_mounts_under(root))
    for name in ("proc", "dev"):
        point = (root / name).resolve()
        point.mkdir(exist_ok=True)
        if point not in mounted:
            _run(["mount", "--bind", f"/{name}", str(point)])


def build(p: BoardPaths | None = None, *, force: bool = False) -> dict:
    """Build the board unless a complete root with today's recipe is cached; returns its board.json."""
    p = p or paths()
    preflight()
    with _locked(p):
        info = built_info(p)
        if info and not force:
            return info
        users = _live_leases(p)
        if users:  # a rebuild stops the board under their feet
            raise BoardUnavailable(f"test sessions (pids {', '.join(map(str, users))}) are using the board; "
                                   "rebuild when they are done")
        log = p.base / "build.log"
        log.write_text("")
        started = time.monotonic()
        ensure_host_tools(log)
        ensure_binfmt(log)
        _stop(p)
        p.stamp.unlink(missing_ok=True)
        _wipe(p.root)  # half-built, stale recipe, or forced
        mirror = debian_mirror()
        _log(f"debootstrap {SUITE} arm64 from {mirror} into {p.root} (a few minutes; log: {log})")
        _run(["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              SUITE, str(p.root), mirror], log, timeout=3600)
        _configure(p)
        _log(f"pip install {' '.join(f'{k}=={v}' for k, v in PIP_PINS.items())} into {VENV} (needs the pip index)")
        with _bound(p.root):
            _pip_install(p, log)
            versions = _versions(p, log)
        disk = _disk_bytes(p.root)
        info = {"recipe": recipe_hash(), "suite": SUITE, "mirror": mirror, "versions": versions,
                "build_s": round(time.monotonic() - started, 1), "disk_bytes": disk,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        p.stamp.write_text(json.dumps(info, indent=2) + "\n")  # last: its presence means complete
        _log(f"built in {info['build_s']} s, {disk / 1e6:.0f} MB")
        return info


def _configure(p: BoardPaths) -> None:
    root = p.root
    # pam_env reads /etc/environment for every ssh session: QEMU_CPU makes qemu emulate the Pi 4's
    # core for each process the session starts, PATH puts the venv's python3 first.
    (root / "etc/environment").write_text(f"QEMU_CPU={QEMU_CPU}\nPATH={BOARD_PATH}\n")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")  # for pip, at build time only
    (root / "etc/ssh/sshd_config.d/edgeport.conf").write_text(
        "# edgeport's emulated board: key login as root only, on loopback (port given at start)\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "AcceptEnv TMPDIR\n")
    if not p.key.exists():
        p.key.with_suffix(".pub").unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeport-arm64-board", "-f", str(p.key)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{p.key}.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    _run(_in_root(root, "ssh-keygen -A"), p.base / "build.log")


def _pip_install(p: BoardPaths, log: Path) -> None:
    extra = {k: os.environ[k] for k in PASS_ENV if os.environ.get(k)}
    cert = os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE")
    if cert and Path(cert).is_file():  # a host with its own CA (a proxy): the board's pip must trust it too
        shutil.copyfile(cert, p.root / CA_IN_ROOT.lstrip("/"))
        extra["PIP_CERT"] = CA_IN_ROOT
    pins = " ".join(f"{k}=={v}" for k, v in PIP_PINS.items())
    try:
        _run(_in_root(p.root, f"python3 -m venv {VENV} && {VENV}/bin/pip install --no-cache-dir "
                              f"--disable-pip-version-check --progress-bar off {pins}", extra), log, timeout=3600)
    except BoardUnavailable as exc:
        raise BoardUnavailable(f"pip could not install {pins} in the board (no network to the pip index?): {exc}") from exc
    finally:
        (p.root / CA_IN_ROOT.lstrip("/")).unlink(missing_ok=True)


def _versions(p: BoardPaths, log: Path) -> dict[str, str]:
    """What the board really runs, read inside it; importing the interpreter proves the wheel loads."""
    code = ("import json, platform, importlib.metadata as m; from ai_edge_litert.interpreter import Interpreter; "
            "print(json.dumps({'python': platform.python_version(), 'machine': platform.machine(), "
            f"**{{d: m.version(d) for d in {sorted(PIP_PINS)!r}}}}}))")
    proc = _run(_in_root(p.root, f"{VENV}/bin/python -c \"{code}\" 2>/dev/null"), None)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    with log.open("a") as fh:
        fh.write(f"versions: {out}\n")
    return out


def _disk_bytes(root: Path) -> int:
    proc = _run(["du", "-sxb", str(root)])
    return int(proc.stdout.split()[0])


# ------------------------------------------------------------------------------------ start / stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ssh_ok(p: BoardPaths, port: int, timeout: float = 60) -> str:
    """uname -m over ssh, retried while the emulated sshd comes up."""
    argv = ["ssh", "-F", "none", *ssh_options(p), "-oBatchMode=yes", "-oConnectTimeout=10", "-p", str(port),
            "root@127.0.0.1", "uname -m"]
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return proc.stdout.strip()
        last = proc.stderr.strip()
        time.sleep(0.5)
    raise BoardUnavailable(f"the board's sshd on port {port} did not answer: {last[-200:]}")


def start(p: BoardPaths | None = None) -> BoardState:
    """Start the board's sshd (or return the running one)."""
    p = p or paths()
    preflight()
    with _locked(p):
        return _start(p, by="script")


def acquire(p: BoardPaths) -> tuple[BoardState, Path]:
    """Start the board if needed and take a lease on it for this process (a test session). Several
    sessions may share one board; the last one to release a board that a session started stops it."""
    preflight()
    with _locked(p):
        st = _start(p, by="session")
        p.leases.mkdir(exist_ok=True)
        lease = p.leases / str(os.getpid())
        lease.write_text("")
        return st, lease


def release(p: BoardPaths, lease: Path) -> None:
    with _locked(p):
        lease.unlink(missing_ok=True)
        if not _live_leases(p) and read_json(p.run).get("by") == "session":
            _stop(p)  # started for the tests and nobody uses it any more; a board started by hand stays up


def _live_leases(p: BoardPaths) -> list[int]:
    """pids of the sessions using the board; a killed session's lease is dropped here."""
    live = []
    for lease in p.leases.glob("*") if p.leases.exists() else []:
        if lease.name.isdigit() and Path(f"/proc/{lease.name}").exists():
            live.append(int(lease.name))
        else:
            lease.unlink(missing_ok=True)
    return live


def _start(p: BoardPaths, by: str) -> BoardState:
    """Under the lock: the running board, or a fresh sshd on a free loopback port."""
    current = state(p.base)
    if current.running:
        return current
    if not current.built:
        raise BoardUnavailable(f"the board is {current.reason}")
    ensure_binfmt()
    _stop(p)  # a crashed sshd may have left mounts and a stale run.json
    _mount_runtime(p.root)
    (p.root / "run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation dir (a tmpfs on a real board)
    pidfile = p.root / "run/edgeport-sshd.pid"
    for _attempt in range(3):  # the free port may be taken between choosing it and sshd binding it
        port = _free_port()
        pidfile.unlink(missing_ok=True)
        proc = _run(_in_root(p.root, f"/usr/sbin/sshd -p {port} -o ListenAddress=127.0.0.1 "
                                     "-o PidFile=/run/edgeport-sshd.pid"), None, check=False, timeout=120)
        if proc.returncode == 0 and _wait_file(pidfile, 20):
            break
    else:
        raise BoardUnavailable(f"the board's sshd did not start: {(proc.stderr or proc.stdout).strip()[-300:]}")
    pid = int(pidfile.read_text().strip())
    hosts = [f"[127.0.0.1]:{port} {' '.join(k.read_text().split()[:2])}"
             for k in sorted((p.root / "etc/ssh").glob("ssh_host_*_key.pub"))]
    p.known_hosts.write_text("\n".join(hosts) + "\n")
    p.run.write_text(json.dumps({"pid": pid, "port": port, "by": by}) + "\n")
    machine = _ssh_ok(p, port)
    if machine != "aarch64":
        raise BoardUnavailable(f"the board answered uname -m = {machine!r}, not aarch64")
    return state(p.base)


def _wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return True
        time.sleep(0.1)
    return False


def _stop_processes(root: Path) -> None:
    """End the processes living in this root (its sshd and whatever sessions it left): identified by
    their /proc/PID/root, never by name."""
    pids = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _root_is(int(d.name), root)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _root_is(pid, root)]
            time.sleep(0.1)
        if not pids:
            return


def _root_is(pid: int, root: Path) -> bool:
    try:
        return Path(f"/proc/{pid}/root").resolve() == root.resolve()
    except OSError:
        return False


def _stop(p: BoardPaths) -> None:
    if p.root.exists():
        _stop_processes(p.root)
        _unmount_all(p.root)
    p.run.unlink(missing_ok=True)
    p.known_hosts.unlink(missing_ok=True)


def stop(p: BoardPaths | None = None, *, force: bool = False) -> None:
    p = p or paths()
    preflight()
    with _locked(p):
        users = _live_leases(p)
        if users and not force:
            raise BoardUnavailable(f"test sessions (pids {', '.join(map(str, users))}) are using the board; "
                                   "stop --force stops it anyway")
        _stop(p)


# -------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/arm64_board.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "start", "stop", "status"])
    parser.add_argument("--force", action="store_true", help="build: rebuild even when a complete root is cached; stop: even while test sessions use it")
    parser.add_argument("--json", action="store_true", help="status/start: print the state as JSON")
    args = parser.parse_args(argv)
    p = paths()
    try:
        if args.command == "build":
            t0 = time.monotonic()
            info = build(p, force=args.force)
            took = time.monotonic() - t0
            print(f"built: {p.root} ({info['disk_bytes'] / 1e6:.0f} MB; {json.dumps(info['versions'])}; "
                  f"{'reused the cached root' if took < info['build_s'] / 2 else f'{took:.0f} s'})")
        elif args.command == "start":
            t0 = time.monotonic()
            st = start(p)
            if args.json:
                print(json.dumps(st.as_dict(), indent=2))
            else:
                print(f"target: {st.target}  (up in {time.monotonic() - t0:.1f} s)")
                print("ssh options: " + " ".join(st.ssh_options))
                print("e.g. edgeport bench MODEL.tflite --profile raspberry-pi-4-emulated --target "
                      f"{st.target} " + " ".join(f"--ssh-option={o}" for o in st.ssh_options))
        elif args.command == "stop":
            stop(p, force=args.force)
            print("stopped")
        else:
            st = state(p.base)
            print(json.dumps(st.as_dict(), indent=2) if args.json else f"{st.dir}: {st.reason}")
    except BoardUnavailable as exc:
        print(f"arm64-board: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
