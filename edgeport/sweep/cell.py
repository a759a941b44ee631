"""One sweep cell on whatever machine runs it: a full convert in its own throwaway process.

The convert runs in a child process (`python -m edgeport.sweep.cell SPEC.json RESULT.json`) so that
a converter SIGSEGV or an OOM kill takes down that child only; the caller turns the exit status into
a failed cell with its reason. The same function serves the local pool (a thread per slot) and Ray
(inside a task), so both executors produce the same files.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CELL_RECORD = "cell.json"  # written last: its presence with a matching key marks a finished cell
_LIVE: set[subprocess.Popen] = set()  # running convert children, so an interrupted driver can stop them
_STOPPING = threading.Event()
_SCRATCH = "edgeport-cell-"  # + "<pid of the process running the cell>-<cell id>-<random>"


def stop_running() -> None:
    """Kill every convert child this process started (Ctrl-C in the driver of a local sweep); the
    cells they ran are left as they were, not recorded as crashed."""
    _STOPPING.set()
    for proc in list(_LIVE):
        proc.kill()


def _die_with_parent(parent: int) -> None:
    """Linux: this convert child gets SIGKILL when the process that started it dies (a lost Ray
    worker, a killed driver), so no orphaned converter keeps running and writing. Set in the child
    itself (preexec_fn is unsafe in the threaded pool); the ppid check closes the start-up race."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _reason(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        why = {"SIGKILL": " (killed: out of memory, or stopped from outside)", "SIGSEGV": " (the converter crashed)"}
        return f"convert process killed by {name}{why.get(name, '')}"
    return f"convert process exited with status {code} and no result"


def run_cell(spec: dict[str, Any], files: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Convert one cell and return its record; with `install_root` set the files are put in place
    under install_root/<id>/, otherwise they come back as bytes for the driver to install.

    `files` carries the checkpoint and data bytes when the worker cannot see the driver's paths."""
    t0 = time.time()
    _remove_stale_scratch()
    scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-{spec['id']}-"))
    try:
        request = dict(spec["request"])
        if files:
            for name, blob in files.items():  # materialize shipped inputs under their original file names
                local = scratch / "inputs" / name
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(blob)
            for key, original in spec.get("shipped", {}).items():
                request[key] = str(scratch / "inputs" / original)
        out = scratch / "out"
        job = {"request": {**request, "output": str(out)}}
        (scratch / "spec.json").write_text(json.dumps(job))
        env = {**os.environ, **spec.get("env", {}), "EDGEPORT_SWEEP_PARENT": str(os.getpid())}
        record: dict[str, Any] = {"id": spec["id"], "key": spec["key"], "host": os.uname().nodename}
        log = scratch / "convert.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "edgeport.sweep.cell", str(scratch / "spec.json"),
                                     str(scratch / "result.json")], stdout=subprocess.DEVNULL, stderr=fh, env=env)
            _LIVE.add(proc)
            try:
                code = proc.wait(timeout=spec["timeout_s"])
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
            finally:
                _LIVE.discard(proc)
        result_path = scratch / "result.json"
        if code is None:
            record.update(status="crashed", reason=f"timed out after {spec['timeout_s']:.0f} s")
        elif result_path.is_file():
            record.update(json.loads(result_path.read_text()))
        else:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            tail = lines[-1].strip()[:300] if lines else ""
            record.update(status="crashed", reason=_reason(code) + (f"; last output: {tail}" if tail else ""))
        record["seconds"] = round(time.time() - t0, 2)
        produced = {p.name: p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} if out.is_dir() else {}
        if _STOPPING.is_set() or code in (130, -signal.SIGINT) or record.get("exit_code") == 130:
            # Ctrl-C reaches the convert before the driver has stopped: the cell did not fail, it did not run.
            return {**record, "status": "not run", "reason": "interrupted"}
        if spec.get("install_root"):
            install(Path(spec["install_root"]), spec["id"], produced, record)
            return record
        return {**record, "_files": {n: p.read_bytes() for n, p in produced.items()}}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _remove_stale_scratch() -> None:
    """A worker killed mid-cell (a lost Ray worker, an OOM kill) never ran its cleanup: the next cell
    on that machine removes scratch folders whose owning process is gone."""
    import psutil

    for d in Path(tempfile.gettempdir()).glob(f"{_SCRATCH}*"):
        try:
            pid = int(d.name[len(_SCRATCH):].split("-", 1)[0])
            if d.is_dir() and d.stat().st_uid == os.getuid() and not psutil.pid_exists(pid):
                shutil.rmtree(d, ignore_errors=True)
        except (ValueError, OSError):
            continue


def install(root: Path, cell_id: str, files: dict[str, Path | bytes], record: dict[str, Any]) -> Path:
    """Put a cell's files in root/<id>/ as a unit: staged in a hidden folder, swapped in by rename,
    with cell.json last, so an interrupted sweep never leaves a cell that looks finished but is not."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / cell_id
    stage = Path(tempfile.mkdtemp(prefix=f".{cell_id}.", dir=root))
    stage.chmod(0o755)  # mkdtemp makes it private; a results folder is for the team to read
    old = root / f".{cell_id}.old.{os.getpid()}"
    try:
        for name, content in files.items():
            target = stage / name
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_bytes(content)
        (stage / CELL_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if final.exists():
            (final / CELL_RECORD).unlink(missing_ok=True)  # the old result stops counting first
            os.replace(final, old)
        os.replace(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final


def finished_record(root: Path, cell_id: str, key: str) -> dict[str, Any] | None:
    """The record of a cell that already ran to a verdict with these exact inputs, else None."""
    path = root / cell_id / CELL_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key and record.get("status") in ("passed", "failed") else None


def _child(spec_path: str, result_path: str) -> int:
    """Inside the throwaway process: one convert, its outcome as JSON (a crash writes nothing)."""
    from edgeport.convert_options import make_request
    from edgeport.errors import EdgeportError
    from edgeport.pipeline import run_convert

    if os.environ.get("EDGEPORT_SWEEP_PARENT"):
        _die_with_parent(int(os.environ["EDGEPORT_SWEEP_PARENT"]))
    job = json.loads(Path(spec_path).read_text())
    try:
        report = run_convert(make_request(job["request"]))  # ConvertRequest field names, as the plan wrote them
    except KeyboardInterrupt:
        return 130
    except EdgeportError as exc:
        out = {"status": "error", "exit_code": exc.exit_code, "reason": exc.one_line()}
    except Exception as exc:  # noqa: BLE001 - recorded as the cell's reason; the sweep goes on
        out = {"status": "error", "exit_code": 3, "reason": f"internal error: {type(exc).__name__}: {str(exc)[:300]}"}
    else:
        out = {"status": "passed" if report.passed else "failed", "exit_code": report.exit_code,
               "summary": summarize(report.data)}
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, result_path)
    return 0


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The table's columns for one cell, read from its report.json content."""
    acc, lat, art = report["accuracy"], report["latency"], report["artifact"]
    failed = [c["name"] for c in report["verdict"]["checks"] if not c["passed"]]
    return {"artifact": Path(art["path"]).name if art.get("path") else None, "sha256": art.get("sha256"),
            "size_bytes": art.get("size_bytes"), "accuracy": acc.get("tflite"), "reference_accuracy": acc.get("reference"),
            "drop_pp": acc.get("drop_pp"), "top1_agreement": acc.get("top1_agreement"),
            "simulated_p50_ms": (lat.get("simulated") or {}).get("p50_ms"), "host_p50_ms": (lat.get("host") or {}).get("p50_ms"),
            "passed": report["verdict"]["passed"], "failed_checks": failed}


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
