"""report.html's and results.html's inline SVG charts, checked as parsed XML: the marks sit where the
figures put them, the Pareto front and the chosen candidate are the right ones, untrusted names stay
text, and a report without a chart's keys draws no chart. The browser test renders real reports."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from edgeport.latency.simulator import SimResult
from edgeport.report import charts
from edgeport.report.build import kept_samples
from edgeport.report.html import render
from edgeport.report.summary import empty_report
from edgeport.sweep import table

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>&\"'"


def parse(html: str, name: str) -> ET.Element:
    """The chart `name` as an XML tree: parsing fails on any unescaped '<' or '&' in a label."""
    found = re.findall(r"<svg class='chart' data-chart='" + re.escape(name) + r"'.*?</svg>", html, flags=re.S)
    assert len(found) == 1, f"{len(found)} '{name}' charts"
    return ET.fromstring(found[0])


def texts(svg: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]


def candidate(mode: str, size: int, sim: float, metric: float, *, passed: bool = True, chosen: bool = False,
              host: float | None = 1.0) -> dict:
    return {"mode": mode, "size_bytes": size, "simulated_p50_ms": sim, "host_p50_ms": host, "device_p50_ms": None,
            "task_metric": {"name": "ctc_identical", "value": metric, "budget": 0.98, "passed": passed},
            "meets_task": passed, "meets_latency": True, "chosen": chosen, "lost_because": None if chosen else "larger"}


AUTO = {"chosen": "int8", "candidates": [
    candidate("fp32", 400_000, 2.0, 1.0), candidate("fp16", 200_000, 2.1, 1.0),
    candidate("int8", 100_000, 1.0, 0.99, chosen=True), candidate(EVIL, 50_000, 3.0, 0.5, passed=False),
    {"mode": "mixed", "size_bytes": None, "skipped": "int8 already meets the accuracy budget", "task_metric": None},
]}


def test_nice_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(0.163, 4.67)
    assert ticks[0] <= 0.163 and ticks[-1] >= 4.67 and ticks == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert charts.nice_ticks(-0.014, 1.53) == [-0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert charts.nice_ticks(5.0, 5.0)[0] <= 5.0 <= charts.nice_ticks(5.0, 5.0)[-1]


def test_scale_of_positive_figures_never_goes_below_zero():
    s = charts.Scale.fit([0.05, 0.9], 0, 100, pad=0.2)
    assert s.lo == 0.0 and s(0.05) > 0
    assert charts.Scale.fit([-1.0, 2.0], 0, 100, pad=0.2).lo < -1.0


def test_pareto_marks_chosen_front_and_budget_misses():
    svg = parse(charts.pareto(AUTO), "pareto")
    circles = svg.findall(f".//{SVG}circle")
    assert len(circles) == 4 + 1  # a mark per drawn candidate, plus the ring around the chosen one
    labels = texts(svg)
    assert "int8 (chosen)" in labels and EVIL in labels, labels  # the hostile name is text, not markup
    assert any("not drawn" in t and "mixed" in t for t in labels)
    # the front runs from the smallest (the budget miss, slow) to int8; fp16 and fp32 lose to int8 on both axes
    x0, y0, x1, y1 = (float(v) for v in re.findall(r"[\d.]+", svg.find(f".//{SVG}path[@class='front']").get("d")))
    assert x0 < x1 and y0 < y1  # right and down (faster) in pixels: bigger size, lower latency
    # colour: the best metric gets the ramp's end, the worst its start; the budget miss is a ring
    fills = {g.find(f"{SVG}text").text: g.find(f"{SVG}circle") for g in svg.iter(f"{SVG}g")}
    assert fills["fp32"].get("fill") == charts.RAMP[-1]
    assert fills[EVIL].get("fill") == "white" and fills[EVIL].get("stroke") == charts.RAMP[0]


def test_pareto_draws_a_latency_budget_near_the_candidates():
    near = parse(charts.pareto(AUTO, latency_budget_ms=2.5), "pareto")
    assert "latency budget 2.5 ms" in texts(near)
    line = next(ln for ln in near.iter(f"{SVG}line") if ln.get("stroke") == charts.FAIL)
    marks = {g.find(f"{SVG}text").text: float(g.find(f"{SVG}circle").get("cy")) for g in near.iter(f"{SVG}g")}
    assert marks["fp16"] > float(line.get("y1")) > marks[EVIL]  # 2.1 ms below the line, 3.0 ms above it
    far = parse(charts.pareto(AUTO, latency_budget_ms=100.0), "pareto")
    assert not any(ln.get("stroke") == charts.FAIL for ln in far.iter(f"{SVG}line"))
    assert any("latency budget 100 ms: above every candidate" in s for s in texts(far))


def test_pareto_uses_the_latency_most_candidates_have():
    auto = {"candidates": [candidate("a", 10, 1.0, 1.0), candidate("b", 20, 0.5, 1.0)]}
    auto["candidates"][0]["device_p50_ms"] = 3.0  # only one candidate was timed on the device
    assert "size vs simulated latency" in charts.pareto(auto)
    assert charts.pareto({"candidates": [{"mode": "w8", "size_bytes": None}]}) == ""
    assert charts.pareto(None) == ""


def test_breakdown_of_a_simulation_adds_up():
    per_op = [{"index": i, "op": op, "ms": ms, "bound": "compute", "unit": "cpu"}
              for i, (op, ms) in enumerate([("CONV_2D", 0.5), ("ADD", 0.1), ("CONV_2D", 0.3), ("MEAN", 0.05)])]
    sim = SimResult(p50_ms=1.0, per_op=per_op, params={}, profile="p", threads=1)
    b = sim.breakdown(top=2)
    assert [r["op"] for r in b["by_op_type"]] == ["CONV_2D", "ADD", "MEAN"]
    assert b["by_op_type"][0] == {"op": "CONV_2D", "count": 2, "ms": 0.8, "share": 0.8}
    assert [o["index"] for o in b["top_ops"]] == [0, 2]
    assert b["outside_ops_ms"] == pytest.approx(0.05)
    assert sim.to_dict()["by_op_type"] == b["by_op_type"]


def test_op_type_bars_are_proportional_to_their_time():
    sim = {"profile": "pi", "by_op_type": [{"op": "CONV_2D", "count": 3, "ms": 0.6, "share": 0.6},
                                           {"op": EVIL, "count": 1, "ms": 0.2, "share": 0.2}]}
    svg = parse(charts.op_types(sim), "op-types")
    widths = [float(r.get("width")) for r in svg.iter(f"{SVG}rect")]
    assert widths[0] / widths[1] == pytest.approx(3.0, rel=0.02)
    assert "0.6 ms (60%)" in texts(svg) and f"{EVIL} ×1" in texts(svg)


def test_top_ops_are_coloured_by_their_bound():
    sim = {"top_ops": [{"index": 7, "op": "CONV_2D", "ms": 0.4, "share": 0.4, "bound": "memory", "unit": "cpu"},
                       {"index": 2, "op": "ADD", "ms": 0.1, "share": 0.1, "bound": "overhead", "unit": "tpu"}]}
    svg = parse(charts.top_ops(sim), "top-ops")
    assert [r.get("fill") for r in svg.iter(f"{SVG}rect")] == [charts.BOUND_FILL["memory"], charts.BOUND_FILL["overhead"]]
    assert "#2 ADD (TPU)" in texts(svg)


def test_sensitivity_ranks_by_the_first_figure_that_varies():
    layers = [{"tensor": f"t{i}", "op": "CONV_2D", "pytorch_module": f"block{i}", "gain": 0.0, "snr_gain_db": snr,
               "rmse_over_scale": 0.1} for i, snr in enumerate([0.4, -0.2, 1.5])]
    q = {"layers": layers, "float_layers": [{"tensor": "t2"}]}
    svg = parse(charts.sensitivity(q), "sensitivity")
    assert [t for t in texts(svg) if t.startswith("block")] == ["block2 (CONV_2D)", "block0 (CONV_2D)", "block1 (CONV_2D)"]
    rects = list(svg.iter(f"{SVG}rect"))
    assert rects[0].get("fill") == "#e08a2c" and rects[1].get("fill") == charts.BAR  # t2 is kept in float
    zero = float(next(ln for ln in svg.iter(f"{SVG}line") if ln.get("y1") != ln.get("y2")
                      and ln.get("class") == "axis" and float(ln.get("x1")) > 250).get("x1"))
    assert float(rects[2].get("x")) + float(rects[2].get("width")) == pytest.approx(zero, abs=0.2)  # negative: left of 0
    aeq = {"search": {"method": "aeq"}, "layers": [{"tensor": "a", "op": "GELU", "proxy_gain": 0.3, "level": "a16w8"},
                                                   {"tensor": "b", "op": "ADD", "proxy_gain": 0.01, "level": "int8"}]}
    assert "proxy_gain" in charts.sensitivity(aeq)
    assert charts.sensitivity({"layers": [{"tensor": "a", "gain": None}]}) == ""


def test_histogram_counts_every_run_and_marks_p50_p90():
    samples = [1.0, 1.1, 1.05, 1.2, 5.0, 1.02, 1.08]
    host = {"samples_ms": samples, "p50_ms": 1.08, "p90_ms": 2.68, "runs": 9}
    svg = parse(charts.latency_histogram(host), "host-latency")
    counts = [int(re.search(r": (\d+) run", r.find(f"{SVG}title").text).group(1)) for r in svg.iter(f"{SVG}rect")]
    assert sum(counts) == len(samples)
    assert "p50 1.08 ms" in texts(svg) and "p90 2.68 ms" in texts(svg)
    assert "7 of 9 kept" in svg.find(f"{SVG}title").text
    assert charts.latency_histogram({"samples_ms": []}) == ""


def test_kept_samples_thin_evenly_and_keep_the_ends():
    runs = tuple(float(i) for i in range(2500))
    kept = kept_samples(runs, cap=1000)
    assert len(kept) == 1000 and kept[0] == 0.0 and kept[-1] == 2499.0 and kept == sorted(kept)
    assert kept_samples((0.123456789, 2.0)) == [0.1235, 2.0]


def test_report_html_draws_each_chart_only_with_its_keys():
    report = empty_report()
    report.update(profile={"name": "raspberry-pi-4"}, artifact={"path": EVIL, "sha256": "0", "size_bytes": 1})
    report["quantization"]["mode"] = "int8"
    assert "<svg" not in render(report)
    report["quant_auto"] = AUTO
    report["latency"]["host"].update(samples_ms=[1.0, 1.2, 1.1], p50_ms=1.1, p90_ms=1.18, runs=3)
    report["latency"]["simulated"].update(by_op_type=[{"op": "ADD", "count": 1, "ms": 0.1, "share": 1.0}],
                                          top_ops=[{"index": 0, "op": "ADD", "ms": 0.1, "share": 1.0, "bound": "compute"}])
    report["quantization"]["layers"] = [{"tensor": "t", "op": "ADD", "gain": 0.1}, {"tensor": "u", "op": "MUL", "gain": 0.0}]
    html = render(report)
    for name in ("pareto", "host-latency", "op-types", "top-ops", "sensitivity"):
        parse(html, name)
    assert "<script" not in html


def test_sweep_results_get_one_chart_per_model():
    def cell(model: str, mode: str, status: str, size: int | None, sim: float | None) -> dict:
        summary = None if size is None else {"size_bytes": size, "simulated_p50_ms": sim, "host_p50_ms": 0.2}
        return {"id": f"{model}-{mode}", "model": model, "profile": "pi", "mode": mode, "status": status, "summary": summary}

    results = {"counts": "4 cells", "executor": "local", "plan": "plan.toml", "cells": [
        cell("tiny", "fp32", "passed", 4096, 1.0), cell("tiny", "int8", "failed", 1024, 0.5),
        cell(EVIL, "int8", "passed", 2048, 0.7), cell(EVIL, "fp16", "error", None, None)]}
    html = table.html(results)
    charts_found = re.findall(r"<svg class='chart' data-chart='sweep-model'.*?</svg>", html, flags=re.S)
    assert len(charts_found) == 2
    tiny = ET.fromstring(charts_found[0])
    marks = {g.find(f"{SVG}text").text: g.find(f"{SVG}circle") for g in tiny.iter(f"{SVG}g")}
    assert marks["fp32"].get("fill") == charts.PASS and marks["int8"].get("stroke") == charts.FAIL
    assert any("1 cell(s) without figures" in t for t in texts(ET.fromstring(charts_found[1])))
    assert "<script" not in html
