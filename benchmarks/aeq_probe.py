"""Measure the AEQ mixed-precision search (edgeport.quantize.search.aeq_search) against plain int8.

detector: a seeded ~500-op detector (edgeport/zoo/detector_net.py) at SIZE x SIZE: wall time of the
  plain int8 conversion (`--quant int8`: onnx2tf + the TF converter's fp32 and int8 jobs) vs the mixed
  path (onnx2tf + fp32 job, one AEQ calibration, the search), and what the search chose.
hard: the zoo's outlier CNN and attention net on the digits data: size, label accuracy, top-1
  agreement with float, simulated latency and XNNPACK acceptance for TF int8, TF int16x8, AEQ int8 and
  AEQ mixed (on the float model as exported, and after cross-layer equalization).
costs: one AEQ calibration (both calibrator modes) vs one recipe (quantize + read-back) on the detector.

Timings are wall-clock on a shared 2-core machine: compare ratios from one run, not absolute numbers.

    .venv/bin/python benchmarks/aeq_probe.py detector --size 480 [--out benchmarks/results/aeq_mixed_probe.json]
    .venv/bin/python benchmarks/aeq_probe.py hard [--out benchmarks/results/aeq_mixed_probe.json]
    .venv/bin/python benchmarks/aeq_probe.py costs --size 480
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeport.export.onnx_prep import prepare_onnx
from edgeport.export.to_tflite import run_conversion
from edgeport.export.torch_to_onnx import export_onnx
from edgeport.latency.simulator import simulate
from edgeport.profiles import load_profile
from edgeport.quantize import aeq
from edgeport.quantize.equalize import equalize
from edgeport.quantize.search import aeq_search as mixed_aeq
from edgeport.tflite.reader import inspect_model
from edgeport.types import TensorSpec
from edgeport.validate.run import run_tflite

REPO = Path(__file__).resolve().parent.parent
THREADS = 2
PROFILES = ("raspberry-pi-4", "pixel-7")


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    noise = float(np.sum((got - ref) ** 2))
    return 99.0 if noise == 0 else float(10 * np.log10(np.sum(ref**2) / noise))


def describe(path: Path, run: Any = None) -> dict[str, Any]:
    info = inspect_model(path)
    levels = {"INT8": 0, "INT16": 0, "FLOAT32": 0}
    for op in info["ops"]:
        if op["op"] not in ("QUANTIZE", "DEQUANTIZE") and op["outputs"]:
            levels[op["outputs"][0]["dtype"]] = levels.get(op["outputs"][0]["dtype"], 0) + 1
    out = {"size_bytes": info["size_bytes"], "ops": len(info["ops"]), "op_output_types": levels,
           "sim_ms": {p: round(simulate(info, load_profile(p)).p50_ms, 3) for p in PROFILES}}
    if run is not None:
        out["xnnpack"] = run.error is None and run.delegate == "xnnpack"
        out["run_error"] = run.error
    return out


def tflite_layout(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1))) if x.ndim == 4 else x


def detector(size: int, n_calib: int, n_val: int, n_probe: int, min_snr: float) -> dict[str, Any]:
    from edgeport.zoo.detector_net import build, smooth_images

    work = Path(tempfile.mkdtemp(prefix="aeq-probe-det-"))
    model = build()
    calib = smooth_images(n_calib, size, seed=1).numpy()
    val = smooth_images(n_val, size, seed=2).numpy()
    t = time.perf_counter()
    export_onnx(model, [TensorSpec("x", (1, 3, size, size))], work / "exported.onnx")
    prep = prepare_onnx(work / "exported.onnx", work / "model.onnx", {})
    export_s = time.perf_counter() - t

    t = time.perf_counter()
    plain = run_conversion(prep, work / "int8", {"x": calib}, [{"key": "fp32", "mode": "fp32"},
                                                               {"key": "int8", "mode": "int8", "io_dtype": "float32"}])
    int8_convert_s = time.perf_counter() - t

    t = time.perf_counter()
    conv = run_conversion(prep, work / "mixed", {"x": calib}, [{"key": "fp32", "mode": "fp32"}])
    fp32_convert_s = time.perf_counter() - t
    fp32 = conv.files["fp32"]
    imap = conv.input_map
    ref = run_tflite(fp32, {"x": val}, imap, None, threads=THREADS, runs=0).outputs
    accepts: list[float] = []

    def accept(path: Path) -> tuple[bool, float]:
        t0 = time.perf_counter()
        run = run_tflite(path, {"x": val}, imap, ref, threads=THREADS, runs=0)
        accepts.append(time.perf_counter() - t0)
        if run.outputs is None:
            return False, float("-inf")
        worst = min(snr_db(r, o) for r, o in zip(ref, run.outputs, strict=True))
        return worst >= min_snr, worst

    t = time.perf_counter()
    cal = aeq.calibrate(fp32, {"x": tflite_layout(calib)}, threads=THREADS)
    calibrate_s = time.perf_counter() - t
    prof = load_profile("raspberry-pi-4")
    t = time.perf_counter()
    res = mixed_aeq.search(fp32, cal, {"x": tflite_layout(calib[:n_probe])}, accept, prof, work / "search",
                           threads=THREADS, progress=lambda s: print("  ", s, flush=True))
    search_s = time.perf_counter() - t
    mixed_total = fp32_convert_s + calibrate_s + search_s

    snrs = lambda run: [round(snr_db(r, o), 2) for r, o in zip(ref, run.outputs, strict=True)]  # noqa: E731
    tf_int8_run = run_tflite(plain.files["int8"], {"x": val}, imap, ref, threads=THREADS, runs=0)
    mixed_run = run_tflite(res.model, {"x": val}, imap, ref, threads=THREADS, runs=0)
    aeq_int8 = aeq.quantize(fp32, cal, {}, out=work / "aeq_int8.tflite")
    aeq_int8_run = run_tflite(aeq_int8, {"x": val}, imap, ref, threads=THREADS, runs=0)
    # what `--quant mixed` does first: cross-layer equalization (timed apart from the search above)
    t = time.perf_counter()
    eq = equalize(prep.path, work / "model_eq.onnx", {"x": val[:1]})
    equalize_s = time.perf_counter() - t
    eq_fp32 = run_conversion(replace(prep, path=eq.path), work / "eq", None, [{"key": "fp32", "mode": "fp32"}]).files["fp32"]
    eq_int8 = aeq.quantize(eq_fp32, aeq.calibrate(eq_fp32, {"x": tflite_layout(calib)}, threads=THREADS), {},
                           out=work / "eq_aeq_int8.tflite")
    eq_run = run_tflite(eq_int8, {"x": val}, imap, ref, threads=THREADS, runs=0)
    return {
        "model": f"edgeport.zoo.detector_net.build() at {size}x{size}", "fp32_ops": len(inspect_model(fp32)["ops"]),
        "calib_samples": n_calib, "val_samples": n_val, "probe_samples": n_probe, "budget": f"min output SNR >= {min_snr} dB",
        "seconds": {"export_onnx": round(export_s, 1), "int8_convert (fp32+int8 jobs)": round(int8_convert_s, 1),
                    "mixed: fp32_convert": round(fp32_convert_s, 1), "mixed: aeq_calibrate": round(calibrate_s, 1),
                    "mixed: search": round(search_s, 1), "mixed: total": round(mixed_total, 1),
                    "equalize (not part of the mixed total)": round(equalize_s, 1)},
        "mixed_over_int8": round(mixed_total / int8_convert_s, 2),
        "search": {"stopped": res.stopped, "timings": res.timings, "candidates": len(res.curve),
                   "probe_runs": sum(1 for c in res.curve if "proxy_nsr" in c), "accept_calls": len(accepts),
                   "accept_seconds": round(sum(accepts), 1), "kept_float": len(res.kept), "kept_a16w8": len(res.kept_a16w8),
                   "forced_float": len(res.forced_float)},
        "equalization": {"pairs": eq.pairs, "max_scale": round(eq.max_scale, 2),
                         "aeq_int8_after_equalization": describe(eq_int8, eq_run) | {"output_snr_db": snrs(eq_run)}},
        "tf_int8": describe(plain.files["int8"], tf_int8_run) | {"output_snr_db": snrs(tf_int8_run)},
        "aeq_int8": describe(aeq_int8, aeq_int8_run) | {"output_snr_db": snrs(aeq_int8_run), "accept": res.int8},
        "aeq_mixed": describe(res.model, mixed_run) | {"output_snr_db": snrs(mixed_run)},
        "chosen": [{k: r[k] for k in ("index", "op", "level", "reason")} for r in res.layers if r["reason"] and "searched" in r["reason"]],
        "curve": res.curve,
    }


def costs(size: int) -> dict[str, Any]:
    """One AEQ calibration vs one recipe (quantize + read-back) on the detector's float model."""
    import contextlib
    import os

    from ai_edge_quantizer import calibrator, quantizer

    from edgeport.zoo.detector_net import build, smooth_images

    work = Path(tempfile.mkdtemp(prefix="aeq-probe-cost-"))
    export_onnx(build(), [TensorSpec("x", (1, 3, size, size))], work / "exported.onnx")
    prep = prepare_onnx(work / "exported.onnx", work / "model.onnx", {})
    fp32 = run_conversion(prep, work / "tf", None, [{"key": "fp32", "mode": "fp32"}]).files["fp32"]
    x = tflite_layout(smooth_images(16, size, seed=1).numpy())
    ops = aeq.quantizable_ops(fp32)
    out: dict[str, Any] = {"model": f"detector_net {size}x{size}, {len(ops)} float ops", "threads": THREADS}
    t = time.perf_counter()
    cal = aeq.calibrate(fp32, {"x": x}, threads=THREADS)
    out["calibrate_profiler_based_16_samples_s"] = round(time.perf_counter() - t, 2)
    q = quantizer.Quantizer(str(fp32))
    q.add_static_config(".*", "*", 8, 8)
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        t = time.perf_counter()
        q.calibrate({"serving_default": [{"x": x[i : i + 1]} for i in range(4)]}, num_threads=THREADS,
                    mode=calibrator.CalibrationMode.CALIBRATION_PRESERVE_ALL_TENSORS)
    out["calibrate_preserve_all_tensors_4_samples_s"] = round(time.perf_counter() - t, 2)
    can = [o for o in ops if len(o.levels) > 1]
    rng = np.random.default_rng(0)
    recipes = {"all int8": {}, "all a16w8": {o.tensor: "a16w8" for o in can if "a16w8" in o.levels},
               "all float": {o.tensor: "float" for o in can}, "random mix": {o.tensor: str(rng.choice(o.levels)) for o in can}}
    for name, levels in recipes.items():
        times = []
        for _ in range(3):
            t = time.perf_counter()
            aeq.quantize(fp32, cal, levels, ops=ops, out=work / "recipe.tflite")
            times.append(time.perf_counter() - t)
        out[f"quantize_and_read_back {name} s (min of 3)"] = round(min(times), 2)
    out["host_simulated_vs_measured_ms"] = _host_check(fp32, cal, ops, x[:1], work)
    return out


def _host_check(fp32: Path, cal: aeq.Calibration, ops: list[Any], x: np.ndarray, work: Path) -> dict[str, Any]:
    """The simulator's int16 per-op cost against this host: whole models with no, some and all ops at a16w8."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.latency.host_fit import resolve

    host = resolve(load_profile("host"), log=lambda *_: None)
    can = [o for o in ops if len(o.levels) > 1]
    convs = [o for o in can if o.op == "CONV_2D"][::10]
    models = {"float": fp32, "aeq int8": aeq.quantize(fp32, cal, {}, ops=ops, out=work / "h_int8.tflite"),
              "aeq every 10th CONV_2D a16w8": aeq.quantize(fp32, cal, {o.tensor: "a16w8" for o in convs}, ops=ops,
                                                          out=work / "h_mix.tflite"),
              "aeq all a16w8": aeq.quantize(fp32, cal, {o.tensor: "a16w8" for o in can if "a16w8" in o.levels}, ops=ops,
                                            out=work / "h_a16.tflite")}
    out = {}
    for name, path in models.items():
        runner = Interpreter(model_path=str(path), num_threads=THREADS).get_signature_runner()
        runner(x=x)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            runner(x=x)
            times.append(time.perf_counter() - t)
        out[name] = {"simulated_ms (host fit)": round(simulate(inspect_model(path), host).p50_ms, 1),
                     "measured_ms (median of 5, 2 threads)": round(float(np.median(times)) * 1000, 1)}
    return out


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(REPO / "calibration_data" / "digits" / "digits.npz")
    return (d[f"x_{split}"].astype(np.float32) / 255.0 - 0.5) / 0.5, d[f"y_{split}"]


def hard_case(name: str, cls: Any) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"aeq-probe-{name}-"))
    model = cls()
    model.load_state_dict(torch.load(REPO / "edgeport" / "zoo" / f"{name}.pt", weights_only=True))
    model.eval()
    xc, _ = _digits("train")
    xc = xc[:300]  # what `edgeport convert` calibrates on by default
    xv, yv = _digits("val")
    export_onnx(model, [TensorSpec("x", (1, 1, 32, 32))], work / "exported.onnx")
    prep = prepare_onnx(work / "exported.onnx", work / "model.onnx", {})
    with torch.no_grad():
        ref = model(torch.from_numpy(xv)).numpy()
    ref_acc = float(np.mean(ref.argmax(1) == yv))
    jobs = [{"key": "fp32", "mode": "fp32"}, {"key": "int8", "mode": "int8", "io_dtype": "float32"},
            {"key": "int16x8", "mode": "int16x8"}]
    conv = run_conversion(prep, work / "tf", {"x": xc}, jobs)
    imap = conv.input_map
    rows: dict[str, Any] = {"reference_accuracy": round(ref_acc, 4)}

    def measure(path: Path) -> dict[str, Any]:
        run = run_tflite(path, {"x": xv}, imap, [ref], threads=THREADS, runs=0)
        row = describe(path, run)
        if run.outputs is not None:
            got = run.outputs[0]
            row |= {"accuracy": round(float(np.mean(got.argmax(1) == yv)), 4),
                    "top1_agreement": round(float(np.mean(got.argmax(1) == ref.argmax(1))), 4)}
        return row

    def accept(path: Path) -> tuple[bool, float]:
        run = run_tflite(path, {"x": xv}, imap, [ref], threads=THREADS, runs=0)
        if run.outputs is None:
            return False, float("-inf")
        acc = float(np.mean(run.outputs[0].argmax(1) == yv))
        return (ref_acc - acc) * 100 <= 1.0, acc

    for key in ("fp32", "int8", "int16x8"):
        rows[f"tf_{key}"] = measure(conv.files[key])
    prof = load_profile("raspberry-pi-4")
    for tag, onnx_model in (("", prep), ("_after_equalization", None)):
        if onnx_model is None:
            eq = equalize(prep.path, work / "model_eq.onnx", {"x": xv[:1]})
            onnx_model = replace(prep, path=eq.path)
            rows["equalization"] = {"pairs": eq.pairs, "max_scale": round(eq.max_scale, 2),
                                    "max_output_change": eq.max_output_change}
        fp32 = run_conversion(onnx_model, work / f"aeq{tag}", None, [{"key": "fp32", "mode": "fp32"}]).files["fp32"]
        t = time.perf_counter()
        res = mixed_aeq.calibrate_and_search(fp32, {"x": tflite_layout(xc)}, {"x": tflite_layout(xv[:32])}, accept, prof,
                                             work / f"search{tag}", threads=THREADS)
        seconds = time.perf_counter() - t
        int8_path = aeq.quantize(fp32, aeq.calibrate(fp32, {"x": tflite_layout(xc)}), {}, out=work / f"aeq_int8{tag}.tflite")
        rows[f"aeq_int8{tag}"] = measure(int8_path)
        rows[f"aeq_mixed{tag}"] = measure(res.model) | {
            "search_seconds": round(seconds, 2), "stopped": res.stopped, "kept_float": len(res.kept),
            "kept_a16w8": len(res.kept_a16w8), "candidates": len(res.curve),
            "chosen": [{k: r[k] for k in ("index", "op", "level", "reason")} for r in res.layers if "searched" in r["reason"]]}
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["detector", "hard", "costs"])
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--calib", type=int, default=64)
    ap.add_argument("--val", type=int, default=16)
    ap.add_argument("--probe", type=int, default=4)
    ap.add_argument("--min-snr", type=float, default=35.0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "aeq_mixed_probe.json")
    args = ap.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": THREADS,
                       "note": "shared 2-core machine; wall times are from one run each"}
    before = set(Path(tempfile.gettempdir()).glob("aeq-probe-*"))
    try:
        run(args, data)
    finally:  # the work folders hold several 100 MB of models per run
        for path in set(Path(tempfile.gettempdir()).glob("aeq-probe-*")) - before:
            shutil.rmtree(path, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1, default=float) + "\n")
    print(json.dumps({k: v for k, v in data.items() if k != "curve"}, indent=1, default=float)[:6000])
    return 0


def run(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.what == "detector":
        data[f"detector_{args.size}"] = detector(args.size, args.calib, args.val, args.probe, args.min_snr)
    elif args.what == "costs":
        data["aeq_costs"] = costs(args.size)
    else:
        from edgeport.zoo.hard_cases import AttnNet, OutlierNet

        data["hard_cases"] = {"outlier_net": hard_case("outlier_net", OutlierNet), "attn_net": hard_case("attn_net", AttnNet)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
