"""Transformer fixtures of issue 20 in each TFLite mode, side by side in one run: size, task figure, latency.

Fixtures (each converted for raspberry-pi-4 with the default exporter, `--exporter auto`):
- `vit`: edgeport/zoo/vit.py TinyVit (`nn.TransformerEncoder`, pre-norm, GELU), trained on the
  bundled digits, given as state_dict + class; judged against the labels of `builtin:digits-val`
  (top-1 accuracy of float and of the model, drop in pp, from the report);
- `svtr_ctc`: the trained SVTR-style recognizer (transformer_blocks.SvtrRecognizer: conv stem, 2×
  hand-written MHSA + Erf-GELU MLP, CTC head) exported to ONNX at opset 11, as a third party ships it;
  judged by the share of 300 held-out lines whose greedy CTC decode (argmax, merge repeats, drop
  blank) equals float's;
- `svtr_block_wN` / `convnext_wN`: the seeded, untrained SvtrBlock / ConvNextStack at width N, ONNX
  opset 11; judged by output cosine and top-1 agreement against onnxruntime float on 50 seeded inputs.
Size is against the fp32 TFLite of the same run. Latency: simulated for raspberry-pi-4 and pixel-7 from
the profiles, and host p50 (this machine, 2 threads). Each row also lists the ops kept in float and
the constant bytes that stay float32 (biases, LayerNorm affine, position embeddings), which is what
keeps a small int8 transformer above a quarter of fp32.

    .venv/bin/python benchmarks/bench_transformers.py [--only vit,svtr_ctc] [--out benchmarks/results/transformers.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edgeport.latency.simulator import simulate  # noqa: E402
from edgeport.pipeline import convert  # noqa: E402
from edgeport.profiles import load_profile  # noqa: E402
from edgeport.tflite.reader import FLOAT_TYPES, inspect_model  # noqa: E402
from edgeport.tflite.runner import invoke_each  # noqa: E402
from edgeport.zoo import recurrent, transformer_blocks, vit  # noqa: E402

PROFILES = ("raspberry-pi-4", "pixel-7")
SAMPLES = 50  # seeded inputs for the untrained blocks
NHWC = (0, 2, 3, 1)  # onnx2tf's TFLite takes images channels-last


def vit_case(work: Path) -> dict:
    ckpt = work / "vit_digits.pt"
    ckpt.write_bytes(vit.WEIGHTS.read_bytes())

    def judge(rep: dict, _artifact: Path) -> dict:
        acc = rep["accuracy"]  # figures are None when the model did not run (e.g. it aborted at run time)
        figure = {"float_top1": "reference", "top1": "tflite", "drop_pp": "drop_pp", "top1_agreement": "top1_agreement"}
        return {k: None if acc.get(v) is None else round(acc[v], 4) for k, v in figure.items()}

    return {"checkpoint": ckpt, "modes": ("fp32", "fp16", "int8", "mixed"), "judge": judge,
            "options": {"model_class": "edgeport.zoo.vit:TinyVit", "input_shapes": ("1x1x32x32",),
                        "calib": "builtin:digits", "val": "builtin:digits-val"}}


def vit_no_rewrites_case(work: Path) -> dict:
    """The same ViT in int8 with the GELU/LayerNorm/HardSigmoid rewrites switched off: what they buy."""
    return {**vit_case(work), "modes": ("fp32", "int8"), "rewrites": False}


def svtr_ctc_case(work: Path) -> dict:
    model = transformer_blocks.SvtrRecognizer()
    model.load_state_dict(torch.load(transformer_blocks.SVTR_LINES_WEIGHTS, weights_only=True))
    model.eval()
    path = work / "svtr_lines.onnx"
    transformer_blocks.export_module(model, (1, 1, recurrent.LINE_H, recurrent.LINE_W), path, opset=11)
    calib, _ = recurrent.make_lines(300, 41)
    val, texts = recurrent.make_lines(300, 42)
    np.savez(work / "svtr_calib.npz", x=calib)
    np.savez(work / "svtr_val.npz", x=val)
    with torch.no_grad():
        float_text = recurrent.greedy_ctc(model(torch.from_numpy(val)).numpy())

    def judge(_rep: dict, artifact: Path) -> dict:
        text = recurrent.greedy_ctc(invoke_each(artifact, val, NHWC))
        same = [a == b for a, b in zip(text, float_text, strict=True)]
        return {"strings_identical_to_float": round(float(np.mean(same)), 4),
                "line_accuracy": round(float(np.mean([a == b for a, b in zip(text, texts, strict=True)])), 4),
                "float_line_accuracy": round(float(np.mean([a == b for a, b in zip(float_text, texts, strict=True)])), 4)}

    return {"checkpoint": path, "modes": ("fp32", "fp16", "int8", "mixed"), "judge": judge,
            "options": {"calib": str(work / "svtr_calib.npz"), "val": str(work / "svtr_val.npz")}}


def block_case(fixture: str, width: int) -> Callable[[Path], dict]:
    def build(work: Path) -> dict:
        import onnxruntime as ort

        kwargs = {"dim": width}
        path = transformer_blocks.export(fixture, work / f"{fixture}_{width}.onnx", opset=11, **kwargs)
        calib = transformer_blocks.calibration(fixture, work / f"{fixture}_calib.npz")
        xs = transformer_blocks.inputs(fixture, SAMPLES, seed=7)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ref = np.stack([sess.run(None, {"x": x[None]})[0][0] for x in xs])

        def judge(_rep: dict, artifact: Path) -> dict:
            got = invoke_each(artifact, xs, NHWC)
            a, b = got.reshape(SAMPLES, -1), ref.reshape(SAMPLES, -1)
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            return {"cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
                    "top1_agreement": round(float((got.argmax(-1) == ref.argmax(-1)).mean()), 4)}

        return {"checkpoint": path, "modes": ("fp32", "int8"), "judge": judge, "options": {"calib": str(calib)}}

    return build


CASES: dict[str, Callable[[Path], dict]] = {
    "vit": vit_case, "vit_no_rewrites": vit_no_rewrites_case, "svtr_ctc": svtr_ctc_case,
    **{f"svtr_block_w{w}": block_case("svtr", w) for w in (48, 96, 128)},
    **{f"convnext_w{w}": block_case("convnext", w) for w in (48, 96, 128)},
}


def byte_breakdown(info: dict, path: Path) -> dict:
    """Where the bytes of a quantized file sit: constants by dtype, float32 constants by the op reading
    them, and the per-tensor quantization parameters (float32 scale + int64 zero point per channel) and
    tensor names that the flatbuffer stores beside them."""
    from edgeport.tflite.reader import load_model

    by_dtype: collections.Counter = collections.Counter()
    float_by_op: collections.Counter = collections.Counter()
    seen: set[int] = set()
    for op in info["ops"]:
        for t in op["inputs"]:
            if t["const"] and t["index"] not in seen:  # a constant read by two ops is stored once
                seen.add(t["index"])
                by_dtype[t["dtype"]] += t["bytes"]
                if t["dtype"] in FLOAT_TYPES:
                    float_by_op[op["op"]] += t["bytes"]
    tensors = load_model(path).subgraphs[0].tensors
    qparams = sum(np.asarray(getattr(t.quantization, k)).nbytes for t in tensors if t.quantization is not None
                  for k in ("scale", "zeroPoint", "min", "max") if getattr(t.quantization, k) is not None)
    return {"const_bytes_by_dtype": dict(by_dtype), "float_const_bytes_by_op": dict(float_by_op),
            "quant_param_bytes": int(qparams), "tensor_name_bytes": sum(len(t.name or b"") for t in tensors)}


def run_case(name: str, case: dict, work: Path, profiles: dict) -> list[dict]:
    import edgeport.export.rewrites as rw

    rows, fp32_size = [], None
    saved = list(rw.REWRITES)
    for mode in case["modes"]:
        if not case.get("rewrites", True):
            rw.REWRITES[:] = [r for r in saved if r[0] not in ("gelu", "layer_norm", "hard_sigmoid")]
        try:
            rep = convert(case["checkpoint"], "raspberry-pi-4", quant=mode, output=work / f"{name}_{mode}", runs=20,
                          max_val_samples=600, **case["options"]).data
        finally:
            rw.REWRITES[:] = saved
        artifact = Path(rep["artifact"]["path"])
        info = inspect_model(artifact)
        fp32_size = fp32_size or rep["artifact"]["size_bytes"]
        float_ops = [info["ops"][i]["op"] for i in info["float_ops"]] if mode in ("int8", "mixed") else []
        row = {"fixture": name, "mode": mode, "exporter": rep["export"]["backend"],
               "export_attempts": [{k: a.get(k) for k in ("backend", "kept", "why")} for a in rep["export"].get("attempts") or []],
               "runtime_error": (rep.get("runtime_error") or {}).get("message") if isinstance(rep.get("runtime_error"), dict)
               else rep.get("runtime_error"),
               "size_bytes": rep["artifact"]["size_bytes"], "size_vs_fp32": round(rep["artifact"]["size_bytes"] / fp32_size, 4),
               "float_layers": len(rep["quantization"].get("float_layers") or []),
               "float_ops": dict(collections.Counter(float_ops)),
               "verdict_passed": rep["verdict"]["passed"],
               "failed_checks": [c["name"] for c in rep["verdict"]["checks"] if not c["passed"]],
               "graph_rewrites": dict(collections.Counter(r["rewrite"] for r in rep["model"].get("graph_rewrites", []))),
               **case["judge"](rep, artifact), "host_p50_ms": rep["latency"]["host"]["p50_ms"],
               **{f"sim_{p}_p50_ms": round(simulate(info, prof).p50_ms, 3) for p, prof in profiles.items()}}
        if mode in ("int8", "mixed"):
            row.update(byte_breakdown(info, artifact))
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated fixtures of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/transformers.json")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown fixture(s) {', '.join(unknown)}")
    profiles = {name: load_profile(name) for name in PROFILES}
    old = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = [r for r in old if r["fixture"] not in names]  # --only refreshes its fixtures, keeps the others
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows += run_case(name, CASES[name](Path(tmp)), Path(tmp), profiles)
    order = list(CASES)
    rows.sort(key=lambda r: order.index(r["fixture"]))
    out = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "profile": "raspberry-pi-4", "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
