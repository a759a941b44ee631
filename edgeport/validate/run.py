"""Run the float reference and the TFLite model on the same samples (source layout)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.export.layout import ShapeMismatch, output_perm, undo
from edgeport.export.torch_to_onnx import flatten_outputs as _flatten
from edgeport.tflite.runner import ordered_output_keys
from edgeport.types import LatencyStats, TensorSpec


@dataclass(frozen=True)
class TfliteRun:
    outputs: list[np.ndarray] | None  # in reference output order and layout; None if the run aborted
    latency: LatencyStats | None
    runtime: str | None
    error: str | None = None
    io: dict[str, Any] = field(default_factory=dict)
    # Which kernels produced the numbers: "xnnpack" (the delegate was created, as on devices by
    # default) or "builtin" (TFLite's reference/optimized kernels without any delegate).
    delegate: str | None = None
    # The model ran, but its outputs do not fit the reference (another count, or a shape no layout
    # reading explains): not a numeric disagreement, a different interface. Also in `error`; outputs is None.
    mismatch: str | None = None


def reference_outputs(module: Any, onnx_path: Path, inputs: list[TensorSpec], data: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Float reference per sample: the torch module when there is one, else onnxruntime."""
    if module is not None:
        return _torch_reference(module, inputs, data)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    count = len(data[inputs[0].name])
    rows = [sess.run(None, {s.name: data[s.name][i : i + 1] for s in inputs}) for i in range(count)]
    return [np.concatenate([r[k] for r in rows], axis=0).astype(np.float32) for k in range(len(rows[0]))]


def _torch_reference(module: Any, inputs: list[TensorSpec], data: dict[str, np.ndarray], chunk: int = 64) -> list[np.ndarray]:
    """Batched when the model allows it (checked against per-sample results), else one sample at a time."""
    import torch

    count = len(data[inputs[0].name])

    def run(lo: int, hi: int) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(data[s.name][lo:hi])) for s in inputs]
        return [t.detach().numpy() for t in _flatten(module(*args))]

    with torch.no_grad():
        single = [run(i, i + 1) for i in range(min(2, count))]
        batched = None
        try:
            first = run(0, min(2, count))
            if all(b.shape[0] == min(2, count) and np.allclose(b, np.concatenate([r[k] for r in single]), atol=1e-4, rtol=1e-3)
                   for k, b in enumerate(first)):
                batched = [run(lo, min(lo + chunk, count)) for lo in range(0, count, chunk)]
        except Exception:  # noqa: BLE001 - models with a hard-coded batch of 1 run per sample
            batched = None
        rows = batched if batched is not None else [run(i, i + 1) for i in range(count)]
    return [np.concatenate([r[k] for r in rows], axis=0).astype(np.float32) for k in range(len(rows[0]))]


def run_tflite(
    model: Path,
    data: dict[str, np.ndarray] | None,
    input_map: dict[str, dict[str, Any]],
    references: list[np.ndarray] | None,
    *,
    threads: int,
    runs: int = 50,
    warmup: int = 5,
    timeout_s: float = 900,
    no_default_delegates: bool = False,
) -> TfliteRun:
    """Outputs (validated) and host timings, from a child process so a kernel abort is survivable."""
    with tempfile.TemporaryDirectory(prefix="edgeport-run-") as tmp:
        req: dict[str, Any] = {"model": str(model), "threads": threads, "runs": runs, "warmup": warmup,
                               "input_map": input_map, "validate": data is not None,
                               "no_default_delegates": no_default_delegates}
        if data is not None:
            np.savez(Path(tmp, "inputs.npz"), **data)
            req["inputs"] = str(Path(tmp, "inputs.npz"))
        Path(tmp, "req.json").write_text(json.dumps(req))
        out = Path(tmp, "out.npz")
        try:
            proc = subprocess.run([sys.executable, "-m", "edgeport.tflite.runner", str(Path(tmp, "req.json")), str(out)],
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return TfliteRun(None, None, None, error=f"the TFLite model did not finish within {timeout_s:.0f} s")
        # "default": LiteRT's default delegates were allowed but its XNNPACK line was not seen.
        delegate = "builtin" if no_default_delegates else ("xnnpack" if _XNNPACK_CREATED in (proc.stderr or "") else "default")
        if proc.returncode != 0 or not out.exists():
            return TfliteRun(None, None, None, error=_describe_failure(proc), delegate=delegate)
        res = np.load(out)
        meta = json.loads(bytes(res["meta"]).decode())
        latency = None
        if "timings_ms" in res:
            latency = LatencyStats.from_samples(res["timings_ms"].tolist(), "host", threads=threads)
        outputs = None
        if data is not None:
            try:
                outputs = _reference_layout(res, list(meta["outputs"]), references)
            except ShapeMismatch as exc:
                return TfliteRun(None, latency, meta["runtime"], error=str(exc), io=meta, delegate=delegate, mismatch=str(exc))
        return TfliteRun(outputs, latency, meta["runtime"], io=meta, delegate=delegate)


_XNNPACK_CREATED = "Created TensorFlow Lite XNNPACK delegate"  # LiteRT's INFO line when it applies XNNPACK


def _reference_layout(res: Any, keys: list[str], references: list[np.ndarray] | None) -> list[np.ndarray]:
    """The TFLite outputs in reference order and layout; ShapeMismatch when they cannot be."""
    keys = _order_output_keys(keys, references)
    outputs = []
    for i, key in enumerate(keys):
        got = res[f"out::{key}"]
        ref = references[i] if references is not None else None
        try:
            perm = output_perm(ref.shape, got, ref) if ref is not None else None
        except ShapeMismatch as exc:
            if len(keys) == 1:
                raise
            raise ShapeMismatch(f"{key} (of {len(keys)}): {exc}") from exc
        outputs.append(undo(got, perm))
    return outputs


def _order_output_keys(keys: list[str], references: list[np.ndarray] | None) -> list[str]:
    ordered = ordered_output_keys(keys)
    if references is not None and len(ordered) != len(references):
        raise ShapeMismatch(f"the TFLite model has {len(ordered)} outputs but the reference has {len(references)}")
    return ordered


def _describe_failure(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return f"the TFLite runtime crashed ({name}) while running the model on validation data"
    lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    return f"the TFLite runtime failed: {lines[-1][:300] if lines else f'exit status {proc.returncode}'}"
