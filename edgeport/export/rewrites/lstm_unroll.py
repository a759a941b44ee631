"""ONNX LSTM that cannot become TFLite's fused op -> its time steps written out as plain ops.

Why: an LSTM whose initial state is carried in from a graph input (a streaming VAD's `state`), or
whose final cell state Y_c is read, cannot be UNIDIRECTIONAL_SEQUENCE_LSTM (export/fused_lstm.py:
that op starts from zero and returns no cell state). onnx2tf then builds it as a Keras RNN that the
TFLite converter lowers to a WHILE loop, and full int8 of that loop crashes the converter (SIGSEGV,
TF 2.21). Written out as GATHER, FULLY_CONNECTED, ADD, LOGISTIC, TANH and MUL, every quantizer
handles it, and each step's Gemm reads the same weight initializers, so the file holds one copy.

Only nodes that fused_lstm refuses are touched: the ones it fuses keep fusing. The cell is ONNX's
(gates i, o, f, c in W, R and B):
    i = σ(Xt·Wiᵀ + Ht-1·Riᵀ + Wbi + Rbi), o = σ(...), f = σ(...), c~ = tanh(...)
    Ct = f ⊙ Ct-1 + i ⊙ c~,  Ht = o ⊙ tanh(Ct)
Per direction and gate one Gemm projects the whole input sequence with both biases; each step is a
Gather of step t per gate and one Gemm of h per gate (its own int8 scale, no slicing ops). Y, Y_h and
Y_c are laid out as ONNX does ([T, dirs, B, H] and [dirs, B, H]). A zero initial state is left out of the arithmetic (see gru_unroll._first_step); a
non-constant one is gathered per direction. apply_rewrites proves the float math on onnxruntime.

Left to onnx2tf: peepholes, clip, input_forget, activations other than Sigmoid/Tanh/Tanh,
sequence_lens, layout=1 (onnxruntime cannot run it, so apply_rewrites could not prove it; torch
exports layout 0), non-constant weights, unknown shapes and more than MAX_STEPS steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeport.export.rewrites._graph import GraphIndex
from edgeport.export.rewrites.gru_unroll import _Unroller, recurrent_params

# 20 ops a step and direction; as for the GRU, onnx2tf's conversion time grows faster than the graph.
MAX_STEPS = 128
GATES = "iofc"  # ONNX's order of the four gates in W, R and B


def lstm_unroll(model: Any, ctx) -> list[dict]:
    from edgeport.export.fused_lstm import fusable_in_model

    fused = fusable_in_model(model)
    ix = GraphIndex(model, ctx)
    done: list[dict] = []
    for node in list(model.graph.node):
        if node.op_type != "LSTM" or fused.get(node.name) is None:
            continue  # a fusable LSTM becomes UNIDIRECTIONAL_SEQUENCE_LSTM in the worker
        found = eligible(node, ctx)
        if isinstance(found, str):
            continue
        record = _LstmUnroller(model, ix, node, found).run()
        record["why_not_fused"] = fused[node.name]
        done.append(record)
    return done


def eligible(node: Any, ctx) -> dict[str, Any] | str:
    """The LSTM's parameters when this rewrite can write it out, else why it keeps the loop."""
    if any(a.name == "input_forget" and a.i for a in node.attribute):
        return "input_forget"
    if len(node.input) > 7 and node.input[7]:
        return "peephole weights"
    found = recurrent_params(node, ctx, cell_activations=("Sigmoid", "Tanh", "Tanh"), state_inputs=(5, 6),
                             max_steps=MAX_STEPS)
    if isinstance(found, str):
        return found
    _, inputs, p = found
    return {**p, "initial": inputs[5] or None, "initial_c": inputs[6] or None}


class _LstmUnroller(_Unroller):
    """gru_unroll's builders (names, shared integer constants, insertion in place), LSTM steps."""

    def run(self) -> dict[str, Any]:
        p = self.p
        steps, batch, hidden = p["steps"], p["batch"], p["hidden"]
        flat = self._op("Reshape", [p["x"], self._const("shape", np.array([steps * batch, -1], np.int64))], "x_rows")[0]
        hs: list[list[str]] = []  # per direction, h after each time index t (in time order)
        cs: list[list[str]] = []
        for d in range(p["dirs"]):
            h_d, c_d = self._direction(d, flat)
            hs.append(h_d)
            cs.append(c_d)
        outputs = list(self.node.output) + [""] * (3 - len(self.node.output))
        y, y_h, y_c = outputs[:3]
        picked = None
        if self._read(y):
            picked = self._pick_step(y, hs)
            if picked is None:
                self._sequence(y, hs)
        for name, per_dir in ((y_h, hs), (y_c, cs)):
            if self._read(name):
                lasts = [s[0] if (p["reverse"] or d == 1) else s[-1] for d, s in enumerate(per_dir)]
                pieces = [self._unsqueeze(v, [0], "final") for v in lasts]
                self._finish("Concat" if len(pieces) > 1 else "Identity", pieces, name, axis=0)
        self._insert()
        return {"rewrite": "lstm_unroll", "node": self.node.name, "steps": steps, "directions": p["dirs"],
                "hidden": hidden, "ops": len(self.new), "picked_step": picked}

    def _read(self, name: str) -> bool:
        return bool(name) and bool(self.ix.readers.get(name) or name in self.ix.graph_outputs)

    def _direction(self, d: int, flat: str) -> tuple[list[str], list[str]]:
        p = self.p
        steps, batch, hidden = p["steps"], p["batch"], p["hidden"]
        w, r = p["w"][d], p["r"][d]
        b = p["b"][d] if p["b"] is not None else np.zeros(8 * hidden, np.float32)
        bias = b[: 4 * hidden] + b[4 * hidden :]
        shape = self._const("shape", np.array([steps, batch, hidden], np.int64))
        xs, rs = {}, {}
        for g, gate in enumerate(GATES):
            rows = slice(g * hidden, (g + 1) * hidden)
            b_g = [self._const(f"b_{gate}", bias[rows])] if np.any(bias[rows]) else []  # no all-zero constants
            proj = self._op("Gemm", [flat, self._const(f"W_{gate}", w[rows]), *b_g], f"d{d}_x_{gate}", transB=1)[0]
            xs[gate] = self._op("Reshape", [proj, shape], f"d{d}_x_{gate}_steps")[0]
            rs[gate] = self._const(f"R_{gate}", r[rows])
        h, c = self._initial(d, p["initial"], "h0"), self._initial(d, p["initial_c"], "c0")
        order = range(steps - 1, -1, -1) if (p["reverse"] or d == 1) else range(steps)
        h_at: dict[int, str] = {}
        c_at: dict[int, str] = {}
        for t in order:
            at = self._const("t", np.array(t, np.int64))
            pre = {}
            for gate in GATES:
                x_g = self._op("Gather", [xs[gate], at], f"d{d}_t{t}_x_{gate}", axis=0)[0]
                if h is None:  # a zero state: every h product is zero (and a zero constant breaks int16x8)
                    pre[gate] = x_g
                else:
                    h_g = self._op("Gemm", [h, rs[gate]], f"d{d}_t{t}_h_{gate}", transB=1)[0]
                    pre[gate] = self._op("Add", [x_g, h_g], f"d{d}_t{t}_{gate}_in")[0]
            i, o, f = (self._op("Sigmoid", [pre[g]], f"d{d}_t{t}_{g}")[0] for g in "iof")
            cand = self._op("Tanh", [pre["c"]], f"d{d}_t{t}_cand")[0]
            new_c = self._op("Mul", [i, cand], f"d{d}_t{t}_i_cand")[0]
            if c is not None:
                new_c = self._op("Add", [self._op("Mul", [f, c], f"d{d}_t{t}_f_c")[0], new_c], f"d{d}_t{t}_c")[0]
            c = new_c
            h = self._op("Mul", [o, self._op("Tanh", [c], f"d{d}_t{t}_tanh_c")[0]], f"d{d}_t{t}_h")[0]
            h_at[t], c_at[t] = h, c
        return [h_at[t] for t in range(steps)], [c_at[t] for t in range(steps)]

    def _initial(self, d: int, name: str | None, what: str) -> str | None:
        """h or c before the first step of direction d; None when it is zero."""
        p = self.p
        if name is None:
            return None
        value = self.ix.ctx.constants.get(name)
        if value is not None:
            value = np.asarray(value, np.float32)[d].reshape(p["batch"], p["hidden"])
            return self._const(what, value) if np.any(value) else None
        return self._op("Gather", [name, self._const("dir", np.array(d, np.int64))], f"d{d}_{what}", axis=0)[0]

    def _sequence(self, y: str, hs: list[list[str]]) -> None:
        """Y as ONNX lays it out: [T, dirs, B, H]."""
        per_dir = [self._op("Concat", [self._unsqueeze(h, [0, 1], "y_step") for h in steps], "y_dir", axis=0)[0]
                   for steps in hs]
        self._finish("Concat" if len(per_dir) > 1 else "Identity", per_dir, y, axis=1)
