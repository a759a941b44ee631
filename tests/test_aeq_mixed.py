"""The AEQ mixed-precision search: units and ranking (fast), levels read back, one calibration, and a
hard case where plain int8 misses the budget that the mixed model meets (real conversions, slow)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeport.errors import InputError
from edgeport.quantize import aeq
from edgeport.quantize.aeq import OpRecord
from edgeport.quantize.search import aeq_search as mixed_aeq
from edgeport.quantize.search import refine
from edgeport.quantize.search.candidates import Node, groups, units
from edgeport.quantize.search.probe_runner import CandidateRunner

from fixture_models import write_tiny_tflite

REPO = Path(__file__).resolve().parent.parent
ALL = ("int8", "a16w8", "float")


def rec(i: int, op: str, inputs: tuple[str, ...], levels: tuple[str, ...] = ALL, outputs: tuple[str, ...] = ()) -> OpRecord:
    name = f"t{i}"
    return OpRecord(i, op, name, f"{name};", outputs or (name,), inputs, 0, 0, levels)


def chain() -> list[OpRecord]:
    """conv0 -> pad1 -> conv2 -> relu01_3 (float only) -> conv4 -> fc5."""
    return [rec(0, "CONV_2D", ("x",)), rec(1, "PAD", ("t0",)), rec(2, "CONV_2D", ("t1",)),
            rec(3, "RELU_0_TO_1", ("t2",), ("float",)), rec(4, "CONV_2D", ("t3",)), rec(5, "FULLY_CONNECTED", ("t4",))]


def test_units_follow_data_movers_and_leave_float_only_ops_out() -> None:
    got = {u.key: u.ops for u in units(chain())}
    assert got["t0"] == ("t0", "t1", "t2")  # the PAD passes conv0's precision on to conv2
    assert "t1" not in got  # a mover rides along with its producer
    assert got["t2"] == ("t2",)  # its reader (RELU_0_TO_1) cannot be quantized: nothing to raise with it
    assert "t3" not in got and all("t3" not in ops for ops in got.values())


def test_groups_are_contiguous_and_halve() -> None:
    us = units(chain())
    gs = groups(us, 2)
    assert [len(g.units) for g in gs] == [2, 2] and gs[0].units[0].key == "t0"
    a, b = gs[0].halves()
    assert a.units + b.units == gs[0].units


def test_recipe_matches_each_op_exactly_and_keeps_float_io() -> None:
    ops = [rec(0, "CONV_2D", ("x",)), rec(1, "CONV_2D", ("t0",)), rec(2, "HARD_SWISH", ("t1",), ("int8", "float")),
           OpRecord(3, "CONV_2D", "a;b", "a;b;", ("a;b",), ("t2",), 0, 0, ALL)]
    rules = aeq.recipe(ops, {"t1": "a16w8", "a;b": "float"})
    assert rules[0] == {"regex": ".*", "operation": "*", "level": "int8"}
    by_level = {r["level"]: r["regex"] for r in rules[1:-2]}
    assert re.search(by_level["a16w8"], "t1;") and not re.search(by_level["a16w8"], "t10;")
    assert re.search(by_level["float"], "a;b;") and not re.search(by_level["float"], "a;")  # ';' inside names
    assert [r["operation"] for r in rules[-2:]] == ["INPUT", "OUTPUT"] and all(r["level"] == "float" for r in rules[-2:])


def test_effective_levels_fill_the_default_and_refuse_what_aeq_cannot_do() -> None:
    ops = chain()
    want = aeq.effective_levels(ops, {"t2": "a16w8"})
    assert want == {"t0": "int8", "t1": "int8", "t2": "a16w8", "t3": "float", "t4": "int8", "t5": "int8"}
    with pytest.raises(InputError, match="cannot put RELU_0_TO_1"):
        aeq.effective_levels(ops, {"t3": "int8"})
    with pytest.raises(InputError, match="name no op"):
        aeq.effective_levels(ops, {"nope": "float"})


def cand(label: str, gain: float, ms: float, nbytes: int = 0, level: str = "float") -> mixed_aeq._Cand:
    return mixed_aeq._Cand(label, {label: level}, None, level, gain, ms, nbytes)


def test_rank_by_gain_per_simulated_ms_then_bytes() -> None:
    base_ms = 10.0  # a candidate that is not slower costs the floor: 0.5% of it, 0.05 ms
    slow_big = cand("slow", 0.5, 15.0)  # 0.1 per ms
    cheap = cand("cheap", 0.05, 10.1)  # 0.5 per ms
    free = cand("free", 0.1, 9.0)  # faster than int8: 2 per ms
    # nearly free but under 5% of the largest gain: after every candidate that matters
    tiny_small, tiny_big = cand("tiny_small", 0.01, 9.0, 10), cand("tiny_big", 0.01, 10.0, 5)
    useless = cand("useless", -0.1, 9.0)
    ranked = mixed_aeq._rank([slow_big, cheap, tiny_small, free, tiny_big, useless], base_ms)
    assert [c.label for c in ranked] == ["free", "cheap", "slow", "tiny_big", "tiny_small"]


class FakeSearch:
    """Stands in for mixed_aeq._Search: `check` passes once the first `need` candidates are in."""

    def __init__(self, need: int) -> None:
        self.need, self.accepted, self.calls = need, {}, []

    def check(self, levels: dict[str, str], phase: str, label: str) -> dict[str, Any]:
        self.calls.append(len(levels))
        res = {"ok": len(levels) >= self.need, "metric": float(len(levels)), "levels": levels, "sim_ms": 1.0, "bytes": 1}
        self.accepted[tuple(sorted(levels))] = res
        return res


def test_smallest_prefix_doubles_then_bisects() -> None:
    ranked = [cand(f"c{i}", 1.0, 1.0) for i in range(40)]
    fake = FakeSearch(11)
    levels, res = mixed_aeq._smallest_prefix(fake, ranked, 24)  # type: ignore[arg-type]
    assert len(levels) == 11 and res["ok"]
    assert len(fake.calls) <= 10  # log-many real runs, not 11 linear steps
    assert mixed_aeq._smallest_prefix(FakeSearch(99), ranked, 24) is None  # type: ignore[arg-type]


def test_overlapping_candidates_first_ranked_wins() -> None:
    unit_a = units(chain())[0]
    small = mixed_aeq._Cand("small", {"t0": "a16w8"}, Node((unit_a,)), "a16w8", 1.0, 1.0, 1)
    big = mixed_aeq._Cand("big", {"t0": "float", "t2": "float"}, None, "float", 1.0, 1.0, 1)
    levels = mixed_aeq._levels_of([small, big])
    assert levels == {"t0": "a16w8", "t2": "float"}
    owner = mixed_aeq.owners([small, big], levels)
    assert owner["t0"] is small and owner["t2"] is big


def test_runner_replaces_a_child_that_dies(tmp_path: Path) -> None:
    model = write_tiny_tflite(tmp_path / "tiny.tflite", signature=True)
    runner = CandidateRunner({"x": np.ones((3, 16), np.float32)}, 1, tmp_path / "run")
    try:
        outs, info = runner.run(model)
        assert outs is not None and outs[0].shape == (3, 16) and np.allclose(outs[0], 2.0), info
        assert runner.proc is not None
        os.kill(runner.proc.pid, signal.SIGSTOP)  # held, so it cannot answer before it dies
        runner.submit(model)
        runner.proc.kill()  # what an aborting int8 kernel does to the process
        outs, info = runner.result()
        assert outs is None and info["aborted"]
        outs, _ = runner.run(model)  # the next candidate gets a fresh child
        assert outs is not None and runner.restarts == 1
        outs, info = runner.run(tmp_path / "missing.tflite")
        assert outs is None and not info["ok"] and runner.restarts == 1  # a failed load is not a crash
    finally:
        runner.close()


# ------------------------------------------------------------------------------------------- real AEQ


@pytest.fixture(scope="module")
def tiny_float(tmp_path_factory) -> Path:
    """Seeded conv -> depthwise -> linear 1x1 (one outlier channel) -> pool -> dense, float TFLite with
    a serving_default signature (TF converter, no onnx2tf)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    inp = tf.keras.Input((16, 16, 3), batch_size=1, name="x")
    h = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    h = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = tf.keras.layers.Conv2D(8, 1)(h)
    h = tf.keras.layers.GlobalAveragePooling2D()(h)
    out = tf.keras.layers.Dense(4)(h)
    model = tf.keras.Model(inp, out)
    weights = [rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()]
    weights[4][:, :, :, 3] *= 300.0  # a channel 300x the others: int8 loses the rest of that tensor
    model.set_weights(weights)
    path = tmp_path_factory.mktemp("tiny") / "tiny_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def _data(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((n, 16, 16, 3)).astype(np.float32)}


@pytest.mark.slow
def test_levels_asked_are_the_levels_read_back(tiny_float: Path, tmp_path: Path) -> None:
    ops = aeq.quantizable_ops(tiny_float)
    cal = aeq.calibrate(tiny_float, _data(16, 1))
    rng = np.random.default_rng(3)
    for trial in range(4):
        levels = {o.tensor: str(rng.choice(o.levels)) for o in ops}
        path = aeq.quantize(tiny_float, cal, levels, out=tmp_path / f"m{trial}.tflite", ops=ops)
        assert aeq.read_levels(path, ops) == aeq.effective_levels(ops, levels)
    # the proof is the written file: claiming another level for one op fails it
    want = aeq.effective_levels(ops, levels)
    name = next(iter(want))
    with pytest.raises(aeq.LevelMismatch):
        aeq.verify_levels(path, {**want, name: "float" if want[name] != "float" else "int8"}, ops)
    from edgeport.tflite.reader import inspect_model

    int8 = aeq.quantize(tiny_float, cal, {}, out=tmp_path / "int8.tflite", ops=ops)
    info, fp = inspect_model(int8), inspect_model(tiny_float)
    # AEQ appends weights after the flatbuffer: still constants, 1 byte each instead of 4
    assert 0 < info["kernel_bytes"] <= fp["kernel_bytes"] // 4 + 64
    assert info["inputs"][0]["dtype"] == "FLOAT32" and info["outputs"][0]["dtype"] == "FLOAT32"  # float graph I/O


@pytest.mark.slow
def test_the_search_calibrates_once(tiny_float: Path, tmp_path: Path, monkeypatch) -> None:
    from ai_edge_quantizer import calibrator

    from edgeport.profiles import load_profile

    calls = []
    real = calibrator.Calibrator.calibrate
    monkeypatch.setattr(calibrator.Calibrator, "calibrate", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    ops = aeq.quantizable_ops(tiny_float)
    target = ops[[o.op for o in ops].index("CONV_2D", 1)].tensor  # the outlier conv

    def accept(path: Path) -> tuple[bool, float]:  # "budget": the outlier conv must not be int8
        level = aeq.read_levels(path, ops)[target]
        return level != "int8", 1.0 if level != "int8" else 0.0

    res = mixed_aeq.calibrate_and_search(tiny_float, _data(16, 1), _data(4, 2), accept, load_profile("raspberry-pi-4"),
                                         tmp_path / "work", threads=1)
    assert len(calls) == 1
    assert res.stopped == "budget met" and res.levels[target] != "int8"
    assert len(res.curve) > 3 and all(c["phase"] for c in res.curve)
    assert aeq.read_levels(res.model, ops) == res.levels


def _convert_zoo(tmp_path: Path, name: str, cls: Any) -> tuple[Path, dict[str, Any]]:
    import torch

    from edgeport.export.onnx_prep import prepare_onnx
    from edgeport.export.to_tflite import run_conversion
    from edgeport.export.torch_to_onnx import export_onnx
    from edgeport.types import TensorSpec

    model = cls()
    model.load_state_dict(torch.load(REPO / "edgeport" / "zoo" / f"{name}.pt", weights_only=True))
    model.eval()
    export_onnx(model, [TensorSpec("x", (1, 1, 32, 32))], tmp_path / "exported.onnx")
    prep = prepare_onnx(tmp_path / "exported.onnx", tmp_path / "model.onnx", {})
    conv = run_conversion(prep, tmp_path / "tf", None, [{"key": "fp32", "mode": "fp32"}])
    return conv.files["fp32"], conv.input_map


def _digits(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(REPO / "calibration_data" / "digits" / "digits.npz")
    x = (d[f"x_{split}"][:n].astype(np.float32) / 255.0 - 0.5) / 0.5
    return x, d[f"y_{split}"][:n]


@pytest.fixture(scope="module")
def outlier_case(tmp_path_factory) -> dict[str, Any]:
    from edgeport.validate.run import run_tflite
    from edgeport.zoo.hard_cases import OutlierNet

    tmp = tmp_path_factory.mktemp("outlier")
    fp32, imap = _convert_zoo(tmp, "outlier_net", OutlierNet)
    xc, _ = _digits("train", 300)
    xv, yv = _digits("val", 300)
    ref = run_tflite(fp32, {"x": xv}, imap, None, threads=1, runs=0).outputs[0]
    ref_acc = float(np.mean(ref.argmax(1) == yv))

    def accept(path: Path) -> tuple[bool, float]:
        run = run_tflite(path, {"x": xv}, imap, [ref], threads=1, runs=0)
        if run.outputs is None:
            return False, float("-inf")
        acc = float(np.mean(run.outputs[0].argmax(1) == yv))
        return (ref_acc - acc) * 100 <= 1.0, acc

    return {"fp32": fp32, "calib": {"x": np.transpose(xc, (0, 2, 3, 1))}, "probe": {"x": np.transpose(xv[:16], (0, 2, 3, 1))},
            "accept": accept, "ref_acc": ref_acc}


@pytest.mark.slow
def test_outlier_cnn_int8_misses_the_budget_that_mixed_meets(outlier_case: dict[str, Any], tmp_path: Path) -> None:
    from edgeport.profiles import load_profile

    c = outlier_case
    res = mixed_aeq.calibrate_and_search(c["fp32"], c["calib"], c["probe"], c["accept"], load_profile("raspberry-pi-4"),
                                         tmp_path, threads=1)
    assert res.int8["ok"] is False and res.int8["metric"] < c["ref_acc"] - 0.02, res.int8
    assert res.stopped == "budget met"
    ok, acc = c["accept"](res.model)  # the returned file itself, run again
    assert ok and acc >= c["ref_acc"] - 0.01
    ops = aeq.quantizable_ops(c["fp32"])
    assert aeq.read_levels(res.model, ops) == res.levels
    raised = [t for t, lv in res.levels.items() if lv != "int8"]
    assert raised and len(raised) < len(ops) // 2, "a few ops, not the model, leave int8"
    rows = {r["tensor"]: r for r in res.layers}
    assert all("searched" in rows[t]["reason"] for t in res.kept + res.kept_a16w8)
    assert any(rows[t]["metric_gain"] for t in res.kept + res.kept_a16w8), "the report says what each kept unit is worth"


@pytest.mark.slow
def test_edge_tpu_profile_gets_int8_with_a_float_tail(outlier_case: dict[str, Any], tmp_path: Path) -> None:
    from edgeport.profiles import load_profile

    c = outlier_case
    res = mixed_aeq.calibrate_and_search(c["fp32"], c["calib"], c["probe"], c["accept"], load_profile("coral-usb"),
                                         tmp_path, threads=1)
    ops = sorted(aeq.quantizable_ops(c["fp32"]), key=lambda o: o.index)
    order = [res.levels[o.tensor] for o in ops if len(o.levels) > 1]
    assert "a16w8" not in order
    first = order.index("float") if "float" in order else len(order)
    assert set(order[first:]) <= {"float"} and set(order[:first]) == {"int8"}, order


def test_accept_applies_the_budget_on_a_real_run(tmp_path: Path) -> None:
    from edgeport.export.layout import tflite_layout
    from edgeport.quantize.search.budget import accept_for

    model = write_tiny_tflite(tmp_path / "tiny.tflite", signature=True)
    x = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    imap = {"x": {"source": "x", "perm": None}}
    assert tflite_layout({"x": x}, imap)["x"].shape == (6, 16)
    labels = np.argmax(2 * x, 1)
    exact = accept_for({"x": x}, imap, [2 * x], labels, {"reference_accuracy": 1.0, "accuracy_drop_pp": 1.0}, 1)
    assert exact(model) == (True, 1.0)
    shifted = accept_for({"x": x}, imap, [2 * x + 1.0], None, {"min_snr_db": 30.0}, 1)  # no labels, SNR budget
    ok, snr = shifted(model)
    assert not ok and snr < 30.0
    assert accept_for({"x": x}, imap, [2 * x], None, {}, 1)(tmp_path / "missing.tflite") == (False, float("-inf"))


class LevelCostSearch:
    """Stands in for mixed_aeq._Search in _refine: every config meets the budget unless it drops "need";
    simulated ms and bytes are sums of per-op costs by level."""

    def __init__(self, costs: dict[str, dict[str, tuple[float, int]]]) -> None:
        self.costs, self.accepted = costs, {}

    def check(self, levels: dict[str, str], phase: str, label: str) -> dict[str, Any]:
        ms = sum(self.costs[levels.get(t, "int8")][t][0] for t in self.costs["int8"])
        nbytes = sum(self.costs[levels.get(t, "int8")][t][1] for t in self.costs["int8"])
        res = {"ok": levels.get("need", "int8") != "int8", "metric": 1.0, "levels": levels, "sim_ms": ms, "bytes": nbytes}
        self.accepted[tuple(sorted(levels.items()))] = res
        return res


@pytest.mark.parametrize("a16_ms,expected", [(1.0, "a16w8"), (5.0, "float")])
def test_refine_takes_a16w8_only_when_no_slower_and_smaller(a16_ms: float, expected: str) -> None:
    costs = {"int8": {"need": (1.0, 100), "extra": (1.0, 100)}, "float": {"need": (1.0, 400), "extra": (1.0, 400)},
             "a16w8": {"need": (a16_ms, 120), "extra": (a16_ms, 120)}}
    node = Node(units([rec(0, "FULLY_CONNECTED", ("x",))]))
    flt = mixed_aeq._Cand("need", {"need": "float"}, node, "float", 1.0, 2.0, 500)
    a16 = mixed_aeq._Cand("need", {"need": "a16w8"}, node, "a16w8", 0.9, 1.0 + a16_ms, 220)
    extra = mixed_aeq._Cand("extra", {"extra": "float"}, None, "float", 0.5, 2.0, 500)
    fake = LevelCostSearch(costs)
    chosen = {"need": "float", "extra": "float"}
    start = fake.check(chosen, "search", "start")
    chosen, res, gains = mixed_aeq._refine(fake, [flt, extra, a16], chosen, start, 24)  # type: ignore[arg-type]
    assert chosen == {"need": expected}  # "extra" is not needed and dropping it is no slower: gone
    assert res["ok"] and gains["need"] is not None


def test_refine_swaps_in_a16w8_measured_on_another_unit_than_the_one_that_floated_the_op() -> None:
    """HeadNet's shape: the unit MEAN->FC floats the FC (a consumer), the FC's own unit was measured at
    a16w8. The swap applies to any op the choice holds in float, whoever put it there. ("need" is the
    FC: the fake budget fails when it is int8.)"""
    costs = {"int8": {"mean": (1.0, 0), "need": (1.0, 100)}, "float": {"mean": (1.0, 0), "need": (1.0, 400)},
             "a16w8": {"mean": (3.0, 0), "need": (1.001, 110)}}
    mean_node = Node(units([rec(0, "MEAN", ("x",))]))
    mean_unit = mixed_aeq._Cand("mean", {"mean": "float", "need": "float"}, mean_node, "float", 1.0)
    mean_a16 = mixed_aeq._Cand("mean", {"mean": "a16w8", "need": "a16w8"}, mean_node, "a16w8", 0.9)
    fc_a16 = mixed_aeq._Cand("fc", {"need": "a16w8"}, Node(units([rec(1, "FULLY_CONNECTED", ("t0",))])), "a16w8", 0.9)
    fake = LevelCostSearch(costs)
    chosen = {"mean": "float", "need": "float"}
    start = fake.check(chosen, "search", "start")
    chosen, res, _gains = mixed_aeq._refine(fake, [mean_unit, mean_a16, fc_a16], chosen, start, 24)  # type: ignore[arg-type]
    # the FC at a16w8 (0.001 ms slower: a tie; 290 bytes fewer); MEAN at a16w8 is 2 ms slower, so it is
    # not swapped, and once the FC no longer needs the MEAN unit, that unit is dropped
    assert chosen == {"need": "a16w8"}, chosen
    assert res["ok"]


class BorderCostSearch(LevelCostSearch):
    """LevelCostSearch plus the (de)quantize ops at a float -> int16 border, which per-op costs leave out."""

    def check(self, levels: dict[str, str], phase: str, label: str) -> dict[str, Any]:
        res = super().check(levels, phase, label)
        if levels.get("mean", "int8") == "float" and levels.get("need") == "a16w8":
            res["sim_ms"] += 0.1
        return res


def test_refine_puts_the_rest_of_a_float_unit_back_to_int8_when_its_a16w8_swap_pays_a_border() -> None:
    """HeadNet: MEAN -> FC, the unit floated both; the FC at a16w8 behind a float MEAN pays a QUANTIZE
    (slower beyond the tie), the FC at a16w8 behind an int8 MEAN does not: that pair is tried and kept."""
    costs = {"int8": {"mean": (1.0, 0), "need": (1.0, 100)}, "float": {"mean": (1.0, 0), "need": (1.0, 400)},
             "a16w8": {"mean": (3.0, 0), "need": (1.0, 110)}}
    mean_unit = mixed_aeq._Cand("mean", {"mean": "float", "need": "float"}, Node(units([rec(0, "MEAN", ("x",))])), "float", 1.0)
    fc_a16 = mixed_aeq._Cand("fc", {"need": "a16w8"}, Node(units([rec(1, "FULLY_CONNECTED", ("t0",))])), "a16w8", 0.9)
    fake = BorderCostSearch(costs)
    start = fake.check({"mean": "float", "need": "float"}, "search", "start")
    chosen, res, _gains = mixed_aeq._refine(fake, [mean_unit, fc_a16], {"mean": "float", "need": "float"}, start, 24)  # type: ignore[arg-type]
    assert chosen == {"need": "a16w8"} and res["sim_ms"] == start["sim_ms"] and res["bytes"] < start["bytes"], (chosen, res)


@pytest.mark.parametrize("int8_ms,taken", [(5.0, True), (1.5, False)])
def test_ops_priced_far_slower_in_int8_go_float_for_speed(int8_ms: float, taken: bool) -> None:
    """An int8 op the delegate does not run (5 ms against 1 ms in float) goes float when the real check
    agrees; one only 1.5x slower stays int8 (its borders' (de)quantize ops would eat the gain)."""
    costs = {"int8": {"t0": (1.0, 100), "t1": (int8_ms, 0), "need": (0.0, 0)},
             "float": {"t0": (2.0, 400), "t1": (1.0, 0), "need": (0.0, 0)},
             "a16w8": {"t0": (3.0, 120), "t1": (4.0, 0), "need": (0.0, 0)}}
    fake = LevelCostSearch(costs)
    fake.ops = [rec(0, "CONV_2D", ("x",)), rec(1, "HARD_SWISH", ("t0",), ("int8", "float"))]
    base = fake.check({"need": "float"}, "search", "start")
    chosen, res, speed = mixed_aeq._faster_in_float(fake, {"need": "float"}, base, 24)  # type: ignore[arg-type]
    if taken:
        assert chosen == {"need": "float", "t1": "float"} and res["sim_ms"] < base["sim_ms"]
        assert speed is not None and mixed_aeq.SPEED_LABEL in speed.label
    else:
        assert chosen == {"need": "float"} and res is base and speed is None


def test_latency_ties_go_to_the_smaller_model() -> None:
    assert refine.no_worse({"sim_ms": 10.04, "bytes": 10}, {"sim_ms": 10.0, "bytes": 20})  # within 0.5%: smaller wins
    assert not refine.no_worse({"sim_ms": 10.04, "bytes": 30}, {"sim_ms": 10.0, "bytes": 20})
    assert refine.no_worse({"sim_ms": 9.0, "bytes": 30}, {"sim_ms": 10.0, "bytes": 20})  # faster wins outright
    assert not refine.no_worse({"sim_ms": 11.0, "bytes": 1}, {"sim_ms": 10.0, "bytes": 20})


@pytest.mark.slow
def test_int8_that_aborts_is_scored_as_a_failure_and_mixed_keeps_the_division_out_of_int8(tmp_path: Path,
                                                                                           without_rewrites) -> None:
    """LayerNorm in int8 aborts at run time (a quantized DIV whose divisor hits its zero point): every
    candidate that aborts fails in the child process, the search goes on, and the DIV that aborts leaves int8.
    (The GELU/LayerNorm rewrites remove that DIV; the subject here is the search's handling of an abort.)"""
    without_rewrites("gelu", "layer_norm")
    import torch

    from edgeport.export.onnx_prep import prepare_onnx
    from edgeport.export.to_tflite import PSEUDO_OP_REMEDY, run_conversion
    from edgeport.export.torch_to_onnx import export_onnx
    from edgeport.profiles import load_profile
    from edgeport.quantize.search.budget import accept_for
    from edgeport.types import TensorSpec

    from fixture_models import GeluLayerNormMLP

    torch.manual_seed(0)
    model = GeluLayerNormMLP().eval()
    export_onnx(model, [TensorSpec("x", (1, 16))], tmp_path / "e.onnx")
    prep = prepare_onnx(tmp_path / "e.onnx", tmp_path / "m.onnx", {})
    conv = run_conversion(prep, tmp_path / "tf", None, [{"key": "fp32", "mode": "fp32"}], pseudo_ops=PSEUDO_OP_REMEDY)
    x = np.random.default_rng(0).standard_normal((160, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    accept = accept_for({"x": x[100:]}, conv.input_map, [ref[100:]], None, {"min_top1_agreement": 0.98}, 1)
    fp32 = conv.files["fp32"]
    res = mixed_aeq.calibrate_and_search(fp32, {"x": x[:100]}, {"x": x[100:108]}, accept, load_profile("raspberry-pi-4"),
                                         tmp_path / "s", threads=1)
    assert res.int8["ok"] is False and res.int8["proxy_nsr"] == mixed_aeq.ABORTED_NSR
    assert any(c.get("error") and "DIV" in c["error"] for c in res.curve)
    assert res.stopped == "budget met" and accept(res.model)[0]
    ops = aeq.quantizable_ops(fp32)
    assert aeq.read_levels(res.model, ops) == res.levels
    assert any(res.levels[o.tensor] != "int8" for o in ops if o.op == "DIV")  # the model runs: the aborting DIV left int8
