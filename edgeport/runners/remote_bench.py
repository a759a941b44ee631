"""edgeport's device-side benchmark: copied to the device by the ssh runner and run there.

It is self-contained on purpose (stdlib + numpy + a TFLite interpreter) and must never import
edgeport, which is not installed on the device. It only measures: raw per-run times, the runtime, the
device fingerprint and the model's I/O. It prints exactly ONE JSON object on stdout; every judgement
(percentiles, budgets) happens on the host. Written for Python >= 3.7, the oldest python3 still found
on boards in the field (Debian 10 / Raspberry Pi OS Buster).

Usage: python3 remote_bench.py MODEL --runs N --warmup W --threads T --delegate default|xnnpack|edgetpu
Exit codes: 0 ok, 3 a reported problem (JSON has "ok": false), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

SCHEMA = 1
EDGETPU_LIB = "libedgetpu.so.1"
RUNTIME_PACKAGES = "ai-edge-litert (pip install ai-edge-litert) or tflite-runtime (pip install tflite-runtime)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--delegate", default="default", choices=("default", "xnnpack", "edgetpu"))
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop with an error after this long (0: no limit)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # Libraries may print to fd 1 (C++ logging, warnings); keep the real stdout for the one JSON line
    # and send everything else to stderr, so the host never has to dig the result out of noise.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - anything unexpected still becomes one JSON answer
        result = failure("runner_error", f"{type(exc).__name__}: {exc}")
    os.write(out_fd, (json.dumps(result, sort_keys=True) + "\n").encode("utf-8"))
    os.close(out_fd)
    return 0 if result.get("ok") else 3


def failure(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"edgeport_remote_bench": SCHEMA, "ok": False, "error": kind, "message": message}
    data.update(extra)
    data["device"] = fingerprint()
    return data


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    try:
        import numpy as np
    except ImportError as exc:
        np = None
        numpy_error = str(exc)
    else:
        numpy_error = ""
    import_errors: list[str] = []
    runtime = load_runtime(import_errors)
    if runtime is None or np is None:
        missing = "no TFLite runtime" if runtime is None else "numpy is missing"
        if runtime is None and np is None:
            missing += " and numpy is missing"
        return failure("no_runtime", f"{missing} for {sys.executable}", packages=RUNTIME_PACKAGES,
                       numpy_error=numpy_error, import_errors=import_errors, python=sys.executable)
    interpreter_cls, load_delegate, name, version = runtime

    delegates = []
    if args.delegate == "edgetpu":
        try:
            delegates.append(load_delegate(EDGETPU_LIB))
        except Exception as exc:  # noqa: BLE001 - the runtimes raise ValueError/OSError/RuntimeError alike
            return failure("delegate_failed", f"cannot load the Edge TPU delegate {EDGETPU_LIB}: {exc}",
                           delegate="edgetpu", runtime={"name": name, "version": version})
    t0 = time.perf_counter()
    try:
        interp = interpreter_cls(model_path=args.model, num_threads=args.threads,
                                 experimental_delegates=delegates or None)
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001
        return failure("model_failed", f"the runtime could not load the model: {exc}",
                       runtime={"name": name, "version": version})
    load_ms = (time.perf_counter() - t0) * 1000.0

    rng = np.random.default_rng(args.seed)
    inputs = interp.get_input_details()
    for detail in inputs:
        interp.set_tensor(detail["index"], random_input(np, rng, detail))

    deadline = started + args.max_seconds if args.max_seconds > 0 else None
    warmup_ms = timed_runs(interp, args.warmup, deadline)
    times_ms = timed_runs(interp, args.runs, deadline)
    if len(times_ms) < args.runs or len(warmup_ms) < args.warmup:
        elapsed = time.monotonic() - started
        return failure("deadline", f"stopped after {elapsed:.1f} s with {len(times_ms)} of {args.runs} runs done",
                       runs_done=len(times_ms))

    return {
        "edgeport_remote_bench": SCHEMA,
        "ok": True,
        "times_ms": times_ms,
        "warmup_ms": warmup_ms,
        "load_ms": load_ms,
        "threads": args.threads,
        "delegate": args.delegate,
        "runtime": {"name": name, "version": version},
        "inputs": [describe(np, d) for d in inputs],
        "outputs": [describe(np, d) for d in interp.get_output_details()],
        "peak_rss_mb": peak_rss_mb(),
        "device": fingerprint(),
    }


def timed_runs(interp: Any, count: int, deadline: float | None) -> list[float]:
    times: list[float] = []
    for _ in range(count):
        if deadline is not None and time.monotonic() > deadline:
            break
        t0 = time.perf_counter_ns()
        interp.invoke()
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


def load_runtime(errors: list[str]) -> tuple[Any, Any, str, str | None] | None:
    """The first TFLite interpreter available: ai_edge_litert, else tflite_runtime, else TensorFlow.

    Broken installs raise more than ImportError (a wheel for the wrong CPU, a missing shared library),
    so every failure is collected and reported instead of crashing the runner.
    """
    try:
        from ai_edge_litert import interpreter as litert

        return litert.Interpreter, litert.load_delegate, "ai_edge_litert", module_version("ai_edge_litert", "ai-edge-litert")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"ai_edge_litert: {exc}")
    try:
        from tflite_runtime import interpreter as tfl

        return tfl.Interpreter, tfl.load_delegate, "tflite_runtime", module_version("tflite_runtime", "tflite-runtime")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"tflite_runtime: {exc}")
    try:
        import tensorflow as tf

        return tf.lite.Interpreter, tf.lite.experimental.load_delegate, "tensorflow.lite", tf.__version__
    except Exception as exc:  # noqa: BLE001
        errors.append(f"tensorflow: {exc}")
    return None


def module_version(module: str, dist: str) -> str | None:
    version = getattr(sys.modules.get(module), "__version__", None)
    if version:
        return str(version)
    try:
        from importlib import metadata

        return metadata.version(dist)
    except Exception:  # noqa: BLE001 - importlib.metadata is 3.8+; a missing version is not an error
        return None


def random_input(np: Any, rng: Any, detail: dict[str, Any]) -> Any:
    """Seeded random data of the input's dtype; quantized inputs get quantized N(0, 1) values."""
    dtype = detail["dtype"]
    shape = [max(int(s), 1) for s in detail["shape"]]
    scale, zero = detail.get("quantization", (0.0, 0))
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    if scale:
        values = np.round(rng.standard_normal(shape) / scale + zero)
        return np.clip(values, info.min, info.max).astype(dtype)
    return rng.integers(0, 2, size=shape).astype(dtype)  # ids / indices: small values stay in range


def describe(np: Any, detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero = detail.get("quantization", (0.0, 0))
    return {"name": str(detail.get("name", "")), "shape": [int(s) for s in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}


def peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


def fingerprint() -> dict[str, Any]:
    """What the device is: enough to tell a Pi 4 from a Pi 5 or a Coral Dev Board in a report."""
    uname = platform.uname()
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "system": uname.system,
        "release": uname.release,
        "version": uname.version,
        "node": uname.node,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    info.update(cpuinfo())
    model = read_text("/proc/device-tree/model")
    if model:
        info["device_tree_model"] = model.strip("\x00 \n")
    return info


def cpuinfo() -> dict[str, str]:
    found: dict[str, str] = {}
    wanted = {"model name": "cpu_model", "hardware": "hardware", "model": "board_model", "cpu part": "cpu_part"}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        value = value.strip()
        if key == "model" and value.isdigit():  # x86 "model : 2" is a CPU model number, not a board
            continue
        if sep and key in wanted and wanted[key] not in found and value:
            found[wanted[key]] = value
    return found


def read_text(path: str, limit: int = 1 << 16) -> str | None:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
