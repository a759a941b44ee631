"""How image files become model input: resize, crop, scale, mean/std, color order and layout.

Its own module because both the data loader (calibration.py) and the image reader (imagefolder.py)
use it, and neither should import the other for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edgeport.errors import CalibrationError

_COLORS = {"gray": "grayscale", "grey": "grayscale"}
_LAYOUTS = ("NCHW", "NHWC")
_EXAMPLES = {
    "resize": "a pixel count for the shorter side, e.g. resize=256, or resize=none",
    "crop": "e.g. crop=224 or crop=224x224 (must equal the model's input HxW)",
    "scale": "a positive number, e.g. scale=1/255 or scale=1",
    "mean": "finite numbers, one per channel or one for all, e.g. mean=0.485,0.456,0.406",
    "std": "positive numbers, one per channel or one for all, e.g. std=0.229,0.224,0.225",
    "color": "one of rgb, bgr, grayscale",
    "layout": "NCHW or NHWC (the model input's layout)",
}


@dataclass(frozen=True)
class Preprocessing:
    """How image files become model input (mean/std are in output channel order, so BGR for bgr)."""

    resize: int | None = None
    crop: tuple[int, int] | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    color: str = "rgb"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        # Validated here so programmatic construction obeys the same rules as CLI strings.
        valid = {
            "color": self.color in ("rgb", "bgr", "grayscale"),
            "layout": self.layout in _LAYOUTS,
            "resize": self.resize is None or self.resize >= 1,
            "crop": self.crop is None or (len(self.crop) == 2 and min(self.crop) >= 1),
            "scale": math.isfinite(self.scale) and self.scale > 0,
            "mean": bool(self.mean) and all(math.isfinite(m) for m in self.mean),
            "std": bool(self.std) and all(math.isfinite(s) and s > 0 for s in self.std),
        }
        for key in (k for k, ok in valid.items() if not ok):
            raise _bad_option(key, getattr(self, key))

    @property
    def channels(self) -> int:
        return 1 if self.color == "grayscale" else 3

    def value_range(self) -> tuple[float, float]:
        """Range that 0..255 pixels map to: the natural `expected_range` for check_data."""
        return value_range(self.scale, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _bad_option(key: str, value: object) -> CalibrationError:
    return CalibrationError(f"bad preprocessing value {key}={value!r}", hint=f"use {_EXAMPLES[key]}")


def _floats(text: str) -> tuple[float, ...]:
    parts = text.strip("[]() ").replace(",", " ").split()
    if not parts:
        raise ValueError("no numbers")
    return tuple(float(p) for p in parts)


def _dims(text: str) -> tuple[int, ...] | None:
    if text.lower() in ("", "none"):
        return None
    dims = tuple(int(p) for p in text.lower().replace("x", ",").split(","))
    return dims * 2 if len(dims) == 1 else dims  # "224" means 224x224; Preprocessing rejects 3 dims


def _scale(text: str) -> float:
    num, _, den = text.partition("/")
    return float(num) / float(den) if den else float(num)


# Unknown colors/layouts pass through unchanged so Preprocessing rejects them with the usual hint.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "resize": lambda t: None if t.lower() in ("", "none") else int(t),
    "crop": _dims,
    "scale": _scale,
    "mean": _floats,
    "std": _floats,
    "color": lambda t: _COLORS.get(t.lower(), t.lower()),
    "layout": str.upper,
}


def parse_preprocessing(options: dict[str, str] | None) -> Preprocessing:
    """Build Preprocessing from CLI strings such as {"mean": "0.5", "resize": "256"}."""
    kwargs: dict[str, Any] = {}
    for key, raw in (options or {}).items():
        name = str(key).strip().lower()
        if name not in _PARSERS:
            raise CalibrationError(f"unknown preprocessing option {key!r}", hint=f"use one of: {', '.join(_PARSERS)}")
        try:
            kwargs[name] = _PARSERS[name](str(raw).strip())
        except (ValueError, ZeroDivisionError, OverflowError):
            raise _bad_option(name, raw) from None
    return Preprocessing(**kwargs)


def value_range(scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[float, float]:
    ends = [(v * scale - m) / s for v in (0.0, 255.0) for m in mean for s in std]
    return min(ends), max(ends)
