"""GRU int8 routes side by side (issue 19 item 2). TFLite has no fused GRU op: which int8 model is best?

Two GRU fixtures, each exported to ONNX the way edgeport exports it (TorchScript exporter, opset 17,
onnxslim), each trained here with fixed seeds:
- kws: zoo GruKeywordSpotter (32 frames x 10 MFCC-like coefficients, GRU(48), 6 classes, make_kws_data);
- kws128: the same with GRU(128), where the weights, not the graph, are most of the file;
- classifier: zoo GruClassifier (16 x 8, GRU(32), 4 classes), trained as tests/test_exporters_e2e.py does.
Every route is built, run on held-out data (600 / 300 sequences, XNNPACK, 1 thread) and compared with
the float torch model (top-1 agreement, accuracy and its drop, output cosine and SNR):
  loop        onnx2tf's GRU (a WHILE loop) -> TF converter in each mode; int8 with the MLIR quantizer
              (what edgeport did) and with experimental_new_quantizer=False
  o2t_unroll  onnx2tf enable_rnn_unroll=True -> TF converter
  rewrite     edgeport's gru_unroll ONNX rewrite (per-step ops, shared weights) -> onnx2tf -> TF converter
  aeq         AI Edge Quantizer static int8 / a16w8 on each route's float32 model
  litert      LiteRT Torch float model + AEQ, as the litert-torch backend builds it (the int8 floor)
then `edgeport convert` end to end (the ONNX file and the state_dict, --quant int8, rewrite registered).
Converters run in child processes (the TF converter segfaults on the loop): a crash is a row with the signal.

    .venv/bin/python benchmarks/bench_gru_int8.py [--out benchmarks/results/gru_int8.json] [--fixtures kws,kws128,classifier] [--no-e2e]
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
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONVERT_TIMEOUT_S = 900


# --- children: each converter runs in its own process ----------------------------------------------------
def _write(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def child_tf(req: dict[str, Any]) -> None:
    """ONNX -> SavedModel (onnx2tf, optionally its RNN unrolling) -> one .tflite per variant."""
    from edgeport.export import tflite_worker as tw

    tw._silence_tf()
    result_path = Path(req["result"])
    result = json.loads(result_path.read_text()) if result_path.exists() else {"done": {}}
    if not Path(req["saved_model"], "saved_model.pb").exists():
        _write(result_path, {**result, "running": "onnx2tf"})
        import onnx2tf.onnx2tf as o2t

        original = o2t.convert

        def convert(**kwargs):
            return original(**kwargs, enable_rnn_unroll=bool(req["unroll"]))

        o2t.convert = convert
        tw.run_onnx2tf({"onnx": req["onnx"], "saved_model": req["saved_model"], "keep_layout_inputs": [req["input"]],
                        "onnx_input_shapes": {req["input"]: req["shape"]}})
    sig = tw._signature_inputs(req["saved_model"])
    feed, _ = tw._calibration_feed({"calibration": req["calibration"], "onnx_inputs": [req["input"]],
                                    "onnx_input_shapes": {req["input"]: req["shape"]},
                                    "keep_layout_inputs": [req["input"]]}, sig)
    for var in req["variants"]:
        if var["key"] in result["done"]:
            continue
        _write(result_path, {**result, "running": var["key"]})
        options = {"experimental_new_quantizer": False} if var.get("quantizer") == "old" else {}
        start = time.monotonic()
        try:
            data = tw.convert_variant(req["saved_model"], {"mode": var["mode"]}, feed, None, (0, 1), options)
            out = Path(req["out_dir"], f"{var['key']}.tflite")
            out.write_bytes(data)
            result["done"][var["key"]] = {"ok": True, "path": str(out), "seconds": round(time.monotonic() - start, 2)}
        except Exception as exc:  # noqa: BLE001 - a refused variant is a row, not the end of the bench
            result["done"][var["key"]] = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
        _write(result_path, {k: v for k, v in result.items() if k != "running"})


def child_aeq(req: dict[str, Any]) -> None:
    """AI Edge Quantizer on a float .tflite: calibrate once (min/max), then one recipe per variant."""
    from edgeport.quantize import aeq_modes

    result_path = Path(req["result"])
    result = json.loads(result_path.read_text()) if result_path.exists() else {"done": {}}
    data = np.load(req["calibration"])[req["source"]]
    _write(result_path, {**result, "running": "calibration"})
    try:
        calibration = aeq_modes.calibrate(Path(req["float"]), [{req["input_key"]: data[i : i + 1]} for i in range(len(data))])
    except Exception as exc:  # noqa: BLE001
        for var in req["variants"]:
            result["done"][var["key"]] = {"ok": False, "error": f"calibration: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
        _write(result_path, result)
        return
    for var in req["variants"]:
        if var["key"] in result["done"]:
            continue
        _write(result_path, {**result, "running": var["key"]})
        start = time.monotonic()
        try:
            blob = aeq_modes.quantize(Path(req["float"]), aeq_modes.recipe_for(var["mode"]), calibration)
            out = Path(req["out_dir"], f"{var['key']}.tflite")
            out.write_bytes(blob)
            result["done"][var["key"]] = {"ok": True, "path": str(out), "seconds": round(time.monotonic() - start, 2)}
        except Exception as exc:  # noqa: BLE001
            result["done"][var["key"]] = {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
        _write(result_path, {k: v for k, v in result.items() if k != "running"})


def run_children(kind: str, req: dict[str, Any], work: Path) -> dict[str, dict]:
    """Run a child until every variant is settled; a variant that kills the child is an error naming the signal."""
    result_path = Path(req["result"])
    keys = [v["key"] for v in req["variants"]]
    for _ in range(len(keys) + 1):
        req_path = work / f"{result_path.stem}.req.json"
        req_path.write_text(json.dumps(req))
        with open(work / f"{result_path.stem}.log", "a") as log:
            proc = subprocess.run([sys.executable, __file__, "--child", kind, str(req_path)], stdout=log, stderr=log,
                                  timeout=CONVERT_TIMEOUT_S, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        result = json.loads(result_path.read_text()) if result_path.exists() else {"done": {}}
        if proc.returncode == 0:
            break
        running = result.get("running")
        why = f"the process died ({_signal(proc.returncode)}) while building it"
        if running in ("onnx2tf", "calibration") or running is None:
            for key in keys:
                result["done"].setdefault(key, {"ok": False, "error": f"{running or 'the child'}: {why}"})
            _write(result_path, result)
            break
        result["done"][running] = {"ok": False, "error": why}
        result.pop("running", None)
        _write(result_path, result)
        if all(k in result["done"] for k in keys):
            break
    done = json.loads(result_path.read_text())["done"]
    return {k: done.get(k, {"ok": False, "error": "not built"}) for k in keys}


def _signal(code: int) -> str:
    import signal

    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


# --- fixtures --------------------------------------------------------------------------------------------
def build_fixture(name: str, work: Path) -> dict[str, Any]:
    import torch

    from edgeport.export import rewrites
    from edgeport.export.onnx_prep import prepare_onnx
    from edgeport.export.rewrites.gru_unroll import gru_unroll
    from edgeport.export.torch_to_onnx import export_onnx
    from edgeport.types import TensorSpec
    from edgeport.zoo import sequence_models as seq

    torch.set_num_threads(1)  # training speed and reproducibility; 2 threads under load were 20x slower
    if name in ("kws", "kws128"):
        cls, kwargs = "GruKeywordSpotter", ({"hidden": 128} if name == "kws128" else {})
        torch.manual_seed(0)
        model = seq.train(seq.GruKeywordSpotter(**kwargs), steps=400, data=seq.make_kws_data(4096, 100))
        calib, _ = seq.make_kws_data(200, 1)
        val, labels = seq.make_kws_data(600, 2)
        shape = (1, seq.KWS_FRAMES, seq.KWS_FEATURES)
    else:
        cls, kwargs = "GruClassifier", {}
        torch.manual_seed(0)
        model = seq.train(seq.GruClassifier())
        calib, _ = seq.make_data(128, 1)
        val, labels = seq.make_data(300, 2)
        shape = (1, seq.SEQ, seq.FEATURES)
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), d / "model.pt")
    np.savez(d / "calib.npz", x=calib)
    np.savez(d / "val.npz", x=val, y=labels)
    export_onnx(model, [TensorSpec("x", shape, "float32")], d / "exported.onnx")
    # today's ONNX: every registered rewrite but this one; then this one on top
    saved = list(rewrites.REWRITES)
    rewrites.REWRITES[:] = [r for r in saved if r[0] != "gru_unroll"]
    try:
        loop = prepare_onnx(d / "exported.onnx", d / "loop.onnx", {})
    finally:
        rewrites.REWRITES[:] = saved
    import onnx

    notes: list[str] = []
    rewritten, records = rewrites.apply_rewrites(onnx.load(str(loop.path)), notes, [("gru_unroll", gru_unroll)])
    onnx.save(rewritten, str(d / "rewrite.onnx"))
    with torch.no_grad():
        ref = model(torch.from_numpy(val)).numpy()
    return {"name": name, "dir": d, "model_class": f"edgeport.zoo.sequence_models:{cls}", "model_kwargs": kwargs,
            "shape": list(shape), "ref": ref, "labels": labels, "val": val,
            "onnx": {"loop": loop.path, "rewrite": d / "rewrite.onnx"}, "rewrite_records": records, "rewrite_notes": notes,
            "module": model, "float_accuracy": float(np.mean(ref.argmax(1) == labels)),
            "params": int(sum(p.numel() for p in model.parameters()))}


# --- measurements ----------------------------------------------------------------------------------------
def graph_stats(path: Path) -> dict[str, Any]:
    """Ops over every subgraph (a WHILE body counts), constant bytes, and whether the FC weights are shared."""
    from edgeport.tflite.reader import _names, _schema, load_model

    schema = _schema()
    model = load_model(path)
    names = _names(schema.BuiltinOperator)
    counts: dict[str, int] = {}
    fc_weights: list[int] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
            counts[name] = counts.get(name, 0) + 1
            if name == "FULLY_CONNECTED" and op.inputs is not None and len(op.inputs) > 1:
                fc_weights.append(int(sg.tensors[op.inputs[1]].buffer))
    const_bytes = 0
    for buf in model.buffers:
        if buf.data is not None and len(buf.data):
            const_bytes += len(buf.data)
        elif getattr(buf, "offset", 0) > 1:
            const_bytes += int(getattr(buf, "size", 0))
    return {"ops": sum(counts.values()), "op_counts": dict(sorted(counts.items())), "subgraphs": len(model.subgraphs),
            "fc_ops": len(fc_weights), "fc_weight_buffers": len(set(fc_weights)), "constant_bytes": const_bytes}


def judge(path: Path, fx: dict[str, Any]) -> dict[str, Any]:
    from edgeport.tflite.reader import _text, load_model
    from edgeport.validate.run import run_tflite

    # the signature's input name, read from the flatbuffer: a broken file must not take this process down
    key = _text(load_model(path).signatureDefs[0].inputs[0].name)
    run = run_tflite(path, {"x": fx["val"]}, {key: {"source": "x", "perm": None, "shape": fx["shape"]}}, [fx["ref"]],
                     threads=1, runs=50)
    row: dict[str, Any] = {"size_bytes": path.stat().st_size, **graph_stats(path), "delegate": run.delegate}
    if run.outputs is None:
        return {**row, "runs": False, "error": run.error}
    out, ref, labels = run.outputs[0], fx["ref"], fx["labels"]
    cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    noise = float(np.sum((out - ref) ** 2))
    acc = float(np.mean(out.argmax(1) == labels))
    return {**row, "runs": True, "top1_agreement": round(float(np.mean(out.argmax(1) == ref.argmax(1))), 4),
            "accuracy": round(acc, 4), "drop_pp": round((fx["float_accuracy"] - acc) * 100, 2),
            "cosine_mean": round(float(cos.mean()), 5), "cosine_min": round(float(cos.min()), 5),
            "snr_db": round(10 * np.log10(float(np.sum(ref ** 2)) / noise), 2) if noise > 0 else None,
            "host_p50_ms": round(run.latency.p50_ms, 4) if run.latency else None}


TF_VARIANTS = {
    "loop": [("fp32", "fp32", None), ("fp16", "fp16", None), ("dynamic", "dynamic", None), ("int8", "int8", "mlir"),
             ("int8_old_quantizer", "int8", "old"), ("int16x8", "int16x8", None)],
    "o2t_unroll": [("fp32", "fp32", None), ("int8", "int8", "mlir"), ("int8_old_quantizer", "int8", "old")],
    "rewrite": [("fp32", "fp32", None), ("fp16", "fp16", None), ("dynamic", "dynamic", None), ("int8", "int8", "mlir"),
                ("int8_old_quantizer", "int8", "old"), ("int16x8", "int16x8", None)],
}
AEQ_VARIANTS = [("aeq_int8", "int8"), ("aeq_a16w8", "int16x8")]


def measure_fixture(fx: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    d = fx["dir"]

    def add(route: str, key: str, built: dict, float_path: Path | None, note: str = "") -> None:
        row: dict[str, Any] = {"fixture": fx["name"], "route": route, "variant": key, "builds": bool(built.get("ok"))}
        if note:
            row["how"] = note
        if not built.get("ok"):
            row["error"] = built.get("error")
        else:
            row.update(judge(Path(built["path"]), fx))
            if float_path is not None and float_path.exists():
                row["size_vs_route_fp32"] = round(row["size_bytes"] / float_path.stat().st_size, 3)
            if built.get("seconds") is not None:
                row["convert_s"] = built["seconds"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "op_counts"}), flush=True)

    for route, variants in TF_VARIANTS.items():
        onnx_path = fx["onnx"]["rewrite" if route == "rewrite" else "loop"]
        out_dir = d / route
        out_dir.mkdir(exist_ok=True)
        req = {"onnx": str(onnx_path), "saved_model": str(d / f"saved_{route}"), "unroll": route == "o2t_unroll",
               "calibration": str(d / "calib.npz"), "input": "x", "shape": fx["shape"], "out_dir": str(out_dir),
               "result": str(d / f"{route}.result.json"),
               "variants": [{"key": k, "mode": m, "quantizer": q} for k, m, q in variants]}
        built = run_children("tf", req, d)
        float_path = out_dir / "fp32.tflite"
        for key, mode, quantizer in variants:
            how = f"TF converter {mode}" + ({"mlir": " (MLIR quantizer)", "old": " (experimental_new_quantizer=False)"}
                                            .get(quantizer or "", ""))
            add(route, key, built[key], float_path, how)
        if built["fp32"].get("ok"):
            aeq_req = {"float": str(float_path), "calibration": str(d / "calib.npz"), "source": "x", "input_key": "x",
                       "out_dir": str(out_dir), "result": str(d / f"{route}_aeq.result.json"),
                       "variants": [{"key": k, "mode": m} for k, m in AEQ_VARIANTS]}
            for key, built_aeq in run_children("aeq", aeq_req, d).items():
                add(route, key, built_aeq, float_path, f"AI Edge Quantizer {dict(AEQ_VARIANTS)[key]} on this route's fp32")
    litert_rows(fx, add)
    return rows


def litert_rows(fx: dict[str, Any], add) -> None:
    """The litert-torch backend as edgeport runs it (its own child processes; int8 = AEQ on its float model)."""
    from edgeport.export.litert_torch import convert_litert_torch
    from edgeport.types import TensorSpec

    modes = ("fp32", "fp16", "dynamic", "int8", "int16x8")
    jobs = [{"key": m, "mode": m, "io_dtype": "float32"} for m in modes]
    calib = dict(np.load(fx["dir"] / "calib.npz"))
    try:
        conv = convert_litert_torch(fx["module"], [TensorSpec("x", tuple(fx["shape"]), "float32")], fx["dir"] / "litert",
                                    jobs, calib)
    except Exception as exc:  # noqa: BLE001
        for m in modes:
            add("litert", m, {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]}, None)
        return
    for m in modes:
        built = {"ok": True, "path": str(conv.files[m])} if m in conv.files else {"ok": False, "error": conv.errors.get(m)}
        add("litert", m, built, conv.files.get("fp32"), "LiteRT Torch" + (" + AI Edge Quantizer" if m != "fp32" else ""))


def end_to_end(fx: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """`edgeport convert --quant int8` as a user runs it, on the ONNX file and on the state_dict (auto exporter)."""
    d = fx["dir"]
    cases = {"onnx file": [str(d / "exported.onnx")],
             "state_dict (auto exporter)": [str(d / "model.pt"), "--model-class", fx["model_class"],
                                            "--model-kwargs", json.dumps(fx["model_kwargs"]),
                                            "--input-shape", "x=" + "x".join(str(s) for s in fx["shape"])]}
    rows = []
    for name, head in cases.items():
        out = work / f"e2e_{fx['name']}_{len(rows)}"
        argv = [sys.executable, "-m", "edgeport", "convert", *head, "--profile", "host", "--quant", "int8",
                "--calib", str(d / "calib.npz"), "--val", str(d / "val.npz"), "--output", str(out), "--runs", "20",
                "--json", "--quiet"]
        start = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False)
        row: dict[str, Any] = {"fixture": fx["name"], "input": name, "exit_code": proc.returncode,
                               "wall_s": round(time.monotonic() - start, 1)}
        try:
            rep = json.loads(proc.stdout)
        except json.JSONDecodeError:
            row["error"] = proc.stderr.strip().splitlines()[-1:] if proc.stderr else "no output"
            rows.append(row)
            continue
        if "export" not in rep:  # an error report: exit 2/3 with {"error": ...}
            row["error"] = rep
            rows.append(row)
            print(json.dumps(row), flush=True)
            continue
        acc = rep.get("accuracy") or {}
        row.update({"backend": rep["export"]["backend"], "reason": rep["export"]["reason"],
                    "attempts": [{"backend": a["backend"], "converted": a["converted"], "kept": a["kept"],
                                  "artifact": a.get("artifact")} for a in rep["export"]["attempts"]],
                    "size_bytes": rep["artifact"]["size_bytes"], "reference_size_bytes": rep["reference"]["size_bytes"],
                    "accuracy": acc.get("tflite"), "float_accuracy": acc.get("reference"), "drop_pp": acc.get("drop_pp"),
                    "top1_agreement": acc.get("top1_agreement"), "cosine_mean": acc.get("cosine_mean"),
                    "verdict_passed": rep["verdict"]["passed"],
                    "graph_rewrites": [{k: r.get(k) for k in ("rewrite", "node", "steps", "ops")}
                                       for r in rep["model"].get("graph_rewrites", [])],
                    "notes": [n for n in rep["model"].get("normalization_notes", []) if "gru" in n.lower()]})
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def best_int8(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among integer models (int8 weights and activations) that build and run: the most faithful to float
    (output SNR, rounded to 0.5 dB, then top-1 agreement), then the fewest bytes. Label accuracy moves by
    one sample (0.17 pp of 600) either way by luck, so it does not rank."""
    int8 = [r for r in rows if r.get("runs") and r["variant"] in ("int8", "int8_old_quantizer", "aeq_int8")]
    if not int8:
        return None
    best = min(int8, key=lambda r: (-round(2 * r["snr_db"]) / 2, -r["top1_agreement"], r["size_bytes"]))
    return {"route": best["route"], "variant": best["variant"], "drop_pp": best["drop_pp"],
            "top1_agreement": best["top1_agreement"], "cosine_mean": best["cosine_mean"], "size_bytes": best["size_bytes"]}


CHOSEN = ("rewrite", "int8")  # what edgeport now builds for --quant int8 (gru_unroll + the TF converter)
FLOOR = ("litert", "int8")  # what --exporter auto kept before (LiteRT Torch + AEQ)


def decision(rows: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """The implemented route beside today's floor, with the figures that decide. "At least as good": as
    faithful to float within the noise of the validation set, i.e. output SNR at most 0.5 dB lower and
    top-1 agreement at most one sample lower; the accuracy drop is reported beside it (one sample moves
    it by 100/samples pp either way)."""
    pick = {(r["route"], r["variant"]): r for r in rows}
    keys = ("builds", "runs", "size_bytes", "ops", "fc_ops", "fc_weight_buffers", "top1_agreement", "accuracy",
            "drop_pp", "cosine_mean", "snr_db", "host_p50_ms", "error")
    chosen, floor = pick.get(CHOSEN, {}), pick.get(FLOOR, {})
    out = {"chosen": {"route": "/".join(CHOSEN), **{k: chosen.get(k) for k in keys}},
           "floor": {"route": "/".join(FLOOR), **{k: floor.get(k) for k in keys}},
           "today_onnx2tf_int8": {k: pick.get(("loop", "int8"), {}).get(k) for k in ("builds", "error")}}
    if chosen.get("runs") and floor.get("runs"):
        out["chosen_minus_floor"] = {k: round(chosen[k] - floor[k], 4) for k in ("top1_agreement", "snr_db", "drop_pp")}
        out["chosen_at_least_as_good_as_floor"] = bool(
            chosen["top1_agreement"] >= floor["top1_agreement"] - 1.0 / samples - 1e-4
            and chosen["snr_db"] >= floor["snr_db"] - 0.5)
        out["rule"] = (f"SNR at most 0.5 dB below the floor's and top-1 agreement at most one of {samples} samples "
                       "below it; accuracy drop reported, not ranked")
        out["chosen_size_vs_floor"] = round(chosen["size_bytes"] / floor["size_bytes"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/gru_int8.json"))
    parser.add_argument("--fixtures", default="kws,kws128,classifier")
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--work", default=None, help="keep the models here (default: a temporary directory)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "REQUEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, path = args.child
        (child_tf if kind == "tf" else child_aeq)(json.loads(Path(path).read_text()))
        return
    import onnx2tf
    import tensorflow as tf
    import torch

    start = time.monotonic()
    out: dict[str, Any] = {"command": "python benchmarks/bench_gru_int8.py " + " ".join(sys.argv[1:]),
                           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
                           "versions": {"torch": torch.__version__, "tensorflow": tf.__version__,
                                        "onnx2tf": onnx2tf.__version__},
                           "fixtures": {}, "rows": [], "end_to_end": [], "best_int8": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gru-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        for name in args.fixtures.split(","):
            fx = build_fixture(name, work)
            out["fixtures"][name] = {"model_class": fx["model_class"], "input_shape": fx["shape"], "params": fx["params"],
                                     "float_accuracy": round(fx["float_accuracy"], 4), "val_samples": len(fx["labels"]),
                                     "rewrite": fx["rewrite_records"], "rewrite_notes": fx["rewrite_notes"]}
            rows = measure_fixture(fx, work)
            out["rows"].extend(rows)
            out["best_int8"][name] = best_int8(rows)
            out.setdefault("decision", {})[name] = decision(rows, len(fx["labels"]))
            if not args.no_e2e:
                out["end_to_end"].extend(end_to_end(fx, work))
            Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")  # partial results survive
    out["wall_s"] = round(time.monotonic() - start, 1)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {args.out} in {out['wall_s']} s")


if __name__ == "__main__":
    main()
