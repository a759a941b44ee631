"""What every runner shares: the parsed target, one time budget per device run, and safe text.

Its own module so the adb and ssh runners and the target parser depend on it, and not on each other.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


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


def show_text(text: str, limit: int = 80) -> str:
    """Untrusted text (device output, hostile names) made printable and short for a one-line error."""
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    return show_text(lines[-1], 200) if lines else ""


@dataclass(frozen=True)
class RunOptions:
    """How to time a model, as one object that travels from the CLI to whichever runner measures it.

    Each runner reads what it needs (adb: `benchmark_binary`; ssh: `ssh_options`), so adding a runner
    setting never changes the signature of every function in between.
    """

    runs: int = 50
    warmup: int = 5
    timeout_s: float | None = None  # None: the profile's connection.timeout_s
    benchmark_binary: str | None = None  # adb: the benchmark_model built for the device
    # ssh: extra ssh/scp options placed before edgeport's defaults, so an explicit option (e.g.
    # `-o UserKnownHostsFile=...`) takes precedence; edgeport never relaxes host-key checking itself.
    ssh_options: tuple[str, ...] = ()


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
