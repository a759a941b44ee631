"""Time a model on a real device (adb or ssh): the device returns raw numbers, this host parses them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport import options
from edgeport.errors import InputError
from edgeport.runners.common import Target, show_text

if TYPE_CHECKING:
    from edgeport.profiles import DeviceProfile
    from edgeport.types import LatencyStats


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
