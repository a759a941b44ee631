"""Float-exact ONNX graph rewrites applied before onnx2tf, each proved on onnxruntime.

A rewrite is a function `(model, ctx) -> list[dict]` that edits an `onnx.ModelProto` (static shapes
inferred) in place and returns one record per place it changed ({"rewrite", "node", ...}). They run
in `REWRITES` order after simplification (export/onnx_prep.py). `apply_rewrites` then runs the
original and the rewritten graph on onnxruntime with seeded inputs: when any output moves by more
than a float tolerance, every rewrite is dropped and a note says so; a rewrite is never trusted on
its own word. Their records land in report.json under `model.graph_rewrites`.

Why rewrites here rather than in the converter: onnx2tf lowers some exporter idioms to TFLite graphs
that are wrong (a Gather of a Concat of LSTM states picks the wrong axis) or that int8 cannot run
(a DIV by a computed value); the same float function in another form avoids both.

Owns: apply_rewrites and the REWRITES order (here), one module per rewrite (gather_concat,
lstm_unroll, l2_normalize, gelu, layer_norm, hard_sigmoid, gru_unroll), the graph look-ups they
share (_graph), and the onnx2tf handlers for the contrib ops they write (onnx2tf_ops, installed in
the onnx2tf worker).
May import: edgeport.export.fused_lstm
lstm_unroll unrolls only the LSTMs that the fused TFLite op cannot take, and asks fused_lstm which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.export.rewrites.gather_concat import gather_of_concat
from edgeport.export.rewrites.gelu import gelu
from edgeport.export.rewrites.gru_unroll import gru_unroll
from edgeport.export.rewrites.hard_sigmoid import hard_sigmoid
from edgeport.export.rewrites.l2_normalize import l2_normalize
from edgeport.export.rewrites.layer_norm import layer_norm
from edgeport.export.rewrites.lstm_unroll import lstm_unroll


@dataclass
class RewriteContext:
    """What rewrites share: tensor shapes and constant values read once from the graph."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, model: Any) -> RewriteContext:
        from onnx import numpy_helper

        shapes: dict[str, tuple[int, ...]] = {}
        for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
            dims = vi.type.tensor_type.shape.dim
            if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
        consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        for name, value in consts.items():
            shapes.setdefault(name, tuple(value.shape))
        return cls(shapes, consts)


Rewrite = Callable[[Any, RewriteContext], list[dict]]
REWRITES: list[tuple[str, Rewrite]] = [("gather_of_concat", gather_of_concat), ("lstm_unroll", lstm_unroll),
                                       ("l2_normalize", l2_normalize),
                                       ("gelu", gelu), ("layer_norm", layer_norm), ("hard_sigmoid", hard_sigmoid),
                                       ("gru_unroll", gru_unroll)]
FLOAT_TOLERANCE = 1e-4  # relative to the output's range: rewrites reorder float math, never approximate


def apply_rewrites(model: Any, notes: list[str], rewrites: list[tuple[str, Rewrite]] | None = None) -> tuple[Any, list[dict]]:
    """Returns (model, records); the model is the original when a rewrite changed what it computes."""
    import onnx

    original = onnx.ModelProto()
    original.CopyFrom(model)
    records: list[dict] = []
    for _name, rewrite in rewrites if rewrites is not None else REWRITES:
        found = rewrite(model, RewriteContext.of(model))
        if found:
            records.extend(found)
            remove_dead_nodes(model)
            model.CopyFrom(_infer(model))
    if not records:
        return model, []
    worst = float_difference(original, model)
    if worst is None or worst > FLOAT_TOLERANCE:
        why = "could not be run on onnxruntime" if worst is None else f"moved an output by {worst:.2g} of its range"
        notes.append(f"graph rewrites dropped: the rewritten graph {why}")
        return original, []
    kinds = sorted({r["rewrite"] for r in records})
    notes.append(f"rewrote {len(records)} place(s) of the ONNX graph before conversion ({', '.join(kinds)}); "
                 f"float outputs agree within {worst:.1g} of their range on onnxruntime")
    for r in records:
        r["max_rel_error"] = worst
    return model, records


def float_difference(a: Any, b: Any, samples: int = 2, seed: int = 0) -> float | None:
    """Largest |a - b| over every output, relative to that output's range in `a`, on seeded inputs."""
    try:
        sa, sb = _session(a), _session(b)
        rng = np.random.default_rng(seed)
        worst = 0.0
        for _ in range(samples):
            feed = {i.name: _random_input(i, rng) for i in sa.get_inputs()}
            for ya, yb in zip(sa.run(None, feed), sb.run(None, feed), strict=True):
                ya, yb = np.asarray(ya, np.float64), np.asarray(yb, np.float64)
                if ya.shape != yb.shape:
                    return float("inf")
                scale = max(float(np.ptp(ya)) if ya.size else 0.0, 1e-6)
                worst = max(worst, float(np.max(np.abs(ya - yb))) / scale if ya.size else 0.0)
        return worst
    except Exception:  # noqa: BLE001 - an unrunnable check means "not proved", never "proved"
        return None


def _session(model: Any):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
               "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
               "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _random_input(info, rng: np.random.Generator) -> np.ndarray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in info.shape]
    dtype = _ORT_DTYPES.get(info.type, np.float32)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(0.0, 1.0, shape).astype(dtype)
    if dtype is np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 4, shape).astype(dtype)


def remove_dead_nodes(model: Any) -> None:
    """Drop nodes whose outputs nothing reads (what a rewrite left behind), until none is left."""
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _infer(model: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes help later rewrites; the float check still guards them
        return model
