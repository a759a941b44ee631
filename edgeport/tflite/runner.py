"""Subprocess entry point that runs a .tflite on this host: outputs for validation, then timings.

A separate process because int8 kernels can abort the whole process on some inputs (e.g. a quantized
DIV whose divisor hits its zero point); the parent sees the signal and turns it into a failed check.
Imports only the TFLite interpreter (ai-edge-litert, else tflite-runtime, else TensorFlow), not torch,
and nothing of edgeport: runners/device_eval.py copies this very file to a device (ssh, adb), so the device
runs each sample exactly as the host does (state reset, carried streaming state). Keep it Python 3.7+.
Usage: python -m edgeport.tflite.runner REQUEST.json RESULT.npz
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load_interpreter_class() -> tuple[Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite_runtime"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow.lite"


def quantize_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating) or dtype == np.bool_:
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if scale == 0:  # integer input that is not quantized (token ids, indices)
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale != 0:
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
    return y.astype(np.float32) if np.issubdtype(y.dtype, np.floating) else y


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text())
    Interpreter, runtime = load_interpreter_class()
    kwargs: dict[str, Any] = {}
    if req.get("no_default_delegates") and runtime == "ai_edge_litert":
        from ai_edge_litert.interpreter import OpResolverType

        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=req["model"], num_threads=int(req.get("threads", 1)), **kwargs)
    runner = interp.get_signature_runner()
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    results: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"runtime": runtime, "inputs": {}, "outputs": {}}
    for key, d in in_details.items():
        meta["inputs"][key] = {"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
    for key, d in out_details.items():
        meta["outputs"][key] = {"shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}

    feeds = _load_feeds(req, in_details)
    count = len(next(iter(feeds.values()))) if feeds else 0
    outs: dict[str, list[np.ndarray]] = {k: [] for k in out_details}
    carried = _state_links(req.get("input_map") or {}, list(out_details))
    previous: dict[str, np.ndarray] = {}
    for i in range(count if req.get("validate", True) else 0):
        sample = {k: quantize_input(v[i : i + 1], in_details[k]) for k, v in feeds.items()}
        for key, (out_key, steps) in carried.items():
            # Streaming state (--state): within a sequence, the model's own previous state, not the float one
            if i % steps and out_key in previous and previous[out_key].shape == sample[key].shape:
                sample[key] = quantize_input(previous[out_key], in_details[key])
        # Each sample is an independent sequence: a fused LSTM keeps its state in variable tensors
        # between invocations, and without a reset one sample's final state would start the next.
        if i:  # the first call allocates the tensors; resetting before it fails
            interp.reset_all_variables()
        got = runner(**sample)
        for k in out_details:
            outs[k].append(dequantize_output(np.asarray(got[k]), out_details[k]))
        previous = {k: outs[k][-1] for k in out_details}
    for k, v in outs.items():
        if v:
            results[f"out::{k}"] = np.concatenate(v, axis=0)

    runs = int(req.get("runs", 0))
    if runs > 0:
        first = {k: quantize_input(v[0:1], in_details[k]) for k, v in feeds.items()}
        for _ in range(int(req.get("warmup", 5))):
            runner(**first)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            runner(**first)
            times.append((time.perf_counter() - t0) * 1000.0)
        results["timings_ms"] = np.asarray(times)
    results["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = Path(argv[1])
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(tmp, **results)
    tmp.replace(out)
    return 0


def invoke_each(model: str | Path, samples: np.ndarray, layout: tuple[int, ...] | None = None) -> np.ndarray:
    """The first output for each sample (one input), run as an app runs the model: in this process, state
    reset before each sample (fused LSTMs keep it between calls), input moved to `layout` (e.g. NHWC)."""
    Interpreter, _ = load_interpreter_class()
    interp = Interpreter(model_path=str(model))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for sample in samples:
        interp.reset_all_variables()
        x = sample[None] if layout is None else np.transpose(sample[None], layout)
        interp.set_tensor(inp["index"], quantize_input(x, inp))
        interp.invoke()
        rows.append(dequantize_output(interp.get_tensor(out["index"]), out)[0])
    return np.stack(rows)


def ordered_output_keys(keys: list[str]) -> list[str]:
    """Signature output keys in the source model's output order (SavedModel names them output_0, output_1, ...)."""
    def index(k: str) -> tuple[int, str]:
        tail = k.rsplit("_", 1)[-1]
        return (int(tail), k) if tail.isdigit() else (10**6, k)

    return sorted(keys, key=index)


def _state_links(input_map: dict[str, dict[str, Any]], out_keys: list[str]) -> dict[str, tuple[str, int]]:
    """{state input key: (output key that feeds it, chunks per sequence)} from validate/streaming.attach."""
    ordered = ordered_output_keys(out_keys)
    return {key: (ordered[int(spec["state_from"])], int(spec.get("steps", 1)))
            for key, spec in input_map.items() if spec.get("state_from") is not None}


def _load_feeds(req: dict[str, Any], in_details: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inputs in TFLite layout, keyed by signature key. Without data, seeded random inputs (bench)."""
    if req.get("inputs"):
        data = np.load(req["inputs"])
        # export/layout.apply, written out: this file must not import edgeport (see the module docstring)
        return {key: np.ascontiguousarray(data[spec["source"]] if spec.get("perm") is None
                                          else data[spec["source"]].transpose(spec["perm"]))
                for key, spec in req["input_map"].items()}
    rng = np.random.default_rng(0)
    feeds = {}
    for key, d in in_details.items():
        shape = tuple(int(s) for s in d["shape"])
        if np.issubdtype(d["dtype"], np.floating) or d["quantization"][0] != 0:
            feeds[key] = rng.standard_normal(shape).astype(np.float32)
        else:
            feeds[key] = rng.integers(0, 2, size=shape).astype(d["dtype"])
    return feeds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
