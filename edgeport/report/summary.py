"""report.json (contract in DESIGN.md) and the console summary; written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgeport.types import plain


def versions() -> dict[str, str | None]:
    from importlib import metadata

    def ver(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "edgeport": ver("edgeport"), "torch": ver("torch"), "tensorflow": ver("tensorflow"), "onnx": ver("onnx"),
        "onnx2tf": ver("onnx2tf"), "litert": ver("ai-edge-litert") or ver("tflite-runtime"),
        "onnxruntime": ver("onnxruntime"),
    }


def empty_report() -> dict[str, Any]:
    """Every contract key exists; null means not measured."""
    return {
        "profile": None, "versions": versions(), "timings": {},
        "artifact": {"path": None, "sha256": None, "size_bytes": None},
        "reference": {"size_bytes": None},
        "quantization": {"mode": None, "float_layers": []},
        "accuracy": {"reference": None, "tflite": None, "drop_pp": None, "top1_agreement": None,
                     "cosine_mean": None, "snr_db": None, "task": None},
        "latency": {"simulated": {"p50_ms": None}, "host": {"p50_ms": None, "p90_ms": None},
                    "device": {"p50_ms": None, "p90_ms": None, "target": None}},
        "verdict": {"passed": False, "checks": [], "warnings": []},
    }


def write_text_atomic(path: Path, text: str) -> None:
    """A temp file beside `path`, then a rename: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(plain(data), indent=2, sort_keys=False) + "\n")


_RUNTIME_LABEL = {"xnnpack": "  [XNNPACK]", "builtin": "  [builtin kernels, no XNNPACK]", "default": "  [default delegates]"}


def summary_lines(report: dict[str, Any]) -> list[str]:
    acc = report["accuracy"]
    art = report["artifact"]
    lat = report["latency"]
    q = report["quantization"]
    lines = [f"edgeport: {q['mode']} model for profile '{report['profile']['name'] if report['profile'] else '?'}'"]
    if art["path"]:
        ref = report["reference"]["size_bytes"]
        ratio = f" ({art['size_bytes'] / ref:.0%} of fp32)" if ref else ""
        lines.append(f"  artifact   {art['path']}  {art['size_bytes'] / 1024:.1f} KiB{ratio}")
    export = report.get("export") or {}
    if export.get("backend") and (len(export.get("attempts") or []) > 1 or export.get("backend") != "onnx2tf"):
        lines.append(f"  exporter   {export['backend']}: {export.get('reason')}"[:400])
    consts = (report.get("model") or {}).get("constants") or []
    if consts:
        lines.append("  constants  " + ", ".join(f"{c['name']}={c['value']!r} ({c['type']}, {c['source']})" for c in consts))
    on = _RUNTIME_LABEL.get(acc.get("runtime") or "", "")
    if acc["reference"] is not None:
        lines.append(f"  accuracy   float {acc['reference']:.2%} -> tflite {acc['tflite']:.2%}  (drop {acc['drop_pp']:+.2f} pp){on}")
    if acc["top1_agreement"] is not None:
        lines.append(f"  agreement  top-1 {acc['top1_agreement']:.2%}  cosine {_f(acc['cosine_mean'])}  SNR {_f(acc['snr_db'])} dB{on}")
    elif acc["cosine_mean"] is not None:
        lines.append(f"  agreement  cosine {_f(acc['cosine_mean'])}  SNR {_f(acc['snr_db'])} dB{on}")
    task = acc.get("task") or {}
    if task.get("task"):
        how = f"detected: {task['reason']}" if task.get("detected") else "given with --task"
        figure = f"  {task['summary']}" if task.get("metric") else ""
        lines.append(f"  task       {task['task']} ({how}){figure}"[:300])
    xnn = report.get("xnnpack") or {}
    if xnn.get("accepted") is False:
        lines.append("  XNNPACK    refused this model (devices apply it by default); the figures above are from builtin kernels")
    host = lat["host"]
    if host["p50_ms"] is not None:
        lines.append(f"  latency    host p50 {host['p50_ms']:.3f} ms  p90 {host['p90_ms']:.3f} ms ({host.get('threads')} threads)")
    if lat["simulated"]["p50_ms"] is not None:
        lines.append(f"             simulated p50 {lat['simulated']['p50_ms']:.3f} ms{fit_label(lat['simulated'].get('fit'))}")
    if lat["device"]["p50_ms"] is not None:
        emulated = "  (emulated: accuracy only; not judged)" if lat["device"].get("emulated") else ""
        lines.append(f"             device {lat['device']['target']} p50 {lat['device']['p50_ms']:.3f} ms{emulated}")
    on_device = report.get("device_validation") or {}
    if on_device.get("checked"):  # runners/device_eval.py: the validation data run on the device
        agree, runtime = on_device["agreement"], on_device["device"]["runtime"]
        top1 = f"top-1 {agree['top1_agreement']:.2%}  " if agree.get("top1_agreement") is not None else ""
        lines.append(f"  on device  {on_device['target']} vs host: {top1}cosine {_f(agree['cosine_mean'])} on {on_device['samples']} "
                     f"of {on_device['sampled_from']} samples ({runtime.get('name')} {runtime.get('version')})")
    layers = q.get("layers") or []
    if layers and (q.get("search") or {}).get("method") == "aeq":
        lines.extend(_aeq_lines(q))
    elif layers:
        ranked = sorted(layers, key=lambda r: (-(r.get("gain") or 0), -(r.get("rmse_over_scale") or 0)))[:5]
        lines.append("  top int8 offenders (gain in task metric when kept in float; local rmse/scale):")
        for r in ranked:
            where = r.get("pytorch_module") or r.get("onnx_node") or r["tensor"][:60]
            lines.append(f"    {r['op']:<18} {where:<40} gain {r.get('gain', 0) or 0:+.4f}  rmse/scale {_f(r.get('rmse_over_scale'))}")
        kept = q.get("float_layers") or []
        if kept:
            names = [k.get("pytorch_module") or k.get("onnx_node") or k["tensor"][:40] for k in kept]
            lines.append(f"  kept float {len(kept)}: {', '.join(names)}")
    fc = report.get("float_conversion") or {}
    if fc and not fc.get("matches") and fc.get("first_divergent"):
        d = fc["first_divergent"]
        lines.append(f"  CONVERSION the float32 TFLite diverges from the reference at ONNX node {d['onnx_node']} [{d['op']}]"
                     + (f", PyTorch module {d['pytorch_module']}" if d.get("pytorch_module") else ""))
    for note in report.get("notes", []):
        lines.append(f"  note       {note}")
    if report.get("quant_auto"):
        from edgeport.quantize.auto import summary_lines as auto_lines

        lines.extend(auto_lines(report["quant_auto"]))
    verdict = report["verdict"]
    lines.append(f"  verdict    {'PASSED' if verdict['passed'] else 'FAILED'}")
    for check in verdict["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        detail = f"  ({check['detail']})" if check.get("detail") else ""
        lines.append(f"    [{mark}] {check_text(check)}{detail}")
    for warning in verdict.get("warnings") or []:
        lines.append(f"    [warn] {warning['text']}")
    return lines


# What the number of a yes/no check measures, where it is not obvious.
_MEASURED = {"float_conversion_matches_reference": "min cosine", "kept_layers_are_float": "verified float ops"}


def check_text(check: dict[str, Any]) -> str:
    """`name: value vs budget` for a budget; `name: yes|no` for a requirement (budget True), with
    the number it was judged on when there is one, never a bare number where a yes/no is meant."""
    if check["budget"] is True:
        value = check["value"]
        measured = ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            measured = f" ({_MEASURED.get(check['name'], 'value')} {_f(value)})"
        return f"{check['name']}: {_f(bool(check['passed']))}{measured}"
    return f"{check['name']}: {_f(check['value'])} vs budget {_f(check['budget'])}"


def _f(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fit_label(fit: dict[str, Any] | None) -> str:
    """' (host fit KEY, cached)' or ' (shipped fallback: REASON)': which host fit a simulation used."""
    if not fit:
        return ""
    if fit.get("source") == "host-fit":
        return f" (host fit {fit['key']} of {fit['cpu']}, int8 {fit['int8_dot']}, {'cached' if fit.get('cached') else 'fitted now'})"
    return f" (shipped host fallback carried to {fit.get('cpu')}, int8 {fit.get('int8_dot')}: {fit.get('reason')})"


def _aeq_lines(q: dict[str, Any]) -> list[str]:
    counts = q.get("levels") or {}
    lines = [f"  levels     int8 {counts.get('int8', 0)}, a16w8 {counts.get('a16w8', 0)}, float {counts.get('float', 0)} ops"
             f" (search: {(q.get('search') or {}).get('stopped')})"]
    for r in [r for r in q["layers"] if r.get("level") != "int8"][:8]:
        where = r.get("pytorch_module") or r.get("onnx_node") or r["tensor"][:40]
        lines.append(f"    {r['op']:<18} {where:<32} {r['level']:<6} {str(r.get('reason') or '')[:110]}")
    return lines

