"""Error types whose class decides the CLI exit code (see DESIGN.md contracts).

Every message is one line that says what is wrong and how to fix it; the CLI prints it without a
traceback unless --debug is given.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager


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


# Lines that point somewhere else instead of saying what went wrong ("check the warnings above"),
# and the bug-report boilerplate some libraries append to every message.
_POINTERS = re.compile(r"warnings? above|see above|errors? above|^traceback", re.IGNORECASE)
_BOILERPLATE = re.compile(r"\s*\(?(could this error message be improved|please report|if you (believe|think) this is a bug)\b.*$",
                          re.IGNORECASE)


def _meaningful(exc: BaseException) -> str | None:
    for line in str(exc).splitlines():
        text = _BOILERPLATE.sub("", line).strip()
        if text and not _POINTERS.search(text):
            return text
    return None


def cause_line(exc: BaseException, logged: Sequence[logging.LogRecord] = (), limit: int = 300) -> str:
    """The first meaningful line of a third-party exception, for a one-line error message.

    Libraries bury the cause: torch.export.load logs the real error with its traceback as a
    warning and raises "check the warnings above". So the exception, then its cause chain, then
    exceptions the library only logged are tried in turn; the full text stays for --debug.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    chain += [r.exc_info[1] for r in logged if r.exc_info and r.exc_info[1] is not None]
    for candidate in chain:
        text = _meaningful(candidate)
        if text:
            return text[:limit]
    return type(exc).__name__


@contextmanager
def captured_logs(name: str) -> Iterator[list[logging.LogRecord]]:
    """Collect what logger `name` (and its children) logs instead of letting it print to stderr,
    so a library's multi-line warning can be condensed into the one error line. The CLI may have
    muted logging (logging.disable) without --debug; the capture lifts that for its duration."""
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(name)
    saved = (logger.handlers[:], logger.propagate, logging.root.manager.disable)
    logger.handlers, logger.propagate = [_Collect()], False
    logging.disable(logging.NOTSET)
    try:
        yield records
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logging.disable(saved[2])
