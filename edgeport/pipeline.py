"""The one place that knows the order of `convert`: load -> export -> convert -> validate -> verdict.

Each stage is a function with typed inputs and outputs; this module wires them, times them, and
writes the artifact and report atomically. Nothing is left half-written: work happens in a private
directory inside the output directory and only finished files are renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport import options, progress
from edgeport.data.model_io import Data, ModelIO, load_data, model_io
from edgeport.errors import ConversionError, InputError
from edgeport.export import arbitrate, select
from edgeport.export.backend import Conversion, ExportRequest, Job
from edgeport.export.checkpoint import LoadedModel, check_checkpoint_path, load_checkpoint
from edgeport.export.constants import bind_constants, parse_const_args
from edgeport.export.onnx_prep import parse_shape
from edgeport.export.torch_to_onnx import DEFAULT_OPSET
from edgeport.latency.host_fit import resolve as resolve_host_fit
from edgeport.modes import MODES
from edgeport.profiles import DeviceProfile, check_quant_allowed, load_profile
from edgeport.quantize import auto as quant_auto
from edgeport.quantize import fp16_compare, weight_only
from edgeport.quantize.stage import (
    MIXED_SEARCHES,
    aeq_mixed_stage,
    equalize_stage,
    mixed_stage,
    uses_aeq_search,
)
from edgeport.report.build import ConvertResults, attempt_accuracy, build_report, evidence
from edgeport.report.html import render as render_html
from edgeport.report.summary import check_text, summary_lines
from edgeport.runners import device_eval
from edgeport.runners.common import RunOptions
from edgeport.tasks import parse_task
from edgeport.tflite.reader import inspect_model
from edgeport.types import plain
from edgeport.validate import speed, streaming, task_score, verdict, xnnpack
from edgeport.validate.divergence import check_samples, float_conversion_check
from edgeport.validate.judge import Evidence, judge
from edgeport.validate.run import reference_outputs, run_tflite


@dataclass(frozen=True)
class ConvertRequest:
    checkpoint: Path
    profile: str
    calib: str | None = None
    val: str | None = None
    quant: str | None = None
    input_shapes: tuple[str, ...] = ()
    model_class: str | None = None
    model_kwargs: str | None = None
    trust_pickle: bool = False
    output: Path = Path("edgeport-out")
    opset: int = DEFAULT_OPSET
    runs: int = 50
    preprocessing: dict[str, str] | None = None
    max_calib_samples: int = 300
    max_val_samples: int = 1000
    keep_work: bool = False
    targets: tuple[str, ...] = ()  # extra latency sources: sim, adb://SERIAL, ssh://user@host
    benchmark_binary: str | None = None
    eval_binary: str | None = None  # adb without Python: the device's evaluation tool (runners/device_eval.py)
    ssh_options: tuple[str, ...] = ()
    diagnose: bool = False  # per-layer int8 sensitivity table for --quant int8 (always built for mixed)
    constants: tuple[str, ...] = ()  # NAME=VALUE bindings for plain (non-tensor) forward() arguments
    rewrite_pools: bool = True  # export/pool_padding.py; off only to study the unrewritten model (survey, tests)
    exporter: str = "auto"  # auto | onnx2tf | litert-torch (export/select.py)
    mixed_search: str = "auto"  # auto | aeq | converter (quantize/stage.py: which --quant mixed search)
    states: tuple[str, ...] = ()  # IN=OUT pairs of carried state (validate/streaming.py)
    task: str | None = None  # classify|ctc|detect|embed|segment|raw[:key=value,...]; None: detected (edgeport/tasks)
    weights: str | None = None  # ema | raw: which weights of a checkpoint holding both (export/checkpoint.py)

    @property
    def run_options(self) -> RunOptions:
        return RunOptions(runs=self.runs, benchmark_binary=self.benchmark_binary, ssh_options=self.ssh_options)


@dataclass
class Report:
    """What `edgeport.convert` returns: the report.json content plus where it was written."""

    data: dict[str, Any]
    path: Path | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.data["verdict"]["passed"])

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


class _Timer:
    """Seconds per stage. A stage inside another (an exporter's float check and validation inside
    "convert") counts only for itself, so the stages add up to the run."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._nested = [0.0]  # per open stage: time spent in stages inside it

    @contextmanager
    def stage(self, name: str, show: str | None = None):
        """show: also announce the stage on stderr (long stages only; see edgeport.progress)."""
        t0 = time.perf_counter()
        self._nested.append(0.0)
        try:
            if show is None:
                yield
            else:
                with progress.stage(name, show):
                    yield
        finally:
            spent = time.perf_counter() - t0
            inner = self._nested.pop()
            self._nested[-1] += spent
            self.timings[name] = round(self.timings.get(name, 0.0) + spent - inner, 3)


def convert(checkpoint: str | Path, profile: str, **options: Any) -> Report:
    """Python API mirror of `edgeport convert`."""
    shapes = options.pop("input_shapes", ())
    req = ConvertRequest(checkpoint=Path(checkpoint), profile=profile, input_shapes=tuple(shapes),
                         output=Path(options.pop("output", "edgeport-out")), **options)
    return run_convert(req)


def run_convert(req: ConvertRequest) -> Report:
    timer = _Timer()
    notes: list[str] = []
    with timer.stage("setup"):
        check_checkpoint_path(req.checkpoint)
        options.runs(req.runs)
        options.opset(req.opset)
        options.exporter(req.exporter)
        for text in req.targets:
            options.target(text)
        prof = load_profile(req.profile)
        mode = req.quant or prof.runtime.default_quant
        auto_modes, auto_skipped = _auto_modes(req, prof) if mode == "auto" else ([], {})
        if auto_modes:  # the mode every exporter's artifact is judged by; the choice among modes comes later
            mode = next((m for m in ("int8", "fp16", "dynamic") if m in auto_modes), "fp32")
        check_quant_allowed(prof, mode)
        if req.task:
            parse_task(req.task)  # a bad --task: exit 2 before any work
        if req.mixed_search not in MIXED_SEARCHES:
            raise InputError(f"--mixed-search '{req.mixed_search}' is not one of {', '.join(MIXED_SEARCHES)}",
                             hint="use auto (AI Edge Quantizer on CPU profiles, the converter search on Edge TPU)")
        if mode == "mixed":
            uses_aeq_search(prof, req.mixed_search)  # an impossible choice for this profile: exit 2 before any work
        if req.diagnose and mode != "int8":
            raise InputError(f"--diagnose analyses plain int8 models, not --quant {mode}",
                             hint="use --quant int8 --diagnose (--quant mixed always includes the per-layer table)")
        shapes = dict(parse_shape(s) for s in req.input_shapes)
        consts = parse_const_args(req.constants)
    with timer.stage("host_fit"):  # the host profile's simulator: this machine's cached fit (a minute on first use)
        prof = resolve_host_fit(prof, log=progress.note)
    with timer.stage("setup"):
        created = not req.output.exists()
        out_dir = _prepare_output(req.output)
    work = Path(tempfile.mkdtemp(prefix=".edgeport-work-", dir=out_dir))
    finished = False
    try:
        with timer.stage("load"):
            loaded = load_checkpoint(req.checkpoint, req.model_class, req.model_kwargs, req.trust_pickle, req.weights)
            loaded, bindings = bind_constants(loaded, consts, [n for n in shapes if n is not None])
            select.candidates(req.exporter, loaded.kind, mode)  # an exporter that cannot take this model: exit 2 now
        if MODES[mode].calibrated and not req.calib:
            raise InputError(f"--quant {mode} needs calibration data", hint="pass --calib DATA (.npz, .npy, an image folder or builtin:NAME)")
        with timer.stage("export", "normalising the ONNX graph" if loaded.kind == "onnx" else None):
            io = model_io(loaded, shapes, req.calib or req.val, work, req.rewrite_pools)
        calib_src, val_src, stream = req.calib, req.val, None
        if req.states:
            with timer.stage("data", "streaming: the float model over each sequence, state carried"):
                calib_src, val_src, stream = _streams(req, loaded, io, work, notes)
        with timer.stage("data", "loading calibration/validation data" if req.calib or req.val else None):
            data = load_data(io, calib_src, val_src, req.preprocessing, req.max_calib_samples, req.max_val_samples, notes)
        with timer.stage("reference", f"float reference outputs on {data.val.count} samples"):
            references = reference_outputs(loaded.module, io.onnx.path if io.onnx else None, list(io.inputs), data.val.inputs)
            task = task_score.resolve(req.task, io.outputs, references, data.val.scored_labels)
        threads = min(prof.runtime.threads, os.cpu_count() or 1)
        with timer.stage("convert"):  # under auto, each exporter's artifact is validated here (export/arbitrate.py)
            choice = _export(req, loaded, io, data, references, mode, prof, work, threads, notes, timer, stream, task,
                             auto_modes)
        conv = choice.conversion
        auto = None
        if auto_modes:
            with timer.stage("quant_auto", f"--quant auto: {', '.join(auto_modes)} judged on {data.val.count} samples"):
                auto = _quant_auto(req, conv, choice, auto_modes, auto_skipped, io, data, references, task, prof, work,
                                   threads, notes)
            mode = auto.chosen.mode
        artifact_key = mode
        if MODES[mode].weight_only:  # built in validate() per exporter; here: the kept one's delegation and notes
            notes.extend(weight_only.stage(conv, mode, coverage=True).notes)
        mixed_result = diagnosis = None
        if auto is not None:
            mixed_result = auto.mixed if mode == "mixed" else None
        elif mode == "mixed" and uses_aeq_search(prof, req.mixed_search):
            with timer.stage("mixed_search", "AI Edge Quantizer: calibrate once, search int8 / a16w8 / float per op"):
                mixed_result = aeq_mixed_stage(conv, data.calibration_arrays(io.inputs), data.val, references, prof, work,
                                               notes, threads, task)
        elif req.diagnose or mode == "mixed":
            with timer.stage("mixed_search" if mode == "mixed" else "diagnose"):
                found = _per_layer(conv, data, io, references, prof, work, notes, diagnose_only=mode != "mixed", task=task)
            mixed_result, diagnosis = (found, None) if mode == "mixed" else (None, found)
        with timer.stage("validate", None if choice.validated else f"TFLite vs reference on {data.val.count} samples, "
                                                                      f"then {req.runs} timed runs"):
            model = conv.files[artifact_key]
            validated = (auto.checks[mode] if auto is not None else choice.validated) or _validate_artifact(
                conv, artifact_key, io, data, references, mode, prof, threads, req.runs, task)
            if validated.mismatch:  # a --quant mixed model built after the choice
                raise ConversionError(f"the {artifact_key} TFLite model does not fit the reference: {validated.mismatch}",
                                      hint="the converter changed the model's outputs; try another --quant or --exporter")
            run, xnn = validated.run, validated.xnnpack
        with timer.stage("float_check", "float32 TFLite vs the reference"):
            float_check = choice.float_check.result
            if artifact_key == "fp32":  # the artifact's own run covers every validation sample
                float_check = float_conversion_check(run, references, model, _onnx_path(conv), data.val.inputs,
                                                     conv.input_map, _node_names(conv))
        with timer.stage("device"):
            device = _measure_targets(model, prof, req)
        info = inspect_model(model)
        with timer.stage("device_validation"):  # the validation data on the device (runners/device_eval.py)
            on_device = device_eval.convert_stage(model, prof, req, conv.input_map, data.val, references, run, io, info, notes)
        simulated, tpu = _simulate(info, prof, model, work, notes)
        fp16 = fp16_compare.compare(conv, mode, model, simulated, prof, work, notes)  # mixed/w8/w4 beside fp16
        results = ConvertResults(
            options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(req).items()},
            checkpoint=req.checkpoint, profile=prof, mode=mode, loaded=loaded, io=io, data=data, references=references,
            choice=choice, artifact_key=artifact_key, final=out_dir / f"{_stem(req.checkpoint)}_{mode}.tflite", run=run,
            fp32_run=None if artifact_key == "fp32" else choice.float_check.run, float_check=float_check, xnnpack=xnn,
            info=info, device=device, simulated=simulated, edgetpu=tpu, mixed=mixed_result, diagnosis=diagnosis,
            bindings=bindings, notes=[*conv.notes, *notes], fp16_comparison=fp16, task_figures=validated.task)
        report = build_report(results)
        if auto is not None:
            report["quant_auto"] = auto.section
        report["device_validation"] = on_device
        report["verdict"] = _verdict(replace(evidence(results, report), device_validation=on_device), prof, choice)
        report["verdict"]["warnings"] = speed.slowdowns(mode, info, inspect_model(conv.files["fp32"]) if mode != "fp32" else None,
                                                        prof, report["latency"]["host"].get("p50_ms"),
                                                        (report["latency"].get("host_fp32") or {}).get("p50_ms"))
        report["timings"] = timer.timings
        report_path = out_dir / "report.json"
        _publish(model, results.final, report, report_path)
        finished = True
        return Report(report, report_path, summary_lines(report))
    finally:
        if not req.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        if created and not finished and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed run leaves nothing behind, not even the directory it made


def _streams(req: ConvertRequest, loaded: LoadedModel, io: ModelIO, work: Path,
             notes: list[str]) -> tuple[str | None, str | None, tuple[dict[str, str], int, list[str]] | None]:
    """--state: sequence data -> chunk samples carrying the float model's states (validate/streaming.py)."""
    pairs = streaming.parse_states(req.states, io.inputs, io.outputs)
    if not (req.calib or req.val):
        notes.append("--state without data: generated inputs are judged chunk by chunk with zero state")
        return None, None, None

    def reference(feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return reference_outputs(loaded.module, io.onnx.path if io.onnx else None, list(io.inputs), feed)

    paths: dict[str, Path] = {}
    steps = 0  # chunks per sequence of the validation data, the one the closed loop runs on
    for role, spec, cap in (("calib", req.calib, req.max_calib_samples), ("val", req.val, req.max_val_samples)):
        if spec:
            paths[role] = work / f"stream_{role}.npz"
            _, steps = streaming.unroll(spec, pairs, io.inputs, io.outputs, reference, paths[role], max_samples=cap)
    if "val" not in paths:
        paths["calib"], paths["val"] = streaming.split_sequences(paths["calib"], steps)
        notes.append("--state with --calib only: the last 30% of the sequences are held out for validation")
    notes.append(f"streaming: state {', '.join(f'{a} <- {b}' for a, b in pairs.items())} carried through sequences of "
                 f"{steps} chunks; calibration sees the float model's states, and the TFLite model is judged "
                 "closed-loop (its own states fed back) on every chunk")
    calib = str(paths["calib"]) if "calib" in paths else None
    return calib, str(paths["val"]), (pairs, steps, [o.name for o in io.outputs])


def _export(req: ConvertRequest, loaded: LoadedModel, io: ModelIO, data: Data, references: list[np.ndarray], mode: str,
            prof: DeviceProfile, work: Path, threads: int, notes: list[str], timer: _Timer,
            stream: tuple[dict[str, str], int, list[str]] | None = None, task: Any = None,
            auto_modes: list[str] | None = None) -> select.ExportChoice:
    """Every file the mode needs, from the backend --exporter picks (see export/select.py): under auto,
    the one whose float32 model and artifact hold up best (export/arbitrate.py)."""
    io_dtype = prof.runtime.io_dtype if MODES[mode].integer_io else "float32"
    jobs = [Job("fp32", "fp32")]
    if mode == "mixed":  # the AEQ search needs only the float model; the converter search starts from plain int8
        if not uses_aeq_search(prof, req.mixed_search):
            jobs.append(Job("int8", "int8", io_dtype))
    elif mode != "fp32" and not MODES[mode].weight_only:  # w8/w4: AI Edge Quantizer on the float model, in validate()
        jobs.append(Job(mode, mode, io_dtype))
    for extra in auto_modes or ():  # --quant auto: every converter-built candidate from the same float model
        if extra not in {j.key for j in jobs} and extra != "mixed" and not MODES[extra].weight_only:
            jobs.append(Job(extra, extra, prof.runtime.io_dtype if MODES[extra].integer_io else "float32", optional=True))
    ereq = ExportRequest(loaded=loaded, inputs=io.inputs, outputs=io.outputs, jobs=tuple(jobs),
                         calibration=data.calibration_arrays(io.inputs), work=work, opset=req.opset, onnx=io.onnx,
                         rewrite_onnx=_equalizer(data, work, notes) if mode == "mixed" else None, rewrite_pools=req.rewrite_pools)
    sample_inputs, sample_refs = check_samples(data.val.inputs, references)

    def check(conv: Conversion) -> select.FloatCheck:
        # One float32 run serves twice: the check that the conversion itself matches the reference
        # (on a few samples), and its host time beside the artifact's.
        if stream is not None:  # every later run of this conversion feeds its own state back (closed loop)
            streaming.attach(conv.input_map, *stream)
        with timer.stage("float_check", f"{conv.backend}: float32 TFLite vs the reference"):
            fp32 = conv.files["fp32"]
            run = run_tflite(fp32, sample_inputs, conv.input_map, sample_refs, threads=threads,
                             runs=req.runs if mode != "fp32" else 1)
            found = float_conversion_check(run, references, fp32, _onnx_path(conv), data.val.inputs, conv.input_map,
                                           _node_names(conv))
            return select.FloatCheck(bool(found["matches"]), found, run, run.mismatch)

    def validate(conv: Conversion) -> select.ArtifactCheck:
        if MODES[mode].weight_only:
            with timer.stage("quantize", f"{conv.backend}: AI Edge Quantizer {mode} from the float32 model"):
                weight_only.stage(conv, mode)
        with timer.stage("validate", f"{conv.backend} {mode} TFLite vs reference on {data.val.count} samples, "
                                     f"then {req.runs} timed runs"):
            return _validate_artifact(conv, mode, io, data, references, mode, prof, threads, req.runs, task)

    # The --quant mixed model and the --diagnose table are built from the kept conversion after the
    # choice, and rewrite_pools=False studies the ONNX path's own unrewritten model: there the choice
    # rests on conversion and the float32 check alone.
    judged_here = mode != "mixed" and not req.diagnose and req.rewrite_pools
    return select.export(ereq, req.exporter, loaded.kind, mode, check, note=notes.append,
                         validate=validate if judged_here else None)


def _validate_artifact(conv: Conversion, key: str, io: ModelIO, data: Data, references: list[np.ndarray], mode: str,
                       prof: DeviceProfile, threads: int, runs: int, task: Any = None) -> select.ArtifactCheck:
    """The artifact on the validation data as the report shows it (under XNNPACK, else on builtin
    kernels, labelled so), with the figures and the verdict's run and accuracy checks it would get."""
    model, fp32 = conv.files[key], conv.files["fp32"]
    run = run_tflite(model, data.val.inputs, conv.input_map, references, threads=threads, runs=runs)
    run, xnn = xnnpack.fallback(run, model, fp32, conv.onnx, data.val.inputs, conv.input_map, references, threads, runs)
    acc = attempt_accuracy(run, io, references, data)
    size = model.stat().st_size
    figures = None if task is None else task_score.figures(task, references, run.outputs, data.val.scored_labels, prof.budgets)
    ev = Evidence(mode=mode, size_bytes=size, ran=run.outputs is not None, run_error=run.error,
                  nonfinite=tuple((o["name"], o["nonfinite"]) for o in acc["outputs"]), drop_pp=acc["drop_pp"],
                  top1_agreement=acc["top1_agreement"], snr_db=acc["snr_db"], xnnpack=xnn, task=figures)
    failed = [c for c in judge(ev, prof.budgets)["checks"] if c["name"] in arbitrate.ACCURACY_CHECKS and not c["passed"]]
    return select.ArtifactCheck(
        key=key, size_bytes=size, fp32_size_bytes=fp32.stat().st_size, ran=run.outputs is not None,
        runtime_error=run.error or xnn.get("error"), mismatch=run.mismatch, cosine=acc["cosine_mean"],
        top1_agreement=acc["top1_agreement"], snr_db=acc["snr_db"], drop_pp=acc["drop_pp"],
        failed=tuple(check_text(c) + (f" ({c['detail'][:200]})" if c.get("detail") else "") for c in failed),
        run=run, xnnpack=xnn, task=figures)


def _auto_modes(req: ConvertRequest, prof: DeviceProfile) -> tuple[list[str], dict[str, str]]:
    if req.diagnose:
        raise InputError("--diagnose analyses plain int8 models, not --quant auto",
                         hint="use --quant int8 --diagnose (--quant auto reports every candidate it judged)")
    modes, skipped = quant_auto.modes_for(prof.runtime.allowed_quant, calibrated=bool(req.calib))
    if not modes:
        raise InputError(f"--quant auto has nothing to build for profile '{prof.name}': {'; '.join(f'{m} {w}' for m, w in skipped.items())}",
                         hint="pass --calib DATA, or choose a --quant the profile allows")
    return modes, skipped


def _quant_auto(req: ConvertRequest, conv: Conversion, choice: select.ExportChoice, modes: list[str], skipped: dict[str, str],
                io: ModelIO, data: Data, references: list[np.ndarray], task: Any, prof: DeviceProfile, work: Path,
                threads: int, notes: list[str]) -> quant_auto.AutoResult:
    """Every allowed precision from the kept conversion, judged as --quant would judge it (quantize/auto.py)."""
    from edgeport.latency.simulator import simulate

    def mixed():
        if uses_aeq_search(prof, req.mixed_search):
            return aeq_mixed_stage(conv, data.calibration_arrays(io.inputs), data.val, references, prof, work, notes, threads,
                                   task)
        return _per_layer(conv, data, io, references, prof, work, notes, diagnose_only=False, task=task)

    def simulated(path: Path) -> float | None:
        try:
            return round(simulate(inspect_model(path), prof).p50_ms, 4)
        except Exception:  # noqa: BLE001 - a missing estimate leaves the host/device times to compare
            return None

    device = None
    # An emulated device's time is an emulator's: it picks no precision (the simulation does instead).
    if any(not t.startswith(("sim", "local")) for t in req.targets) and not prof.connection.emulated:
        def device(path: Path) -> float | None:
            found = _measure_targets(path, prof, req)
            return (found.get("device") or {}).get("p50_ms")

    build = quant_auto.Builders(
        validate=lambda key: _validate_artifact(conv, key, io, data, references, key, prof, threads, req.runs, task),
        weight_only=lambda mode: weight_only.stage(conv, mode), mixed=mixed, simulate=simulated, device=device)
    return quant_auto.evaluate(conv, modes, skipped, choice.validated, build, prof.budgets.latency_p50_ms, notes.append)


def _verdict(ev: Evidence, prof: DeviceProfile, choice: select.ExportChoice) -> dict[str, Any]:
    """judge(), plus `fallback_exporter_is_an_answer` when --exporter auto kept a fallback exporter's
    artifact (export/arbitrate.py): one that is no answer fails the verdict, saying why."""
    found = judge(ev, prof.budgets)
    answer = choice.answer_check()
    if answer is None:
        return found
    check = verdict.must(arbitrate.ANSWER_CHECK, answer[0], answer[0], answer[1])
    return {"passed": found["passed"] and check.passed, "checks": [*found["checks"], check.to_dict()]}


def _equalizer(data: Data, work: Path, notes: list[str]):
    """Cross-layer equalization before the mixed search: a float-equivalent rewrite is free, a float layer is not."""
    def rewrite(prepared):
        with progress.stage("equalize", "cross-layer equalization"):
            return equalize_stage(prepared, data.val.inputs, work, notes)
    return rewrite


def _onnx_path(conv: Conversion) -> Path | None:
    return conv.onnx.path if conv.onnx is not None else None


def _node_names(conv: Conversion) -> dict[str, str]:
    return conv.onnx.original_node_names if conv.onnx is not None else {}


def _per_layer(conv: Conversion, data: Data, io: ModelIO, references: list[np.ndarray], prof: DeviceProfile, work: Path,
               notes: list[str], *, diagnose_only: bool, task: Any = None):
    """The per-layer int8 table (--diagnose) or the mixed search: both trace TFLite ops to ONNX nodes."""
    if conv.onnx is None or conv.saved_model is None:
        raise ConversionError(f"the per-layer int8 analysis runs on the ONNX path, but {conv.backend} converted this model",
                              hint="rerun with --exporter onnx2tf, or use --quant int8 without --diagnose")
    return mixed_stage(conv, conv.onnx, data.calibration_arrays(io.inputs), data.val, references, prof, work, notes,
                       diagnose_only=diagnose_only, task=task)


def _simulate(info: dict[str, Any], prof: DeviceProfile, model: Path, work: Path, notes: list[str]):
    """Simulated device latency from the profile (always, it is cheap) and, for Edge TPU profiles,
    which ops the TPU runs: the compiler's own answer when edgetpu_compiler is installed."""
    from edgeport.latency.edgetpu import edgetpu_report
    from edgeport.latency.simulator import simulate

    tpu = edgetpu_report(model, info, out_dir=work / "edgetpu") if prof.runtime.delegate == "edgetpu" else None
    try:
        sim = simulate(info, prof, edgetpu_report=tpu) if tpu is not None else simulate(info, prof)
    except Exception as exc:  # noqa: BLE001 - a missing estimate must not hide measured results
        notes.append(f"latency simulation unavailable: {type(exc).__name__}: {str(exc)[:160]}")
        return None, tpu
    return {"p50_ms": round(sim.p50_ms, 4), "profile": sim.profile, "threads": sim.threads, "edgetpu": sim.edgetpu,
            "fit": prof.fit, **sim.breakdown()}, tpu


def _measure_targets(model: Path, prof: DeviceProfile, req: ConvertRequest) -> dict[str, Any]:
    """Simulated and real-device latency for the requested targets; a device failure is an error
    (exit 3), never a silently missing number."""
    from edgeport.bench import measure
    from edgeport.runners.targets import parse_target

    found: dict[str, Any] = {}
    targets = [t for t in (parse_target(text) for text in req.targets) if t.kind != "local"]  # the host is always measured
    for i, target in enumerate(targets):
        with progress.stage(f"device {i + 1}/{len(targets)}", f"{target}: {req.runs} runs"):
            result = measure(model, target, prof, req.run_options)
        if target.kind == "sim":
            found["simulated"] = result
        else:
            found.setdefault("device", result)
            found.setdefault("devices", []).append(result)
    return found


def _prepare_output(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".edgeport-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise InputError(f"output directory '{path}' is not writable ({exc.strerror or exc})",
                         hint="choose another --output or fix its permissions") from exc
    return path


def _stem(path: Path) -> str:
    return path.name.split(".")[0] or "model"


def _publish(src: Path, final: Path, report: dict[str, Any], report_path: Path) -> None:
    """Everything is staged as hidden temp files first and renamed into place only when all of it
    was written, so a full disk or a crash never leaves a half-written model or a model without its
    report. Each artifact also gets its own `<artifact>.report.json`, which a concurrent run into
    the same directory (other model or mode) never overwrites; `report.json` is the latest run."""
    own_report = final.with_name(final.stem + ".report.json")
    html_path = report_path.with_suffix(".html")
    staged = [(final.with_name(f".{final.name}.{os.getpid()}.tmp"), final),
              (own_report.with_name(f".{own_report.name}.{os.getpid()}.tmp"), own_report),
              (report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp"), report_path),
              (html_path.with_name(f".{html_path.name}.{os.getpid()}.tmp"), html_path)]
    try:
        _copy_file(src, staged[0][0])
        data = plain(report)
        text = json.dumps(data, indent=2) + "\n"
        for tmp, _ in staged[1:3]:
            tmp.write_text(text)
        staged[3][0].write_text(render_html(data))
        for tmp, dst in staged:
            os.replace(tmp, dst)
    except OSError as exc:
        raise InputError(f"could not write the results to '{final.parent}': {exc.strerror or exc}",
                         hint="free disk space or choose another --output; nothing was left half-written") from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _copy_file(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
