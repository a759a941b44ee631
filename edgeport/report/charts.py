"""Charts for report.html and the sweep's results.html: inline SVG drawn from the report's own data.

Why hand-written SVG and not a plotting library: the page must stay one self-contained file that opens
offline (no CDN, no script), its text must stay selectable, and the labels come from model files
(untrusted text), so every label and value passes through html.escape here. Each chart is one small
function over report.json keys and returns "" when its data is absent; they share one scale and one
frame helper. The SVG carries `data-chart` so a test can find each chart in the rendered page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import numpy as np

CSS = """figure.chart{margin:.6em 0 1em}figure.chart figcaption{font-weight:600;font-size:.95em}
svg.chart{display:block;max-width:100%;height:auto;font:11px system-ui,sans-serif}
svg.chart .grid{stroke:#eee}svg.chart .axis{stroke:#888}svg.chart .front{fill:none;stroke:#888;stroke-dasharray:4 3}
svg.chart .mark{stroke:#222;stroke-width:1.5;stroke-dasharray:5 3}svg.chart .muted{fill:#666}
.charts{display:flex;flex-wrap:wrap;gap:1em}"""

# A perceptually ordered ramp (viridis' ends trimmed so both stay visible on white) for the task metric.
RAMP = ("#440154", "#3b528b", "#21918c", "#5ec962", "#b8c91a")
PASS, FAIL, BAR = "#2e8b57", "#c0392b", "#4a77b4"
BOUND_FILL = {"compute": "#4a77b4", "memory": "#e08a2c", "overhead": "#8c8c8c"}
MAX_BARS = 20
LABEL_CHARS = 38


def _t(value: Any) -> str:
    """Text or attribute content: escaped, quotes included."""
    return escape(str(value), quote=True)


def num(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) that cover [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw * (1 - 1e-9))
    first = math.floor(lo / step + 1e-9) * step
    n = max(1, math.ceil((hi - first) / step - 1e-9))
    return [round(first + i * step, 12) for i in range(n + 1)]


@dataclass(frozen=True)
class Scale:
    """A linear map from a data domain (widened to round ticks) onto a pixel range."""

    lo: float
    hi: float
    start: float
    end: float
    ticks: tuple[float, ...]

    @classmethod
    def fit(cls, values: Sequence[float], start: float, end: float, *, zero: bool = False, pad: float = 0.0,
            count: int = 5) -> Scale:
        vals = [float(v) for v in values if v is not None and math.isfinite(v)] or [0.0]
        lo, hi = min(vals), max(vals)
        positive = lo >= 0  # sizes and times: padding must not push the axis below zero
        if zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if hi == lo:
            spread = abs(lo) * 0.1 or 1.0
            lo, hi = (lo, lo + spread) if zero and lo == 0 else (lo - spread, hi + spread)
        lo, hi = lo - (hi - lo) * pad, hi + (hi - lo) * pad
        lo = max(lo, 0.0) if positive else lo
        ticks = nice_ticks(lo, hi, count)
        return cls(ticks[0], ticks[-1], start, end, tuple(ticks))

    def __call__(self, value: float) -> float:
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _svg(name: str, title: str, width: int, height: int, body: list[str]) -> str:
    """The chart with its title as a visible caption (and as the SVG's accessible name)."""
    return (f"<figure class='chart'><figcaption>{_t(title)}</figcaption>"
            f"<svg class='chart' data-chart='{_t(name)}' xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
            f"width='{width}' height='{height}' role='img' aria-label='{_t(title)}'><title>{_t(title)}</title>"
            + "".join(body) + "</svg></figure>")


def _frame(x: Scale, y: Scale, x_label: str, y_label: str, *, y_ticks: bool = True) -> list[str]:
    """Grid, tick labels and axis titles around the plot area x.start..x.end, y.end..y.start."""
    out = []
    for v in x.ticks:
        px = x(v)
        out.append(f"<line class='grid' x1='{px:.1f}' x2='{px:.1f}' y1='{y.end:.1f}' y2='{y.start:.1f}'/>"
                   f"<text x='{px:.1f}' y='{y.start + 16:.1f}' text-anchor='middle'>{_t(num(v))}</text>")
    for v in y.ticks if y_ticks else ():
        py = y(v)
        out.append(f"<line class='grid' x1='{x.start:.1f}' x2='{x.end:.1f}' y1='{py:.1f}' y2='{py:.1f}'/>"
                   f"<text x='{x.start - 4:.1f}' y='{py + 3.5:.1f}' text-anchor='end'>{_t(num(v))}</text>")
    out.append(f"<line class='axis' x1='{x.start:.1f}' x2='{x.end:.1f}' y1='{y.start:.1f}' y2='{y.start:.1f}'/>")
    out.append(f"<text x='{(x.start + x.end) / 2:.1f}' y='{y.start + 31:.1f}' text-anchor='middle'>{_t(x_label)}</text>")
    if y_ticks:
        out.append(f"<line class='axis' x1='{x.start:.1f}' x2='{x.start:.1f}' y1='{y.end:.1f}' y2='{y.start:.1f}'/>")
        mid = (y.start + y.end) / 2
        out.append(f"<text transform='translate(12 {mid:.1f}) rotate(-90)' text-anchor='middle'>{_t(y_label)}</text>")
    return out


# ------------------------------------------------------------------------------------ scatter plots


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str
    fill: str
    tip: str  # the hover text: every figure behind the point
    hollow: bool = False  # drawn as a ring: the candidate missed its budget
    chosen: bool = False


def _scatter(name: str, title: str, points: Sequence[Point], x_label: str, y_label: str, *, width: int = 560,
             height: int = 300, front: bool = False, legend: Sequence[str] = (), budget: float | None = None) -> str:
    """Labelled points with their figures on hover; `legend` lines are SVG text markup (the caller
    escapes); `budget` is a y value drawn as a red line (the scale includes it)."""
    x = Scale.fit([p.x for p in points], 58, width - 18, pad=0.08)
    y = Scale.fit([p.y for p in points] + ([budget] if budget is not None else []), height - 40 - 14 * len(legend), 12,
                  pad=0.1)
    body = _frame(x, y, x_label, y_label)
    if budget is not None:
        body.append(f"<line x1='{x.start:.1f}' x2='{x.end:.1f}' y1='{y(budget):.1f}' y2='{y(budget):.1f}' stroke='{FAIL}' "
                    f"stroke-dasharray='6 3'/><text x='{x.end - 2:.1f}' y='{y(budget) - 4:.1f}' text-anchor='end' "
                    f"fill='{FAIL}'>latency budget {_t(num(budget))} ms</text>")
    if front:
        body.append(_front(points, x, y))
    taken: list[tuple[float, float, float, float]] = []
    for p in sorted(points, key=lambda p: not p.chosen):  # the chosen point's label gets the first place
        px, py = x(p.x), y(p.y)
        text = p.label + (" (chosen)" if p.chosen else "")
        lx, ly, anchor = _label_spot(px, py, text, taken, x)
        style = f"fill='white' stroke='{_t(p.fill)}' stroke-width='2.5'" if p.hollow else f"fill='{_t(p.fill)}' stroke='white'"
        body.append(f"<g><title>{_t(p.tip)}</title><circle cx='{px:.1f}' cy='{py:.1f}' r='6' {style}/>"
                    + (f"<circle cx='{px:.1f}' cy='{py:.1f}' r='10.5' fill='none' stroke='#111' stroke-width='1.5'/>"
                       if p.chosen else "")
                    + f"<text x='{lx:.1f}' y='{ly:.1f}' text-anchor='{anchor}'>{_t(text)}</text></g>")
    for i, line in enumerate(legend):
        body.append(f"<text class='muted' x='{x.start:.1f}' y='{height - 6 - 14 * (len(legend) - 1 - i):.1f}'>{line}</text>")
    return _svg(name, title, width, height, body)


def _label_spot(px: float, py: float, text: str, taken: list[tuple[float, float, float, float]],
                x: Scale) -> tuple[float, float, str]:
    """A place for a point's label that overlaps no label placed before it (right, then left, stepping
    down): candidates close in size and latency (w8 beside w4) would otherwise print over each other."""
    w, h = 6.2 * len(text), 11.0
    for dy in (-7.0, 12.0, -19.0, 24.0, -31.0, 36.0):
        for dx, anchor in ((12.0, "start"), (-12.0, "end")):
            left = px + dx if anchor == "start" else px + dx - w
            box = (left, py + dy - h + 2, left + w, py + dy + 2)
            inside = x.start - 50 <= box[0] and box[2] <= x.end + 14
            if inside and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                taken.append(box)
                return px + dx, py + dy, anchor
    return px + 12.0, py - 7.0, "start"


def _front(points: Sequence[Point], x: Scale, y: Scale) -> str:
    """The Pareto staircase: points no other point beats on both size and latency."""
    best = [p for p in points if not any(q.x <= p.x and q.y <= p.y and (q.x, q.y) != (p.x, p.y) for q in points)]
    best.sort(key=lambda p: (p.x, p.y))
    path = f"M{x(best[0].x):.1f} {y(best[0].y):.1f}" + "".join(f" H{x(p.x):.1f} V{y(p.y):.1f}" for p in best[1:])
    return f"<path class='front' d='{path}'/>"


def ramp(value: float, lo: float, hi: float) -> str:
    """The RAMP colour of `value` within [lo, hi] (the middle colour when they are equal)."""
    f = 0.5 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    pos = f * (len(RAMP) - 1)
    i = min(int(pos), len(RAMP) - 2)
    a, b = (tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in RAMP[i:i + 2])
    return "#" + "".join(f"{round(ca + (cb - ca) * (pos - i)):02x}" for ca, cb in zip(a, b, strict=True))


def _size_unit(sizes: Sequence[float]) -> tuple[str, float]:
    return ("MiB", 1024.0 ** 2) if max(sizes, default=0) >= 10 * 1024 ** 2 else ("KiB", 1024.0)


def pareto(quant_auto: dict[str, Any] | None, latency_budget_ms: float | None = None) -> str:
    """--quant auto's candidates: size vs latency, coloured by the task metric, rings for a missed
    budget, the chosen one circled, and the Pareto front (nothing both smaller and faster) dashed.
    The latency budget is a red line when it lies near the candidates (a 100 ms budget over 1 ms
    models would flatten them to the axis; then the legend states it)."""
    every = (quant_auto or {}).get("candidates") or []
    cands = [c for c in every if c.get("size_bytes")]
    # One latency source for every point: the one most candidates have (auto times the device only for
    # candidates that meet the accuracy budget), the device's first among equals.
    source = max(("device", "simulated", "host"), key=lambda s: sum(c.get(f"{s}_p50_ms") is not None for c in cands))
    drawn = [c for c in cands if c.get(f"{source}_p50_ms") is not None]
    if not drawn:
        return ""
    metrics = [(c.get("task_metric") or {}) for c in drawn]
    values = [m["value"] for m in metrics if isinstance(m.get("value"), int | float) and math.isfinite(m["value"])]
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    metric_name = next((m["name"] for m in metrics if m.get("name")), "task metric")
    unit, div = _size_unit([c["size_bytes"] for c in drawn])
    points = []
    for c, m in zip(drawn, metrics, strict=True):
        value = m.get("value")
        colour = ramp(value, lo, hi) if isinstance(value, int | float) and math.isfinite(value) else "#999999"
        tip = (f"{c['mode']}: {c['size_bytes']:,} bytes, {source} p50 {num(c[f'{source}_p50_ms'])} ms, "
               f"{metric_name} {num(value)} (budget {num(m.get('budget'))}, {'met' if m.get('passed') else 'missed'})"
               + (f"; lost because {c['lost_because']}" if c.get("lost_because") else ""))
        points.append(Point(c["size_bytes"] / div, c[f"{source}_p50_ms"], str(c["mode"]), colour, tip,
                            hollow=m.get("passed") is False or c.get("meets_task") is False, chosen=bool(c.get("chosen"))))
    swatches = "".join(f"<tspan fill='{ramp(lo + (hi - lo) * k / 4, lo, hi)}'>■</tspan>" for k in range(5))
    legend = [f"colour: {_t(metric_name)} from {_t(num(lo))} {swatches} to {_t(num(hi))}" if hi > lo else
              f"colour: {_t(metric_name)} {_t(num(lo))} for every candidate drawn" if values else
              "grey: no task metric measured", "ring: misses its task budget; circled: chosen; dashed: the Pareto front"]
    missing = [str(c.get("mode")) for c in every if c not in drawn]
    if missing:
        legend.append(_t(f"not drawn (skipped, or no {source} figure): {', '.join(missing)}"))
    budget = latency_budget_ms if isinstance(latency_budget_ms, int | float) and latency_budget_ms > 0 else None
    top = max(p.y for p in points)
    if budget is not None and budget > 2 * top:
        legend.append(_t(f"latency budget {num(budget)} ms: above every candidate drawn"))
        budget = None
    return _scatter("pareto", f"--quant auto candidates: size vs {source} latency", points, f"size ({unit})",
                    f"{source} p50 (ms)", front=True, legend=legend, budget=budget)


def sweep_model(model: str, rows: Sequence[dict[str, Any]]) -> str:
    """One model's sweep cells: size vs latency (simulated when any cell has it, else host), green
    when the cell passed, red when it failed its budgets; cells that did not finish are not drawn."""
    key = "sim_p50_ms" if any(r.get("sim_p50_ms") is not None for r in rows) else "host_p50_ms"
    drawn = [r for r in rows if r.get("size_kib") is not None and r.get(key) is not None]
    if not drawn:
        return ""
    profiles = {r["profile"] for r in drawn}
    points = [Point(r["size_kib"], r[key], f"{r['mode']}" + (f" · {r['profile']}" if len(profiles) > 1 else ""),
                    PASS if r["status"].startswith("passed") else FAIL,
                    f"{r['cell']}: {r['size_kib']} KiB, {key} {num(r[key])}, {r['status']}",
                    hollow=not r["status"].startswith("passed")) for r in drawn]
    legend = [f"<tspan fill='{PASS}'>●</tspan> passed <tspan fill='{FAIL}'>○</tspan> failed a budget"
              + (f"; {len(rows) - len(drawn)} cell(s) without figures not drawn" if len(drawn) < len(rows) else "")]
    source = "simulated" if key == "sim_p50_ms" else "host"
    return _scatter("sweep-model", f"{model}: size vs {source} latency per cell", points, "size (KiB)",
                    f"{source} p50 (ms)", width=380, height=240, legend=legend)


# ---------------------------------------------------------------------------------------- bar charts


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    note: str  # printed after the bar
    fill: str = BAR
    tip: str = ""


def _hbars(name: str, title: str, bars: Sequence[Bar], x_label: str, *, legend: str = "", width: int = 760) -> str:
    """Horizontal bars, one row each, labels on the left; values may be negative (a zero line).
    `legend` is SVG text markup: the caller escapes what it puts in."""
    label_w, note_w, row = 250, 150, 18
    top = 6
    height = top + row * len(bars) + 36 + (14 if legend else 0)
    plot_bottom = top + row * len(bars)
    x = Scale.fit([b.value for b in bars], label_w, width - note_w, zero=True)
    y = Scale(0, 1, plot_bottom, top, ())
    body = _frame(x, y, x_label, "", y_ticks=False)
    zero = x(0.0)
    for i, b in enumerate(bars):
        ty = top + i * row
        left, right = sorted((zero, x(b.value)))
        body.append(f"<g><title>{_t(b.tip or b.label)}</title>"
                    f"<text x='{label_w - 6}' y='{ty + 13}' text-anchor='end'>{_t(_short(b.label))}</text>"
                    f"<rect x='{left:.1f}' y='{ty + 3}' width='{max(right - left, 1.0):.1f}' height='{row - 5}' fill='{_t(b.fill)}'/>"
                    f"<text x='{max(right, zero) + 4:.1f}' y='{ty + 13}'>{_t(b.note)}</text></g>")
    body.append(f"<line class='axis' x1='{zero:.1f}' x2='{zero:.1f}' y1='{top}' y2='{plot_bottom}'/>")
    if legend:
        body.append(f"<text class='muted' x='{label_w}' y='{height - 6}'>{legend}</text>")
    return _svg(name, title, width, height, body)


def _share(row: dict[str, Any]) -> str:
    return f"{num(row['ms'])} ms" + (f" ({row['share']:.0%})" if isinstance(row.get("share"), int | float) else "")


def op_types(simulated: dict[str, Any] | None) -> str:
    """Simulated time per op type on the profile: where an inference spends its time on the device."""
    rows = (simulated or {}).get("by_op_type") or []
    if not rows:
        return ""
    bars = [Bar(f"{r['op']} ×{r['count']}", r["ms"], _share(r)) for r in rows[:MAX_BARS]]
    more = f"{len(rows) - MAX_BARS} more op type(s) not drawn" if len(rows) > MAX_BARS else ""
    return _hbars("op-types", f"simulated time per op type on {simulated.get('profile') or 'the profile'}", bars,
                  "simulated ms per inference", legend=_t(more))


def top_ops(simulated: dict[str, Any] | None) -> str:
    """The most expensive single ops, coloured by what bounds each (compute, memory, fixed overhead)."""
    rows = (simulated or {}).get("top_ops") or []
    if not rows:
        return ""
    bars = [Bar(f"#{r['index']} {r['op']}" + (" (TPU)" if r.get("unit") == "tpu" else ""), r["ms"], _share(r),
                BOUND_FILL.get(r.get("bound"), BAR), f"op {r['index']} {r['op']}: {_share(r)}, {r.get('bound')}-bound")
            for r in rows]
    legend = " ".join(f"<tspan fill='{c}'>■</tspan> {_t(k)}-bound" for k, c in BOUND_FILL.items())
    return _hbars("top-ops", f"the {len(rows)} slowest ops (simulated)", bars, "simulated ms per inference", legend=legend)


# Per-layer sensitivity figures, in the order a chart prefers them: the first that varies over the
# layers is drawn (a task metric that stays at 1.0 for every layer ranks nothing; the SNR gain does).
SENSITIVITY_KEYS = {
    "tflite-converter": (("gain", "task metric gained by keeping the layer's unit in float"),
                         ("snr_gain_db", "output SNR (dB) gained by keeping the layer's unit in float"),
                         ("rmse_over_scale", "the layer's own int8 error (RMSE / scale)")),
    "aeq": (("proxy_gain", "output NSR this op adds alone in int8 (the rest float)"),
            ("metric_gain", "task metric lost without this op's searched level")),
}


def sensitivity(quantization: dict[str, Any] | None) -> str:
    """Per-layer int8 sensitivity (`--diagnose` or a `--quant mixed` search), most sensitive first;
    layers the model keeps above int8 are orange."""
    q = quantization or {}
    method = "aeq" if (q.get("search") or {}).get("method") == "aeq" else "tflite-converter"
    layers = q.get("layers") or []

    def figures(key: str) -> list[dict[str, Any]]:
        return [r for r in layers if isinstance(r.get(key), int | float) and math.isfinite(r[key])]

    found = [(key, what, figures(key)) for key, what in SENSITIVITY_KEYS[method]]
    found = [f for f in found if f[2]]
    if not found:
        return ""
    key, what, rows = next((f for f in found if len({r[f[0]] for r in f[2]}) > 1), found[0])
    kept = {k["tensor"] for k in q.get("float_layers") or [] if isinstance(k, dict)}
    kept |= {r["tensor"] for r in rows if r.get("level") not in (None, "int8")}
    rows = sorted(rows, key=lambda r: -r[key])
    bars = [Bar(str(r.get("pytorch_module") or r.get("onnx_node") or r["tensor"]) + (f" ({r['op']})" if r.get("op") else ""),
                r[key], num(r[key]), "#e08a2c" if r["tensor"] in kept else BAR, f"{r['tensor']}: {key} {num(r[key])}")
            for r in rows[:MAX_BARS]]
    legend = (f"<tspan fill='#e08a2c'>■</tspan> kept above int8 <tspan fill='{BAR}'>■</tspan> int8"
              + (f"; {len(rows) - MAX_BARS} more layer(s) not drawn" if len(rows) > MAX_BARS else ""))
    return _hbars("sensitivity", f"per-layer int8 sensitivity: {key}", bars, what, legend=legend)


def latency_histogram(host: dict[str, Any] | None, name: str = "host-latency", where: str = "this host") -> str:
    """The timed runs' distribution: a histogram with every run as a tick below it, p50 and p90 marked."""
    samples = np.asarray([s for s in (host or {}).get("samples_ms") or [] if math.isfinite(s)], dtype=float)
    if samples.size == 0:
        return ""
    # Freedman-Diaconis bins follow the bulk of the runs; a long tail (a preempted run on a shared
    # machine) would otherwise squeeze p50 and p90 into one bar.
    bins = int(min(40, max(8, len(np.histogram_bin_edges(samples, "fd")) - 1)))
    counts, edges = np.histogram(samples, bins=bins)
    width, height = 560, 260
    x = Scale.fit([float(edges[0]), float(edges[-1])], 58, width - 18)
    y = Scale.fit([0.0, float(counts.max())], height - 52, 22, zero=True, count=4)
    body = _frame(x, y, "ms per inference", "runs")
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if c:
            body.append(f"<rect x='{x(a):.1f}' y='{y(c):.1f}' width='{max(x(b) - x(a) - 1, 1):.1f}' "
                        f"height='{y(0) - y(c):.1f}' fill='{BAR}'><title>{_t(f'{num(a)}-{num(b)} ms: {c} run(s)')}</title></rect>")
    body.extend(f"<line x1='{x(s):.1f}' x2='{x(s):.1f}' y1='{y.start + 1:.1f}' y2='{y.start + 5:.1f}' stroke='#222'/>"
                for s in samples)
    for label, q in (("p50", host.get("p50_ms")), ("p90", host.get("p90_ms"))):
        if isinstance(q, int | float) and math.isfinite(q):
            px = x(q)
            body.append(f"<line class='mark' x1='{px:.1f}' x2='{px:.1f}' y1='{y.end - 10:.1f}' y2='{y.start:.1f}'/>"
                        f"<text x='{px + 3:.1f}' y='{y.end - 12 + (label == 'p90') * 11:.1f}'>{label} {_t(num(q))} ms</text>")
    runs = host.get("runs") or samples.size
    kept = "" if runs == samples.size else f" ({samples.size} of {runs} kept)"
    return _svg(name, f"{samples.size} timed runs on {where}{kept}", width, height, body)
