"""Benchmark `--quant mixed` on models where int8 fails and one where it already fits.

For each model: label accuracy of fp32 / int8 / mixed TFLite on the 600 held-out digits, the ops
kept in float, file size vs fp32, and host p50 (all variants timed alternately in this one run).

    .venv/bin/python benchmarks/bench_mixed.py [--runs 1000] [--out benchmarks/results/mixed.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import edgeport
from edgeport.validate.run import run_tflite

REPO = Path(__file__).resolve().parent.parent
MODELS = {
    "outlier_net (hard-swish CNN, outlier channel)": ("edgeport/zoo/outlier_net.pt", "edgeport.zoo.hard_cases:OutlierNet"),
    "attn_net (attention + LayerNorm, outlier feature)": ("edgeport/zoo/attn_net.pt", "edgeport.zoo.hard_cases:AttnNet"),
    "digits_net (default; int8 already fits)": ("edgeport/zoo/digits_net.pt", "edgeport.zoo.digits_net:DigitsNet"),
}
MODES = ("fp32", "int8", "mixed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--profile", default="raspberry-pi-4")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mixed.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-mixed-"))
    summary: dict[str, dict] = {}
    for label, (ckpt, cls) in MODELS.items():
        rows, arts = {}, {}
        for mode in MODES:
            rep = edgeport.convert(REPO / ckpt, args.profile, quant=mode, calib="builtin:digits", val="builtin:digits-val",
                                   model_class=cls, output=work / label.split()[0] / mode, runs=10)
            data = rep.data
            arts[mode] = Path(data["artifact"]["path"])
            kept = data["quantization"].get("float_layers") if mode == "mixed" else None
            rows[mode] = {"accuracy": data["accuracy"]["tflite"], "drop_pp": data["accuracy"]["drop_pp"],
                          "size_bytes": data["artifact"]["size_bytes"], "passed": rep.passed,
                          "kept_float": [k.get("pytorch_module") or k.get("onnx_node") or k["tensor"] for k in kept or []],
                          "notes": [n for n in data.get("notes", []) if "equalization" in n or "mixed" in n]}
            rows["reference_accuracy"] = data["accuracy"]["reference"]
        samples = {m: [] for m in MODES}
        for _ in range(5):
            for mode in MODES:
                samples[mode].append(run_tflite(arts[mode], None, {}, None, threads=2, runs=args.runs // 5, warmup=20).latency.p50_ms)
        for mode in MODES:
            rows[mode]["host_p50_ms"] = round(float(np.median(samples[mode])), 4)
            rows[mode]["size_vs_fp32"] = round(rows[mode]["size_bytes"] / rows["fp32"]["size_bytes"], 3)
        summary[label] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("| model | float acc | fp32 TFLite | int8 (drop pp) | mixed (drop pp) | kept float | size int8 / mixed vs fp32 | p50 fp32 / int8 / mixed ms |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in summary.items():
        print(f"| {label} | {r['reference_accuracy']:.4f} | {r['fp32']['accuracy']:.4f} | {r['int8']['accuracy']:.4f} "
              f"({r['int8']['drop_pp']:+.2f}) | {r['mixed']['accuracy']:.4f} ({r['mixed']['drop_pp']:+.2f}) | "
              f"{len(r['mixed']['kept_float'])} | {r['int8']['size_vs_fp32']:.2f} / {r['mixed']['size_vs_fp32']:.2f} | "
              f"{r['fp32']['host_p50_ms']:.4f} / {r['int8']['host_p50_ms']:.4f} / {r['mixed']['host_p50_ms']:.4f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
