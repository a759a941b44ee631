"""Benchmark `edgeport convert` on the embedded default model, every quant mode, side by side.

Reports per mode: file size and weight bytes vs fp32, label accuracy vs float, host p50 vs fp32
TFLite and vs onnxruntime float (all timed in this one run, alternating, same thread count), and the
convert wall time vs a bare `onnx2tf` call on the same ONNX. Ratios, not absolute timings, are the
result: the machine is shared and noisy.

    .venv/bin/python benchmarks/bench_convert.py [--runs 2000] [--out benchmarks/results/convert.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgeport
from edgeport.tflite.reader import inspect_model
from edgeport.validate.run import run_tflite

REPO = Path(__file__).resolve().parent.parent
MODES = ["fp32", "fp16", "dynamic", "int8", "int16x8"]
THREADS = 2


def ort_latency(onnx_path: Path, runs: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    for _ in range(20):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def bare_onnx2tf_seconds(onnx_path: Path, work: Path) -> float:
    prefix = ["unshare", "-n"] if shutil.which("unshare") else []
    out = work / "bare_onnx2tf"
    t0 = time.perf_counter()
    proc = subprocess.run([*prefix, sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out), "-n"],
                          capture_output=True, text=True, cwd=work, timeout=1800)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bare onnx2tf failed: {proc.stderr[-500:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "convert.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-"))
    results: dict[str, dict] = {}
    artifacts: dict[str, Path] = {}
    for mode in MODES:
        t0 = time.perf_counter()
        rep = edgeport.convert(REPO / "edgeport/zoo/digits_net.pt", "host", quant=mode, calib="builtin:digits",
                               val="builtin:digits-val", model_class="edgeport.zoo.digits_net:DigitsNet",
                               output=work / mode, runs=20, keep_work=mode == "fp32")
        wall = time.perf_counter() - t0
        art = Path(rep.data["artifact"]["path"])
        artifacts[mode] = art
        info = inspect_model(art)
        results[mode] = {"size_bytes": art.stat().st_size, "weight_bytes": info["weight_bytes"], "kernel_bytes": info["kernel_bytes"],
                         "accuracy_float": rep.data["accuracy"]["reference"], "accuracy_tflite": rep.data["accuracy"]["tflite"],
                         "drop_pp": rep.data["accuracy"]["drop_pp"], "convert_wall_s": round(wall, 2),
                         "passed": rep.passed}
    onnx_path = next((work / "fp32").glob(".edgeport-work-*/model.onnx"))
    # Timing side by side: alternate the models in rounds so drift of a shared machine hits all alike.
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    ort_samples = []
    for _ in range(5):
        for mode in MODES:
            run = run_tflite(artifacts[mode], None, {}, None, threads=THREADS, runs=args.runs // 5, warmup=50)
            samples[mode].append(run.latency.p50_ms)
        ort_samples.append(ort_latency(onnx_path, args.runs // 5))
    ort_p50 = float(np.median(ort_samples))
    fp32 = results["fp32"]
    for mode in MODES:
        p50 = float(np.median(samples[mode]))
        results[mode].update(host_p50_ms=round(p50, 4), size_vs_fp32=round(results[mode]["size_bytes"] / fp32["size_bytes"], 4),
                             weight_bytes_vs_fp32=round(results[mode]["weight_bytes"] / fp32["weight_bytes"], 4),
                             kernel_bytes_vs_fp32=round(results[mode]["kernel_bytes"] / fp32["kernel_bytes"], 4))
    for mode in MODES:
        results[mode].update(latency_vs_fp32_tflite=round(results[mode]["host_p50_ms"] / results["fp32"]["host_p50_ms"], 3),
                             latency_vs_onnxruntime=round(results[mode]["host_p50_ms"] / ort_p50, 3))
    bare = bare_onnx2tf_seconds(onnx_path, work)
    summary = {"onnxruntime_fp32_p50_ms": round(ort_p50, 4), "bare_onnx2tf_s": round(bare, 2), "threads": THREADS,
               "runs_per_model": args.runs, "modes": results,
               "edgeport_int8_convert_vs_bare_onnx2tf": round(results["int8"]["convert_wall_s"] / bare, 2)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print("| mode | size KiB | size/fp32 | consts/fp32 | kernels/fp32 | acc float | acc tflite | drop pp | p50 ms | vs fp32 | vs ORT | convert s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['size_bytes'] / 1024:.1f} | {r['size_vs_fp32']:.3f} | {r['weight_bytes_vs_fp32']:.3f} | {r['kernel_bytes_vs_fp32']:.3f} | "
              f"{r['accuracy_float']:.4f} | {r['accuracy_tflite']:.4f} | {r['drop_pp']:.2f} | {r['host_p50_ms']:.4f} | "
              f"{r['latency_vs_fp32_tflite']:.2f} | {r['latency_vs_onnxruntime']:.2f} | {r['convert_wall_s']:.1f} |")
    print(f"onnxruntime fp32 p50 {ort_p50:.4f} ms; bare onnx2tf {bare:.1f} s (fp32+fp16 only, no validation)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
