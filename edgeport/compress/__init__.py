"""Compression passes that run before export: prune, low-rank, cluster, distill (chained by a recipe).

`compress(checkpoint, recipe, data, output, **options)` is the Python mirror of `edgeport compress`;
it is imported lazily so `import edgeport.compress.prune` stays light.

Owns: the passes (prune, with deps for the channels pruned together; lowrank; cluster; distill), the
TOML recipe that chains them (recipe), the `edgeport compress` arguments (arguments) and the command
that runs a recipe and judges every step (command).
May import: edgeport.errors, edgeport.types, edgeport.options, edgeport.pipeline, edgeport.data.calibration,
edgeport.export, edgeport.report.summary
The passes import only edgeport.errors. The rest is the command's: like convert it loads checkpoints
and data (export, data.calibration), checks its flags with the shared checkers (options, also used by
arguments) and writes its report atomically (report.summary); and it prices every step by running a
full int8 convert on it (pipeline, imported lazily; pipeline does not import compress).
"""

from __future__ import annotations

from typing import Any

__all__ = ["compress"]


def compress(checkpoint: Any, recipe: Any, data: str, output: Any, **options: Any) -> Any:
    """Run a compression recipe; returns a CompressResult (see edgeport.compress.command)."""
    from edgeport.compress.command import compress as _compress

    return _compress(checkpoint, recipe, data, output, **options)
