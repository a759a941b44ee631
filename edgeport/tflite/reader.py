"""Read a .tflite through the flatbuffer schema that ai-edge-litert ships: ops, dtypes, MACs, bytes.

This is the graph cost model's input and what `edgeport inspect` prints; no hand-written parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import InputError

_TYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "INT16": 2, "INT8": 1,
               "BOOL": 1, "FLOAT64": 8, "INT4": 0.5}
FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64"}
_SMALL_CONST = 64  # element limit for constants/options copied into the inspect data


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime hosts: TensorFlow carries the same generated module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def load_model(path: Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"'{p}' does not exist or is not a file", hint="pass a .tflite file")
    data = p.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InputError(f"'{p}' is not a TFLite flatbuffer (no TFL3 identifier)", hint="pass a .tflite written by a TFLite converter")
    try:
        return _schema().ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:
        raise InputError(f"'{p}' is a damaged TFLite file ({type(exc).__name__})", hint="re-convert the model") from exc


def _names(enum_cls: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def inspect_model(path: Path) -> dict[str, Any]:
    schema = _schema()
    model = load_model(path)
    op_names = _names(schema.BuiltinOperator)
    type_names = _names(schema.TensorType)
    sg = model.subgraphs[0]
    buffers = model.buffers
    raw_file = Path(path).read_bytes() if any(getattr(b, "offset", 0) > 1 for b in buffers) else b""

    def tensor(i: int) -> dict[str, Any]:
        t = sg.tensors[i]
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        dtype = type_names.get(t.type, str(t.type))
        buf = buffers[t.buffer] if t.buffer > 0 else None
        # Constant data sits in the flatbuffer, or after it (offset > 1, size > 0): AI Edge Quantizer
        # writes its quantized weights that way, and a reader that checks `data` alone sees no weights.
        inline = buf is not None and buf.data is not None and len(buf.data) > 0
        appended = buf is not None and getattr(buf, "offset", 0) > 1 and getattr(buf, "size", 0) > 0
        const = inline or appended
        nbytes = int(np.prod(shape) * _TYPE_BYTES.get(dtype, 4)) if shape else _TYPE_BYTES.get(dtype, 4)
        # shape_signature keeps -1 for dynamic dimensions (shape holds the size the converter assumed);
        # the Edge TPU check needs it because the compiler accepts static sizes only.
        signature = [int(d) for d in t.shapeSignature] if t.shapeSignature is not None else list(shape)
        info = {"index": i, "name": _text(t.name), "shape": shape, "dtype": dtype, "const": bool(const), "bytes": nbytes,
                "shape_signature": signature}
        if const and dtype in ("INT32", "INT64") and nbytes <= 8 * _SMALL_CONST:
            # Small integer constants are axes, paddings and strides: per-op constraints depend on them.
            raw = bytes(buf.data) if inline else raw_file[buf.offset : buf.offset + buf.size]
            info["data"] = np.frombuffer(raw, dtype=np.int32 if dtype == "INT32" else np.int64).tolist()
        return info

    ops = []
    for idx, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            name = f"CUSTOM:{_text(code.customCode)}"
        ins = [tensor(i) for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        outs = [tensor(i) for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        ops.append({
            "index": idx, "op": name, "macs": _macs(name, ins, outs),
            "weight_bytes": sum(t["bytes"] for t in ins if t["const"]),
            # the kernel alone (input 1 of a MAC op), without int32 biases and shape constants
            "kernel_bytes": ins[1]["bytes"] if len(ins) > 1 and ins[1]["const"] and _macs(name, ins, outs) else 0,
            "activation_bytes": sum(t["bytes"] for t in ins if not t["const"]) + sum(t["bytes"] for t in outs),
            "dtype": next((t["dtype"] for t in ins if not t["const"]), outs[0]["dtype"] if outs else None),
            "inputs": ins, "outputs": outs, "output_name": outs[0]["name"] if outs else "",
            "options": _options(op.builtinOptions),
        })
    io = lambda idxs: [tensor(i) for i in idxs]  # noqa: E731
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return {
        "path": str(path), "size_bytes": Path(path).stat().st_size,
        "inputs": io(sg.inputs), "outputs": io(sg.outputs), "ops": ops, "op_counts": counts,
        "total_macs": sum(op["macs"] for op in ops),
        "weight_bytes": sum(op["weight_bytes"] for op in ops),
        "kernel_bytes": sum(op["kernel_bytes"] for op in ops),
        "flex_ops": sorted({op["op"] for op in ops if op["op"].startswith("CUSTOM:Flex")}),
        "float_ops": [op["index"] for op in ops if op["dtype"] in FLOAT_TYPES and op["op"] not in ("QUANTIZE", "DEQUANTIZE")],
        "subgraphs": len(model.subgraphs),
        # State an op keeps between invocations (fused LSTMs): an app must reset it between sequences.
        "variable_tensors": sum(1 for t in sg.tensors if t.isVariable),
    }


def _options(opts: Any) -> dict[str, Any]:
    """Builtin options (fused activation, strides, dilation, ...) as plain values, for per-op checks."""
    if opts is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in vars(opts).items():
        if isinstance(value, bool | int | float | str):
            out[key] = value
        elif isinstance(value, list | tuple | np.ndarray) and len(value) <= _SMALL_CONST:
            out[key] = [int(v) if isinstance(v, int | np.integer) else v for v in value]
    return out


def _macs(name: str, ins: list[dict], outs: list[dict]) -> int:
    if not outs or len(ins) < 2:
        return 0
    out = outs[0]["shape"]
    w = ins[1]["shape"]
    n_out = int(np.prod(out)) if out else 0
    if name == "CONV_2D" and len(w) == 4:  # weights OHWI
        return n_out * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D" and len(w) == 4:  # weights 1HWO
        return n_out * w[1] * w[2]
    if name == "TRANSPOSE_CONV" and len(ins) >= 3 and len(ins[1]["shape"]) == 4:
        x = ins[2]["shape"]
        return int(np.prod(x)) * w[0] * w[1] * w[2]
    if name == "FULLY_CONNECTED" and len(w) == 2:
        return n_out * w[1]
    if name == "BATCH_MATMUL" and len(ins[0]["shape"]) >= 2:
        return n_out * ins[0]["shape"][-1]
    if name == "CONV_3D" and len(w) == 5:
        return n_out * w[0] * w[1] * w[2] * w[3]
    if name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM") and len(ins) > 5 and len(w) == 2:
        # four gates per step, each an input and a recurrent mat-vec: outputs * 4 * (input + hidden) per
        # direction; a bidirectional op's output holds both directions already
        recurrent = ins[5]["shape"]
        hidden = recurrent[-1] if len(recurrent) == 2 else 0
        return n_out * 4 * (w[1] + hidden)
    return 0


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def summary(data: dict[str, Any]) -> list[str]:
    lines = [f"{data['path']}  {data['size_bytes'] / 1024:.1f} KiB  {len(data['ops'])} ops  "
             f"{data['total_macs'] / 1e6:.2f} MMACs  weights {data['weight_bytes'] / 1024:.1f} KiB"]
    for t in data["inputs"]:
        lines.append(f"  input   {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}")
    for t in data["outputs"]:
        lines.append(f"  output  {t['name']}: {'x'.join(map(str, t['shape']))} {t['dtype']}")
    lines.append(f"  {'#':>4} {'op':<22} {'dtype':<8} {'MACs':>12} {'weights B':>10} {'act B':>10}")
    for op in data["ops"]:
        lines.append(f"  {op['index']:>4} {op['op']:<22} {str(op['dtype']):<8} {op['macs']:>12,} {op['weight_bytes']:>10,} {op['activation_bytes']:>10,}")
    if data["flex_ops"]:
        lines.append(f"  WARNING Flex (Select TF) ops need the TensorFlow runtime: {', '.join(data['flex_ops'])}")
    return lines
