"""Benchmark the two `--quant mixed` searches against int8 and int16x8, through the real CLI.

For each model: int8, int16x8, mixed with the converter search (`--mixed-search converter`, one TFLite
converter run per candidate) and mixed with the AI Edge Quantizer search (`--mixed-search aeq`,
calibrate once). Each row records size, accuracy (drop or agreement), output SNR, simulated p50 on the
profile, host p50, the verdict, the whole convert's wall time and the search's own time. A mode that
runs past its time limit is recorded as not finished.

    .venv/bin/python benchmarks/bench_mixed_search.py [--only detector] [--out benchmarks/results/mixed_search.json]

The detector (edgeport/zoo/detector_net.py, ~500 TFLite ops at 480x480, seeded) has no labels; it is
judged on output SNR against a raspberry-pi-4 profile whose min_snr_db is raised to 35 dB, so that
plain int8 misses and the search has work to do (its planted outliers sit in two heads).
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeport.profiles import SHIPPED_PROFILES_DIR  # noqa: E402
from edgeport.zoo import sequence_models as seq  # noqa: E402

RUNS = (("int8", ["--quant", "int8"]), ("int16x8", ["--quant", "int16x8"]),
        ("mixed (converter search)", ["--quant", "mixed", "--mixed-search", "converter"]),
        ("mixed (AEQ search)", ["--quant", "mixed", "--mixed-search", "aeq"]))


def _cases(work: Path, detector_size: int) -> dict[str, dict]:
    from edgeport.zoo.detector_net import build, smooth_images

    digits = ["--calib", "builtin:digits", "--val", "builtin:digits-val"]
    cases = {
        "outlier_net (CNN, outlier channel)": {"argv": [str(REPO / "edgeport/zoo/outlier_net.pt"), "--model-class",
                                                        "edgeport.zoo.hard_cases:OutlierNet", *digits]},
        "attn_net (attention, outlier feature)": {"argv": [str(REPO / "edgeport/zoo/attn_net.pt"), "--model-class",
                                                           "edgeport.zoo.hard_cases:AttnNet", *digits]},
        "head_net (CNN, sensitive classifier head)": {"argv": [str(REPO / "edgeport/zoo/head_net.pt"), "--model-class",
                                                               "edgeport.zoo.hard_cases:HeadNet", *digits]},
    }
    torch.manual_seed(0)
    torch.save(seq.train(seq.TinyEncoder()).state_dict(), work / "encoder.pt")
    for name, (count, seed) in {"calib": (256, 1), "val": (400, 2)}.items():
        x, y = seq.make_data(count, seed)
        np.savez(work / f"seq_{name}.npz", x=x, y=y)
    cases["transformer encoder (2 layers, d=64)"] = {"argv": [
        str(work / "encoder.pt"), "--model-class", "edgeport.zoo.sequence_models:TinyEncoder", "--input-shape",
        f"x=1x{seq.SEQ}x{seq.FEATURES}", "--calib", str(work / "seq_calib.npz"), "--val", str(work / "seq_val.npz")]}
    torch.save(build().state_dict(), work / "detector.pt")
    np.savez(work / "det_calib.npz", x=smooth_images(64, detector_size, seed=1).numpy())
    np.savez(work / "det_val.npz", x=smooth_images(16, detector_size, seed=2).numpy())
    strict = work / "raspberry-pi-4-snr35.toml"
    text = (SHIPPED_PROFILES_DIR / "raspberry-pi-4.toml").read_text()
    assert "min_snr_db = 15.0" in text
    strict.write_text(text.replace("min_snr_db = 15.0", "min_snr_db = 35.0"))
    cases[f"detector (~500 ops, {detector_size}x{detector_size})"] = {
        "argv": [str(work / "detector.pt"), "--model-class", "edgeport.zoo.detector_net:DetectorNet", "--input-shape",
                 f"x=1x3x{detector_size}x{detector_size}", "--calib", str(work / "det_calib.npz"), "--val",
                 str(work / "det_val.npz")],
        "profile": str(strict), "timeout": 1200}
    return cases


def _convert(case: dict, extra: list[str], out: Path, timeout: float) -> dict:
    argv = [sys.executable, "-m", "edgeport", "convert", *case["argv"], *extra, "--profile",
            case.get("profile", "raspberry-pi-4"), "--output", str(out), "--json", "--quiet", "--runs", "20"]
    env = {**os.environ, "EDGEPORT_HOST_FIT": "fallback"}
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"finished": False, "wall_s": round(time.monotonic() - start, 1), "error": f"did not finish within {timeout:.0f} s"}
    wall = round(time.monotonic() - start, 1)
    try:
        rep = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"finished": False, "wall_s": wall, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    if "accuracy" not in rep:
        return {"finished": False, "wall_s": wall, "error": rep.get("error")}
    acc, q = rep["accuracy"], rep["quantization"]
    return {"finished": True, "exit_code": proc.returncode, "passed": rep["verdict"]["passed"], "wall_s": wall,
            "search_s": rep["timings"].get("mixed_search"), "size_bytes": rep["artifact"]["size_bytes"],
            "drop_pp": acc.get("drop_pp"), "top1_agreement": acc.get("top1_agreement"),
            "snr_db_min": min((o["snr_db"] for o in acc.get("outputs") or []), default=None),
            "sim_p50_ms": rep["latency"]["simulated"].get("p50_ms"), "host_p50_ms": rep["latency"]["host"].get("p50_ms"),
            "host_runtime": acc.get("runtime"), "levels": q.get("levels"),
            "float_ops": len(q.get("float_layers") or []), "stopped": (q.get("search") or {}).get("stopped"),
            "built_by": (q.get("search") or {}).get("built_by"),
            "accuracy_passed": all(c["passed"] for c in rep["verdict"]["checks"]
                                   if c["name"] in ("accuracy_drop_pp", "top1_agreement", "snr_db"))}


def _ratios(rows: dict[str, dict]) -> dict[str, float | bool | None]:
    """The issue's targets: where int8 misses the budget, the AEQ mixed model meets it within 1.2x the int8
    size and 1.3x its simulated latency, and is never worse than the converter search's on both axes."""
    base, new, old = rows.get("int8", {}), rows.get("mixed (AEQ search)", {}), rows.get("mixed (converter search)", {})
    if not (base.get("finished") and new.get("finished")):
        return {}
    out: dict[str, float | bool | None] = {
        "aeq_mixed_size_vs_int8": round(new["size_bytes"] / base["size_bytes"], 3),
        "aeq_mixed_sim_vs_int8": round(new["sim_p50_ms"] / base["sim_p50_ms"], 3) if base.get("sim_p50_ms") else None,
        "aeq_mixed_wall_vs_int8": round(new["wall_s"] / base["wall_s"], 3)}
    out["int8_meets_budget"] = _budget_met(base)
    out["aeq_mixed_meets_budget"] = _budget_met(new)
    out["within_size_and_latency_targets"] = bool(out["aeq_mixed_size_vs_int8"] <= 1.2 and (out["aeq_mixed_sim_vs_int8"] or 0) <= 1.3)
    if old.get("finished"):
        out["aeq_vs_converter_size"] = round(new["size_bytes"] / old["size_bytes"], 4)
        out["aeq_vs_converter_sim"] = round(new["sim_p50_ms"] / old["sim_p50_ms"], 4) if old.get("sim_p50_ms") else None
        out["worse_than_converter_on_both_axes"] = bool(new["size_bytes"] > old["size_bytes"]
                                                        and new["sim_p50_ms"] > old["sim_p50_ms"])
        out["aeq_vs_converter_wall"] = round(new["wall_s"] / old["wall_s"], 3)
    return out


def _budget_met(row: dict) -> bool:
    """The accuracy check alone (the detector's profile may fail other checks, e.g. latency on a Pi)."""
    return bool(row.get("accuracy_passed"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mixed_search.json")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names")
    ap.add_argument("--detector-size", type=int, default=480)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-mixed-search-"))
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    results: dict[str, dict] = {}
    for name, case in _cases(work, args.detector_size).items():
        if wanted and not any(w in name.lower() for w in wanted):
            continue
        rows = {}
        for label, extra in RUNS:
            rows[label] = _convert(case, extra, work / f"{len(results)}_{label.split()[0]}_{len(rows)}", case.get("timeout", 900))
            print(name, label, rows[label], flush=True)
        rows["ratios"] = _ratios(rows)
        results[name] = rows
    if wanted and args.out.exists():  # --only re-measures some cases; the others keep their recorded rows
        results = {**json.loads(args.out.read_text()).get("results", {}), **results}
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
           "command": "python benchmarks/bench_mixed_search.py", "profile": "raspberry-pi-4 (detector: min_snr_db 35)",
           "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
