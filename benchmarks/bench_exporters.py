"""Benchmark the two export backends side by side, and `--exporter auto`, on the same models.

For each model, backend (onnx2tf, litert-torch, auto) and mode (fp32, int8): does it convert, the
float32 model's min cosine against torch, the int8 accuracy drop (labels) or top-1 disagreement (no
labels), file size, host p50, wall time and peak RSS of the whole `edgeport convert` process tree.
Every convert is a fresh `python -m edgeport` process, timed here with wait4 (peak RSS includes the
converter children). Host p50s of the two backends' files are then re-timed alternately in this
process, so their ratio is measured side by side.

    .venv/bin/python benchmarks/bench_exporters.py [--out benchmarks/results/exporters.json] [--only gru,mnv2]
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

from edgeport.validate.run import run_tflite  # noqa: E402
from edgeport.zoo import sequence_models as seq  # noqa: E402

BACKENDS = ("onnx2tf", "litert-torch", "auto")
MODES = ("fp32", "int8")


def _cases(work: Path) -> dict[str, dict]:
    """name -> {checkpoint, class, shape, calib, val}; trained or seeded here, deterministic."""
    from edgeport.zoo.cnn_families import build
    from edgeport.zoo.hard_cases import AttnNet

    cases = {
        "digits_net (zoo CNN)": {"ckpt": REPO / "edgeport/zoo/digits_net.pt", "cls": "edgeport.zoo.digits_net:DigitsNet",
                                 "calib": "builtin:digits", "val": "builtin:digits-val"},
        "outlier_net (zoo hard case)": {"ckpt": REPO / "edgeport/zoo/outlier_net.pt", "cls": "edgeport.zoo.hard_cases:OutlierNet",
                                        "calib": "builtin:digits", "val": "builtin:digits-val"},
        "attn_net (zoo hard case)": {"ckpt": REPO / "edgeport/zoo/attn_net.pt", "cls": "edgeport.zoo.hard_cases:AttnNet",
                                     "calib": "builtin:digits", "val": "builtin:digits-val"},
    }
    torch.manual_seed(0)
    token_mlp = AttnNet(use_mlp=True).eval()  # onnx2tf 1.28 mis-converts its token MLP in float32
    torch.save(token_mlp.state_dict(), work / "token_mlp.pt")
    cases["attn_net + token MLP (onnx2tf mis-converts)"] = {
        "ckpt": work / "token_mlp.pt", "cls": "edgeport.zoo.hard_cases:AttnNet", "kwargs": '{"use_mlp": true}',
        "calib": "builtin:digits", "val": "builtin:digits-val"}
    x_cal, y_cal = seq.make_data(256, 1)
    x_val, y_val = seq.make_data(400, 2)
    np.savez(work / "seq_calib.npz", x=x_cal, y=y_cal)
    np.savez(work / "seq_val.npz", x=x_val, y=y_val)
    for name, cls in (("GRU classifier", "GruClassifier"), ("transformer encoder (2 layers, d=64)", "TinyEncoder")):
        torch.manual_seed(0)
        model = seq.train(getattr(seq, cls)())
        torch.save(model.state_dict(), work / f"{cls}.pt")
        cases[name] = {"ckpt": work / f"{cls}.pt", "cls": f"edgeport.zoo.sequence_models:{cls}",
                       "calib": str(work / "seq_calib.npz"), "val": str(work / "seq_val.npz"),
                       "shape": f"x=1x{seq.SEQ}x{seq.FEATURES}"}
    mnv2 = build("mobilenet_v2")
    torch.save(mnv2.state_dict(), work / "mnv2.pt")
    rng = np.random.default_rng(0)
    np.savez(work / "mnv2_calib.npz", x=rng.random((64, 3, 224, 224), dtype=np.float32))
    np.savez(work / "mnv2_val.npz", x=rng.random((32, 3, 224, 224), dtype=np.float32))
    cases["MobileNetV2-shaped CNN (224x224)"] = {
        "ckpt": work / "mnv2.pt", "cls": "edgeport.zoo.cnn_families:MobileNet", "calib": str(work / "mnv2_calib.npz"),
        "val": str(work / "mnv2_val.npz"), "shape": "x=1x3x224x224"}
    return cases


def _convert(case: dict, backend: str, mode: str, out: Path) -> dict:
    argv = [sys.executable, "-m", "edgeport", "convert", str(case["ckpt"]), "--model-class", case["cls"],
            "--profile", "host", "--quant", mode, "--exporter", backend, "--output", str(out), "--json", "--quiet",
            "--runs", "20", "--calib", case["calib"], "--val", case["val"]]
    if case.get("kwargs"):
        argv += ["--model-kwargs", case["kwargs"]]
    if case.get("shape"):
        argv += ["--input-shape", case["shape"]]
    env = {**os.environ, "EDGEPORT_HOST_FIT": "fallback"}
    start = time.monotonic()
    with open(out.parent / f"{out.name}.stderr", "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        stdout = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    row: dict = {"exit_code": code, "wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
    try:
        rep = json.loads(stdout)
    except json.JSONDecodeError:
        row.update(converts=False, error=(out.parent / f"{out.name}.stderr").read_text().strip().splitlines()[-1:])
        return row
    if "accuracy" not in rep:  # an error (exit 2/3): --json printed {"error", "exit_code"}
        row.update(converts=False, error=rep.get("error"))
        return row
    acc = rep["accuracy"]
    row.update(converts=True, backend=rep["export"]["backend"], reason=rep["export"]["reason"],
               float_cosine_min=rep["float_conversion"].get("cosine_min"), passed=rep["verdict"]["passed"],
               size_bytes=rep["artifact"]["size_bytes"], host_p50_ms=rep["latency"]["host"]["p50_ms"],
               drop_pp=acc.get("drop_pp"), top1_agreement=acc.get("top1_agreement"), artifact=rep["artifact"]["path"])
    return row


def _side_by_side(paths: dict[str, str], runs: int = 200) -> dict[str, float]:
    """Host p50 of each backend's file, timed alternately in one process (ratios, not absolutes)."""
    samples: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(5):
        for key, path in paths.items():
            run = run_tflite(Path(path), None, {}, None, threads=2, runs=runs // 5, warmup=10)
            if run.latency is not None:
                samples[key].append(run.latency.p50_ms)
    return {k: round(float(np.median(v)), 4) for k, v in samples.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "exporters.json")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgeport-bench-exporters-"))
    cases = _cases(work)
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    results: dict[str, dict] = {}
    for name, case in cases.items():
        if wanted and not any(w in name.lower() for w in wanted):
            continue
        rows: dict[str, dict] = {}
        for backend in BACKENDS:
            for mode in MODES:
                rows[f"{backend}/{mode}"] = _convert(case, backend, mode, work / f"{abs(hash(name))}_{backend}_{mode}")
                print(name, backend, mode, {k: v for k, v in rows[f"{backend}/{mode}"].items() if k not in ("artifact", "reason")},
                      flush=True)
        both = {b: rows[f"{b}/int8"].get("artifact") for b in ("onnx2tf", "litert-torch")}
        if all(both.values()):
            p50 = _side_by_side(both)
            if len(p50) == 2:
                rows["int8 host p50 litert-torch / onnx2tf (alternating)"] = round(p50["litert-torch"] / p50["onnx2tf"], 3)
        results[name] = rows
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
           "command": "python benchmarks/bench_exporters.py", "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
