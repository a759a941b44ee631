"""Weight-only quantization of a Linear-heavy model, side by side with fp16 in one run.

The zoo's LinearHeavy (10.6 M parameters: five pre-LayerNorm MLP blocks 512 -> 2048 -> 512, a
100-class head; seeded heavy-tailed weights) is converted for raspberry-pi-4 in fp32, fp16, dynamic, w8
and w4 (`edgeport convert --exporter onnx2tf`, so every mode comes from the same float model), over 8
tokens and over 1 token (a decode step: weight traffic dominates). Per mode: size against fp16 and
fp32, accuracy against the float PyTorch model on 200 seeded validation samples (mean and worst
cosine, top-1 agreement), simulated latency on raspberry-pi-4 and pixel-7 from the profiles, host p50
(XNNPACK, 2 threads; the modes are timed round-robin, one invoke each in turn, so load from other
processes on this shared machine falls on all of them alike; the pipeline's own p50 is kept too), and
which ops XNNPACK took (ai_edge_litert, read from the delegated graph). A side table builds w4 at each
block size AEQ offers from the same float model, for the choice of 32.

    .venv/bin/python benchmarks/bench_weight_only.py [--out benchmarks/results/weight_only.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeport.latency.simulator import simulate  # noqa: E402
from edgeport.pipeline import convert  # noqa: E402
from edgeport.profiles import load_profile  # noqa: E402
from edgeport.quantize import weight_only  # noqa: E402
from edgeport.tflite.reader import inspect_model  # noqa: E402
from edgeport.zoo import linear_heavy  # noqa: E402

MODES = ("fp32", "fp16", "dynamic", "w8", "w4")
PROFILES = ("raspberry-pi-4", "pixel-7")
BLOCKS = (32, 64, 128)


def _outputs(model: Path, tokens: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(model), num_threads=2).get_signature_runner()
    name = next(iter(runner.get_input_details()))
    return np.concatenate([next(iter(runner(**{name: t[None]}).values())) for t in tokens])


def interleaved_p50(models: dict[str, Path], tokens: int, rounds: int = 40) -> dict[str, float]:
    """Host p50 per model, timed round-robin (one invoke of each in turn) after a warm-up."""
    import time

    from ai_edge_litert.interpreter import Interpreter

    x = linear_heavy.make_tokens(1, 99, tokens=tokens)
    runners = {}
    for mode, path in models.items():
        runner = Interpreter(model_path=str(path), num_threads=2).get_signature_runner()
        name = next(iter(runner.get_input_details()))
        runners[mode] = (runner, name)
        for _ in range(3):
            runner(**{name: x})
    times: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(rounds):
        for mode, (runner, name) in runners.items():
            t0 = time.perf_counter()
            runner(**{name: x})
            times[mode].append(time.perf_counter() - t0)
    return {m: round(float(np.median(t)) * 1000, 4) for m, t in times.items()}


def _agreement(got: np.ndarray, ref: np.ndarray) -> dict:
    cos = np.sum(got * ref, -1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(ref, axis=-1))
    return {"cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
            "top1_agreement": round(float(np.mean(got.argmax(-1) == ref.argmax(-1))), 4)}


def block_study(float_tflite: Path, val: np.ndarray, ref: np.ndarray, work: Path, profiles: dict) -> list[dict]:
    """w4 at each block size from the same float model (the mode ships block 32)."""
    rows = []
    shipped = weight_only.W4_BLOCK
    try:
        for block in BLOCKS:
            weight_only.W4_BLOCK = block
            built = weight_only.build(float_tflite, "w4", work / f"w4_b{block}.tflite")
            info = inspect_model(built.model)
            rows.append({"block_size": block, "size_bytes": built.model.stat().st_size, **_agreement(_outputs(built.model, val), ref),
                         **{f"sim_{p}_p50_ms": round(simulate(info, prof).p50_ms, 4) for p, prof in profiles.items()}})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        weight_only.W4_BLOCK = shipped
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/weight_only.json"))
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    profiles = {name: load_profile(name) for name in PROFILES}
    model = linear_heavy.build()
    params = linear_heavy.parameters(model)
    rows = []
    blocks: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save(model.state_dict(), work / "linear_heavy.pt")
        for tokens in (linear_heavy.TOKENS, 1):
            val = linear_heavy.make_tokens(200, 11, tokens=tokens)
            with torch.no_grad():
                ref = model(torch.from_numpy(val)).numpy()
            np.savez(work / f"val{tokens}.npz", tokens=val)
            options = {"model_class": "edgeport.zoo.linear_heavy:LinearHeavy", "exporter": "onnx2tf",
                       "input_shapes": (f"tokens=1x{tokens}x{linear_heavy.DIM}",), "val": str(work / f"val{tokens}.npz"),
                       "runs": args.runs}
            artifacts: dict[str, Path] = {}
            group = []
            for mode in MODES:
                rep = convert(work / "linear_heavy.pt", "raspberry-pi-4", quant=mode, output=work / f"{mode}_{tokens}",
                              **options).data
                artifact = artifacts[mode] = Path(rep["artifact"]["path"])
                info = inspect_model(artifact)
                row = {"tokens": tokens, "mode": mode, "exporter": rep["export"]["backend"], "size_bytes": rep["artifact"]["size_bytes"],
                       "fp32_size_bytes": rep["reference"]["size_bytes"], **_agreement(_outputs(artifact, val), ref),
                       "report_accuracy": {k: rep["accuracy"].get(k) for k in ("cosine_mean", "top1_agreement", "snr_db")},
                       "pipeline_host_p50_ms": rep["latency"]["host"]["p50_ms"], "host_delegate": rep["latency"]["host"].get("delegate"),
                       "verdict_passed": rep["verdict"]["passed"],
                       "failed_checks": [c["name"] for c in rep["verdict"]["checks"] if not c["passed"]],
                       "weight_only": rep["quantization"].get("weight_only"), "fp16_comparison": rep["quantization"].get("fp16_comparison"),
                       "xnnpack": weight_only.xnnpack_coverage(artifact)}
                for pname, prof in profiles.items():
                    row[f"sim_{pname}_p50_ms"] = round(simulate(info, prof).p50_ms, 4)
                group.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("weight_only", "xnnpack")}), flush=True)
            host = interleaved_p50(artifacts, tokens)
            fp16 = next(r for r in group if r["mode"] == "fp16")
            for row in group:
                row["host_p50_ms"] = host[row["mode"]]
                row["size_vs_fp16"] = round(row["size_bytes"] / fp16["size_bytes"], 4)
                row["size_vs_fp32"] = round(row["size_bytes"] / row["fp32_size_bytes"], 4)
                for pname in PROFILES:
                    row[f"sim_{pname}_vs_fp16"] = round(row[f"sim_{pname}_p50_ms"] / fp16[f"sim_{pname}_p50_ms"], 4)
            for row in group:
                row["host_vs_fp16"] = round(row["host_p50_ms"] / fp16["host_p50_ms"], 4)
            print(json.dumps({"tokens": tokens, "host_p50_ms": host}), flush=True)
            rows += group
            if tokens == linear_heavy.TOKENS:
                float_tflite = work / "float32.tflite"
                float_tflite.write_bytes(artifacts["fp32"].read_bytes())
                blocks = block_study(float_tflite, val, ref, work, profiles)
    out = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "parameters": params,
           "validation_samples": 200, "profile": "raspberry-pi-4", "rows": rows, "w4_block_sizes": blocks}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
