"""The sweep's one results table: results.json, results.md and a self-contained results.html.

Every value in the HTML is escaped (model names and failure reasons are untrusted text) and each
row links to its cell's own report.html.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from edgeport.report.charts import sweep_model
from edgeport.report.html import _CSS
from edgeport.report.summary import write_text_atomic
from edgeport.types import plain

COLUMNS = ("cell", "model", "profile", "mode", "status", "accuracy", "drop_pp", "top1", "size_kib", "sim_p50_ms",
           "host_p50_ms", "report")


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in results["cells"]:
        s = c.get("summary") or {}
        size = s.get("size_bytes")
        out.append({"cell": c["id"], "model": c["model"], "profile": c["profile"], "mode": c["mode"],
                    "status": c["status"] + (" (resumed)" if c.get("resumed") else ""),
                    "accuracy": s.get("accuracy"), "drop_pp": s.get("drop_pp"), "top1": s.get("top1_agreement"),
                    "size_kib": None if size is None else round(size / 1024, 1),
                    "sim_p50_ms": s.get("simulated_p50_ms"), "host_p50_ms": s.get("host_p50_ms"),
                    "report": c.get("report_link"), "reason": c.get("reason") or _checks(s)})
    return out


def _checks(summary: dict[str, Any]) -> str | None:
    failed = summary.get("failed_checks") or []
    return f"over budget: {', '.join(failed)}" if failed else None


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    def cell(v: Any) -> str:  # a table cell must stay one cell: no pipes, no line breaks
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = [f"# edgeport sweep: {results['counts']}", "",
             "| " + " | ".join(COLUMNS[:-1]) + " | report | reason |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for r in rows(results):
        link = f"[report]({r['report']})" if r["report"] else "—"
        lines.append("| " + " | ".join(cell(r[k]) for k in COLUMNS[:-1]) + f" | {link} | {cell(r['reason'])} |")
    return "\n".join(lines) + "\n"


def html(results: dict[str, Any]) -> str:
    cls = {"passed": "ok", "failed": "fail", "error": "fail", "crashed": "fail"}
    head = "".join(f"<th>{escape(h)}</th>" for h in (*COLUMNS[:-1], "report", "reason"))
    body = []
    table = rows(results)
    for r in table:
        status = r["status"].split()[0]
        link = f"<a href='{escape(r['report'], quote=True)}'>report</a>" if r["report"] else "—"
        tds = [f"<td>{escape(_fmt(r[k]))}</td>" for k in COLUMNS[:4]]
        tds.append(f"<td class='{cls.get(status, '')}'>{escape(r['status'])}</td>")
        tds += [f"<td>{escape(_fmt(r[k]))}</td>" for k in COLUMNS[5:-1]]
        tds += [f"<td>{link}</td>", f"<td>{escape(_fmt(r['reason']))}</td>"]
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgeport sweep</title><style>{_CSS}</style></head>"
            f"<body><h1>edgeport sweep</h1><p>{escape(results['counts'])} · executor {escape(results['executor'])} · "
            f"plan <code>{escape(results['plan'])}</code></p><table><tr>{head}</tr>{''.join(body)}</table>"
            f"{_charts(table)}</body></html>\n")


def _charts(table: list[dict[str, Any]]) -> str:
    """One small size-vs-latency chart per model, its cells coloured by pass/fail."""
    models: dict[str, list[dict[str, Any]]] = {}
    for r in table:
        models.setdefault(r["model"], []).append(r)
    drawn = "".join(sweep_model(model, cells) for model, cells in models.items())
    return f"<h2>Size vs latency per model</h2><div class='charts'>{drawn}</div>" if drawn else ""


def write(out: Path, results: dict[str, Any]) -> dict[str, Path]:
    """All three files, each via a temp file and rename, so a reader never sees half a table."""
    paths = {"json": out / "results.json", "md": out / "results.md", "html": out / "results.html"}
    texts = {"json": json.dumps(plain(results), indent=2) + "\n", "md": markdown(results), "html": html(results)}
    for kind, path in paths.items():
        write_text_atomic(path, texts[kind])
    return paths
