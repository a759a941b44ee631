"""Parallel candidate scoring for the mixed-precision search.

Scoring "this unit alone kept in float" is one independent build + validation per unit, and it is
most of the search's time. With EDGEPORT_MIXED_WORKERS=N (set by `edgeport sweep` from the cell's
cpus_per_cell, or by hand for `edgeport convert`) the units are dealt round-robin to N throwaway
processes that each rebuild the converter from the same request, so the scores are the ones a
serial search computes. A process that dies costs nothing but time: its units are scored serially.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "EDGEPORT_MIXED_WORKERS"
# Each process runs the converter search's own worker (its `score` entry): named, not imported, so this
# module and the worker that calls it do not import each other.
CHILD = "edgeport.quantize.search.converter_worker"


def workers() -> int:
    try:
        return max(1, int(os.environ.get(ENV, "1")))
    except ValueError:
        return 1


def score_units(req: dict[str, Any], units: list[list[str]], limit: int,
                serial: Callable[[list[str]], dict[str, Any]], notes: list[str] | None = None) -> list[dict[str, Any]]:
    n = min(workers(), len(units))
    if n <= 1:
        return [serial(u) for u in units]
    scores: list[dict[str, Any] | None] = [None] * len(units)
    # N processes share the cores this search had: each gets its part of the threads, or N copies of
    # TensorFlow's and oneDNN's full-width pools would fight over the same cores.
    try:
        cores = int(os.environ.get("OMP_NUM_THREADS", "")) or os.cpu_count() or 1
    except ValueError:
        cores = os.cpu_count() or 1
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // n))}
    with tempfile.TemporaryDirectory(prefix="edgeport-fanout-") as tmp:
        (Path(tmp) / "req.json").write_text(json.dumps(req))
        procs = []
        for k in range(n):
            idx = list(range(k, len(units), n))
            (Path(tmp) / f"units{k}.json").write_text(json.dumps({"limit": limit, "units": [units[i] for i in idx]}))
            log = open(Path(tmp) / f"log{k}.txt", "w")  # noqa: SIM115 - closed below
            procs.append((idx, log, subprocess.Popen(
                [sys.executable, "-m", CHILD, "score", str(Path(tmp) / "req.json"),
                 str(Path(tmp) / f"units{k}.json"), str(Path(tmp) / f"out{k}.json")], stdout=log, stderr=subprocess.STDOUT,
                env=env)))
        for k, (idx, log, proc) in enumerate(procs):
            try:
                proc.wait(timeout=float(req.get("fanout_timeout_s", 3600)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            out = Path(tmp) / f"out{k}.json"
            got = json.loads(out.read_text()) if out.is_file() else []
            for i, score in zip(idx, got, strict=False):
                scores[i] = score
    # Whatever a dead or timed-out process did not deliver is scored here, one by one.
    missing = sum(s is None for s in scores)
    if notes is not None:
        notes.append(f"candidate scoring fanned out over {n} processes: {len(units) - missing} of {len(units)} "
                     f"candidates scored in parallel" + (f", {missing} re-scored serially after a process died" if missing else ""))
    return [s if s is not None else serial(units[i]) for i, s in enumerate(scores)]
