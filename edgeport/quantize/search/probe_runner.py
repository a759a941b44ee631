"""Candidate models run in a throwaway child process that is reused until a candidate kills it.

Why a child: int8 kernels can abort the process on some inputs (a quantized DIV whose divisor hits
its zero point); that must fail the candidate, not the search. Why one reused child and not one per
candidate (as edgeport.validate.run does): the search runs dozens of candidates, and a fresh Python +
LiteRT start per candidate would cost more than the candidate's own run. A child that dies or times
out is killed and replaced on the next candidate.

Protocol: the parent writes one JSON line {"model", "out"} per candidate to the child's stdin; the
child writes the outputs to `out` (.npz, keys output_0.. in signature order) and answers one JSON line.
Usage (internal): python -m edgeport.quantize.search.probe_runner INPUTS.npz THREADS
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import numpy as np


class CandidateRunner:
    """Runs .tflite models on fixed inputs ({signature input name: N samples}) in a child process."""

    def __init__(self, inputs: dict[str, np.ndarray], threads: int, work: Path, timeout_s: float = 600.0) -> None:
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.inputs_path = self.work / "probe_inputs.npz"
        np.savez(self.inputs_path, **inputs)
        self.threads, self.timeout_s = threads, timeout_s
        self.proc: subprocess.Popen | None = None
        self.log: IO[str] | None = None
        self.restarts = 0
        self._pending: tuple[Path, float] | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
            self.log = self.log or open(self.work / "runner.log", "a")  # noqa: SIM115 - closed in close()
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
            self.proc = subprocess.Popen([sys.executable, "-m", "edgeport.quantize.search.probe_runner", str(self.inputs_path),
                                          str(self.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.log, text=True, env=env)
        return self.proc

    def submit(self, model: Path) -> None:
        """Start running `model`; `result()` collects it. One candidate at a time, so the parent can
        build the next candidate while this one runs."""
        assert self._pending is None, "collect the previous candidate first"
        fd, name = tempfile.mkstemp(prefix="out-", suffix=".npz", dir=self.work)
        os.close(fd)
        proc = self._start()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"model": str(model), "out": name}) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child died before reading: result() reports it
        self._pending = (Path(name), time.monotonic())

    def result(self) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
        """(outputs, info) of the submitted candidate; outputs is None when the candidate aborted the
        child, timed out or failed to run (info["error"] says which)."""
        assert self._pending is not None
        out, started = self._pending
        self._pending = None
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        line = ""
        left = self.timeout_s - (time.monotonic() - started)
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0.0))
        if ready:
            line = proc.stdout.readline()
        try:
            if not line:  # EOF (the child died) or timeout
                timed_out = not ready
                self._kill()
                what = f"did not finish within {self.timeout_s:.0f} s" if timed_out else \
                    f"aborted the TFLite runtime (exit {proc.returncode})"
                return None, {"error": f"the candidate {what}", "aborted": True}
            info = json.loads(line)
            if not info.get("ok"):
                return None, info
            data = np.load(out)
            return [data[k] for k in sorted(data.files, key=_output_order)], info
        finally:
            out.unlink(missing_ok=True)

    def run(self, model: Path) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
        self.submit(model)
        return self.result()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._kill()
        self._kill()
        if self.log is not None:
            self.log.close()
            self.log = None


def _output_order(key: str) -> tuple[int, str]:
    """output_0, output_1, ..., output_10 in numeric order (the SavedModel signature's ONNX order)."""
    tail = key.rsplit("_", 1)[-1]
    return (int(tail), key) if tail.isdigit() else (10**6, key)


def _run_one(path: str, inputs: dict[str, np.ndarray], threads: int) -> tuple[dict[str, np.ndarray], str]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeport.tflite.runner import dequantize_output, quantize_input

    def outputs(**kwargs: Any) -> dict[str, np.ndarray]:
        runner = Interpreter(model_path=path, num_threads=threads, **kwargs).get_signature_runner()
        ins, outs = runner.get_input_details(), runner.get_output_details()
        rows: dict[str, list[np.ndarray]] = {k: [] for k in outs}
        for i in range(len(next(iter(inputs.values())))):
            got = runner(**{k: quantize_input(v[i : i + 1], ins[k]) for k, v in inputs.items()})
            for k in outs:
                rows[k].append(dequantize_output(got[k], outs[k]))
        return {k: np.concatenate(v) for k, v in rows.items()}

    try:
        return outputs(), "default"
    except (RuntimeError, ValueError):
        # XNNPACK can refuse to prepare a model (e.g. a -inf PADV2 before a max-pool); the numbers, not
        # the delegate, are what a candidate is scored on, so retry on TFLite's built-in kernels.
        return outputs(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES), "builtin"


def main(argv: list[str]) -> int:
    data = np.load(argv[0])
    inputs = {k: data[k] for k in data.files}
    threads = int(argv[1])
    for line in sys.stdin:
        req = json.loads(line)
        start = time.perf_counter()
        try:
            outs, kernels = _run_one(req["model"], inputs, threads)
            tmp = req["out"] + ".tmp.npz"
            np.savez(tmp, **outs)
            os.replace(tmp, req["out"])
            reply: dict[str, Any] = {"ok": True, "kernels": kernels, "seconds": round(time.perf_counter() - start, 3)}
        except Exception as exc:  # noqa: BLE001 - a model that fails to run is a failed candidate
            reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
