"""Error types whose class decides the CLI exit code (see DESIGN.md contracts).

Every message is one line that says what is wrong and how to fix it; the CLI prints it without a
traceback unless --debug is given.
"""

from __future__ import annotations


class EdgeportError(Exception):
    """Base class; `exit_code` is what `edgeport` returns when this escapes a command."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text} — {' '.join(self.hint.split())}"
        return text


class InputError(EdgeportError):
    """Bad checkpoint, data, profile, flag or output location: the user must change something."""

    exit_code = 2


class ProfileError(InputError):
    """A device profile is unknown, malformed, or forbids the requested options."""


class CalibrationError(InputError):
    """Calibration/validation data does not fit the model or is unusable."""


class ConversionError(EdgeportError):
    """The toolchain (export, onnx2tf, TFLite converter) failed on a valid input."""

    exit_code = 3


class DeviceError(EdgeportError):
    """A device, connection or remote runtime failed."""

    exit_code = 3


class Interrupted(EdgeportError):
    """The user interrupted the run (SIGINT); nothing half-written is left behind."""

    exit_code = 130
