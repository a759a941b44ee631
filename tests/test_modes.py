"""The quantization-mode table is the one source the CLI, profiles and pipeline read."""

from __future__ import annotations

import pytest

from edgeport import modes
from edgeport.cli import build_parser
from edgeport.profiles import EDGETPU_QUANT, QUANT_MODES, load_profile


def test_cli_profiles_and_table_agree() -> None:
    assert QUANT_MODES == modes.NAMES
    convert = next(a for a in build_parser()._subparsers._group_actions[0].choices["convert"]._actions
                   if a.dest == "quant")
    assert tuple(convert.choices) == modes.QUANT_CHOICES == (*modes.NAMES, "auto")  # auto: every mode, the best kept


def test_calibrated_modes_and_edgetpu_rule() -> None:
    assert set(modes.CALIBRATED) == {"int8", "int16x8", "mixed"}
    assert set(EDGETPU_QUANT) == {"int8", "mixed"}
    assert all(modes.MODES[m].integer_io for m in EDGETPU_QUANT)  # the Edge TPU needs integer I/O
    assert modes.MODES["int16x8"].delegates == ()  # XNNPACK has no int16 activation kernels


@pytest.mark.parametrize("mode", modes.NAMES)
def test_every_mode_is_allowed_somewhere_and_refused_on_the_tpu_unless_integer(mode: str) -> None:
    assert any(load_profile(p).allows(mode) for p in ("host", "raspberry-pi-4"))
    assert load_profile("coral-usb").allows(mode) == (mode in EDGETPU_QUANT)
