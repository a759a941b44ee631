"""report.html: the same content as report.json for a person — verdict first, then why.

Self-contained (inline CSS and inline SVG charts, no scripts, no network), every value HTML-escaped:
names in a model file are untrusted text. The charts are drawn by report/charts.py from the same keys.
"""

from __future__ import annotations

from html import escape
from typing import Any

from edgeport.report import charts

_CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#176f2c;font-weight:600}.fail{color:#b00020;font-weight:600}
.badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff}.pass{background:#176f2c}.nopass{background:#b00020}
code{background:#f4f4f4;padding:0 3px}
""" + charts.CSS


def _v(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render(report: dict[str, Any]) -> str:
    verdict = report["verdict"]
    prof = (report.get("profile") or {}).get("name", "?")
    q = report["quantization"]
    acc = report["accuracy"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>edgeport report — {escape(prof)}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>edgeport: {escape(str(q.get('mode')))} model for <code>{escape(prof)}</code> "
             f"<span class='badge {'pass' if verdict['passed'] else 'nopass'}'>{'PASSED' if verdict['passed'] else 'FAILED'}</span></h1>",
             f"<p>Artifact <code>{_v(report['artifact']['path'])}</code>, {_v(report['artifact']['size_bytes'])} bytes, "
             f"sha256 <code>{_v(report['artifact']['sha256'])}</code></p>"]
    parts.append("<h2>Checks</h2>" + _table(["check", "value", "budget", "result", "detail"], [
        [escape(c["name"]), _v(c["value"]), _v(c["budget"]),
         f"<span class='{'ok' if c['passed'] else 'fail'}'>{'ok' if c['passed'] else 'FAIL'}</span>", _v(c.get("detail"))]
        for c in verdict["checks"]]))
    warnings = verdict.get("warnings") or []
    if warnings:
        parts.append("<ul>" + "".join(f"<li class='fail'>{escape(str(w.get('text')))}</li>" for w in warnings) + "</ul>")
    if report.get("quant_auto"):
        parts.append(_quant_auto(report["quant_auto"], ((report.get("profile") or {}).get("budgets") or {}).get("latency_p50_ms")))
    parts.append("<h2>Accuracy</h2>" + _table(["reference", "tflite", "drop (pp)", "top-1 agreement", "cosine", "SNR dB"],
                                            [[_v(acc["reference"]), _v(acc["tflite"]), _v(acc["drop_pp"]),
                                              _v(acc["top1_agreement"]), _v(acc["cosine_mean"]), _v(acc["snr_db"])]]))
    outputs = acc.get("outputs") or []
    if outputs:
        parts.append(_table(["output", "shape", "cosine mean", "cosine min", "max abs error", "SNR dB", "non-finite"], [
            [escape(o["name"]), _v(o["shape"]), _v(o["cosine_mean"]), _v(o["cosine_min"]), _v(o["max_abs_error"]),
             _v(o["snr_db"]), _v(o["nonfinite"])] for o in outputs]))
    lat = report["latency"]
    rows = [["simulated", _v(lat["simulated"].get("p50_ms")), "—", _v((report.get("profile") or {}).get("name"))],
            ["host", _v(lat["host"].get("p50_ms")), _v(lat["host"].get("p90_ms")), _v(lat["host"].get("threads"))],
            ["device", _v(lat["device"].get("p50_ms")), _v(lat["device"].get("p90_ms")), _v(lat["device"].get("target"))]]
    parts.append("<h2>Latency (ms)</h2>" + _table(["source", "p50", "p90", "threads / target"], rows))
    parts.append("<div class='charts'>" + charts.latency_histogram(lat["host"]) + charts.op_types(lat["simulated"])
                 + charts.top_ops(lat["simulated"]) + "</div>")
    if q.get("layers") and (q.get("search") or {}).get("method") == "aeq":
        parts.extend(_aeq_tables(q))
    elif q.get("layers"):
        ranked = sorted(q["layers"], key=lambda r: (-(r.get("gain") or 0), -(r.get("rmse_over_scale") or 0)))
        kept = {k["tensor"] for k in q.get("float_layers") or [] if isinstance(k, dict)}
        parts.append("<h2>Per-layer int8 sensitivity</h2>" + charts.sensitivity(q) + _table(
            ["op", "PyTorch module", "ONNX node", "gain kept float", "rmse/scale", "kept float"],
            [[_v(r["op"]), _v(r.get("pytorch_module")), _v(r.get("onnx_node")), _v(r.get("gain")), _v(r.get("rmse_over_scale")),
              "yes" if r["tensor"] in kept else ""] for r in ranked]))
        if q.get("curve"):  # a --diagnose run has the per-layer table and no search curve
            parts.append("<h2>Accuracy vs float ops</h2>" + _table(
                ["float ops", "accuracy", "top-1", "SNR dB", "bytes", "host p50 ms"],
                [[_v(c["float_ops"]), _v(c.get("accuracy")), _v(c.get("top1")), _v(c.get("snr_db")), _v(c.get("size_bytes")),
                  _v(c.get("host_p50_ms"))] for c in q["curve"]]))
    notes = report.get("notes") or []
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    versions = ", ".join(f"{escape(k)} {_v(v)}" for k, v in (report.get("versions") or {}).items())
    parts.append(f"<h2>Provenance</h2><p>{versions}</p><p>calibration sha256 "
                 f"<code>{_v(((report.get('data') or {}).get('calibration') or {}).get('sha256'))}</code></p></body></html>")
    return "\n".join(parts)


def _aeq_tables(q: dict) -> list[str]:
    """The AEQ search: ops not at int8 with the reason for each, then every evaluated candidate."""
    changed = [r for r in q["layers"] if r.get("level") != "int8"]
    ops = "<h2>Ops not at int8, and why</h2>" + charts.sensitivity(q) + _table(
        ["op", "level", "PyTorch module", "ONNX node", "reason", "latency cost ms", "bytes cost"],
        [[_v(r["op"]), _v(r.get("level")), _v(r.get("pytorch_module")), _v(r.get("onnx_node")), _v(r.get("reason")),
          _v(r.get("latency_cost_ms")), _v(r.get("bytes_cost"))] for r in changed])
    curve = "<h2>Search (every candidate evaluated)</h2>" + _table(
        ["step", "phase", "candidate", "int8 / a16w8 / float ops", "metric", "simulated ms", "bytes"],
        [[_v(c.get("step")), _v(c.get("phase")), _v(c.get("what")),
          _v("/".join(str((c.get("levels") or {}).get(k, 0)) for k in ("int8", "a16w8", "float"))),
          _v(c.get("metric", c.get("nsr"))), _v(c.get("sim_ms")), _v(c.get("size_bytes"))] for c in q.get("curve") or []])
    return [ops, curve]



def _quant_auto(auto: dict[str, Any], latency_budget_ms: float | None) -> str:
    """--quant auto: the candidates' chart, then every candidate with its figures and why it lost."""
    rows = []
    for c in auto.get("candidates") or []:
        m = c.get("task_metric") or {}
        rows.append([f"<b>{_v(c.get('mode'))}</b>" if c.get("chosen") else _v(c.get("mode")), _v(c.get("size_bytes")),
                     f"{_v(m.get('name'))} {_v(m.get('value'))}" if m else "—", _v(m.get("budget")), _v(c.get("meets_task")),
                     _v(c.get("simulated_p50_ms")), _v(c.get("host_p50_ms")), _v(c.get("meets_latency")),
                     _v(c.get("skipped") or c.get("lost_because") or ("chosen" if c.get("chosen") else None))])
    return (f"<h2>Precision chosen by --quant auto: {_v(auto.get('chosen'))}</h2>" + charts.pareto(auto, latency_budget_ms)
            + _table(["mode", "bytes", "task metric", "budget", "meets task", "simulated p50", "host p50",
                      "meets latency", "why not chosen"], rows))
