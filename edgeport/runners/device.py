"""Time a model on a real device (adb or ssh): the device returns raw numbers, this host parses them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport import options
from edgeport.errors import InputError
from edgeport.runners.common import RunOptions, Target, show_text

if TYPE_CHECKING:
    from edgeport.profiles import DeviceProfile
    from edgeport.types import LatencyStats


def run_device(model: Path, target: Target, profile: DeviceProfile, opts: RunOptions) -> LatencyStats:
    """Time `model` on a real device; the device returns raw numbers, this host parses them."""
    options.runs(opts.runs)
    if opts.warmup < 0:
        raise InputError(f"warm-up runs {opts.warmup} must be 0 or more", hint="e.g. 5")
    timeout_s = opts.timeout_s if opts.timeout_s is not None else profile.connection.timeout_s
    if timeout_s <= 0:
        raise InputError(f"timeout {timeout_s} s must be positive", hint="set connection.timeout_s in the profile")
    opts = replace(opts, timeout_s=float(timeout_s))
    model = Path(model)
    if not model.is_file():
        raise InputError(f"model file {show_text(str(model), 300)} does not exist", hint="check the path")
    if target.kind == "adb":
        from edgeport.runners.adb import run_adb

        return run_adb(model, target, profile, opts)
    if target.kind == "ssh":
        from edgeport.runners.ssh import run_ssh

        return run_ssh(model, target, profile, opts)
    raise InputError(f"target '{target}' is not a device", hint="run_device measures adb:// and ssh:// targets")
