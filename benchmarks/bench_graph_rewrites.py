"""Measure the GELU / LayerNorm graph rewrites (edgeport/export/rewrites/) on the transformer fixtures.

For each seeded fixture of edgeport/zoo/transformer_blocks.py, exported by torch.onnx at an opset,
convert with and without the rewrites and record: file sizes, the quantized model's output cosine and
top-1 agreement (argmax over the last axis: per column for the SVTR block, per image for ConvNeXt)
against the float ONNX model on 50 seeded inputs, and the TFLite op counts.

    .venv/bin/python benchmarks/bench_graph_rewrites.py [--out benchmarks/results/graph_rewrites.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeport.tflite.runner import invoke_each

CASES = [  # (fixture, export opset, builder kwargs, quant)
    ("svtr", 11, {}, "int8"),
    ("svtr", 11, {"approximate": "tanh"}, "int8"),
    ("convnext", 11, {}, "int8"),
    ("svtr", 17, {}, "int8"),
    ("svtr", 17, {}, "int16x8"),
    ("convnext", 17, {}, "int16x8"),
]
SAMPLES = 50


def _ops(path: Path) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return dict(collections.Counter(op["op_name"] for op in it._get_ops_details()))


def measure(fixture: str, opset: int, kwargs: dict, quant: str, rewrites: bool, work: Path) -> dict:
    import onnxruntime as ort

    import edgeport.export.rewrites as rw
    from edgeport.pipeline import convert
    from edgeport.zoo import transformer_blocks as tb

    onnx_path = tb.export(fixture, work / f"{fixture}.onnx", opset=opset, **kwargs)
    calib = tb.calibration(fixture, work / "calib.npz")
    saved = list(rw.REWRITES)
    if not rewrites:
        rw.REWRITES[:] = [r for r in saved if r[0] not in ("gelu", "layer_norm", "hard_sigmoid")]
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    try:
        rep = convert(str(onnx_path), "raspberry-pi-4", calib=str(calib), quant=quant, output=out, runs=3,
                      keep_work=True).data
    finally:
        rw.REWRITES[:] = saved
    files = {k: next(out.glob(f".edgeport-work-*/{k}.tflite")) for k in ("fp32", quant)}
    xs = tb.inputs(fixture, SAMPLES, seed=7)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = np.stack([sess.run(None, {"x": x[None]})[0][0] for x in xs])
    row = {"fixture": fixture, "opset": opset, **kwargs, "quant": quant, "rewrites": rewrites,
           "graph_rewrites": dict(collections.Counter(r["rewrite"] for r in rep["model"].get("graph_rewrites", []))),
           "fp32_bytes": files["fp32"].stat().st_size, "bytes": files[quant].stat().st_size,
           "ops": _ops(files[quant]), "notes": [n for n in rep["notes"] if "Flex" in n or "rewrote" in n]}
    try:
        got = invoke_each(files[quant], xs, (0, 2, 3, 1))  # onnx2tf takes images channels-last
    except RuntimeError as exc:
        row["runtime_error"] = str(exc).split("\n")[0][:200]
        return row
    a, b = got.reshape(SAMPLES, -1), ref.reshape(SAMPLES, -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    row.update(cosine_mean=round(float(cos.mean()), 5), cosine_min=round(float(cos.min()), 5),
               top1_agreement=float((got.argmax(-1) == ref.argmax(-1)).mean()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/graph_rewrites.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fixture, opset, kwargs, quant in CASES:
            for rewrites in (False, True):
                row = measure(fixture, opset, kwargs, quant, rewrites, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"samples": SAMPLES, "profile": "raspberry-pi-4", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
