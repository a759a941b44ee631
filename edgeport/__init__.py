"""edgeport: PyTorch model -> quantized, validated TFLite for a named device, with a verdict."""

from __future__ import annotations

from typing import Any

__all__ = ["convert"]
__version__ = "0.1.0"


def convert(checkpoint: Any, profile: str, **options: Any) -> Any:
    """Run the full `convert` pipeline; returns a Report (see edgeport.pipeline.Report)."""
    from edgeport.pipeline import convert as _convert

    return _convert(checkpoint, profile, **options)
