"""Where cells run: a local pool of convert processes (default) or Ray tasks on an existing cluster.

Both call `cell.run_cell`, so a cell's files do not depend on the executor. Ray does all the
scheduling for `--ray`: each task declares num_cpus and memory and Ray packs them onto nodes; this
module only submits, waits and collects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from edgeport.errors import InputError
from edgeport.sweep.cell import run_cell, stop_running

Done = Callable[[dict[str, Any]], None]


def local_workers(cpus_per_cell: float, memory_gb_per_cell: float) -> int:
    """Pool size from this machine: as many cells as the cores and the available memory both allow."""
    import psutil

    by_cpu = int((os.cpu_count() or 1) // max(cpus_per_cell, 1e-9))
    by_mem = int(psutil.virtual_memory().available / (memory_gb_per_cell * 1e9))
    return max(1, min(by_cpu, by_mem))


class LocalExecutor:
    """N slots, each running one cell's convert as its own process. The slots are threads that only
    wait on their child process: the isolation (a SIGSEGV kills one child) comes from the child."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, specs: list[dict[str, Any]], done: Done) -> None:
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="edgeport-cell")
        futures = {pool.submit(run_cell, spec): spec for spec in specs}
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    spec = futures[fut]
                    try:
                        done(fut.result())
                    except Exception as exc:  # noqa: BLE001 - the driver-side wrapper itself failed: still one cell
                        done({"id": spec["id"], "key": spec["key"], "status": "crashed",
                              "reason": f"{type(exc).__name__}: {str(exc)[:300]}"})
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            stop_running()  # the running children die; their slots return at once
            raise
        pool.shutdown(wait=True)


class RayExecutor:
    """Cells as Ray tasks (`max_retries=0`: a lost worker is recorded as that cell's failure, not
    silently re-run). Inputs travel through the object store once per model, so worker nodes need
    edgeport installed but not the driver's files; outputs come back as bytes unless the plan names
    a shared directory that the workers write to themselves."""

    name = "ray"

    def __init__(self, address: str, cpus_per_cell: float, memory_gb_per_cell: float) -> None:
        self.address = address
        self.cpus = cpus_per_cell
        self.memory = int(memory_gb_per_cell * 1e9)

    def connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise InputError("--ray needs the 'ray' package", hint="install it: pip install 'edgeport[sweep]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, logging_level="ERROR", configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InputError(f"cannot connect to the Ray cluster at '{self.address}': {str(exc).splitlines()[0][:200]}",
                                 hint="start one with 'ray start --head' or pass --ray HOST:PORT of a running cluster") from None
        return ray

    def run(self, specs: list[dict[str, Any]], done: Done) -> None:
        ray = self.connect()
        task = ray.remote(num_cpus=self.cpus, memory=self.memory, max_retries=0)(run_cell)
        shipped: dict[str, Any] = {}
        refs = {}
        for spec in specs:
            files, names = ship_inputs(spec["request"])
            model_key = repr([spec["request"].get(role) for role in ("checkpoint", "calib", "val")])
            if model_key not in shipped:  # one object per model's inputs, shared by its cells
                shipped[model_key] = ray.put(files)
            refs[task.options(name=f"edgeport-cell:{spec['id']}").remote({**spec, "shipped": names}, shipped[model_key])] = spec
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    spec = refs[ref]
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "")[:300]
                        record = {"id": spec["id"], "key": spec["key"], "status": "crashed",
                                  "reason": f"Ray task failed ({type(exc).__name__}): {first}"}
                    done(record)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


def ship_inputs(request: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Checkpoint and data files as bytes keyed by '<role>/<file name>' (a folder: every file in it),
    and which request field each replaces; builtin:NAME data ships with edgeport itself."""
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    for role in ("checkpoint", "calib", "val"):
        spec = request.get(role)
        if not spec or spec.startswith("builtin:"):
            continue
        path = Path(spec)
        names[role] = f"{role}/{path.name}"
        if path.is_file():
            files[names[role]] = path.read_bytes()
        else:
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                files[f"{names[role]}/{f.relative_to(path)}"] = f.read_bytes()
    return files, names
