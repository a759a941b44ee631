"""`--quant auto` against a by-hand comparison, per fixture and profile -> benchmarks/results/quant_auto.json.

For each fixture and profile, in one process run after another on the same machine:
1. `edgeport convert --quant auto` (wall time, the candidate table, the choice);
2. `edgeport convert --quant MODE` for every mode auto built (wall time, size, task metric, latency);
3. the by-hand choice: the same rule (quantize/auto.choose) applied to the standalone converts' figures.
Reported: whether the two choices agree, and auto's wall time over the sum of the standalone converts'.

Usage: python benchmarks/bench_quant_auto.py [--only NAME ...] [--profiles pixel-7 raspberry-pi-4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "quant_auto.json"
sys.path.insert(0, str(ROOT))

from edgeport.export.arbitrate import ACCURACY_CHECKS  # noqa: E402
from edgeport.quantize.auto import Candidate, choose  # noqa: E402


def fixtures(work: Path) -> dict[str, list[str]]:
    """name -> convert arguments (checkpoint first). Task fixtures come from edgeport.zoo.task_models."""
    found = {
        "digits_classifier": [str(ROOT / "edgeport/zoo/digits_net.pt"), "--model-class", "edgeport.zoo.digits_net:DigitsNet",
                              "--calib", "builtin:digits", "--val", "builtin:digits-val"],
    }
    try:
        from edgeport.zoo import task_models  # the task fixtures (CTC, detector, embedding, segmenter)

        found.update(task_models.bench_fixtures(work))
    except (ImportError, AttributeError) as exc:
        print(f"task fixtures unavailable: {exc}", file=sys.stderr)
    return {k: v for k, v in found.items() if v}


def convert(args: list[str], out: Path) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeport", "convert", *args, "--output", str(out), "--runs", "20",
                           "--json", "--quiet"], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t0
    try:
        return json.loads(proc.stdout), seconds
    except json.JSONDecodeError:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}, seconds


def by_hand(rows: dict[str, dict], latency_budget: float | None) -> str | None:
    cands = []
    for mode, rep in rows.items():
        if "error" in rep:
            cands.append(Candidate(mode, skipped=str(rep["error"])))
            continue
        failed = tuple(c["name"] for c in rep["verdict"]["checks"] if not c["passed"] and c["name"] in ACCURACY_CHECKS)
        cands.append(Candidate(mode, size_bytes=rep["artifact"]["size_bytes"], ran=rep["runtime_error"] is None,
                               simulated_p50_ms=rep["latency"]["simulated"]["p50_ms"],
                               host_p50_ms=rep["latency"]["host"]["p50_ms"], failed_checks=failed))
    return choose(cands, latency_budget).mode if cands else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--profiles", nargs="*", default=["pixel-7", "raspberry-pi-4"])
    args = parser.parse_args()
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-auto-") as tmp:
        work = Path(tmp)
        for name, base in fixtures(work).items():
            if args.only and name not in args.only:
                continue
            for profile in args.profiles:
                key = f"{name}@{profile}"
                print(f"{key}: --quant auto", file=sys.stderr)
                auto, auto_s = convert([*base, "--profile", profile, "--quant", "auto"], work / key / "auto")
                if "quant_auto" not in auto:
                    results[key] = {"error": auto.get("error")}
                    continue
                built = [c["mode"] for c in auto["quant_auto"]["candidates"] if not c.get("skipped")]
                standalone, seconds = {}, {}
                for mode in built:
                    print(f"{key}: --quant {mode}", file=sys.stderr)
                    standalone[mode], seconds[mode] = convert([*base, "--profile", profile, "--quant", mode], work / key / mode)
                hand = by_hand(standalone, auto["profile"]["budgets"]["latency_p50_ms"])
                results[key] = {
                    "auto_choice": auto["quant_auto"]["chosen"], "by_hand_choice": hand,
                    "agree": hand == auto["quant_auto"]["chosen"],
                    "auto_seconds": round(auto_s, 1), "standalone_seconds": {m: round(s, 1) for m, s in seconds.items()},
                    "auto_over_sum_of_standalone": round(auto_s / sum(seconds.values()), 3) if seconds else None,
                    "task": (auto["accuracy"].get("task") or {}).get("task"),
                    "verdict_passed": auto["verdict"]["passed"],
                    "candidates": auto["quant_auto"]["candidates"],
                }
                OUT.write_text(json.dumps(results, indent=2) + "\n")
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: {kk: v.get(kk) for kk in ("auto_choice", "by_hand_choice", "auto_over_sum_of_standalone")}
                      for k, v in results.items() if isinstance(v, dict) and "auto_choice" in v}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
