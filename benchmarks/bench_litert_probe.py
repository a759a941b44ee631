"""Probe the litert-torch backend on the zoo and a few architectures; raw numbers to a JSON file.

Usage: nice -n 19 .venv/bin/python benchmarks/bench_litert_probe.py [--out benchmarks/results/exporters_litert_probe.json]
       [--only NAME ...] [--mbv2-size 224] [--pt2e]

Per model: which modes convert, float cosine vs torch, int8 top-1 agreement and cosine vs torch on
64 inputs, file sizes, convert wall time, the worker's peak RSS, host p50 latency (2 threads, 30
runs) and the op census of the written models; with --pt2e also int8 through PT2E, for comparison. Host numbers belong to this machine (DESIGN.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeport.export.litert_torch import convert_litert_torch  # noqa: E402
from edgeport.types import TensorSpec  # noqa: E402
from edgeport.zoo.sequence_models import GruClassifier  # noqa: E402

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")
EVAL_N, CALIB_N, RUNS, ROUNDS, THREADS = 64, 128, 30, 5, 2


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True, dropout=0.0)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(x).mean(1))


class TokenMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.GELU(approximate="tanh"), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _seeded(model: nn.Module, std: float | None = 0.3) -> nn.Module:
    torch.manual_seed(0)
    if std is not None:
        for p in model.parameters():
            nn.init.normal_(p, std=std)
    return model.eval()


def _digits(split: str, n: int, seed: int) -> np.ndarray:
    data = np.load(REPO / "calibration_data/digits/digits.npz")
    raw = data[f"x_{split}"]
    idx = np.random.default_rng(seed).choice(len(raw), n, replace=False)
    x = raw[idx].astype(np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return x.reshape(n, 1, 32, 32)


def _zoo(cls_name: str, ckpt: str) -> nn.Module:
    from edgeport.zoo import digits_net, hard_cases

    cls = getattr(digits_net, cls_name, None) or getattr(hard_cases, cls_name)
    model = cls()
    model.load_state_dict(torch.load(REPO / "edgeport/zoo" / ckpt, weights_only=True))
    return model.eval()


def cases(mbv2_size: int) -> dict[str, tuple]:
    """name -> (builder, input shape, data kind)."""
    from edgeport.zoo.cnn_families import build

    return {
        "digits_net": (lambda: _zoo("DigitsNet", "digits_net.pt"), (1, 1, 32, 32), "digits"),
        "outlier_net": (lambda: _zoo("OutlierNet", "outlier_net.pt"), (1, 1, 32, 32), "digits"),
        "attn_net": (lambda: _zoo("AttnNet", "attn_net.pt"), (1, 1, 32, 32), "digits"),
        "transformer_encoder": (lambda: _seeded(Encoder(), std=None), (1, 16, 64), "gauss"),
        "gru_classifier": (lambda: _seeded(GruClassifier()), (1, 16, 8), "gauss"),
        "token_mlp": (lambda: _seeded(TokenMLP(), std=None), (1, 16, 32), "gauss"),
        "mobilenet_v2_shaped": (lambda: build("mobilenet_v2"), (1, 3, mbv2_size, mbv2_size), "gauss"),
    }


def _data(kind: str, shape: tuple[int, ...], n: int, seed: int, split: str) -> np.ndarray:
    if kind == "digits":
        return _digits(split, n, seed)
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


def _interp(path: Path, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=str(path), num_threads=THREADS, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it


def _outputs(path: Path, x: np.ndarray, perm: list[int] | None) -> np.ndarray:
    it = _interp(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (in_scale, in_zp), (out_scale, out_zp) = inp["quantization"], out["quantization"]
    res = []
    for sample in x:
        arr = np.ascontiguousarray(sample[None].transpose(perm) if perm else sample[None])
        if in_scale:  # integer graph I/O (the PT2E comparison): quantize in, dequantize out
            info = np.iinfo(inp["dtype"])
            arr = np.clip(np.round(arr / in_scale) + in_zp, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], arr)
        it.invoke()
        y = it.get_tensor(out["index"]).copy()
        res.append((y.astype(np.float32) - out_zp) * out_scale if out_scale else y)
    return np.stack(res)


def _latency(path: Path, xnnpack: bool = True) -> dict:
    """p50 of RUNS invokes, in ROUNDS rounds: the machine is shared, so one round can land on
    another user's burst; the median round and the best round are both kept."""
    it = _interp(path, xnnpack)
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.random.default_rng(0).standard_normal(inp["shape"]).astype(inp["dtype"]))
    for _ in range(3):
        it.invoke()
    p50s = []
    for _ in range(ROUNDS):
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            it.invoke()
            times.append((time.perf_counter() - t) * 1e3)
        p50s.append(float(np.percentile(times, 50)))
    return {"p50_ms": round(float(np.median(p50s)), 4), "p50_ms_best_round": round(min(p50s), 4)}


def _timed(path: Path) -> dict:
    fast, builtin = _latency(path), _latency(path, xnnpack=False)
    return {"p50_ms_xnnpack": fast["p50_ms"], "p50_ms_xnnpack_best_round": fast["p50_ms_best_round"],
            "p50_ms_builtin": builtin["p50_ms"], **_census(path)}


def _census(path: Path) -> dict:
    it = _interp(path)
    ops = collections.Counter(o["op_name"] for o in it._get_ops_details())  # noqa: SLF001
    partitions = ops.pop("DELEGATE", 0)
    return {"ops": dict(ops), "xnnpack_partitions": partitions,
            "odd_ops": sorted(n for n in ops if n == "CUSTOM" or n.startswith("Flex"))}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


def probe(name: str, build, shape: tuple[int, ...], kind: str, workdir: Path, with_pt2e: bool) -> dict:
    model = build()
    calib = _data(kind, shape, CALIB_N, 1, "train")
    evalx = _data(kind, shape, EVAL_N, 2, "val")
    with torch.no_grad():
        ref = np.stack([model(torch.from_numpy(x[None])).numpy() for x in evalx])
    jobs = [{"key": m, "mode": m, "io_dtype": "float32"} for m in MODES]
    start = time.monotonic()
    conv = convert_litert_torch(model, [TensorSpec("x", shape)], workdir, jobs, {"x": calib})
    row: dict = {"input": list(shape), "data": kind, "loadavg_1m": round(os.getloadavg()[0], 2), "convert_wall_s": round(time.monotonic() - start, 2),
                 "stage_s": conv.seconds, "worker_peak_rss_mb": conv.peak_rss_mb,
                 "parent_children_maxrss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                 "errors": conv.errors, "input_map": conv.input_map, "notes": list(conv.notes),
                 "torch_params": sum(p.numel() for p in model.parameters()), "modes": {}}
    perm = next(iter(conv.input_map.values()))["perm"]
    for key, path in conv.files.items():
        entry: dict = {"size_bytes": path.stat().st_size}
        try:
            out = _outputs(path, evalx, perm)
            entry["cosine_vs_torch"] = round(_cosine(out, ref), 6)
            entry["top1_agreement"] = round(float(np.mean(out.argmax(-1) == ref.argmax(-1))), 4)
            entry["max_abs_err"] = float(np.max(np.abs(out - ref)))
            entry.update(_timed(path))
        except Exception as exc:  # noqa: BLE001 - a model that does not run is a result, not a crash
            entry["run_error"] = f"{type(exc).__name__}: {exc}"[:300]
        row["modes"][key] = entry
    if with_pt2e:
        row["pt2e_int8"] = pt2e_int8(model, shape, calib, evalx, ref, perm, workdir)
    return row


def pt2e_int8(model: nn.Module, shape: tuple[int, ...], calib: np.ndarray, evalx: np.ndarray, ref: np.ndarray,
              perm: list[int] | None, workdir: Path) -> dict:
    """The alternative int8 route, for the AEQ-vs-PT2E decision: litert-torch's PT2EQuantizer
    (per-channel weights, histogram observers) on the exported graph, then litert-torch's convert.
    Runs in this process (a probe, not the product path); its graph I/O is int8."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e import quantize_pt2e

    try:
        start = time.monotonic()
        args = (torch.from_numpy(calib[:1]),)
        gm = torch.export.export(model, args).module()
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        gm = quantize_pt2e.prepare_pt2e(gm, quantizer)
        with torch.no_grad():
            for x in calib:
                gm(torch.from_numpy(x[None]))
        gm = quantize_pt2e.convert_pt2e(gm, fold_quantize=False)
        if perm:
            gm = litert_torch.to_channel_last_io(gm, args=[0])
            args = (args[0].permute(*perm).contiguous(),)
        gm.training = False
        edge = litert_torch.convert(gm, args, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
        path = workdir / "pt2e_int8.tflite"
        edge.export(str(path))
        out = _outputs(path, evalx, perm)
        return {"convert_s": round(time.monotonic() - start, 2), "size_bytes": path.stat().st_size,
                "cosine_vs_torch": round(_cosine(out, ref), 6),
                "top1_agreement": round(float(np.mean(out.argmax(-1) == ref.argmax(-1))), 4), **_timed(path)}
    except Exception as exc:  # noqa: BLE001 - a failed route is a result
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/exporters_litert_probe.json"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--mbv2-size", type=int, default=224)
    ap.add_argument("--pt2e", action="store_true", help="also build int8 through PT2E for comparison")
    args = ap.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() and args.only else {"models": {}}
    import ai_edge_litert
    import ai_edge_quantizer
    import litert_torch

    results["env"] = {"python": platform.python_version(), "machine": platform.processor() or platform.machine(),
                      "torch": torch.__version__, "litert_torch": litert_torch.__version__,
                      "ai_edge_quantizer": getattr(ai_edge_quantizer, "__version__", "0.10.0"),
                      "ai_edge_litert": getattr(ai_edge_litert, "__version__", "2.3.0"),
                      "threads": THREADS, "runs": RUNS, "eval_inputs": EVAL_N, "calib_inputs": CALIB_N,
                      "calibration": "AEQ static recipes, min/max ranges (edgeport.quantize.aeq_modes)",
                      "rss": "worker_peak_rss_mb: each worker's own RUSAGE_SELF peak (max over its passes); "
                             "parent_children_maxrss_mb: RUSAGE_CHILDREN of this probe, a running max over every "
                             "worker so far, not per model",
                      "latency": f"p50 of {RUNS} invokes per round, median (and best) of {ROUNDS} rounds; the "
                                 "machine is shared (loadavg_1m per model)"}
    for name, (build, shape, kind) in cases(args.mbv2_size).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"litert_{name}_") as tmp:
            try:
                results["models"][name] = probe(name, build, shape, kind, Path(tmp), args.pt2e)
            except Exception as exc:  # noqa: BLE001 - record and go on to the next model
                results["models"][name] = {"input": list(shape), "error": f"{type(exc).__name__}: {exc}"[:500]}
        print(json.dumps(results["models"][name])[:400], flush=True)
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
