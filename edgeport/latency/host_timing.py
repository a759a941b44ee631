"""Child process that times a set of .tflite models on this host for the host latency fit.

One process for the whole set (not one per model, as validation does) because the fit needs dozens of
timings within a minute and a fresh interpreter process costs about half a second. Repeats are
interleaved, a pass over every (model, threads) and then the next, so a burst of load from another
process on a shared machine hits every model a little instead of one model a lot.
Usage: python -m edgeport.latency.host_timing REQUEST.json RESULT.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.tflite.runner import load_interpreter_class


def time_models(models: list[str], threads: list[int], *, repeats: int, runs: int, warmup: int,
                budget_s: float | None = None, min_repeats: int = 3) -> dict[str, list[float]]:
    """{"<model>@<threads>": [p50 ms of each repeat]} for every model and thread count.

    `budget_s` bounds the wall time on a slow or busy machine: after `min_repeats` passes, no new pass
    starts once the budget is spent (the fit must stay within its minute).
    """
    start = time.monotonic()
    interpreter_class, _runtime = load_interpreter_class()
    runners: dict[str, Any] = {}
    feeds: dict[str, dict[str, np.ndarray]] = {}
    for path in models:
        for n in threads:
            key = f"{path}@{n}"
            runner = interpreter_class(model_path=path, num_threads=n).get_signature_runner()
            rng = np.random.default_rng(0)
            feeds[key] = {k: _random_input(d, rng) for k, d in runner.get_input_details().items()}
            for _ in range(warmup):
                runner(**feeds[key])
            runners[key] = runner
    out: dict[str, list[float]] = {key: [] for key in runners}
    for done in range(repeats):
        if budget_s is not None and done >= min_repeats and time.monotonic() - start > budget_s:
            break
        for key, runner in runners.items():
            feed = feeds[key]
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                runner(**feed)
                times.append(time.perf_counter() - t0)
            out[key].append(float(np.median(times)) * 1000.0)
    return out


def _random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape = tuple(int(s) for s in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype)
    return rng.uniform(-1.0, 1.0, shape).astype(dtype)


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text())
    result = time_models(req["models"], req["threads"], repeats=int(req["repeats"]), runs=int(req["runs"]),
                         warmup=int(req.get("warmup", 3)), budget_s=req.get("budget_s"))
    out = Path(argv[1])
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
