"""Where `edgeport bench --target` runs a model: parse the target text (runners/device.py dispatches).

Target text is user input that ends up in argv of `adb`/`ssh` and inside remote shell commands, so it
is validated strictly here, once: a host, user or serial that starts with `-` would be read as a
command-line option (option injection), and quotes or shell metacharacters have no business in a
host name. Everything downstream may then rely on a clean `Target`.
"""

from __future__ import annotations

import re

from edgeport.errors import InputError
from edgeport.runners.common import Deadline, Target, last_line, show_text

KINDS = ("local", "sim", "adb", "ssh")
_FORMS = "local, sim, adb://[SERIAL] or ssh://[user@]host[:port]"
_SHELL_CHARS = set(";|&$`'\"\\<>(){}*?!#~^")
# Host names, ssh config aliases and IPv4 addresses; IPv6 literals are handled separately in brackets.
_HOST_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# adb serials: USB serials, emulator-5554, 192.168.1.5:5555, mDNS names like adb-XYZ._adb-tls-connect._tcp
_SERIAL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]*$")


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


__all__ = ["KINDS", "Deadline", "Target", "last_line", "parse_target", "show_text"]
