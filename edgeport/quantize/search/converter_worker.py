"""The TF-converter builder's child process: per-layer int8 sensitivity and the converter mixed search.

Ranks layers by what keeping them in float does to the model's FINAL outputs on real data, not by
the debugger's local rmse/scale alone (an outlier channel inflates a tensor's scale, so its local
error looks small while it ruins accuracy). A candidate unit is an op plus the quantized ops that
consume its output (candidates.closure), so the tensor between them can really stay float. The
fewest ranked units that fit are found by refine.smallest_prefix; on a float-tail profile the
candidates are rules.tail instead.
Usage: python -m edgeport.quantize.search.converter_worker REQUEST.json RESULT.json
       python -m edgeport.quantize.search.converter_worker score REQUEST.json UNITS.json RESULT.json (fanout)
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.progress import write_status
from edgeport.quantize.search.budget import fits, metric
from edgeport.quantize.search.candidates import closure
from edgeport.quantize.search.refine import smallest_prefix
from edgeport.quantize.search.rows import converter_row
from edgeport.quantize.search.rules import TAIL, tail


def _as_input(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float32) if value.dtype.kind == "f" else value  # token ids stay integers


def _converter(saved_model: str, feed: list[dict[str, np.ndarray]], io_dtype: str) -> Any:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    keys = list(feed[0])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([_as_input(s[k]) for k in keys] for s in feed)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    if io_dtype in ("int8", "uint8"):
        conv.inference_input_type = tf.int8 if io_dtype == "int8" else tf.uint8
        conv.inference_output_type = conv.inference_input_type
    return conv


class Evaluator:
    """Runs candidate models on validation data and scores them against the float reference."""

    def __init__(self, req: dict[str, Any]) -> None:
        data = np.load(req["val_inputs"])
        self.inputs = {k: data[k] for k in data.files}
        refs = np.load(req["references"])
        self.refs = [refs[f"r{i}"] for i in range(len(refs.files))]
        self.labels = np.load(req["labels"]) if req.get("labels") else None
        self.threads = int(req.get("threads", 1))
        self.budget = req.get("budget") or {}

    def outputs(self, model: bytes, limit: int | None = None) -> list[np.ndarray] | None:
        """Candidate outputs from a throwaway process: an int8 kernel that aborts (a quantized DIV at
        its zero point, a multiplier out of range) must fail the candidate, not the search."""
        from edgeport.validate.run import run_tflite

        n = len(next(iter(self.inputs.values())))
        n = min(n, limit) if limit else n
        data = {k: v[:n] for k, v in self.inputs.items()}
        with tempfile.TemporaryDirectory(prefix="edgeport-cand-") as tmp:
            path = Path(tmp, "candidate.tflite")
            path.write_bytes(model)
            run = run_tflite(path, data, {k: {"source": k, "perm": None} for k in data},
                             [r[:n] for r in self.refs], threads=self.threads, runs=0)
        return run.outputs

    def score(self, model: bytes, limit: int | None = None) -> dict[str, Any]:
        outs = self.outputs(model, limit)
        if outs is None:
            return {"ok": False, "accuracy": 0.0 if self.labels is not None else None, "top1": 0.0, "snr_db": None}
        if any(not np.all(np.isfinite(o)) for o in outs):
            return {"ok": False, "accuracy": 0.0 if self.labels is not None else None, "top1": 0.0, "snr_db": None}
        from edgeport.validate.metrics import compare_output

        # every output's SNR, the worst one decides, as in the verdict (99 dB stands for an exact output)
        snr = min(min(compare_output("o", ref_i[: len(got_i)], got_i).snr_db, 99.0)
                  for ref_i, got_i in zip(self.refs, outs, strict=False))
        ref = self.refs[0][: len(outs[0])].astype(np.float64)
        got = outs[0].astype(np.float64)
        res: dict[str, Any] = {"ok": True, "snr_db": round(snr, 3) if math.isfinite(snr) else -99.0, "top1": None,
                               "accuracy": None}
        from edgeport.validate.task_score import objective

        labels = self.labels[: len(outs[0])] if self.labels is not None else None
        task = objective(self.budget, [r[: len(outs[0])] for r in self.refs], outs, labels)
        if task is not None:  # ctc/detect/embed/segment: the task metric ranks and decides
            res["task_ok"], res["task"] = task
        if ref.ndim == 2 and ref.shape[1] > 1:
            res["top1"] = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
            if self.labels is not None:
                res["accuracy"] = float(np.mean(np.argmax(got, 1) == self.labels[: len(got)]))
        return res


def _graph(model: bytes) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Ops in execution order (output tensor name, type, dtype) and tensor -> consumer outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=model)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops, consumers = [], {}
    producers = {}
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op-level view the interpreter offers
        outs = [tensors[i]["name"] for i in op["outputs"] if i >= 0]
        for name in outs:
            producers[name] = op["index"]
        ops.append({"index": op["index"], "op": op["op_name"], "outputs": outs,
                    "inputs": [tensors[i]["name"] for i in op["inputs"] if i >= 0 and i in tensors]})
    for op in ops:
        for name in op["inputs"]:
            if name in producers:
                consumers.setdefault(name, []).extend(op["outputs"][:1])
    return ops, consumers


def _time(model: bytes, threads: int, runs: int = 30) -> float | None:
    """Host p50 of a candidate, or None when the candidate cannot run at all (its score says why)."""
    try:
        return _time_or_raise(model, threads, runs)
    except (RuntimeError, ValueError):
        return None


def _time_or_raise(model: bytes, threads: int, runs: int) -> float:
    from edgeport.validate.run import run_tflite

    with tempfile.TemporaryDirectory(prefix="edgeport-cand-") as tmp:
        path = Path(tmp, "candidate.tflite")
        path.write_bytes(model)
        run = run_tflite(path, None, {}, None, threads=threads, runs=runs, warmup=5)
    if run.latency is None:
        raise RuntimeError(run.error or "candidate did not run")
    return float(run.latency.p50_ms)


def _stats_by_tensor(debugger: Any) -> dict[str, dict[str, float]]:
    """Local error stats keyed by the quantized op's output tensor name, read through the debugger's
    public CSV dump (its in-memory keys carry NumericVerify/ prefixes and index suffixes)."""
    import csv
    import io

    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    out = {}
    for row in csv.DictReader(buf):
        out[row["tensor_name"]] = {k: float(v) for k, v in row.items()
                                   if k not in ("tensor_name", "op_name") and v not in ("", None)}
    return out


def setup(req: dict[str, Any]) -> tuple[Any, list[dict[str, np.ndarray]], Any]:
    """Converter (calibration feed attached) and the function that builds a candidate from it: the
    search and each candidate-scoring process (edgeport.quantize.search.fanout) start from the same request."""
    import tensorflow as tf

    calib = np.load(req["calibration"])
    feed = [{k: calib[k][i : i + 1] for k in calib.files} for i in range(len(calib[calib.files[0]]))]
    conv = _converter(req["saved_model"], feed, req.get("io_dtype", "float32"))

    def build(nodes: list[str]) -> bytes:
        opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(nodes))
        dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=conv.representative_dataset,
                                                        debug_options=opts)
        return dbg.get_nondebug_quantized_model()

    return conv, feed, build


def search(req: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    conv, feed, build = setup(req)
    ev = Evaluator(req)
    status = req.get("status")
    write_status(status, phase="int8", detail="int8 model and per-layer statistics")
    debug_feed = feed[: min(len(feed), 32)]
    keys = list(feed[0])
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=lambda: ([_as_input(s[k]) for k in keys] for s in debug_feed))
    try:
        if req.get("skip_local_stats"):
            raise RuntimeError("the int8 model aborts on TensorFlow's builtin kernels (probed in a separate process)")
        debugger.run()
        stats = _stats_by_tensor(debugger)
        local_note = None
    except RuntimeError as exc:
        # The debug model itself can abort (e.g. an int8 DIV at its zero point): rank by final effect only.
        stats, local_note = {}, f"local per-layer statistics unavailable: {str(exc).splitlines()[0][:160]}"

    int8_model = build([])
    forced, forced_note = ([], None) if req.get("float_layers") == TAIL else _xnnpack_refused(int8_model, build, ev.threads)
    ops, consumers = _graph(int8_model)
    skip = {"QUANTIZE", "DEQUANTIZE"}
    order = [o["outputs"][0] for o in ops if o["outputs"] and o["op"] not in skip and (not stats or o["outputs"][0] in stats)]
    quantizable = set(order)
    op_type = {o["outputs"][0]: o["op"] for o in ops if o["outputs"]}
    limit = int(req.get("probe_samples", 200))
    base_model = build(forced) if forced else int8_model
    base = ev.score(base_model, limit)
    full_int8 = ev.score(int8_model)
    rows = [converter_row(name, op_type.get(name), closure(name, consumers, op_type, quantizable), stats.get(name))
            for name in order]
    policy = req.get("float_layers", "allow")
    budget = req["budget"]
    result: dict[str, Any] = {"int8": full_int8, "layers": rows, "curve": [], "kept": [], "policy": policy,
                              "notes": [n for n in (local_note, forced_note) if n], "xnnpack_forced": forced}
    result["curve"].append({"float_ops": 0, "kept": [], **full_int8, "size_bytes": len(int8_model),
                            "host_p50_ms": _time(int8_model, ev.threads)})
    if req.get("diagnose_only"):
        # `convert --quant int8 --diagnose`: the per-layer table for the plain int8 model, no search.
        _score_units(rows, ev, build, base, limit, req, result["notes"], status)
        result.update(final="int8", stopped="diagnosis only (no search)")
        Path(req["out"]).write_bytes(int8_model)
        return result
    if fits(full_int8, budget):
        result.update(final="int8", stopped="int8 already fits the accuracy budget")
        Path(req["out"]).write_bytes(int8_model)
        return result
    if forced:
        forced_score = ev.score(base_model)
        result["curve"].append({"float_ops": len(forced), "kept": forced, **forced_score, "size_bytes": len(base_model),
                                "host_p50_ms": _time(base_model, ev.threads), "note": "only the ops XNNPACK refuses in float"})
        if fits(forced_score, budget):
            result.update(final="mixed", stopped="budget met with only the ops XNNPACK refuses kept in float", kept=forced)
            _score_units(rows, ev, build, base, limit, req, result["notes"], status)
            Path(req["out"]).write_bytes(base_model)
            return result
    ranked_units: list[list[str]] = []
    if policy == TAIL:
        # Edge TPU: one float island at the end of the graph (the CPU runs it after the TPU segment).
        def nodes_for(k: int) -> list[str]:
            return tail(order, k)
        n_max = len(order)
    else:
        _score_units(rows, ev, build, base, limit, req, result["notes"], status)
        # Final-output effect first; when no single unit helps (error spread over many layers, as in
        # attention blocks) the local error orders the rest.
        ranked = sorted(rows, key=lambda r: (-r["gain"], -(r["snr_gain_db"] or 0), -(r["rmse_over_scale"] or 0)))
        for rank, row in enumerate(ranked):
            row["rank"] = rank + 1
        ranked_units = [r["unit"] for r in ranked]

        def nodes_for(k: int) -> list[str]:  # the ops XNNPACK refuses stay float in every candidate
            return list(dict.fromkeys([*forced, *(n for unit in ranked_units[:k] for n in unit)]))
        n_max = len(ranked_units)
    state = {"size": len(int8_model), "ms": result["curve"][0]["host_p50_ms"], "attempts": 0}

    def attempt(k: int) -> tuple[bool, list[str], bytes]:
        nodes = nodes_for(k)
        state["attempts"] += 1
        write_status(status, phase="search", attempt=state["attempts"], max_attempts=_max_attempts(n_max), units=k,
                     max_units=n_max, best=_best_text(result["curve"], budget))
        model = build(nodes)
        score = ev.score(model)
        size, ms = len(model), _time(model, ev.threads)
        result["curve"].append({"float_ops": len(nodes), "units": k, "kept": nodes, **score, "size_bytes": size,
                                "host_p50_ms": ms, "size_cost_bytes": size - state["size"],
                                "latency_cost_ms": None if ms is None or state["ms"] is None else round(ms - state["ms"], 4)})
        state.update(size=size, ms=ms)
        return fits(score, budget), nodes, model

    found = _smallest_k(attempt, n_max)
    if found is None:
        result.update(final=None, stopped=f"even {n_max} float unit(s) did not meet the budget")
        best = max(result["curve"], key=lambda c: metric(c) if c["ok"] else -1)
        final_nodes = best["kept"]
        final_model = build(final_nodes) if final_nodes else int8_model
    else:
        final_nodes, final_model = found
        if policy != TAIL:
            final_nodes, final_model = _shrink(final_nodes, final_model, ranked_units, build, ev, budget, result, status)
        result.update(final="mixed", stopped="budget met")
    result["kept"] = final_nodes
    Path(req["out"]).write_bytes(final_model)
    return result


def _max_attempts(n_max: int) -> int:
    """Most candidates _smallest_k can build for n_max units: doubling, the n_max try, bisection."""
    doubling = max(1, n_max.bit_length())
    return doubling + 1 + max(0, (n_max - 1).bit_length())


def _best_text(curve: list[dict[str, Any]], budget: dict[str, Any]) -> str:
    """The best candidate so far, for the progress line."""
    fitting = [c for c in curve if fits(c, budget)]
    if fitting:
        best = min(fitting, key=lambda c: c["float_ops"])
        return f"best so far: {best['float_ops']} float op(s) meet the budget"
    scored = [c for c in curve if c["ok"]]
    if not scored:
        return "no candidate has run yet"
    best = max(scored, key=metric)
    return f"best so far: {metric(best):.4f} with {best['float_ops']} float op(s), budget not met yet"


def _xnnpack_refused(int8_model: bytes, build: Any, threads: int) -> tuple[list[str], str | None]:
    """Ops to keep in float because XNNPACK refuses the int8 model otherwise (validate/xnnpack.py):
    the ops it will not create plus the ops whose output scale caused that. Isolating these first
    keeps the search from floating the trunk just to get past the delegate."""
    from edgeport.validate import xnnpack
    from edgeport.validate.run import run_tflite

    with tempfile.TemporaryDirectory(prefix="edgeport-xnn-") as tmp:
        path = Path(tmp, "int8.tflite")
        path.write_bytes(int8_model)
        run = run_tflite(path, None, {}, None, threads=threads, runs=1, warmup=0)
        if not xnnpack.is_xnnpack_failure(run.error):
            return [], None
        found = xnnpack.scan(path)
        nodes = list(dict.fromkeys([r["tensor"] for r in found["causes"] if r["op"] not in ("QUANTIZE", "DEQUANTIZE")]
                                   + [r["tensor"] for r in found["rejected"]]))
        if not nodes:
            return [], "XNNPACK refuses the int8 model but no op breaks its known limits; searching without a forced float set"
        path.write_bytes(build(nodes))
        again = run_tflite(path, None, {}, None, threads=threads, runs=1, warmup=0)
    where = ", ".join(f"{r['op']}#{r['index']}" for r in [*found["rejected"], *found["causes"]][:6])
    if again.error:
        return nodes, f"XNNPACK refuses the int8 model ({where}); keeping those {len(nodes)} op(s) in float did not satisfy it"
    return nodes, f"XNNPACK refuses the int8 model ({where}): those {len(nodes)} op(s) stay float in every candidate"


def _score_units(rows: list[dict[str, Any]], ev: Evaluator, build: Any, base: dict[str, Any], limit: int,
                 req: dict[str, Any], notes: list[str], status: str | None = None) -> None:
    """Each row's effect on the final outputs when its unit alone is kept in float (in place). The
    candidates are independent, so they fan out over processes when EDGEPORT_MIXED_WORKERS > 1."""
    from edgeport.quantize.search.fanout import score_units

    done = [0]

    def score(unit: list[str]) -> dict[str, Any]:
        # in this process (serial scoring) every candidate moves the progress line on
        write_status(status, phase="scoring", done=done[0], total=len(rows), best="")
        done[0] += 1
        return ev.score(build(unit), limit)

    scores = score_units(req, [row["unit"] for row in rows], limit, score, notes)
    for row, cand in zip(rows, scores, strict=True):
        row["float_effect"] = cand
        row["gain"] = round(metric(cand) - metric(base), 5)
        row["snr_gain_db"] = None if cand["snr_db"] is None or base["snr_db"] is None else round(cand["snr_db"] - base["snr_db"], 3)


def _smallest_k(attempt: Any, n_max: int) -> tuple[list[str], bytes] | None:
    """Fewest top-ranked units that fit (refine.smallest_prefix); attempt(k) -> (fits, nodes, model)."""
    def split(k: int) -> tuple[bool, tuple[list[str], bytes]]:
        ok, nodes, model = attempt(k)
        return ok, (nodes, model)

    return smallest_prefix(split, n_max)


def _shrink(nodes: list[str], model: bytes, units: list[list[str]], build: Any, ev: Evaluator,
            budget: dict[str, Any], result: dict[str, Any], status: str | None = None) -> tuple[list[str], bytes]:
    """Greedy additions can overshoot: drop each added unit again (last first) while the budget holds."""
    used = [u for u in units if set(u) <= set(nodes)]
    for unit in list(reversed(used))[:16]:
        trial = [n for n in nodes if n not in unit or any(n in other for other in used if other is not unit)]
        if not trial or len(trial) == len(nodes):
            continue
        write_status(status, phase="shrink", kept=len(nodes), trial=len(trial))
        candidate = build(trial)
        score = ev.score(candidate)
        if fits(score, budget):
            result["curve"].append({"float_ops": len(trial), "kept": trial, **score, "size_bytes": len(candidate),
                                    "host_p50_ms": None, "note": "after dropping an unneeded unit"})
            nodes, model = trial, candidate
            used = [u for u in used if u is not unit]
    return nodes, model


def build_one(req: dict[str, Any]) -> dict[str, Any]:
    """One converter int8 model with the request's float ops (`denylist`), written to `out`: another
    search's choice (edgeport.quantize.stage) built by the TF converter, with no search of its own."""
    _conv, _feed, build = setup(req)
    Path(req["out"]).write_bytes(build(list(req["denylist"])))
    return {}


def score_child(req_path: str, units_path: str, out_path: str) -> int:
    """One fan-out process (edgeport.quantize.search.fanout): scores its share of the units."""
    req = json.loads(Path(req_path).read_text())
    job = json.loads(Path(units_path).read_text())
    _conv, _feed, build = setup(req)
    ev = Evaluator(req)
    scores = [ev.score(build(unit), job["limit"]) for unit in job["units"]]
    tmp = Path(out_path + ".tmp")
    tmp.write_text(json.dumps(scores, default=float))
    os.replace(tmp, out_path)
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "score":
        return score_child(*argv[1:4])
    req = json.loads(Path(argv[0]).read_text())
    try:
        result = {"ok": True, **(build_one(req) if "denylist" in req else search(req))}
    except Exception as exc:  # noqa: BLE001 - the parent reports it as a ConversionError
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()}
    Path(argv[1]).write_text(json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
