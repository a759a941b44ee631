"""The one place that knows the order of `convert`: load -> export -> convert -> validate -> verdict.

Each stage is a function with typed inputs and outputs; this module wires them, times them, and
writes the artifact and report atomically. Nothing is left half-written: work happens in a private
directory inside the output directory and only finished files are renamed into place.
"""

from __future__ import annotations

import hashlib
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

from edgeport import calibration as cal
from edgeport import options, progress
from edgeport.errors import ConversionError, InputError
from edgeport.export import memory
from edgeport.export.checkpoint import LoadedModel, check_checkpoint_path, load_checkpoint
from edgeport.export.constants import bind_constants, parse_const_args
from edgeport.export.onnx_prep import PreparedOnnx, parse_shape, prepare_onnx
from edgeport.export.to_tflite import (
    PSEUDO_OP_REMEDY,
    ConversionResult,
    needs_flex,
    run_conversion,
    unsupported_tf_ops,
)
from edgeport.export.torch_to_onnx import DEFAULT_OPSET, export_onnx
from edgeport.inspect_tflite import inspect_model
from edgeport.latency.host_fit import resolve as resolve_host_fit
from edgeport.modes import MODES
from edgeport.profiles import DeviceProfile, check_quant_allowed, load_profile
from edgeport.quantize.stage import equalize_stage, mixed_stage, record_mixed
from edgeport.report import empty_report, summary_lines
from edgeport.report_html import render as render_html
from edgeport.runners.common import RunOptions
from edgeport.types import Artifact, TensorSpec, file_sha256, plain
from edgeport.validate import metrics, verdict, xnnpack
from edgeport.validate.divergence import check_samples, float_conversion_check
from edgeport.validate.run import reference_outputs, run_tflite

GENERATED_INPUTS = "seeded standard normal, seed 0"
GENERATED_SOURCE = "<generated>"  # not a path anyone passes as --calib/--val


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
    ssh_options: tuple[str, ...] = ()
    diagnose: bool = False  # per-layer int8 sensitivity table for --quant int8 (always built for mixed)
    constants: tuple[str, ...] = ()  # NAME=VALUE bindings for plain (non-tensor) forward() arguments
    rewrite_pools: bool = True  # export/pool_padding.py; off only to study the unrewritten model (survey, tests)

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
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, show: str | None = None):
        """show: also announce the stage on stderr (long stages only; see edgeport.progress)."""
        t0 = time.perf_counter()
        try:
            if show is None:
                yield
            else:
                with progress.stage(name, show):
                    yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)


def convert(checkpoint: str | Path, profile: str, **options: Any) -> Report:
    """Python API mirror of `edgeport convert`."""
    shapes = options.pop("input_shapes", ())
    req = ConvertRequest(checkpoint=Path(checkpoint), profile=profile, input_shapes=tuple(shapes),
                         output=Path(options.pop("output", "edgeport-out")), **options)
    return run_convert(req)


def run_convert(req: ConvertRequest) -> Report:
    timer = _Timer()
    report = empty_report()
    notes: list[str] = []
    with timer.stage("setup"):
        check_checkpoint_path(req.checkpoint)
        options.runs(req.runs)
        options.opset(req.opset)
        for text in req.targets:
            options.target(text)
        prof = load_profile(req.profile)
        mode = req.quant or prof.runtime.default_quant
        check_quant_allowed(prof, mode)
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
            loaded = load_checkpoint(req.checkpoint, req.model_class, req.model_kwargs, req.trust_pickle)
            loaded, bindings = bind_constants(loaded, consts, [n for n in shapes if n is not None])
        if MODES[mode].calibrated and not req.calib:
            raise InputError(f"--quant {mode} needs calibration data", hint="pass --calib DATA (.npz, .npy, an image folder or builtin:NAME)")
        with timer.stage("export", f"{loaded.kind} -> ONNX" if loaded.kind != "onnx" else "normalising the ONNX graph"):
            prepared = _to_onnx(loaded, shapes, req, work, notes)
            notes.extend(n for n in prepared.notes if n.startswith("rewrote") and "max-pool" in n)
        with timer.stage("data", "loading calibration/validation data" if req.calib or req.val else None):
            calib_ds, val_ds = _load_datasets(req, list(prepared.inputs), list(prepared.outputs), notes)
        with timer.stage("reference", f"float reference outputs on {val_ds.count} samples"):
            references = reference_outputs(loaded.module, prepared.path, list(prepared.inputs), val_ds.inputs)
        if mode == "mixed":
            with timer.stage("equalize", "cross-layer equalization"):
                prepared = equalize_stage(prepared, val_ds, work, notes)
        with timer.stage("convert"):
            conv, artifact_key = _convert(prepared, calib_ds, mode, prof, work, notes)
        mixed_result = diagnosis = None
        if req.diagnose and mode == "int8":
            with timer.stage("diagnose"):
                diagnosis = mixed_stage(conv, prepared, _calibration_arrays(calib_ds, prepared), val_ds, references, prof,
                                        work, notes, diagnose_only=True)
        if mode == "mixed":
            with timer.stage("mixed_search"):
                mixed_result = mixed_stage(conv, prepared, _calibration_arrays(calib_ds, prepared), val_ds, references, prof, work, notes)
        with timer.stage("validate", f"TFLite vs reference on {val_ds.count} samples, then {req.runs} timed runs"):
            threads = min(prof.runtime.threads, os.cpu_count() or 1)
            run = run_tflite(conv.files[artifact_key], val_ds.inputs, conv.input_map, references, threads=threads, runs=req.runs)
            run, xnn = xnnpack.fallback(run, conv.files[artifact_key], conv.files["fp32"], prepared, val_ds.inputs, conv.input_map,
                                        references, threads, req.runs)
            fp32_run = run
            if artifact_key != "fp32":
                # One float32 run serves twice: its host time beside the artifact's, and (on a few
                # samples) the check that the conversion itself matches the reference.
                sample_inputs, sample_refs = check_samples(val_ds.inputs, references)
                fp32_run = run_tflite(conv.files["fp32"], sample_inputs, conv.input_map, sample_refs, threads=threads, runs=req.runs)
        with timer.stage("float_check", "float32 TFLite vs the reference"):
            float_check = float_conversion_check(fp32_run, references, conv.files["fp32"], prepared.path, val_ds.inputs,
                                                 conv.input_map, prepared.original_node_names)
        with timer.stage("device"):
            device = _measure_targets(conv.files[artifact_key], prof, req)
        final = out_dir / f"{_stem(req.checkpoint)}_{mode}.tflite"
        _fill_report(report, prof, mode, prepared, loaded, conv, artifact_key, run,
                     None if fp32_run is run else fp32_run, references, val_ds, calib_ds, final, req)
        report["notes"] = notes
        report["model"]["constants"] = bindings
        report["xnnpack"] = xnn
        report["accuracy"]["runtime"] = run.delegate
        for row in report["accuracy"].get("outputs") or []:
            row["runtime"] = run.delegate
        if run.latency is not None:
            report["latency"]["host"]["delegate"] = run.delegate  # the host time comes from the same run
        if diagnosis is not None:
            report["quantization"]["layers"] = diagnosis.layers
        report["latency"].update(device)
        info = inspect_model(conv.files[artifact_key])
        edgetpu_check = _simulate(report, info, prof, conv.files[artifact_key], work, notes)
        report["quantization"]["float_layers"] = [info["ops"][i]["output_name"] for i in info["float_ops"]] if mode in ("int8", "int16x8") else []
        report["model"]["ops"] = info["op_counts"]
        report["model"]["macs"] = info["total_macs"]
        report["quantization"]["weight_bytes"] = info["weight_bytes"]
        extra_checks = []
        if mixed_result is not None:
            extra_checks.append(record_mixed(report, mixed_result, info, prof))
        if edgetpu_check is not None:
            extra_checks.append(edgetpu_check)
        report["float_conversion"] = float_check
        extra_checks.append(_float_check(float_check))
        extra_checks.append(xnnpack.check(xnn))
        report["verdict"] = verdict.decide([*_structure_checks(prof, info, mode), *extra_checks, *_checks(prof, report, run, mode)])
        report["timings"] = timer.timings
        report_path = out_dir / "report.json"
        _publish(conv.files[artifact_key], final, report, report_path)
        finished = True
        return Report(report, report_path, summary_lines(report))
    finally:
        if not req.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        if created and not finished and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed run leaves nothing behind, not even the directory it made


def _float_check(result: dict[str, Any]):
    """Separates converter errors from quantization errors: the float32 TFLite must match the reference."""
    where = result.get("first_divergent")
    detail = ""
    if not result["matches"]:
        detail = result.get("error") or "the float32 TFLite already disagrees with the reference: a conversion error, not quantization"
        if where:
            module = f" (PyTorch module {where['pytorch_module']})" if where.get("pytorch_module") else ""
            detail += f"; first divergent ONNX node: {where['onnx_node']} [{where['op']}]{module}"
    return verdict.must("float_conversion_matches_reference", result["matches"], result.get("cosine_min"), detail)


def _simulate(report: dict[str, Any], info: dict[str, Any], prof: DeviceProfile, model: Path, work: Path,
              notes: list[str]):
    """Simulated device latency from the profile (always, it is cheap) and, for Edge TPU profiles,
    which ops the TPU runs: the compiler's own answer when edgetpu_compiler is installed."""
    from edgeport.latency.edgetpu import edgetpu_report
    from edgeport.latency.simulator import simulate

    tpu = None
    if prof.runtime.delegate == "edgetpu":
        tpu = edgetpu_report(model, info, out_dir=work / "edgetpu")
        report["edgetpu"] = tpu.to_dict()
    try:
        sim = simulate(info, prof, edgetpu_report=tpu) if tpu is not None else simulate(info, prof)
    except Exception as exc:  # noqa: BLE001 - a missing estimate must not hide measured results
        notes.append(f"latency simulation unavailable: {type(exc).__name__}: {str(exc)[:160]}")
    else:
        report["latency"]["simulated"] = {"p50_ms": round(sim.p50_ms, 4), "profile": sim.profile, "threads": sim.threads,
                                          "edgetpu": sim.edgetpu, "fit": prof.fit}
    if tpu is None:
        return None
    return verdict.at_least("edgetpu_op_share", round(tpu.share_on_tpu, 4), prof.budgets.min_edgetpu_op_share,
                            f"first op on the CPU: {tpu.first_unsupported}" if tpu.first_unsupported else "")


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


def _to_onnx(loaded: LoadedModel, shapes: dict, req: ConvertRequest, work: Path, notes: list[str]) -> PreparedOnnx:
    if loaded.kind == "onnx":
        prepared = prepare_onnx(loaded.path, work / "model.onnx", shapes, rewrite_pools=req.rewrite_pools)
        memory.check_fits(memory.estimate_onnx(prepared.path), prepared.inputs)
        return prepared
    specs = _torch_input_specs(loaded, shapes, req)
    ints = cal.integer_arrays(req.calib or req.val or "")
    if ints:  # token ids / indices: export integer inputs, as the data is
        specs = [replace(s, dtype=ints.get(s.name, ints.get("x") if len(specs) == 1 else None) or s.dtype) for s in specs]
    memory.check_fits(memory.estimate_torch(loaded.module, specs), specs)
    raw = work / "exported.onnx"
    export_onnx(loaded.module, specs, raw, opset=req.opset)
    notes.append(f"exported {loaded.kind} to ONNX opset {req.opset}")
    return prepare_onnx(raw, work / "model.onnx", {}, rewrite_pools=req.rewrite_pools)


def _torch_input_specs(loaded: LoadedModel, shapes: dict, req: ConvertRequest) -> list[TensorSpec]:
    names = list(loaded.input_names or [])
    if shapes:
        if None in shapes:
            if len(shapes) > 1 or len(names) > 1:
                raise InputError("--input-shape without a name, but the model takes several inputs",
                                 hint=f"name each: --input-shape {names[0] if names else 'x'}=1x3x224x224")
            return [TensorSpec(names[0] if names else "input", shapes[None])]
        if names:
            unknown = [n for n in shapes if n not in names]
            if unknown:
                raise InputError(f"--input-shape names unknown input '{unknown[0]}'", hint=f"the model's inputs are: {', '.join(names)}")
            missing = [n for n in names if n not in shapes]
            if missing:
                raise InputError(f"no --input-shape for input '{missing[0]}'", hint=f"give one for each of: {', '.join(names)}")
            return [TensorSpec(n, shapes[n]) for n in names]
        return [TensorSpec(n, s) for n, s in shapes.items()]
    if loaded.example_inputs:
        return list(loaded.example_inputs)
    guessed = cal.sample_shape(req.calib or req.val) if (req.calib or req.val) else None
    if guessed and len(names) <= 1:
        return [TensorSpec(names[0] if names else "input", (1, *guessed))]
    raise InputError("the input shape of this torch model is unknown",
                     hint="pass --input-shape [NAME=]1x3x224x224 (one per input)")


def _load_datasets(req: ConvertRequest, inputs: list[TensorSpec], outputs: list[TensorSpec],
                   notes: list[str]) -> tuple[cal.Dataset | None, cal.Dataset]:
    pre = cal.parse_preprocessing(req.preprocessing) if req.preprocessing else None
    calib = cal.load_data(req.calib, inputs, pre, outputs=outputs) if req.calib else None
    val = cal.load_data(req.val, inputs, pre, outputs=outputs) if req.val else None
    if len(outputs) > 1 and any(ds is not None and ds.labels is not None for ds in (calib, val)):
        notes.append(f"labels score the first output '{outputs[0].name}' of {len(outputs)}")
    for ds, role in ((calib, "calibration"), (val, "validation")):
        if ds is not None:
            for warning in cal.check_data(ds, inputs, role=role):
                notes.append(warning)
    if calib is not None and val is None:
        calib, val = cal.split_holdout(calib, val_fraction=0.3, seed=0)
        notes.append(f"no --val given: held out {val.count} of {calib.count + val.count} calibration samples for validation "
                     "(never used for calibration)")
    if calib is not None and val is not None and calib.sha256 == val.sha256:
        notes.append("--calib and --val are the same data: accuracy is measured on calibration samples")
    if val is None:
        val = _random_inputs(inputs)
        notes.append(f"no data given: validated on {val.count} generated inputs ({GENERATED_INPUTS}), not real data; "
                     "pass --val DATA to measure accuracy on real samples")
    if calib is not None and calib.count > req.max_calib_samples:
        calib = calib.take(np.arange(req.max_calib_samples))
        notes.append(f"calibration uses the first {req.max_calib_samples} samples")
    if val.count > req.max_val_samples:
        val = val.take(np.arange(req.max_val_samples))
    return calib, val


def _random_inputs(inputs: list[TensorSpec]) -> cal.Dataset:
    rng = np.random.default_rng(0)
    arrays = {}
    for s in inputs:
        shape = (32, *s.shape[1:])
        arrays[s.name] = rng.standard_normal(shape).astype(np.float32) if "float" in s.dtype else np.zeros(shape, s.dtype)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays.values())).hexdigest()
    return cal.Dataset(inputs=arrays, labels=None, source=GENERATED_SOURCE, sha256=digest, preprocessing=None)


def _convert(prepared: PreparedOnnx, calib: cal.Dataset | None, mode: str, prof: DeviceProfile, work: Path,
             notes: list[str]) -> tuple[ConversionResult, str]:
    io_dtype = prof.runtime.io_dtype if mode in ("int8", "mixed") else "float32"
    jobs = [{"key": "fp32", "mode": "fp32"}]
    if mode == "mixed":  # plain int8 first; the search starts from it (see _mixed)
        jobs.append({"key": "int8", "mode": "int8", "io_dtype": io_dtype})
    elif mode != "fp32":
        jobs.append({"key": mode, "mode": mode, "io_dtype": io_dtype})
    arrays = _calibration_arrays(calib, prepared)
    conv = run_conversion(prepared, work, arrays, jobs)
    if conv.errors and any(needs_flex(e) for e in conv.errors.values()):
        notes.append(f"plain conversion needed Flex (Select TF) ops; retried with builtin replacements for {', '.join(PSEUDO_OP_REMEDY)}")
        conv = run_conversion(prepared, work, arrays, jobs, pseudo_ops=PSEUDO_OP_REMEDY)
    failed = [k for k in (mode, "int8" if mode == "mixed" else mode, "fp32") if k in conv.errors]
    if failed:
        key = failed[0]
        ops = unsupported_tf_ops(conv.errors[key])
        if ops:
            raise ConversionError(f"TFLite conversion to {key} failed: TensorFlow ops {', '.join(ops)} have no builtin TFLite kernel "
                                  "(they would need Flex/Select TF ops, which Coral, GPU delegates and standard runtimes cannot run)",
                                  hint="replace those layers in the model (e.g. nn.GELU(approximate='tanh') for Erf)")
        err = " ".join(conv.errors[key].split())[:600]
        raise ConversionError(f"TFLite conversion to {key} failed: {err}", hint="run with --keep-work and see the converter log")
    return conv, mode


def _calibration_arrays(calib: cal.Dataset | None, prepared: PreparedOnnx) -> dict[str, np.ndarray] | None:
    if calib is None:
        return None
    return {s.name: calib.inputs[s.name].astype(np.float32) if "float" in s.dtype else calib.inputs[s.name]
            for s in prepared.inputs}



def _fill_report(report, prof, mode, prepared, loaded, conv, key, run, fp32_run, refs, val, calib, final, req) -> None:
    path = conv.files[key]
    report["profile"] = prof.to_dict()
    report["artifact"] = Artifact(final, file_sha256(path), path.stat().st_size).to_dict()
    report["reference"] = {"size_bytes": conv.files["fp32"].stat().st_size if "fp32" in conv.files else None,
                           "kind": loaded.kind, "onnx_opset": prepared.opset}
    report["quantization"] = {"mode": mode, "float_layers": [], "io_dtype": prof.runtime.io_dtype if MODES[mode].integer_io else "float32"}
    # The checkpoint's hash lets `edgeport ship` prove which weights an app model came from.
    ckpt_sha = file_sha256(req.checkpoint) if req.checkpoint.is_file() else None
    report["model"] = {"source": str(req.checkpoint), "sha256": ckpt_sha, "inputs": [asdict(s) for s in prepared.inputs],
                       "outputs": [asdict(s) for s in prepared.outputs], "normalization_notes": list(prepared.notes),
                       "pool_rewrites": list(prepared.pool_rewrites)}
    report["data"] = {
        "calibration": None if calib is None else {"source": calib.source, "samples": calib.count, "sha256": calib.sha256,
                                                    "preprocessing": calib.preprocessing,
                                                    "class_names": _names(calib.class_names)},
        "validation": {"source": val.source, "samples": val.count, "sha256": val.sha256, "labels": val.labels is not None,
                       "preprocessing": val.preprocessing, "class_names": _names(val.class_names),
                       "generated": val.source == GENERATED_SOURCE},
    }
    # One flag a script can test: every accuracy figure in this report comes from generated inputs,
    # not the user's data (float exports run without --calib/--val).
    report["accuracy"]["on_generated_inputs"] = val.source == GENERATED_SOURCE
    if val.source == GENERATED_SOURCE:
        report["data"]["validation"]["generator"] = GENERATED_INPUTS
    report["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(req).items()}
    report["runtime_error"] = run.error
    if run.outputs is not None:
        per_output = [metrics.compare_output(spec.name, ref, got) for spec, ref, got in zip(prepared.outputs, refs, run.outputs, strict=True)]
        report["accuracy"]["outputs"] = [m.to_dict() for m in per_output]
        first = per_output[0]
        report["accuracy"].update(cosine_mean=first.cosine_mean, snr_db=first.snr_db, top1_agreement=first.top1_agreement)
        if val.labels is not None:
            ref_acc = metrics.label_accuracy(refs[0], val.labels)
            tfl_acc = metrics.label_accuracy(run.outputs[0], val.labels)
            if ref_acc is not None and tfl_acc is not None:
                report["accuracy"].update(reference=ref_acc, tflite=tfl_acc, drop_pp=round((ref_acc - tfl_acc) * 100, 4))
    if run.latency is not None:
        report["latency"]["host"] = run.latency.to_dict()
        report["latency"]["host"]["runtime"] = run.runtime
    if fp32_run is not None and fp32_run.latency is not None:
        report["latency"]["host_fp32"] = fp32_run.latency.to_dict()


def _names(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)


def _structure_checks(prof: DeviceProfile, info: dict[str, Any], mode: str) -> list:
    """What the written file really contains, read back from the flatbuffer, not what was asked."""
    custom = sorted({op["op"] for op in info["ops"] if op["op"].startswith("CUSTOM")})
    checks = [verdict.must("builtin_ops_only", not custom, custom or True,
                           f"needs {', '.join(custom)}: Flex/custom ops do not run on standard runtimes, Coral or GPU" if custom else "")]
    if mode == "int8":
        float_ops = [f"{info['ops'][i]['op']}#{i}" for i in info["float_ops"]]
        checks.append(verdict.must("full_integer", not float_ops, not float_ops,
                                   f"{len(float_ops)} float op(s): {', '.join(float_ops[:5])}" if float_ops else ""))
    return checks


def _checks(prof: DeviceProfile, report: dict[str, Any], run, mode: str) -> list:
    b = prof.budgets
    acc = report["accuracy"]
    outputs = acc.get("outputs") or []
    finite = run.outputs is not None and all(o["nonfinite"] == 0 for o in outputs)
    detail = run.error or ("; ".join(f"{o['name']}: {o['nonfinite']} non-finite values" for o in outputs if o["nonfinite"]))
    checks = [verdict.must("runs_on_validation_data", finite, finite, detail)]
    size_mb = report["artifact"]["size_bytes"] / 1e6
    checks.append(verdict.at_most("model_size_mb", round(size_mb, 4), b.model_size_mb))
    if acc["drop_pp"] is not None:
        checks.append(verdict.at_most("accuracy_drop_pp", acc["drop_pp"], b.accuracy_drop_pp))
    elif acc["top1_agreement"] is not None or not finite:
        checks.append(verdict.at_least("top1_agreement", acc["top1_agreement"], b.min_top1_agreement, "no labels: agreement with the float model"))
    if b.min_snr_db is not None and (acc["snr_db"] is not None or not finite):
        checks.append(verdict.at_least("snr_db", acc["snr_db"], b.min_snr_db))
    lat = report["latency"]
    for source in ("device", "simulated", "host"):
        value = lat.get(source, {}).get("p50_ms")
        if value is not None:
            break
    detail = {"device": f"measured on {lat['device'].get('target')}", "simulated": "simulated from the profile",
              "host": "host measurement stands in: no device or simulated latency"}.get(source, "")
    checks.append(verdict.at_most("latency_p50_ms", value, b.latency_p50_ms, detail if value is not None else ""))
    return checks


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
