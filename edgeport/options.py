"""The one place each command-line option is checked, so `--runs 0` means the same in every command.

Each checker takes the raw text (argparse `type=`) or an already-typed value (the Python API:
`convert(...)`, `bench(...)`, `compress(...)`), and raises InputError with the flag's name and a
fix. argparse lets InputError through untouched (it only rewrites ValueError/TypeError), so the
user sees this module's message, not argparse's generic "invalid int value".
"""

from __future__ import annotations

import math

from edgeport.errors import InputError
from edgeport.export.onnx_prep import MIN_OPSET as _ONNX_MIN_OPSET
from edgeport.export.onnx_prep import parse_shape

# The oldest opset onnx2tf takes (as in onnx_prep) up to the newest the TorchScript ONNX exporter of
# the pinned torch writes (torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET).
MIN_OPSET, MAX_OPSET = _ONNX_MIN_OPSET, 20
# A device run count above this is a typo, not a benchmark: 100k runs of a 10 ms model is ~17 min.
MAX_RUNS = 100_000


def _integer(flag: str, value: str | int, example: str) -> int:
    if isinstance(value, bool):  # bool is an int subclass; True is not a run count
        raise InputError(f"{flag} {value} is not a whole number", hint=f"e.g. {flag} {example}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{flag} '{value}' is not a whole number", hint=f"e.g. {flag} {example}") from None


def int_in_range(flag: str, value: str | int, low: int, high: int, example: str) -> int:
    number = _integer(flag, value, example)
    if number < low:
        raise InputError(f"{flag} {number} must be at least {low}", hint=f"e.g. {flag} {example}")
    if number > high:
        raise InputError(f"{flag} {number} must be at most {high}", hint=f"e.g. {flag} {example}")
    return number


def runs(value: str | int, flag: str = "--runs") -> int:
    """Timed runs after warm-up: at least one, or there is no latency to report."""
    return int_in_range(flag, value, 1, MAX_RUNS, "50")


def latency_runs(value: str | int) -> int:
    return runs(value, "--latency-runs")


def opset(value: str | int) -> int:
    return int_in_range("--opset", value, MIN_OPSET, MAX_OPSET, "17")


def threads(value: str | int) -> int:
    """Interpreter threads: at least one; more than the cores is allowed (capped where it runs)."""
    return int_in_range("--threads", value, 1, 1024, "2")


def max_samples(value: str | int) -> int:
    return int_in_range("--max-samples", value, 1, 10**9, "500")


def timeout(value: str | float, flag: str = "--timeout") -> float:
    """Seconds per device run: positive and finite (inf/nan would wait forever or never)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{flag} '{value}' is not a number of seconds", hint=f"e.g. {flag} 60") from None
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"{flag} {value} must be a positive number of seconds", hint=f"e.g. {flag} 60")
    return number


def input_shape(value: str) -> str:
    """Checked here so every command refuses the same malformed shape the same way; the text is
    kept because the pipeline parses NAME= and dims itself."""
    parse_shape(value)
    return value


def exporter(value: str) -> str:
    """The name only; whether that backend can take the model is decided once it is loaded."""
    from edgeport.export.select import check_name

    return check_name(value)


def target(value: str) -> str:
    """Parsed up front so `convert --target ftp://x` fails before the conversion, not after it."""
    from edgeport.runners.targets import parse_target

    parse_target(value)
    return value
