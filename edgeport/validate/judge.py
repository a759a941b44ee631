"""The verdict as a pure function of what the stages found and the profile's budgets.

`Evidence` holds only facts (read back from the written file, measured on data, timed); `judge`
turns them and the budgets into report.json's `verdict`. No I/O, so every rule has a fast unit test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeport.profiles import Budgets
from edgeport.validate import verdict
from edgeport.validate.verdict import Check

LATENCY_SOURCES = ("device", "simulated", "host")  # the first one measured is the one judged
# An emulated device (profile connection.emulated) ran ARM kernels, so its outputs count, but its time
# is an emulator's: recorded, never judged against the latency budget (the next source is judged).
EMULATED_NOTE = "emulated: accuracy only"
# The task metric checks' names (edgeport/tasks TaskScore.metric, plus detect's precision): accuracy checks
# like top1_agreement and snr_db, so the exporter arbitration and --quant auto judge by them too.
TASK_CHECKS = ("ctc_identical", "detect_recall", "detect_precision", "embed_cosine_min", "segment_miou")


@dataclass(frozen=True)
class Evidence:
    mode: str
    size_bytes: int
    custom_ops: tuple[str, ...] = ()  # Flex/custom ops in the written file
    float_ops: tuple[str, ...] = ()  # "OP#index" of float ops (judged for --quant int8 only)
    ran: bool = True  # the artifact produced outputs on the validation data
    run_error: str | None = None
    nonfinite: tuple[tuple[str, int], ...] = ()  # (output, count of NaN/inf values)
    drop_pp: float | None = None
    top1_agreement: float | None = None
    snr_db: float | None = None
    latency_ms: dict[str, float | None] = field(default_factory=dict)  # source -> p50
    device_target: str | None = None
    device_emulated: bool = False  # the device time is an emulator's (EMULATED_NOTE)
    float_check: dict[str, Any] = field(default_factory=lambda: {"matches": True})
    xnnpack: dict[str, Any] = field(default_factory=dict)
    edgetpu_share: float | None = None  # Edge TPU profiles only
    edgetpu_first_cpu_op: str | None = None
    kept_float: tuple[str, ...] | None = None  # mixed: ops the search kept in float
    kept_float_not_float: tuple[str, ...] = ()  # ...of which the written file has these in integer
    # mixed/w8/w4: an fp16 build of the same float model (quantize/fp16_compare): size_bytes,
    # simulated_p50_ms, dominated, recommendation, detail. Judged for --quant mixed only.
    fp16_comparison: dict[str, Any] | None = None
    # report.json's device_validation (runners/device_eval.py): the validation inputs run on the device
    device_validation: dict[str, Any] | None = None
    # The task's metric against the float model (edgeport/tasks TaskScore.to_dict()): for ctc, detect,
    # embed and segment it is the accuracy check, in place of the raw SNR that cannot see the task.
    task: dict[str, Any] | None = None


def judge(ev: Evidence, budgets: Budgets) -> dict[str, Any]:
    checks = [*_structure(ev), *_extra(ev, budgets), *_budgets(ev, budgets), *device_checks(ev.device_validation, budgets)]
    return verdict.decide(checks)


def _structure(ev: Evidence) -> list[Check | None]:
    """What the written file really contains, read back from the flatbuffer, not what was asked."""
    custom = sorted(ev.custom_ops)
    checks: list[Check | None] = [verdict.must(
        "builtin_ops_only", not custom, custom or True,
        f"needs {', '.join(custom)}: Flex/custom ops do not run on standard runtimes, Coral or GPU" if custom else "")]
    if ev.mode == "int8":
        checks.append(verdict.must("full_integer", not ev.float_ops, not ev.float_ops,
                                   f"{len(ev.float_ops)} float op(s): {', '.join(ev.float_ops[:5])}" if ev.float_ops else ""))
    return checks


def _extra(ev: Evidence, b: Budgets) -> list[Check | None]:
    checks: list[Check | None] = []
    if ev.kept_float is not None:
        missing = ev.kept_float_not_float
        checks.append(verdict.must("kept_layers_are_float", not missing, len(ev.kept_float) - len(missing),
                                   f"not float in the written model: {', '.join(missing[:3])}" if missing else ""))
    if ev.edgetpu_share is not None:
        checks.append(verdict.at_least("edgetpu_op_share", round(ev.edgetpu_share, 4), b.min_edgetpu_op_share,
                                       f"first op on the CPU: {ev.edgetpu_first_cpu_op}" if ev.edgetpu_first_cpu_op else ""))
    checks.append(_float_conversion(ev.float_check))
    checks.append(_xnnpack(ev.xnnpack))
    checks.append(_not_dominated(ev))
    return checks


def _not_dominated(ev: Evidence) -> Check | None:
    """--quant mixed must not be both larger and slower (simulated) than fp16 of the same model: then
    fp16 is the answer, and the verdict says so instead of passing a dominated model."""
    cmp = ev.fp16_comparison
    if ev.mode != "mixed" or cmp is None or cmp.get("dominated") is None:
        return None
    dominated = bool(cmp["dominated"])
    detail = cmp.get("detail", "")
    if dominated:
        detail = f"{detail}; {cmp.get('recommendation')}"
    return verdict.must("mixed_not_dominated", not dominated, {"size_vs_fp16": cmp.get("size_ratio"),
                                                               "simulated_latency_vs_fp16": cmp.get("latency_ratio")}, detail)


def _float_conversion(result: dict[str, Any]) -> Check:
    """Separates converter errors from quantization errors: the float32 TFLite must match the reference."""
    where = result.get("first_divergent")
    detail = ""
    if not result["matches"]:
        detail = result.get("error") or "the float32 TFLite already disagrees with the reference: a conversion error, not quantization"
        if where:
            module = f" (PyTorch module {where['pytorch_module']})" if where.get("pytorch_module") else ""
            detail += f"; first divergent ONNX node: {where['onnx_node']} [{where['op']}]{module}"
    return verdict.must("float_conversion_matches_reference", result["matches"], result.get("cosine_min"), detail)


def _xnnpack(found: dict[str, Any]) -> Check | None:
    from edgeport.validate.xnnpack import check

    return check(found)


def _task(ev: Evidence, b: Budgets, finite: bool) -> list[Check | None]:
    """The task metric's checks (TASK_CHECKS); none for classify (judged by top-1 and the label drop) and raw."""
    task = ev.task or {}
    floor = b.task_minimum(task.get("task", ""))
    if floor is None:
        return []
    value = task.get("value") if finite else None
    detail = task.get("summary", "")
    checks: list[Check | None] = [verdict.at_least(task["metric"], None if value is None else round(value, 4), floor, detail)]
    if task["task"] == "detect":  # recall alone passes a model that adds boxes the float model never saw
        precision = (task.get("details") or {}).get("precision") if finite else None
        checks.append(verdict.at_least("detect_precision", None if precision is None else round(precision, 4), floor,
                                       "quantized detections that match a float detection at IoU 0.5"))
    return checks


def device_checks(dev: dict[str, Any] | None, b: Budgets) -> list[Check | None]:
    """The device must agree with the host's TFLite run on EVERY output (mean cosine >= min_device_cosine, or
    top-1 agreement >= min_device_top1_agreement where the output is a classifier's), and its own accuracy
    against the float model meets the budget the host's does. None when the device did not run the data."""
    if not dev or not dev.get("checked"):
        return []

    def agrees(row: dict[str, Any]) -> bool:
        cos, top1 = row["cosine_mean"], row["top1_agreement"]
        return (cos == cos and cos >= b.min_device_cosine) or (top1 is not None and top1 >= b.min_device_top1_agreement)

    found = dev["agreement"]
    bad = [row["name"] for row in found["outputs"] if not agrees(row)]
    where = f"{dev['target']} vs this host on {dev['samples']} samples"
    checks: list[Check | None] = [Check(
        "device_agrees_with_host", {"cosine_mean": found["cosine_mean"], "top1_agreement": found["top1_agreement"]},
        {"min_cosine": b.min_device_cosine, "min_top1_agreement": b.min_device_top1_agreement}, not bad,
        f"{where}; disagrees on {', '.join(bad)}" if bad else where)]
    acc = dev.get("accuracy") or {}
    if acc.get("drop_pp") is not None:
        checks.append(verdict.at_most("device_accuracy_drop_pp", acc["drop_pp"], b.accuracy_drop_pp, f"labels, on {dev['target']}"))
    elif acc.get("top1_agreement") is not None:
        checks.append(verdict.at_least("device_top1_agreement", acc["top1_agreement"], b.min_top1_agreement,
                                       f"agreement with the float model, on {dev['target']}"))
    return checks


def _budgets(ev: Evidence, b: Budgets) -> list[Check | None]:
    finite = ev.ran and not any(count for _, count in ev.nonfinite)
    detail = ev.run_error or "; ".join(f"{name}: {count} non-finite values" for name, count in ev.nonfinite if count)
    checks: list[Check | None] = [verdict.must("runs_on_validation_data", finite, finite, detail)]
    checks.append(verdict.at_most("model_size_mb", round(ev.size_bytes / 1e6, 4), b.model_size_mb))
    task_checks = _task(ev, b, finite)  # ctc/detect/embed/segment: the task metric, not top-1 or SNR
    if ev.drop_pp is not None:
        checks.append(verdict.at_most("accuracy_drop_pp", ev.drop_pp, b.accuracy_drop_pp))
    elif (ev.top1_agreement is not None or not finite) and not task_checks:
        checks.append(verdict.at_least("top1_agreement", ev.top1_agreement, b.min_top1_agreement,
                                       "no labels: agreement with the float model"))
    checks.extend(task_checks)
    if b.min_snr_db is not None and (ev.snr_db is not None or not finite) and not task_checks:
        checks.append(verdict.at_least("snr_db", ev.snr_db, b.min_snr_db))
    checks.append(_latency(ev, b))
    return checks


def judged_latency(latency_ms: dict[str, float | None], device_emulated: bool) -> tuple[str, float | None]:
    """(source, p50) the latency budget is judged on: the first measured of LATENCY_SOURCES, an
    emulated device's time left out."""
    sources = [s for s in LATENCY_SOURCES if not (s == "device" and device_emulated)]
    return next(((s, latency_ms[s]) for s in sources if latency_ms.get(s) is not None), ("", None))


def _latency(ev: Evidence, b: Budgets) -> Check | None:
    source, value = judged_latency(ev.latency_ms, ev.device_emulated)
    detail = {"device": f"measured on {ev.device_target}", "simulated": "simulated from the profile",
              "host": "host measurement stands in: no device or simulated latency"}.get(source, "")
    emulated_ms = ev.latency_ms.get("device") if ev.device_emulated else None
    if emulated_ms is not None:
        detail = f"{detail}; {EMULATED_NOTE}: {ev.device_target} p50 {emulated_ms:g} ms recorded, not judged"
    return verdict.at_most("latency_p50_ms", value, b.latency_p50_ms, detail)
