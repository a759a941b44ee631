"""The emulated arm64 board (a Raspberry Pi 4 class Debian root run through qemu-user): where it
lives, whether it is built and running, and the ssh target and options that reach it.

Only reading here (stdlib, no root): `edgeport doctor` and the tests ask the state. Building,
starting and stopping are in board_build (scripts/arm64_board.sh), which needs root.

Layout under the board folder (EDGEPORT_BOARD_DIR, else <cache>/boards/arm64-bookworm, where <cache>
is EDGEPORT_CACHE_DIR, else $XDG_CACHE_HOME/edgeport, else ~/.cache/edgeport):
  root/         the Debian arm64 root (complete only when board.json matches RECIPE)
  board.json    written last by a build: the recipe, the runtime versions, build time, disk use
  client_ed25519(.pub)  the key that logs in as root on the board
  run.json      written by start: sshd pid, port, who started it (script or a test session); removed by stop
  leases/PID    one per test session using the board: the last session out stops a board a session started
  known_hosts   the board's host keys for [127.0.0.1]:PORT (host keys stay checked)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOARD_ENV = "EDGEPORT_BOARD_DIR"
SUITE = "bookworm"  # Debian 12: Python 3.11, like the host, so the pinned wheels exist for both
PACKAGES = ("python3", "python3-venv", "python3-pip", "openssh-server")
# Verified together on the board (aarch64, Python 3.11) and the same as the host's pins, so a device
# vs host difference comes from the kernels, not from two runtime versions.
PIP_PINS = {"ai-edge-litert": "2.3.0", "numpy": "2.4.6"}
VENV = "/opt/lrt"
QEMU_CPU = "cortex-a72"  # the Pi 4's core; qemu-user reads it when each aarch64 process starts
RECIPE = {"suite": SUITE, "packages": list(PACKAGES), "pip": PIP_PINS, "venv": VENV, "qemu_cpu": QEMU_CPU, "layout": 1}


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


def board_dir() -> Path:
    if os.environ.get(BOARD_ENV):
        return Path(os.environ[BOARD_ENV]).expanduser()
    return cache_root() / "boards" / f"arm64-{SUITE}"


def cache_root() -> Path:
    """edgeport's cache folder, the rule of edgeport.latency.host_fit.cache_root (a test holds them
    equal), written out because the board script runs with a bare python3 before the venv exists."""
    if os.environ.get("EDGEPORT_CACHE_DIR"):
        return Path(os.environ["EDGEPORT_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "edgeport"


@dataclass(frozen=True)
class BoardPaths:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def stamp(self) -> Path:
        return self.base / "board.json"

    @property
    def key(self) -> Path:
        return self.base / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def run(self) -> Path:
        return self.base / "run.json"

    @property
    def leases(self) -> Path:
        return self.base / "leases"


def paths(base: Path | None = None) -> BoardPaths:
    return BoardPaths(base or board_dir())


def ssh_options(p: BoardPaths) -> list[str]:
    """One argv word each (-oKey=value, -iPATH), so every item is one `--ssh-option` of edgeport.
    The board's own known_hosts keeps StrictHostKeyChecking on; IdentitiesOnly keeps the user's
    agent and keys out."""
    return [f"-i{p.key}", "-oIdentitiesOnly=yes", f"-oUserKnownHostsFile={p.known_hosts}",
            "-oGlobalKnownHostsFile=/dev/null", "-oStrictHostKeyChecking=yes"]


@dataclass(frozen=True)
class BoardState:
    dir: Path
    built: bool
    running: bool
    target: str | None
    ssh_options: tuple[str, ...]
    build: dict[str, Any]  # board.json of a complete build (versions, build_s, disk_bytes), else {}
    reason: str  # one line: why not built / not running, or what it is

    def as_dict(self) -> dict[str, Any]:
        return {"dir": str(self.dir), "built": self.built, "running": self.running, "target": self.target,
                "ssh_options": list(self.ssh_options), "build": self.build, "reason": self.reason}


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def built_info(p: BoardPaths) -> dict[str, Any]:
    """board.json of a complete root built with today's recipe, else {} (absent, half-built, stale)."""
    info = read_json(p.stamp)
    if info.get("recipe") != recipe_hash() or not (p.root / VENV.lstrip("/") / "bin" / "python").exists():
        return {}
    return info


def sshd_alive(p: BoardPaths, pid: int, port: int) -> bool:
    """The pid is a live process whose root is this board's root: a stale run.json after a reboot
    may name a pid that now belongs to something else."""
    try:
        return Path(f"/proc/{pid}/root").resolve(strict=True) == p.root.resolve()
    except PermissionError:  # not root: the root of another user's process cannot be read
        return Path(f"/proc/{pid}").exists() and _listening(port)
    except OSError:
        return False


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def state(base: Path | None = None) -> BoardState:
    p = paths(base)
    info = built_info(p)
    run = read_json(p.run)
    pid, port = run.get("pid"), run.get("port")
    running = bool(info) and isinstance(pid, int) and isinstance(port, int) and sshd_alive(p, pid, port)
    target = f"ssh://root@127.0.0.1:{port}" if running else None
    if not info:
        reason = ("half-built or from an older recipe: `scripts/arm64_board.sh build` rebuilds it"
                  if p.root.exists() else "not built: `scripts/arm64_board.sh build` (root, ~5 min, ~1 GB)")
    elif not running:
        reason = "built, not running: `scripts/arm64_board.sh start`"
    else:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(info.get("versions", {}).items()))
        reason = f"running at {target} ({versions}; emulated {QEMU_CPU})"
    return BoardState(p.base, bool(info), running, target, tuple(ssh_options(p)) if running else (), info, reason)
