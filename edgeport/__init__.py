"""edgeport: PyTorch model -> quantized, validated TFLite for a named device, with a verdict.

Owns: the top-level modules, of two kinds. The core is imported by everything and imports nothing of
edgeport outside the core: errors (error types, whose class decides the exit code), types (records
passed between stages), modes (the quantization mode table), progress (progress on stderr) and
profiles (device profiles and their budgets). The commands and their wiring may import anything: this
file (`edgeport.convert`), __main__, cli, pipeline (the order of `convert`), options and
convert_options (each option's check, and the table of convert options), check, bench and doctor.
Each package says on its own `May import:` line what it may import.
Core modules: errors, types, modes, progress, profiles
May import: edgeport.errors, edgeport.modes
That line is the core's (the commands are free): today only profiles imports within the core (a
profile's allowed modes, and ProfileError); a core module may import another core module once it is
listed here, never a package.
"""

from __future__ import annotations

from typing import Any

__all__ = ["convert"]
__version__ = "0.1.0"


def convert(checkpoint: Any, profile: str, **options: Any) -> Any:
    """Run the full `convert` pipeline; returns a Report (see edgeport.pipeline.Report)."""
    from edgeport.pipeline import convert as _convert

    return _convert(checkpoint, profile, **options)
