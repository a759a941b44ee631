"""ONNX GRU -> its time steps written out as plain ops, every step reading the same weight initializers.

Why: TFLite has no fused GRU op. onnx2tf builds a GRU as a Keras RNN that the TFLite converter lowers
to a WHILE loop: the float model runs, but full int8 crashes the converter in calibration (SIGSEGV,
TF 2.21, with the MLIR and the older quantizer alike) and AI Edge Quantizer cannot quantize inside
the loop. Written out, a GRU is GATHER, FULLY_CONNECTED, ADD, LOGISTIC, TANH, MUL and SUB: every
quantizer handles them, each step's activations get their own calibrated range, and the file holds
one copy of each weight matrix, because every step's Gemm reads the same initializer (the converter
keeps one buffer per constant). Measured against the other int8 routes (onnx2tf's own
unrolling, AEQ, LiteRT Torch) in benchmarks/results/gru_int8.json (benchmarks/bench_gru_int8.py).

Per direction and gate (z, r, n): one Gemm projects the whole input sequence (T*batch rows: one op,
not T) with R's bias folded in where the ONNX definition allows it (all but linear_before_reset's n
bias). Each step is then a Gather of step t per gate, one Gemm of h per gate, and the gate arithmetic
in the ONNX definition's order (linear_before_reset or not). A Gemm per gate, not one split three
ways, gives each gate its own int8 scale and no slicing ops (onnx2tf writes a Split as one
STRIDED_SLICE per piece): on the GruClassifier that was 66 KB instead of 85 KB in int8. A reader that only picks one step of Y (torch's `out[:, -1]`:
Squeeze, Transpose, Gather) reads that step's state directly; otherwise Y is concatenated as ONNX
lays it out. The float math is the same up to summation order; apply_rewrites proves it on
onnxruntime and drops the rewrite when any output moves.

Left as a loop: sequence_lens, clip, activations other than Sigmoid/Tanh, layout=1, non-constant
weights, unknown sequence length, and more than MAX_STEPS steps (the graph grows by 16 ops a step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.export.rewrites._graph import GraphIndex, opset

# 16 ops a step. onnx2tf's time grows faster than its node count: a 128-step GRU(48) took 58 s to
# convert (2,056 ops; fp32 342 KB, int8 499 KB), 256 steps 210 s. Longer sequences keep onnx2tf's loop
# (float only; a PyTorch model still gets LiteRT Torch's int8 under --exporter auto).
MAX_STEPS = 128


def gru_unroll(model: Any, ctx) -> list[dict]:
    ix = GraphIndex(model, ctx)
    done: list[dict] = []
    for node in list(model.graph.node):
        if node.op_type != "GRU":
            continue
        found = eligible(node, ctx)
        if isinstance(found, str):
            continue
        done.append(_Unroller(model, ix, node, found).run())
    return done


def eligible(node: Any, ctx) -> dict[str, Any] | str:
    """The GRU's parameters when this rewrite can write it out, else why it keeps the loop."""
    found = recurrent_params(node, ctx, cell_activations=("Sigmoid", "Tanh"), state_inputs=(5,), max_steps=MAX_STEPS)
    if isinstance(found, str):
        return found
    attrs, inputs, p = found
    return {**p, "linear_before_reset": bool(attrs.get("linear_before_reset", 0)), "initial": inputs[5] or None}


def recurrent_params(node: Any, ctx, *, cell_activations: tuple[str, ...], state_inputs: tuple[int, ...],
                     max_steps: int) -> tuple[dict[str, Any], list[str], dict[str, Any]] | str:
    """What GRU and LSTM unrolling both need of an ONNX RNN node: (attributes, inputs padded to 8, the
    shared parameters), or why it keeps its loop (non-standard activations, clip, layout=1,
    sequence_lens, non-constant weights, unknown shape, too many steps, an initial state of another shape)."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = list(node.input) + [""] * (8 - len(node.input))
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    if acts and acts != list(cell_activations) * dirs or attrs.get("activation_alpha") or attrs.get("activation_beta"):
        return f"activations {', '.join(acts)}"
    if attrs.get("clip"):
        return "clip"
    if int(attrs.get("layout", 0)) != 0:
        return "layout=1"
    if inputs[4]:
        return "sequence_lens input"
    if any(name not in ctx.constants for name in (inputs[1], inputs[2])) or (inputs[3] and inputs[3] not in ctx.constants):
        return "weights are not constants"
    shape = ctx.shapes.get(inputs[0])
    if shape is None or len(shape) != 3 or any(int(d) <= 0 for d in shape):
        return "input shape unknown"
    steps, batch = int(shape[0]), int(shape[1])
    if steps > max_steps:
        return f"{steps} steps (more than {max_steps})"
    hidden = int(attrs.get("hidden_size") or ctx.constants[inputs[2]].shape[-1])
    for index in state_inputs:
        if inputs[index] and ctx.shapes.get(inputs[index]) not in (None, (dirs, batch, hidden)):
            return "initial state shape"
    return attrs, inputs, {
        "steps": steps, "batch": batch, "hidden": hidden, "dirs": dirs, "reverse": direction == "reverse",
        "x": inputs[0], "w": ctx.constants[inputs[1]].astype(np.float32), "r": ctx.constants[inputs[2]].astype(np.float32),
        "b": ctx.constants[inputs[3]].astype(np.float32) if inputs[3] else None}


class _Unroller:
    """Writes one GRU node out; nodes are inserted where the GRU was, in dependency order."""

    def __init__(self, model: Any, ix: GraphIndex, node: Any, p: dict[str, Any]) -> None:
        self.model, self.ix, self.node, self.p = model, ix, node, p
        self.base = node.name or node.output[0]
        self.new: list[Any] = []
        self.count = 0
        self.shared: dict[tuple, str] = {}
        self.modern = opset(model) >= 13  # Unsqueeze takes its axes as an input

    # -- small builders -------------------------------------------------------------------------
    def _name(self, what: str) -> str:
        self.count += 1
        return f"{self.base}/{what}_{self.count}"

    def _const(self, what: str, value: np.ndarray) -> str:
        """A new initializer; integer ones (shapes, axes, step indices) are shared when equal."""
        from onnx import numpy_helper

        value = np.array(value, order="C")
        key = (what, value.dtype.str, value.shape, value.tobytes()) if value.dtype.kind == "i" else None
        if key in self.shared:
            return self.shared[key]
        name = self._name(what)
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        if key is not None:
            self.shared[key] = name
        return name

    def _op(self, op_type: str, inputs: list[str], what: str, **attrs: Any) -> list[str]:
        from onnx import helper

        name = self._name(what)
        self.new.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return [name]

    def _unsqueeze(self, x: str, axes: list[int], what: str) -> str:
        if self.modern:
            return self._op("Unsqueeze", [x, self._const("axes", np.array(axes, np.int64))], what)[0]
        return self._op("Unsqueeze", [x], what, axes=axes)[0]

    # -- the rewrite ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        p = self.p
        steps, batch, hidden = p["steps"], p["batch"], p["hidden"]
        flat = self._op("Reshape", [p["x"], self._const("shape", np.array([steps * batch, -1], np.int64))], "x_rows")[0]
        states: list[list[str]] = []  # per direction, h after each time index t (in time order)
        for d in range(p["dirs"]):
            states.append(self._direction(d, flat))
        outputs = list(self.node.output) + [""] * (2 - len(self.node.output))
        y, y_h = outputs[0], outputs[1]
        picked = None
        if y and (self.ix.readers.get(y) or y in self.ix.graph_outputs):
            picked = self._pick_step(y, states)
            if picked is None:
                self._concat_sequence(y, states)
        if y_h and (self.ix.readers.get(y_h) or y_h in self.ix.graph_outputs):
            lasts = [s[0] if (p["reverse"] or d == 1) else s[-1] for d, s in enumerate(states)]
            pieces = [self._unsqueeze(h, [0], "y_h") for h in lasts]
            self._finish("Concat" if len(pieces) > 1 else "Identity", pieces, y_h, axis=0)
        self._insert()
        return {"rewrite": "gru_unroll", "node": self.node.name, "steps": steps, "directions": p["dirs"],
                "hidden": hidden, "linear_before_reset": p["linear_before_reset"], "ops": len(self.new),
                "picked_step": picked,
                "note": "GRU written out step by step, every step reading one copy of the weights: TFLite has no fused "
                        "GRU op, and onnx2tf's loop form cannot be quantized (the TF converter crashes in int8)"}

    def _direction(self, d: int, flat: str) -> list[str]:
        p = self.p
        steps, batch, hidden = p["steps"], p["batch"], p["hidden"]
        lbr = p["linear_before_reset"]
        w, r = p["w"][d], p["r"][d]
        b = p["b"][d] if p["b"] is not None else np.zeros(6 * hidden, np.float32)
        wb, rb = b[: 3 * hidden].reshape(3, hidden), b[3 * hidden :].reshape(3, hidden)
        # R's biases of z and r (and of n when the reset gate comes first) add to the input side, which is
        # projected once for all steps; only linear_before_reset's R_n bias stays inside the step.
        x_bias = [wb[0] + rb[0], wb[1] + rb[1], wb[2] if lbr else wb[2] + rb[2]]
        shape = self._const("shape", np.array([steps, batch, hidden], np.int64))
        xs = []
        for g, gate in enumerate("zrn"):
            rows = slice(g * hidden, (g + 1) * hidden)
            bias = [self._const(f"b_{gate}", x_bias[g])] if np.any(x_bias[g]) else []  # no all-zero constants
            proj = self._op("Gemm", [flat, self._const(f"W_{gate}", w[rows]), *bias], f"d{d}_x_{gate}", transB=1)[0]
            xs.append(self._op("Reshape", [proj, shape], f"d{d}_x_{gate}_steps")[0])
        r_z, r_r, r_n = (self._const(f"R_{gate}", r[g * hidden : (g + 1) * hidden]) for g, gate in enumerate("zrn"))
        rb_n = self._const("Rb_n", rb[2]) if lbr and np.any(rb[2]) else None
        h = self._initial(d)
        order = range(steps - 1, -1, -1) if (p["reverse"] or d == 1) else range(steps)
        by_time: dict[int, str] = {}
        for t in order:
            at = self._const("t", np.array(t, np.int64))
            x_z, x_r, x_n = (self._op("Gather", [x, at], f"d{d}_t{t}_x_{gate}", axis=0)[0] for x, gate in zip(xs, "zrn", strict=True))
            if h is None:
                h = self._first_step(x_z, x_r, x_n, rb_n, f"d{d}_t{t}")
                by_time[t] = h
                continue
            z = self._gate("Sigmoid", x_z, self._op("Gemm", [h, r_z], f"d{d}_t{t}_h_z", transB=1)[0], f"d{d}_t{t}_z")
            rt = self._gate("Sigmoid", x_r, self._op("Gemm", [h, r_r], f"d{d}_t{t}_h_r", transB=1)[0], f"d{d}_t{t}_r")
            if lbr:
                h_n = self._op("Gemm", [h, r_n, *([rb_n] if rb_n else [])], f"d{d}_t{t}_h_n", transB=1)[0]
                gated = self._op("Mul", [rt, h_n], f"d{d}_t{t}_r_hn")[0]
            else:
                gated = self._op("Gemm", [self._op("Mul", [rt, h], f"d{d}_t{t}_r_h")[0], r_n], f"d{d}_t{t}_rh_n", transB=1)[0]
            n = self._gate("Tanh", x_n, gated, f"d{d}_t{t}_n")
            # (1 - z) * n + z * h, written as n + z * (h - n): one op fewer, same function
            keep = self._op("Mul", [z, self._op("Sub", [h, n], f"d{d}_t{t}_h_minus_n")[0]], f"d{d}_t{t}_z_keep")[0]
            h = self._op("Add", [n, keep], f"d{d}_t{t}_h")[0]
            by_time[t] = h
        return [by_time[t] for t in range(steps)]

    def _first_step(self, x_z: str, x_r: str, x_n: str, rb_n: str | None, what: str) -> str:
        """The step from a zero state, written without it: every h product is zero, so z = sigmoid(x_z),
        n = tanh(x_n [+ r * R_n's bias]) and h = n - z * n (the same floats as n + z * (0 - n)). An
        all-zero state constant is what the TF converter's int16x8 mode gives a scale of 0, and such a
        model aborts at run time."""
        z = self._op("Sigmoid", [x_z], f"{what}_z")[0]
        pre = x_n
        if rb_n is not None:
            rt = self._op("Sigmoid", [x_r], f"{what}_r")[0]
            pre = self._op("Add", [x_n, self._op("Mul", [rt, rb_n], f"{what}_r_hn")[0]], f"{what}_n_in")[0]
        n = self._op("Tanh", [pre], f"{what}_n")[0]
        return self._op("Sub", [n, self._op("Mul", [z, n], f"{what}_z_n")[0]], f"{what}_h")[0]

    def _gate(self, act: str, a: str, b: str, what: str) -> str:
        return self._op(act, [self._op("Add", [a, b], f"{what}_in")[0]], what)[0]

    def _initial(self, d: int) -> str | None:
        """The state before the first step; None when it is zero (see _first_step)."""
        p = self.p
        shape = (p["batch"], p["hidden"])
        if p["initial"] is None:
            return None
        value = self.ix.ctx.constants.get(p["initial"])
        if value is not None:
            value = np.asarray(value, np.float32)[d].reshape(shape)
            return self._const("h0", value) if np.any(value) else None
        return self._op("Gather", [p["initial"], self._const("dir", np.array(d, np.int64))], f"d{d}_h0", axis=0)[0]

    def _pick_step(self, y: str, states: list[list[str]]) -> int | None:
        """When Y's only use is one time step of a one-direction GRU, read that step's state instead:
        Y [T,1,B,H] -> Squeeze(axis 1) -> [Transpose(1,0,2)] -> Gather(scalar k on the time axis)."""
        ix = self.ix
        if len(states) != 1:
            return None
        squeeze = ix.only_reader(y)
        if squeeze is None or squeeze.op_type != "Squeeze" or _axes(ix, squeeze) != [1]:
            return None
        tensor, time_axis = squeeze.output[0], 0
        nxt = ix.only_reader(tensor)
        if nxt is not None and nxt.op_type == "Transpose":
            perm = next((list(a.ints) for a in nxt.attribute if a.name == "perm"), None)
            if perm != [1, 0, 2]:
                return None
            tensor, time_axis, nxt = nxt.output[0], 1, ix.only_reader(nxt.output[0])
        if nxt is None or nxt.op_type != "Gather" or nxt.input[0] != tensor:
            return None
        axis = next((int(a.i) for a in nxt.attribute if a.name == "axis"), 0) % 3
        index = ix.ctx.constants.get(nxt.input[1])
        if axis != time_axis or index is None or index.ndim != 0:
            return None
        k = int(index) % len(states[0])
        self._finish("Identity", [states[0][k]], nxt.output[0])
        self.model.graph.node.remove(nxt)  # the Squeeze/Transpose left unread are dropped as dead nodes
        return k

    def _concat_sequence(self, y: str, states: list[list[str]]) -> None:
        per_dir = [self._op("Concat", [self._unsqueeze(h, [0, 1], "y_step") for h in hs], "y_dir", axis=0)[0]
                   for hs in states]
        self._finish("Concat" if len(per_dir) > 1 else "Identity", per_dir, y, axis=1)

    def _finish(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> None:
        from onnx import helper

        if op_type == "Identity":
            attrs = {}
        self.new.append(helper.make_node(op_type, inputs, [output], name=self._name(f"out_{op_type.lower()}"), **attrs))

    def _insert(self) -> None:
        graph = self.model.graph
        index = next(i for i, n in enumerate(graph.node) if n is self.node)
        graph.node.remove(self.node)
        for offset, new in enumerate(self.new):
            graph.node.insert(index + offset, new)


def _axes(ix: GraphIndex, node: Any) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1] in ix.ctx.constants:
        return [int(v) for v in ix.ctx.constants[node.input[1]].reshape(-1)]
    return None
