"""Compression passes that run before export: prune, low-rank, cluster, distill (chained by a recipe).

`compress(checkpoint, recipe, data, output, **options)` is the Python mirror of `edgeport compress`;
it is imported lazily so `import edgeport.compress.prune` stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compress"]


def compress(checkpoint: Any, recipe: Any, data: str, output: Any, **options: Any) -> Any:
    """Run a compression recipe; returns a CompressResult (see edgeport.compress.command)."""
    from edgeport.compress.command import compress as _compress

    return _compress(checkpoint, recipe, data, output, **options)
