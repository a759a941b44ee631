"""The sweep driver: plan -> skip finished cells -> run the rest on an executor -> one table.

The table is rewritten after every finished cell, so Ctrl-C (or a killed driver) leaves every
finished cell and a table that lists it; the next run with the same plan resumes from there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import InputError, Interrupted
from edgeport.sweep import table
from edgeport.sweep.cell import finished_record, install
from edgeport.sweep.executors import LocalExecutor, RayExecutor, local_workers
from edgeport.sweep.plan import Plan, load_plan, with_keys


@dataclass
class SweepResult:
    data: dict[str, Any]
    paths: dict[str, Path]

    @property
    def exit_code(self) -> int:
        """3 when a cell could not be built (crash, runtime error), else 1 when one missed a budget, else 0."""
        statuses = {c["status"] for c in self.data["cells"]}
        if statuses & {"crashed", "error", "not run"}:
            return 3
        return 1 if "failed" in statuses else 0


def cells_root(plan: Plan, out: Path) -> Path:
    return (plan.shared_dir / "cells") if plan.shared_dir else out / "cells"


def run_sweep(plan_path: Path, *, output: Path | None = None, ray: str | None = None, workers: int | None = None,
              log: Callable[[str], None] | None = None) -> SweepResult:
    plan = with_keys(load_plan(Path(plan_path), output=output))
    out = plan.output or Path("edgeport-sweep")
    root = cells_root(plan, out)
    for d in (out, root):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create '{d}': {exc.strerror or exc}", hint="choose another --output or shared_dir") from None
    if ray:
        executor: Any = RayExecutor(ray, plan.cpus_per_cell, plan.memory_gb_per_cell)
    else:
        n = workers or plan.workers or local_workers(plan.cpus_per_cell, plan.memory_gb_per_cell)
        executor = LocalExecutor(min(n, max(1, len(plan.cells))))
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for cell in plan.cells:
        rec = finished_record(root, cell.id, cell.key)
        if rec is not None:
            records[cell.id] = {**rec, "resumed": True}
        else:
            todo.append(cell)
    t0 = time.time()
    info = {"plan": str(plan.path), "executor": executor.name if not ray else f"ray ({ray})",
            "workers": getattr(executor, "workers", None), "cells_root": str(root)}

    def snapshot(interrupted: bool = False) -> dict[str, Any]:
        cells = []
        for cell in plan.cells:
            rec = records.get(cell.id) or {"status": "not run" if interrupted else "pending"}
            link = None
            if rec.get("status") in ("passed", "failed") and (root / cell.id / "report.html").is_file():
                link = os.path.relpath(root / cell.id / "report.html", out)
            cells.append({"id": cell.id, "model": cell.model, "profile": cell.profile, "mode": cell.mode, "key": cell.key,
                          "report_link": link, **{k: v for k, v in rec.items() if k not in ("id", "key", "_files")}})
        counts = {s: sum(c["status"] == s for c in cells) for s in ("passed", "failed", "error", "crashed", "not run", "pending")}
        text = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        resumed = sum(bool(c.get("resumed")) for c in cells)
        return {**info, "counts": f"{len(cells)} cells: {text}" + (f" ({resumed} resumed)" if resumed else ""),
                "seconds": round(time.time() - t0, 2), "interrupted": interrupted, "cells": cells}

    def done(record: dict[str, Any]) -> None:
        files = record.pop("_files", None)
        if files is not None:  # Ray without a shared directory: the driver puts the cell's files in place
            install(root, record["id"], files, record)
        records[record["id"]] = record
        if log:
            reason = f": {record.get('reason')}" if record.get("reason") else ""
            log(f"  {record['id']}: {record['status']}{reason} ({record.get('seconds', 0):.0f} s)")
        table.write(out, snapshot())

    if log:
        log(f"edgeport sweep: {len(plan.cells)} cells, {len(plan.cells) - len(todo)} unchanged since the last run, "
            f"{len(todo)} to run on {info['executor']}" + (f" with {info['workers']} workers" if info["workers"] else ""))
    table.write(out, snapshot())
    specs = [{"id": c.id, "key": c.key, "request": c.request, "env": plan.env, "timeout_s": plan.timeout_s,
              "install_root": None if (ray and not plan.shared_dir) else str(root)} for c in todo]
    try:
        executor.run(specs, done)
    except KeyboardInterrupt:
        table.write(out, snapshot(interrupted=True))
        raise Interrupted("sweep interrupted; finished cells are kept and the next run resumes from them",
                          hint=f"results so far: {out / 'results.html'}") from None
    data = snapshot()
    return SweepResult(data, table.write(out, data))


def summary_lines(result: SweepResult) -> list[str]:
    lines = [f"edgeport sweep: {result.data['counts']} in {result.data['seconds']:.0f} s on {result.data['executor']}"]
    for r in table.rows(result.data):
        size = f"{r['size_kib']} KiB" if r["size_kib"] is not None else ""
        acc = f"acc {r['accuracy']:.4g}" if isinstance(r["accuracy"], float) else ""
        lines.append(f"  {r['cell']:<44} {r['status']:<18} {acc:<11} {size:<12} {r['reason'] or ''}".rstrip())
    lines.append(f"  table      {result.paths['html']}")
    return lines


__all__ = ["SweepResult", "run_sweep", "summary_lines"]
