"""Where `edgeport bench --target` runs a model: parse the target text and dispatch to adb or ssh.

Target text is user input that ends up in argv of `adb`/`ssh` and inside remote shell commands, so it
is validated strictly here, once: a host, user or serial that starts with `-` would be read as a
command-line option (option injection), and quotes or shell metacharacters have no business in a
host name. Everything downstream may then rely on a clean `Target`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport import options
from edgeport.errors import InputError

if TYPE_CHECKING:  # only for annotations: keeps `parse_target` importable without the runner modules
    from collections.abc import Sequence

    from edgeport.profiles import DeviceProfile
    from edgeport.types import LatencyStats

KINDS = ("local", "sim", "adb", "ssh")
_FORMS = "local, sim, adb://[SERIAL] or ssh://[user@]host[:port]"
_SHELL_CHARS = set(";|&$`'\"\\<>(){}*?!#~^")
# Host names, ssh config aliases and IPv4 addresses; IPv6 literals are handled separately in brackets.
_HOST_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# adb serials: USB serials, emulator-5554, 192.168.1.5:5555, mDNS names like adb-XYZ._adb-tls-connect._tcp
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]*$")


@dataclass(frozen=True)
class Target:
    """A validated measurement target; `str(target)` is its canonical text (LatencyStats.source)."""

    kind: str
    serial: str | None = None
    user: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.kind == "adb":
            return f"adb://{self.serial or ''}"
        if self.kind == "ssh":
            host = f"[{self.host}]" if self.host and ":" in self.host else (self.host or "")
            user = f"{self.user}@" if self.user else ""
            port = f":{self.port}" if self.port is not None else ""
            return f"ssh://{user}{host}{port}"
        return self.kind

    @property
    def is_device(self) -> bool:
        return self.kind in ("adb", "ssh")


def parse_target(text: str) -> Target:
    """Parse `local`/`host`, `sim`, `adb://[SERIAL]`, `ssh://[user@]host[:port]` (IPv6 as `[::1]`)."""
    if not isinstance(text, str):
        raise InputError(f"--target must be text, got {type(text).__name__}", hint=f"use {_FORMS}")
    _reject_unsafe_chars(text)
    lowered = text.lower()
    if lowered in ("local", "host"):
        return Target("local")
    if lowered == "sim":
        return Target("sim")
    if lowered.startswith("adb://"):
        return _parse_adb(text, text[len("adb://"):])
    if lowered.startswith("ssh://"):
        return _parse_ssh(text, text[len("ssh://"):])
    raise InputError(f"unknown --target '{show_text(text)}'", hint=f"use {_FORMS}")


def _reject_unsafe_chars(text: str) -> None:
    if not text:
        raise InputError("--target is empty", hint=f"use {_FORMS}")
    for ch in text:
        if ch in "\r\n" or not ch.isprintable():
            raise InputError(f"--target '{show_text(text)}' contains a control character (newline or similar)",
                             hint="pass the target on one line without control characters")
        if ch.isspace():
            raise InputError(f"--target '{show_text(text)}' contains whitespace", hint=f"use {_FORMS} with no spaces")
        if ch in _SHELL_CHARS:
            raise InputError(f"--target '{show_text(text)}' contains the character {ch!r}, which is not allowed in a target",
                             hint="host names, users and serials use letters, digits, '.', '_', '-' (and ':' in serials)")


def _parse_adb(text: str, serial: str) -> Target:
    if serial == "":
        return Target("adb")  # adb's own default: the single attached device
    if serial.startswith("-"):
        raise InputError(f"adb serial in '{show_text(text)}' must not start with '-' (adb would read it as an option)",
                         hint="copy the serial from `adb devices`")
    if not _SERIAL_RE.match(serial):
        raise InputError(f"invalid adb serial '{show_text(serial)}' in --target",
                         hint="use adb://SERIAL with the serial from `adb devices`")
    return Target("adb", serial=serial)


def _parse_ssh(text: str, rest: str) -> Target:
    if "/" in rest or "?" in rest or "#" in rest:
        raise InputError(f"--target '{show_text(text)}' has a path; ssh targets are ssh://[user@]host[:port]",
                         hint="drop everything after the host and port")
    user: str | None = None
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        if not user:
            raise InputError(f"empty user name in --target '{show_text(text)}'", hint="use ssh://user@host or ssh://host")
        if user.startswith("-"):
            raise InputError(f"ssh user in '{show_text(text)}' must not start with '-' (ssh would read it as an option)",
                             hint="use the login name of the device")
        if not _USER_RE.match(user):
            raise InputError(f"invalid ssh user '{show_text(user)}' in --target",
                             hint="user names use letters, digits, '.', '_' and '-'")
    host, port_text = _split_host_port(text, rest)
    if not host:
        raise InputError(f"--target '{show_text(text)}' has no host", hint="use ssh://[user@]host[:port]")
    if host.startswith("-"):
        raise InputError(f"ssh host in '{show_text(text)}' must not start with '-' (ssh would read it as an option)",
                         hint="use the device's host name or IP address")
    if ":" in host:
        if not _IPV6_RE.match(host):
            raise InputError(f"invalid IPv6 address '{show_text(host)}' in --target", hint="write it in brackets: ssh://[::1]:22")
    elif not _HOST_RE.match(host):
        raise InputError(f"invalid ssh host '{show_text(host)}' in --target",
                         hint="host names use letters, digits, '.', '_' and '-'")
    port = _parse_port(text, port_text) if port_text is not None else None
    return Target("ssh", user=user, host=host, port=port)


def _split_host_port(text: str, rest: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise InputError(f"unclosed '[' in --target '{show_text(text)}'", hint="write IPv6 hosts as ssh://[::1]:2222")
        host, tail = rest[1:end], rest[end + 1:]
        if tail == "":
            return host, None
        if not tail.startswith(":"):
            raise InputError(f"unexpected text after ']' in --target '{show_text(text)}'", hint="use ssh://[::1]:2222")
        return host, tail[1:]
    if rest.count(":") > 1:
        raise InputError(f"--target '{show_text(text)}' looks like an IPv6 address without brackets",
                         hint="write it as ssh://[ADDRESS]:PORT")
    if ":" in rest:
        host, port = rest.split(":", 1)
        return host, port
    return rest, None


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InputError(f"invalid port '{show_text(port_text)}' in --target '{show_text(text)}'",
                         hint="ports are numbers from 1 to 65535")
    return int(port_text)


def show_text(text: str, limit: int = 80) -> str:
    """Untrusted text (device output, hostile names) made printable and short for a one-line error."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return show_text(lines[-1], 200) if lines else ""



# --------------------------------------------------------------------------------------- dispatch


class Deadline:
    """One overall time budget shared by every step of a device run (connect, copy, run)."""

    def __init__(self, seconds: float) -> None:
        self.total = float(seconds)
        self._end = time.monotonic() + self.total

    def remaining(self) -> float:
        return self._end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def step(self, cap: float | None = None, *, floor: float = 0.05) -> float:
        """Timeout for the next subprocess: what is left of the budget, optionally capped."""
        left = max(self.remaining(), floor)
        return min(left, cap) if cap is not None else left


def run_device(
    model: Path,
    target: Target,
    profile: DeviceProfile,
    *,
    runs: int,
    warmup: int,
    timeout_s: float,
    benchmark_binary: str | None = None,
    ssh_options: Sequence[str] = (),
) -> LatencyStats:
    """Time `model` on a real device; the device returns raw numbers, this host parses them.

    `ssh_options` are extra ssh/scp options placed before edgeport's defaults, so an explicit option
    (e.g. `-o UserKnownHostsFile=...`) takes precedence; edgeport never relaxes host-key checking itself.
    """
    options.runs(runs)
    if warmup < 0:
        raise InputError(f"warm-up runs {warmup} must be 0 or more", hint="e.g. 5")
    if timeout_s <= 0:
        raise InputError(f"timeout {timeout_s} s must be positive", hint="set connection.timeout_s in the profile")
    model = Path(model)
    if not model.is_file():
        raise InputError(f"model file {show_text(str(model), 300)} does not exist", hint="check the path")
    if target.kind == "adb":
        from edgeport.runners.adb import run_adb

        return run_adb(model, target, profile, runs=runs, warmup=warmup, timeout_s=timeout_s,
                       benchmark_binary=benchmark_binary)
    if target.kind == "ssh":
        from edgeport.runners.ssh import run_ssh

        return run_ssh(model, target, profile, runs=runs, warmup=warmup, timeout_s=timeout_s,
                       ssh_options=ssh_options)
    raise InputError(f"target '{target}' is not a device", hint="run_device measures adb:// and ssh:// targets")


__all__ = ["KINDS", "Deadline", "Target", "parse_target", "run_device"]
