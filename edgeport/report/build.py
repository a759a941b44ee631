"""report.json from the typed results of a `convert` run: the one place that knows its layout.

Stages return records (`ConvertResults` collects them); this module turns them into the contract's
keys, and `evidence()` extracts what the verdict (validate/judge.py) needs. Neither runs anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.data.model_io import GENERATED_INPUTS, Data, ModelIO
from edgeport.export.checkpoint import LoadedModel
from edgeport.export.select import ExportChoice
from edgeport.modes import MODES
from edgeport.profiles import DeviceProfile
from edgeport.report.summary import empty_report
from edgeport.types import Artifact, file_sha256
from edgeport.validate import metrics
from edgeport.validate.judge import Evidence
from edgeport.validate.run import TfliteRun

MAX_SAMPLES = 1000  # host timings kept in latency.host.samples_ms


@dataclass
class ConvertResults:
    options: dict[str, Any]  # the request as given (report.options)
    checkpoint: Path
    profile: DeviceProfile
    mode: str
    loaded: LoadedModel
    io: ModelIO
    data: Data
    references: list[np.ndarray]
    choice: ExportChoice
    artifact_key: str
    final: Path  # where the artifact is published
    run: TfliteRun  # the artifact on the validation data (and its host timing)
    fp32_run: TfliteRun | None  # the float32 model's host timing when the artifact is not float32
    float_check: dict[str, Any]
    xnnpack: dict[str, Any]
    info: dict[str, Any]  # inspect_model() of the artifact
    device: dict[str, Any] = field(default_factory=dict)  # "simulated"/"device"/"devices" from --target
    simulated: dict[str, Any] | None = None
    edgetpu: Any = None  # latency.edgetpu report (Edge TPU profiles)
    mixed: Any = None  # quantize.search.converter.MixedResult for --quant mixed
    diagnosis: Any = None  # the per-layer table of --diagnose
    bindings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fp16_comparison: Any = None  # quantize.fp16_compare.Fp16Comparison for mixed/w8/w4 on profiles that run fp16
    # accuracy.task: the task metric of this run, computed when the artifact was validated (ArtifactCheck.task)
    task_figures: dict[str, Any] | None = None

    @property
    def artifact_path(self) -> Path:
        return self.choice.conversion.files[self.artifact_key]


def build_report(r: ConvertResults) -> dict[str, Any]:
    report = empty_report()
    conv = r.choice.conversion
    prof = r.profile
    path = r.artifact_path
    onnx = conv.onnx or r.io.onnx
    report["profile"] = prof.to_dict()
    report["artifact"] = Artifact(r.final, file_sha256(path), path.stat().st_size).to_dict()
    report["reference"] = {"size_bytes": conv.files["fp32"].stat().st_size if "fp32" in conv.files else None,
                           "kind": r.loaded.kind, "onnx_opset": onnx.opset if onnx else None}
    report["export"] = r.choice.to_dict()
    report["quantization"] = {"mode": r.mode, "float_layers": _float_layers(r),
                              "io_dtype": prof.runtime.io_dtype if MODES[r.mode].integer_io else "float32"}
    # The checkpoint's hash lets `edgeport ship` prove which weights an app model came from.
    ckpt_sha = file_sha256(r.checkpoint) if r.checkpoint.is_file() else None
    report["model"] = {"source": str(r.checkpoint), "sha256": ckpt_sha, "inputs": [asdict(s) for s in r.io.inputs],
                       "outputs": [asdict(s) for s in r.io.outputs],
                       "normalization_notes": list(onnx.notes) if onnx else [],
                       "pool_rewrites": list(onnx.pool_rewrites) if onnx else [],
                       "graph_rewrites": list(onnx.graph_rewrites) if onnx else [],
                       "constants": r.bindings, "ops": r.info["op_counts"], "macs": r.info["total_macs"],
                       "variable_tensors": r.info.get("variable_tensors", 0),
                       # how the weights were found (prefixes stripped, EMA chosen, moved from cuda) and their dtype
                       "notes": list(r.loaded.notes), "dtype": r.loaded.dtype}
    report["data"] = _data_section(r.data)
    # One flag a script can test: every accuracy figure in this report comes from generated inputs,
    # not the user's data (float exports run without --calib/--val).
    report["accuracy"]["on_generated_inputs"] = r.data.generated
    report["options"] = r.options
    report["runtime_error"] = r.run.error
    _accuracy(report["accuracy"], r)
    _latency(report["latency"], r)
    report["notes"] = r.notes
    report["xnnpack"] = r.xnnpack
    if r.diagnosis is not None:
        report["quantization"]["layers"] = r.diagnosis.layers
    report["quantization"]["weight_bytes"] = r.info["weight_bytes"]
    if r.mixed is not None:
        report["quantization"].update(_mixed_section(r.mixed, prof))
    weight_only = conv.extra.get("weight_only")
    if weight_only is not None and weight_only.mode == r.mode:
        report["quantization"]["weight_only"] = weight_only.to_dict()
    if r.fp16_comparison is not None:
        report["quantization"]["fp16_comparison"] = r.fp16_comparison.to_dict()
    if r.edgetpu is not None:
        report["edgetpu"] = r.edgetpu.to_dict()
    report["float_conversion"] = r.float_check
    return report


def _float_layers(r: ConvertResults) -> list[Any]:
    if r.mode not in ("int8", "int16x8"):
        return []
    return [r.info["ops"][i]["output_name"] for i in r.info["float_ops"]]


def _data_section(data: Data) -> dict[str, Any]:
    calib, val = data.calib, data.val
    section = {
        "calibration": None if calib is None else {"source": calib.source, "samples": calib.count, "sha256": calib.sha256,
                                                    "preprocessing": calib.preprocessing,
                                                    "class_names": _names(calib.class_names)},
        "validation": {"source": val.source, "samples": val.count, "sha256": val.sha256, "labels": val.labels is not None,
                       "preprocessing": val.preprocessing, "class_names": _names(val.class_names),
                       "generated": data.generated},
    }
    if data.generated:
        section["validation"]["generator"] = GENERATED_INPUTS
    return section


def _accuracy(acc: dict[str, Any], r: ConvertResults) -> None:
    run = r.run
    if run.outputs is not None:
        per_output = [metrics.compare_output(spec.name, ref, got)
                      for spec, ref, got in zip(r.io.outputs, r.references, run.outputs, strict=True)]
        acc["outputs"] = [{**m.to_dict(), "runtime": run.delegate} for m in per_output]
        # cosine and SNR are the worst output's: a detector whose score head broke must not pass on its box head
        worst = min(per_output, key=lambda m: m.snr_db)  # -inf when an output is not finite
        cosines = [m.cosine_mean for m in per_output]
        acc.update(cosine_mean=float("nan") if any(math.isnan(c) for c in cosines) else min(cosines),
                   snr_db=worst.snr_db, snr_db_output=worst.name, top1_agreement=per_output[0].top1_agreement)
        labels = r.data.val.labels
        task = getattr(r, "task_figures", None)
        if task is not None:
            acc["task"] = task
        if labels is not None:
            ref_acc = metrics.label_accuracy(r.references[0], labels)
            tfl_acc = metrics.label_accuracy(run.outputs[0], labels)
            if ref_acc is not None and tfl_acc is not None:
                acc.update(reference=ref_acc, tflite=tfl_acc, drop_pp=round((ref_acc - tfl_acc) * 100, 4))
    acc["runtime"] = run.delegate


def _latency(lat: dict[str, Any], r: ConvertResults) -> None:
    if r.run.latency is not None:
        lat["host"] = {**r.run.latency.to_dict(), "runtime": r.run.runtime, "delegate": r.run.delegate,
                       "samples_ms": kept_samples(r.run.latency.samples_ms)}
    if r.fp32_run is not None and r.fp32_run.latency is not None:
        lat["host_fp32"] = r.fp32_run.latency.to_dict()
    lat.update(r.device)
    if r.simulated is not None:
        lat["simulated"] = r.simulated


def kept_samples(samples_ms: tuple[float, ...], cap: int = MAX_SAMPLES) -> list[float]:
    """The timed runs in run order (the report's histogram, and drift over a run, can be read from them);
    a long run is thinned evenly to `cap` so report.json stays small. p50/p90 come from every run."""
    picked = samples_ms if len(samples_ms) <= cap else [samples_ms[round(i * (len(samples_ms) - 1) / (cap - 1))]
                                                         for i in range(cap)]
    return [round(float(s), 4) for s in picked]


def _mixed_section(result: Any, prof: DeviceProfile) -> dict[str, Any]:
    by_tensor = {row["tensor"]: row for row in result.layers}

    def named(tensors: list[str]) -> list[dict[str, Any]]:
        return [{"tensor": t, "op": by_tensor.get(t, {}).get("op"), "onnx_node": by_tensor.get(t, {}).get("onnx_node"),
                 "pytorch_module": by_tensor.get(t, {}).get("pytorch_module")} for t in tensors]

    aeq = hasattr(result, "kept_a16w8")  # quantize/search/aeq_search.AeqMixedResult
    section = {
        "float_layers": named(result.kept), "layers": result.layers, "curve": result.curve, "int8_only": result.int8,
        "search": {"stopped": result.stopped, "policy": prof.runtime.float_layers,
                   "method": "aeq" if aeq else "tflite-converter"},
    }
    if aeq:
        section["a16w8_layers"] = named(result.kept_a16w8)
        section["forced_float"] = list(result.forced_float)
        section["levels"] = {level: sum(1 for v in result.levels.values() if v == level) for level in ("int8", "a16w8", "float")}
        section["search"]["timings"] = result.timings
        section["search"]["built_by"] = result.built_by
    return section


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)


def evidence(r: ConvertResults, report: dict[str, Any]) -> Evidence:
    """The facts the verdict judges; `report` supplies the figures build_report already derived."""
    from edgeport.quantize.search.rows import verify_kept_float

    acc = report["accuracy"]
    lat = report["latency"]
    info = r.info
    kept = tuple(r.mixed.kept) if r.mixed is not None else None
    return Evidence(
        mode=r.mode, size_bytes=report["artifact"]["size_bytes"],
        custom_ops=tuple(sorted({op["op"] for op in info["ops"] if op["op"].startswith("CUSTOM")})),
        float_ops=tuple(f"{info['ops'][i]['op']}#{i}" for i in info["float_ops"]),
        ran=r.run.outputs is not None, run_error=r.run.error,
        nonfinite=tuple((o["name"], o["nonfinite"]) for o in acc.get("outputs") or []),
        drop_pp=acc["drop_pp"], top1_agreement=acc["top1_agreement"], snr_db=acc["snr_db"], task=acc.get("task"),
        latency_ms={s: (lat.get(s) or {}).get("p50_ms") for s in ("device", "simulated", "host")},
        device_target=(lat.get("device") or {}).get("target"),
        device_emulated=bool((lat.get("device") or {}).get("emulated")),
        float_check=r.float_check, xnnpack=r.xnnpack,
        edgetpu_share=r.edgetpu.share_on_tpu if r.edgetpu is not None else None,
        edgetpu_first_cpu_op=r.edgetpu.first_unsupported if r.edgetpu is not None else None,
        kept_float=kept, kept_float_not_float=tuple(verify_kept_float(info, list(kept))) if kept is not None else (),
        fp16_comparison=r.fp16_comparison.to_dict() | {"detail": r.fp16_comparison.detail()}
        if r.fp16_comparison is not None else None,
    )


def attempt_accuracy(run: TfliteRun, io: ModelIO, references: list[np.ndarray], data: Data) -> dict[str, Any]:
    """report.json's accuracy figures for one exporter's artifact (export.attempts[]), computed by the
    same code as the report's own `accuracy` section, so an attempt is judged on the figures it would show."""
    from types import SimpleNamespace

    acc: dict[str, Any] = {"drop_pp": None, "top1_agreement": None, "cosine_mean": None, "snr_db": None, "outputs": []}
    _accuracy(acc, SimpleNamespace(run=run, io=io, references=references, data=data))  # type: ignore[arg-type]
    return acc
