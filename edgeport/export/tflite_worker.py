"""Subprocess entry point: ONNX -> TF SavedModel (onnx2tf) -> TFLite files (TFLiteConverter).

Runs in its own process because onnx2tf calls sys.exit() on errors, prints heavily, mutates global
TF state, and the converter can abort the process; the parent keeps control and a clean error.
Usage: python -m edgeport.export.tflite_worker REQUEST.json RESULT.json
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.export import fused_lstm
from edgeport.export.rewrites import onnx2tf_ops
from edgeport.progress import write_status

# onnx2tf 1.x downloads MS-COCO sample images when every input looks like an RGB image (NHWC, 3
# channels); it only uses them for its own output check, not for the SavedModel itself. This process
# must never touch the network, so the hook hands it the user's calibration data, or seeded generated
# images when there is none (float exports need no data at all).
_SAMPLE_IMAGES: np.ndarray | None = None
_GENERATED_SHAPE: tuple[int, int] = (64, 64)
SAMPLE_COUNT = 20  # what onnx2tf's own sample file holds; it slices the first `batch` of them


def _offline_sample_images() -> np.ndarray:
    if _SAMPLE_IMAGES is not None:
        return _SAMPLE_IMAGES
    return generated_sample_images(*_GENERATED_SHAPE)


def generated_sample_images(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Seeded NHWC images in [0, 1] (onnx2tf's own samples are normalised the same way); onnx2tf
    resizes them to each input's size."""
    rng = np.random.default_rng(seed)
    return rng.random((SAMPLE_COUNT, height, width, 3), dtype=np.float32)


def _silence_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def run_onnx2tf(req: dict[str, Any]) -> None:
    """Build the SavedModel that every TFLite variant is converted from."""
    global _SAMPLE_IMAGES, _GENERATED_SHAPE
    import onnx2tf.onnx2tf as o2t
    import onnx2tf.utils.common_functions as o2t_common

    from edgeport.export.layout import apply, channels_last_perm

    image = req.get("sample_images")
    if image:
        arr = np.load(image)
        _SAMPLE_IMAGES = apply(arr, channels_last_perm(arr.ndim)).astype(np.float32)
    shapes = [s for s in (req.get("onnx_input_shapes") or {}).values() if len(s) == 4]
    if shapes and all(d > 0 for d in shapes[0][2:]):
        _GENERATED_SHAPE = (int(shapes[0][2]), int(shapes[0][3]))
    o2t.download_test_image_data = _offline_sample_images
    o2t_common.download_test_image_data = _offline_sample_images
    fused_lstm.install(fused_lstm.fusable_lstms(req["onnx"]))
    onnx2tf_ops.install()  # onnx2tf keeps and builds the contrib ops export/rewrites/ writes (GELU)
    o2t.convert(
        input_onnx_file_path=req["onnx"],
        output_folder_path=req["saved_model"],
        output_signaturedefs=True,
        copy_onnx_input_output_names_to_tflite=True,
        not_use_onnxsim=True,
        keep_ncw_or_nchw_or_ncdhw_input_names=req.get("keep_layout_inputs") or None,
        keep_shape_absolutely_input_names=req.get("keep_shape_inputs") or None,
        replace_to_pseudo_operators=req.get("pseudo_ops") or None,
        disable_model_save=False,
        non_verbose=True,
        verbosity="error",
    )


def _signature_inputs(saved_model: str) -> dict[str, tuple[int, ...]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model)
    fn = loaded.signatures["serving_default"]
    _, kwargs = fn.structured_input_signature
    # Keyed by the TensorSpec's name, not the keyword: TF sanitises keywords ('gpu_0/data_0' becomes
    # 'gpu_0_data_0'), while the TFLite signature, the converter's calibration feed and the runtime all
    # use the spec's name (Caffe2- and TF-exported ONNX inputs carry '/').
    return {spec.name or name: tuple(int(d) if d is not None else -1 for d in spec.shape) for name, spec in kwargs.items()}


def _match_names(sig_names: list[str], onnx_names: list[str]) -> dict[str, str]:
    """signature key -> ONNX input name. onnx2tf sanitises names (':' '/' '.' ...), so fall back to order."""
    if sorted(sig_names) == sorted(onnx_names):
        return {n: n for n in sig_names}
    canon = {_canon(n): n for n in onnx_names}
    if all(_canon(n) in canon for n in sig_names):
        return {n: canon[_canon(n)] for n in sig_names}
    return dict(zip(sig_names, onnx_names, strict=True))


def _canon(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _calibration_feed(req: dict[str, Any], sig: dict[str, tuple[int, ...]]) -> tuple[list[dict], dict]:
    from edgeport.export.layout import apply, input_perm

    data = np.load(req["calibration"]) if req.get("calibration") else None
    names = _match_names(list(sig), req["onnx_inputs"])
    perms: dict[str, Any] = {}
    feed: list[dict[str, np.ndarray]] = []
    for key, onnx_name in names.items():
        src_shape = tuple(req["onnx_input_shapes"][onnx_name])
        moved = onnx_name not in (req.get("keep_layout_inputs") or []) and len(src_shape) >= 4
        perms[key] = input_perm(src_shape, sig[key], moved)
    if data is not None:
        count = len(data[req["onnx_inputs"][0]])
        for i in range(count):
            feed.append({key: apply(data[names[key]][i : i + 1], perms[key]) for key in names})
    mapping = {key: {"source": names[key], "perm": perms[key]} for key in names}
    return feed, mapping


def convert_variant(saved_model: str, job: dict[str, Any], feed: list[dict[str, np.ndarray]],
                    status: str | None = None, position: tuple[int, int] = (0, 1),
                    integer_options: dict[str, Any] | None = None) -> bytes:
    """One TFLite flatbuffer for one quantization mode. Only builtin ops are allowed: Flex (Select TF)
    ops would run on no Coral/GPU/standard runtime, so their presence is an error, not a fallback."""
    import tensorflow as tf

    mode = job["mode"]
    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]

    def representative():
        every = max(1, len(feed) // 20)
        for i, sample in enumerate(feed):
            if i % every == 0:
                write_status(status, phase="calibration", variant=mode, done=i, total=len(feed), index=position[0],
                             count=position[1])
            yield {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in sample.items()}  # ids stay ints
        write_status(status, phase="calibration", variant=mode, done=len(feed), total=len(feed), index=position[0],
                     count=position[1])

    if mode == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode in ("int8", "mixed"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        denylist = job.get("float_nodes") or []
        if denylist:
            # A float island needs float kernels beside int8 ones.
            builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        else:
            builtins = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        for key, value in (integer_options or {}).items():
            setattr(conv, key, value)
        io = job.get("io_dtype", "float32")
        if io in ("int8", "uint8"):
            conv.inference_input_type = tf.int8 if io == "int8" else tf.uint8
            conv.inference_output_type = conv.inference_input_type
    elif mode == "int16x8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        builtins = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                    tf.lite.OpsSet.TFLITE_BUILTINS]
    elif mode != "fp32":
        raise ValueError(f"unknown mode {mode}")
    conv.target_spec.supported_ops = builtins
    if job.get("float_nodes"):
        conv = _with_denylist(conv, job["float_nodes"])
    return conv.convert()


def _convert_with_quantizer(req: dict[str, Any], job: dict[str, Any], feed: list[dict[str, np.ndarray]],
                            position: tuple[int, int], fused: dict[str, str | None], entry: dict[str, Any]) -> bytes:
    """The older quantizer first when the model holds fused LSTMs (see fused_lstm.py). It knows fewer ops;
    when it refuses one, the MLIR quantizer builds the file and validation judges what it did to the LSTMs."""
    options = fused_lstm.quantizer_for(fused) if job["mode"] in ("int8", "mixed") else {}
    try:
        return convert_variant(req["saved_model"], job, feed, req.get("status"), position, options)
    except Exception as exc:  # noqa: BLE001 - retried once, then reported per variant by the caller
        if not options:
            raise
        entry["quantizer_note"] = f"the older quantizer refused this model ({_short(exc)[:300]}); used the MLIR quantizer"
    return convert_variant(req["saved_model"], job, feed, req.get("status"), position, {})


def _with_denylist(conv: Any, nodes: list[str]) -> Any:
    import tensorflow as tf

    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(nodes))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=conv.representative_dataset, debug_options=opts
    )
    return _FixedModel(debugger.get_nondebug_quantized_model())


class _FixedModel:
    """Adapter so convert_variant can `return conv.convert()` for a model the debugger already built."""

    def __init__(self, model: bytes) -> None:
        self._model = model

    def convert(self) -> bytes:
        return self._model


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    _silence_tf()
    req = json.loads(Path(argv[0]).read_text())
    result: dict[str, Any] = {"stage": "onnx2tf", "jobs": []}
    out = Path(argv[1])
    try:
        if not Path(req["saved_model"], "saved_model.pb").exists():
            run_onnx2tf(req)
        result["stage"] = "signature"
        write_status(req.get("status"), phase="signature")
        sig = _signature_inputs(req["saved_model"])
        feed, mapping = _calibration_feed(req, sig)
        result["inputs"] = {k: {"shape": list(sig[k]), **v} for k, v in mapping.items()}
        fused = fused_lstm.fusable_lstms(req["onnx"])
        result["lstm"] = fused
        result["stage"] = "tflite"
        jobs = req.get("jobs", [])
        for index, job in enumerate(jobs):
            write_status(req.get("status"), phase="variant", variant=job["mode"], index=index, count=len(jobs))
            # If the converter crashes the process (it can segfault in calibration), the parent still
            # learns which variant did it and which ones were already written.
            out.write_text(json.dumps({**result, "running": job["mode"]}))
            entry: dict[str, Any] = {"mode": job["mode"], "path": job["out"]}
            try:
                _atomic_write(Path(job["out"]), _convert_with_quantizer(req, job, feed, (index, len(jobs)), fused, entry))
                entry["ok"] = True
            except Exception as exc:  # noqa: BLE001 - reported per variant, the parent decides
                entry.update(ok=False, error=_short(exc))
            result["jobs"].append(entry)
        result["ok"] = True
    except SystemExit as exc:
        result.update(ok=False, error=f"onnx2tf exited with status {exc.code}")
    except Exception as exc:  # noqa: BLE001 - the parent turns this into a ConversionError
        result.update(ok=False, error=_short(exc), traceback=traceback.format_exc())
    out.write_text(json.dumps(result))
    return 0


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:4000]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
