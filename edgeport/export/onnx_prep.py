"""Normalise an ONNX file so onnx2tf converts it: static shapes, clean names, a usable opset.

Files exported by Paddle, tf2onnx and older torch carry quirks onnx2tf chokes on: node names that
TensorFlow rejects as scope names (`Softmax@0`), nodes without names, initializers listed as graph
inputs, old opsets, dynamic axes. Each fix is recorded as a note in the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.errors import ConversionError, InputError, cause_line
from edgeport.export.rewrites import apply_rewrites
from edgeport.types import TensorSpec

MIN_OPSET = 11
TARGET_OPSET_FOR_OLD = 13
_SAFE = re.compile(r"[^A-Za-z0-9_.>/-]")
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
                11: "float64"}


@dataclass(frozen=True)
class PreparedOnnx:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int
    notes: tuple[str, ...] = ()
    original_node_names: dict[str, str] = field(default_factory=dict)  # new name -> name in the source file
    pool_rewrites: tuple[dict, ...] = ()  # padded max-pools rewritten for int8 under XNNPACK (pool_padding.py)
    graph_rewrites: tuple[dict, ...] = ()  # float-exact rewrites proved on onnxruntime (export/rewrites/)
    # inputs the TFLite model keeps as they are (a tf2onnx file's NHWC inputs; see tf2onnx_layout.py)
    keep_layout_inputs: tuple[str, ...] = ()


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """'[NAME=]1x3x224x224' -> (NAME or None, (1, 3, 224, 224))."""
    raw = text.strip()
    name, sep, dims = raw.rpartition("=")
    if not sep:
        name, dims = "", raw
    parts = dims.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape '{text}' is not a shape", hint="use [NAME=]DxDxD with positive integers, e.g. x=1x3x224x224")
    if len(shape) > 8:
        raise InputError(f"--input-shape '{text}' has {len(shape)} dims", hint="TFLite supports at most 8 dims")
    return (name.strip() or None), shape


def prepare_onnx(src: Path, dst: Path, input_shapes: dict[str | None, tuple[int, ...]] | None = None,
                 simplify: bool = True, rewrite_pools: bool = True, constants: dict | None = None) -> PreparedOnnx:
    """`constants`: `--const` values for graph inputs, folded before shapes are fixed and onnxslim
    runs (export/onnx_constants.py), so what depends on them folds too."""
    import onnx

    model = _load(src)
    notes: list[str] = []
    # Upgrade before anything edits the graph: in IR version 3 every initializer must also be a graph
    # input, and ONNX's version converter rejects a model whose initializer inputs were already removed
    # ("Input ... is undefined!" on the Caffe2-exported model-zoo ResNet-50, opset 9).
    model = _upgrade_opset(model, notes)
    graph = model.graph
    init_names = {i.name for i in graph.initializer}
    stale = [i for i in graph.input if i.name in init_names]
    for item in stale:
        graph.input.remove(item)
    if stale:
        notes.append(f"removed {len(stale)} initializers listed as graph inputs (older exporters do this)")
    if constants:
        from edgeport.export.onnx_constants import fold_constants

        notes.extend(fold_constants(model, constants))
    _fix_input_shapes(graph, dict(input_shapes or {}), notes)
    model, keep_layout = _channels_last_export(model, notes)
    renamed = _rename_nodes(model.graph, notes)
    _check_ops(model.graph)
    if simplify:
        model = _simplify(model, notes)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are a convenience for the report only
        notes.append("ONNX shape inference failed; output shapes are read from the converted model")
    model, rewrites = apply_rewrites(model, notes)
    pools = _rewrite_pools(model, notes, renamed) if rewrite_pools else []
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return PreparedOnnx(
        path=dst,
        inputs=tuple(_spec(v) for v in model.graph.input),
        outputs=tuple(_spec(v) for v in model.graph.output),
        opset=_opset(model),
        notes=tuple(notes),
        original_node_names=renamed,
        pool_rewrites=tuple(pools),
        graph_rewrites=tuple({**r, "node": renamed.get(r["node"], r["node"])} for r in rewrites),
        keep_layout_inputs=tuple(keep_layout),
    )


def _channels_last_export(model, notes: list[str]):
    """A tf2onnx file: Transposes pushed through by onnxruntime so the graph reads as NCHW, and its NHWC
    inputs kept as they are (export/tf2onnx_layout.py)."""
    from edgeport.export import tf2onnx_layout

    if not tf2onnx_layout.is_tf2onnx(model):
        return model, []
    _check_prequantized(model.graph)  # onnxruntime would happily optimise a quantized graph first
    keep = tf2onnx_layout.channels_last_inputs(model)
    try:
        model, removed = tf2onnx_layout.push_transposes(model)
    except Exception as exc:  # noqa: BLE001 - the float check still judges the unoptimised graph
        notes.append(f"tf2onnx export: onnxruntime's transpose optimizer failed ({cause_line(exc, limit=120)})")
        removed = 0
    notes.append(f"exported by {model.producer_name or 'tf2onnx'} (channels-last): onnxruntime's transpose optimizer "
                 f"removed {removed} Transpose node(s)"
                 + (f"; NHWC input(s) {', '.join(keep)} keep their layout in the TFLite model" if keep else ""))
    return model, keep


def _rewrite_pools(model, notes: list[str], renamed: dict[str, str]) -> list[dict]:
    """Padded / ceil-mode max-pools -> float-identical forms without the float32.min pad value that
    ruins their int8 scales and makes XNNPACK refuse the model (see pool_padding.py)."""
    import onnx

    from edgeport.export.pool_padding import rewrite_padded_maxpools
    from edgeport.export.trace_names import module_path

    pools = []
    for p in rewrite_padded_maxpools(model):
        row = p.to_dict()
        row["node"] = renamed.get(p.node, p.node)
        row["pytorch_module"] = module_path(row["node"])
        pools.append(row)
    if pools:
        kinds = ", ".join(f"{p['pytorch_module'] or p['node']} ({p['kind']})" for p in pools)
        notes.append(f"rewrote {len(pools)} padded max-pool(s) so int8 keeps real scales and XNNPACK accepts them: {kinds}")
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            model.CopyFrom(inferred)
        except Exception:  # noqa: BLE001 - shapes of the helper nodes are a convenience
            pass
    return pools


def _load(src: Path):
    import onnx

    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise InputError(f"'{src}' is not a readable ONNX file ({cause_line(exc, limit=200)})",
                         hint="the file is truncated or corrupt; re-export it") from exc
    if not model.graph.node:
        raise InputError(f"ONNX file '{src}' has an empty graph", hint="re-export the model")
    if any(t.data_location == 1 for t in model.graph.initializer):
        raise InputError(f"ONNX file '{src}' keeps weights in external data files that were not found",
                         hint="keep the .data file next to the .onnx, or re-export with weights embedded")
    return model


def _dims(value_info) -> list[int | str]:
    dims: list[int | str] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or "?")
    return dims


def _fix_input_shapes(graph, given: dict[str | None, tuple[int, ...]], notes: list[str]) -> None:
    inputs = list(graph.input)
    names = [i.name for i in inputs]
    if None in given:
        if len(inputs) != 1:
            raise InputError(f"--input-shape without a name, but the model has {len(inputs)} inputs ({', '.join(names)})",
                             hint="name each one: --input-shape NAME=1x3x224x224")
        given[names[0]] = given.pop(None)
    unknown = [n for n in given if n not in names]
    if unknown:
        raise InputError(f"--input-shape names unknown input '{unknown[0]}'", hint=f"the model's inputs are: {', '.join(names)}")
    for vi in inputs:
        dims = _dims(vi)
        if vi.name in given:
            shape = given[vi.name]
            if len(shape) != len(dims):
                raise InputError(f"--input-shape {vi.name} has {len(shape)} dims but the model input has {len(dims)} ({_fmt(dims)})",
                                 hint=f"give {len(dims)} dims")
            clash = [i for i, d in enumerate(dims) if isinstance(d, int) and d != shape[i]]
            if clash:
                raise InputError(f"--input-shape {vi.name}={_fmt(shape)} contradicts the model's fixed shape {_fmt(dims)}",
                                 hint="only dynamic dims can be set; drop --input-shape or match the fixed dims")
            if any(not isinstance(d, int) for d in dims):
                notes.append(f"input '{vi.name}' dynamic shape {_fmt(dims)} fixed to {_fmt(shape)}")
        elif all(isinstance(d, int) for d in dims):
            continue
        elif all(isinstance(d, int) for d in dims[1:]):
            shape = (1, *dims[1:])
            notes.append(f"input '{vi.name}' dynamic batch dim '{dims[0]}' fixed to 1")
        else:
            raise InputError(f"input '{vi.name}' has dynamic dims {_fmt(dims)} and TFLite needs static shapes",
                             hint=f"pass --input-shape {vi.name}={_example(dims)} with numbers for {', '.join(_dynamic_names(dims))}")
        for d, value in zip(vi.type.tensor_type.shape.dim, shape, strict=True):
            d.Clear()
            d.dim_value = int(value)


def _example(dims: list[int | str]) -> str:
    return "x".join(str(d) if isinstance(d, int) else ("1" if i == 0 else str(d).upper()) for i, d in enumerate(dims))


def _dynamic_names(dims: list[int | str]) -> list[str]:
    return [str(d).upper() for i, d in enumerate(dims) if i > 0 and not isinstance(d, int)]


def _fmt(dims) -> str:
    return "x".join(str(d) for d in dims)


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _upgrade_opset(model, notes: list[str]):
    from onnx import version_converter

    opset = _opset(model)
    if opset >= MIN_OPSET:
        return model
    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET_FOR_OLD)
    except Exception as exc:
        raise InputError(f"ONNX opset {opset} is too old for onnx2tf and could not be upgraded ({cause_line(exc, limit=150)})",
                         hint=f"re-export the model at opset >= {MIN_OPSET}") from exc
    notes.append(f"upgraded opset {opset} -> {TARGET_OPSET_FOR_OLD}")
    return upgraded


def _rename_nodes(graph, notes: list[str]) -> dict[str, str]:
    """Give every node a unique TensorFlow-safe name; returns new -> original."""
    seen: set[str] = set()
    renamed: dict[str, str] = {}
    changed = 0
    for i, node in enumerate(graph.node):
        original = node.name
        name = _SAFE.sub("_", original) if original else f"{node.op_type}_{i}"
        if not re.match(r"[A-Za-z0-9.]", name):
            name = f"n{name}"
        base, k = name, 1
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        if name != original:
            changed += 1
            node.name = name
        renamed[name] = original or name
    if changed:
        notes.append(f"renamed {changed} nodes to TensorFlow-safe unique names")
    return renamed


def supported_ops() -> set[str]:
    """onnx2tf's op handlers, one module each; found without importing onnx2tf (it imports TF)."""
    import importlib.util

    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("onnx2tf is not installed", hint="run the set-up in README.md")
    ops_dir = Path(list(spec.submodule_search_locations)[0]) / "ops"
    return {p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_")}


# Ops that onnxruntime.quantization writes (dynamic: DynamicQuantizeLinear + ConvInteger/MatMulInteger;
# static QOperator: QLinear*; com.microsoft's fused quantized kernels). Such a file has already lost its
# float weights, so edgeport cannot calibrate, compare or re-quantize it.
PREQUANTIZED_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"}
_MS_QUANTIZED = re.compile(r"^(Q[A-Z]|DynamicQuantize|.*Integer|.*QuantizeLinear$)")


def _check_prequantized(graph) -> None:
    found = [n for n in graph.node if n.op_type in PREQUANTIZED_OPS
             or (n.domain == "com.microsoft" and _MS_QUANTIZED.match(n.op_type))]
    if found:
        ops = ", ".join(sorted({(f"{n.domain}::" if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in found}))
        raise InputError(f"this ONNX file is already quantized by onnxruntime ({len(found)} nodes: {ops}; e.g. node "
                         f"'{found[0].name}'), so its float weights are gone",
                         hint="pass the float ONNX export (before onnxruntime.quantization); edgeport quantizes it "
                              "for the device and checks it against the float model")


def _check_ops(graph) -> None:
    _check_prequantized(graph)
    known = supported_ops()
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") and node.op_type not in known:
            raise InputError(f"node '{node.name}' uses custom op '{node.domain}::{node.op_type}' that TFLite cannot run",
                             hint="export without custom ops (e.g. a different opset or a plain-op rewrite of that layer)")
        if node.op_type not in known:
            raise InputError(f"ONNX op '{node.op_type}' (node '{node.name}') is not supported by the ONNX->TFLite converter",
                             hint="rewrite that layer with supported ops or export at another opset")


def _simplify(model, notes: list[str]):
    try:
        import onnxslim

        slim = onnxslim.slim(model)
    except Exception as exc:  # noqa: BLE001 - simplification is an optimisation, not a requirement
        notes.append(f"onnxslim simplification skipped ({str(exc).splitlines()[0][:120]})")
        return model
    return slim if slim is not None else model


def _spec(vi) -> TensorSpec:
    dims = _dims(vi)
    shape = tuple(d if isinstance(d, int) else -1 for d in dims)
    return TensorSpec(vi.name, shape, _ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "float32"))
