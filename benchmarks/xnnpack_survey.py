"""int8 under XNNPACK for the common CNN families, before and after the padded max-pool rewrite.

Builds each family from edgeport/zoo/cnn_families.py (seeded, untrained: the layer patterns decide
whether XNNPACK accepts the model), converts it with `--quant int8` through the normal pipeline once
without and once with the rewrite (export/pool_padding.py), and records whether XNNPACK ran it, what
it refused, which runtime produced the accuracy figures, the worst output cosine and the size.
Writes benchmarks/results/xnnpack_int8_survey.json.
Usage: nice -n 19 .venv/bin/python benchmarks/xnnpack_survey.py [FAMILY ...] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeport.pipeline import convert  # noqa: E402
from edgeport.zoo.cnn_families import build  # noqa: E402

# family -> input size (small, so each conversion takes seconds; chosen so the pools need padding)
SIZES = {"repro_stem": 16, "repro_ceil": 16, "resnet18": 64, "squeezenet": 66, "googlenet": 64, "mobilenet_v2": 64,
         "mobilenet_v3": 64, "densenet": 64, "vgg": 64, "face_detector": 48}


def survey_one(family: str, rewrite: bool, work: Path) -> dict:
    size = SIZES[family]
    model = build(family)
    ckpt = work / f"{family}.pt"
    torch.save(model.state_dict(), ckpt)
    data = work / f"{family}.npz"
    np.savez(data, x=np.random.default_rng(0).uniform(-1, 1, (128, 3, size, size)).astype(np.float32))
    t0 = time.perf_counter()
    rep = convert(ckpt, "raspberry-pi-4", model_class=f"edgeport.zoo.cnn_families:{type(model).__name__}",
                  input_shapes=[f"1x3x{size}x{size}"], calib=str(data), quant="int8", runs=3,
                  output=work / f"{family}_{int(rewrite)}", rewrite_pools=rewrite).data
    xnn = rep.get("xnnpack") or {}
    outs = rep["accuracy"].get("outputs") or []
    return {
        "family": family, "input": [1, 3, size, size], "pool_rewrite": rewrite,
        "xnnpack_runs_it": bool(xnn.get("accepted")),
        "accuracy_runtime": rep["accuracy"].get("runtime"),
        "rejected_ops": [f"{r['op']} {r.get('pytorch_module') or r.get('onnx_node') or r['tensor']}" for r in xnn.get("rejected", [])],
        "cause_ops": [f"{r['op']} {r.get('pytorch_module') or r.get('onnx_node') or r['tensor']}" for r in xnn.get("causes", [])],
        "pools_rewritten": [f"{p.get('pytorch_module') or p['node']}:{p['kind']}" for p in rep["model"].get("pool_rewrites") or []],
        "cosine_min": min((o["cosine_min"] for o in outs), default=None),
        "size_vs_fp32": round(rep["artifact"]["size_bytes"] / rep["reference"]["size_bytes"], 4),
        "ops": rep["model"]["ops"],
        "verdict_passed": rep["verdict"]["passed"],
        "failed_checks": [c["name"] for c in rep["verdict"]["checks"] if not c["passed"]],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("families", nargs="*", default=list(SIZES))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "xnnpack_int8_survey.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeport-survey-") as tmp:
        for family in args.families:
            for rewrite in (False, True):
                row = survey_one(family, rewrite, Path(tmp))
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("family", "pool_rewrite", "xnnpack_runs_it", "accuracy_runtime",
                                                        "cosine_min", "rejected_ops", "pools_rewritten")}), flush=True)
    versions = {}
    for name in ("torch", "tensorflow", "onnx2tf", "ai-edge-litert"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001 - provenance only
            versions[name] = None
    result = {"what": "int8 (--quant int8, raspberry-pi-4 profile) under XNNPACK, before/after the max-pool rewrite",
              "data": "128 seeded uniform(-1, 1) inputs; 30% held out for validation", "versions": versions, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
