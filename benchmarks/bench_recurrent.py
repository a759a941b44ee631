"""Recurrent fixtures in every TFLite mode, side by side in one run: size, task agreement, latency.

For the zoo's LSTM encoder (3 layers, h_n[-1] -> Linear -> L2 norm; state_dict + class) and its CRNN
text recognizer (bidirectional LSTM, CTC; exported to ONNX first, as a third party ships it), each mode
(fp32, fp16, dynamic, int8) is converted for raspberry-pi-4 and judged by its task:
- encoder: min and mean cosine of the embedding to float, and nearest-neighbour label accuracy (the
  nearest other embedding in the validation set has the same class), beside float's;
- CRNN: share of validation lines whose greedy CTC decode equals float's.
Latency: simulated for raspberry-pi-4 and pixel-7 from the profiles (fused LSTM ops are costed as
their per-step mat-vecs), and host p50 (this machine, 2 threads, same process, one mode after another).

    .venv/bin/python benchmarks/bench_recurrent.py [--out benchmarks/results/recurrent.json]
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
from edgeport.tflite.reader import inspect_model  # noqa: E402
from edgeport.tflite.runner import invoke_each  # noqa: E402
from edgeport.zoo import recurrent, sequence_models  # noqa: E402

MODES = ("fp32", "fp16", "dynamic", "int8")
PROFILES = ("raspberry-pi-4", "pixel-7")


def encoder_case(work: Path) -> dict:
    model = recurrent.LstmEncoder()
    model.load_state_dict(torch.load(REPO / "edgeport/zoo/lstm_encoder.pt", weights_only=True))
    model.eval()
    torch.save(model.state_dict(), work / "enc.pt")
    calib, _ = sequence_models.make_data(300, 31)
    val, labels = sequence_models.make_data(300, 32)
    np.savez(work / "enc_calib.npz", x=calib)
    np.savez(work / "enc_val.npz", x=val)
    with torch.no_grad():
        ref = model(torch.from_numpy(val)).numpy()

    def judge(artifact: Path) -> dict:
        emb = invoke_each(artifact, val)
        cos = np.sum(emb * ref, -1) / (np.linalg.norm(emb, axis=-1) * np.linalg.norm(ref, axis=-1))
        return {"cosine_min": round(float(cos.min()), 5), "cosine_mean": round(float(cos.mean()), 5),
                "nn_label_accuracy": round(float(np.mean(labels[_nearest(emb)] == labels)), 4),
                "float_nn_label_accuracy": round(float(np.mean(labels[_nearest(ref)] == labels)), 4)}

    return {"checkpoint": work / "enc.pt", "options": {"model_class": "edgeport.zoo.recurrent:LstmEncoder",
            "input_shapes": (f"x=1x{sequence_models.SEQ}x{sequence_models.FEATURES}",),
            "calib": str(work / "enc_calib.npz"), "val": str(work / "enc_val.npz")}, "judge": judge,
            "task": "embedding"}


def crnn_case(work: Path) -> dict:
    model = recurrent.Crnn()
    model.load_state_dict(torch.load(REPO / "edgeport/zoo/crnn.pt", weights_only=True))
    model.eval()
    path = work / "crnn.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, recurrent.LINE_H, recurrent.LINE_W),), str(path),
                      input_names=["image"], output_names=["logits"], opset_version=17, dynamo=False)
    calib, _ = recurrent.make_lines(300, 41)
    val, texts = recurrent.make_lines(300, 42)
    np.savez(work / "crnn_calib.npz", image=calib)
    np.savez(work / "crnn_val.npz", image=val)
    with torch.no_grad():
        float_text = recurrent.greedy_ctc(model(torch.from_numpy(val)).numpy())

    def judge(artifact: Path) -> dict:
        text = recurrent.greedy_ctc(invoke_each(artifact, val, (0, 2, 3, 1)))
        return {"strings_identical_to_float": round(float(np.mean([a == b for a, b in zip(text, float_text, strict=True)])), 4),
                "line_accuracy": round(float(np.mean([a == b for a, b in zip(text, texts, strict=True)])), 4),
                "float_line_accuracy": round(float(np.mean([a == b for a, b in zip(float_text, texts, strict=True)])), 4)}

    return {"checkpoint": path, "options": {"calib": str(work / "crnn_calib.npz"), "val": str(work / "crnn_val.npz")},
            "judge": judge, "task": "ctc"}


def _nearest(emb: np.ndarray) -> np.ndarray:
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/recurrent.json"))
    args = parser.parse_args()
    from edgeport.latency.host_fit import resolve

    profiles = {name: load_profile(name) for name in PROFILES}
    profiles["host"] = resolve(load_profile("host"), log=lambda _: None)  # this machine's fit, to check the model
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, build in (("lstm_encoder (PyTorch, 3-layer LSTM)", encoder_case), ("crnn (ONNX, BiLSTM + CTC)", crnn_case)):
            case = build(work)
            fp32_size = None
            for mode in MODES:
                rep = convert(case["checkpoint"], "raspberry-pi-4", quant=mode, output=work / f"{name[:4]}_{mode}", runs=30,
                              **case["options"]).data
                artifact = Path(rep["artifact"]["path"])
                info = inspect_model(artifact)
                fp32_size = fp32_size or rep["reference"]["size_bytes"]
                row = {"model": name, "task": case["task"], "mode": mode, "exporter": rep["export"]["backend"],
                       "size_bytes": rep["artifact"]["size_bytes"],
                       "size_vs_fp32": round(rep["artifact"]["size_bytes"] / fp32_size, 3),
                       "lstm_ops": {k: v for k, v in info["op_counts"].items() if "LSTM" in k or k == "WHILE"},
                       "verdict_passed": rep["verdict"]["passed"], **case["judge"](artifact),
                       "host_p50_ms": rep["latency"]["host"]["p50_ms"]}
                for pname, prof in profiles.items():
                    row[f"sim_{pname}_p50_ms"] = round(simulate(info, prof).p50_ms, 3)
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
