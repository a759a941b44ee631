"""`edgeport compress`: run a recipe of compression passes on a checkpoint and judge every step.

The output is a TorchScript file that `edgeport convert` takes (a pruned or factorized network no
longer matches its Python class, so a state_dict would not load), plus `compress_report.json` with
params, MACs, size and accuracy after every pass. Latency is measured the same way `convert` does
it: each step is converted to int8 TFLite with `edgeport.convert` (profile "host" by default) and
timed there, so "faster" means faster in the runtime the model ships to, not in eager torch.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeport import options
from edgeport.compress.cluster import cluster_weights, gzip_size, state_dict_bytes
from edgeport.compress.distill import clone_model, distill, predict, single_thread
from edgeport.compress.lowrank import low_rank
from edgeport.compress.prune import prune
from edgeport.compress.recipe import PassSpec, Recipe, load_recipe
from edgeport.data import calibration as cal
from edgeport.errors import ConversionError, EdgeportError, InputError
from edgeport.export import memory
from edgeport.export.checkpoint import build_model, load_checkpoint
from edgeport.export.onnx_prep import parse_shape
from edgeport.report.summary import versions, write_json_atomic
from edgeport.types import TensorSpec, plain

MODEL_SUFFIXES = (".ts", ".pt", ".pth", ".torchscript")


def run(args: argparse.Namespace) -> int:
    req = CompressRequest(
        checkpoint=args.checkpoint, recipe=args.recipe, data=args.data, output=args.output, val=args.val,
        model_class=args.model_class, model_kwargs=args.model_kwargs, trust_pickle=args.trust_pickle,
        input_shapes=tuple(args.input_shape), teacher=args.teacher, teacher_class=args.teacher_class,
        teacher_kwargs=args.teacher_kwargs, student=args.student, student_kwargs=args.student_kwargs,
        latency=not args.no_latency, latency_profile=args.latency_profile, latency_runs=args.latency_runs,
        max_samples=args.max_samples)
    result = run_compress(req)
    if getattr(args, "json", False):
        print(json.dumps(plain(result.report), indent=2))
    else:
        print("\n".join(result.lines))
    return 0


@dataclass(frozen=True)
class CompressRequest:
    checkpoint: Path
    recipe: Path | Recipe
    data: str
    output: Path
    val: str | None = None
    model_class: str | None = None
    model_kwargs: str | dict[str, Any] | None = None
    trust_pickle: bool = False
    input_shapes: tuple[str, ...] = ()
    teacher: Path | None = None
    teacher_class: str | None = None
    teacher_kwargs: str | dict[str, Any] | None = None
    student: str | None = None
    student_kwargs: str | dict[str, Any] | None = None
    latency: bool = True
    latency_profile: str = "host"
    latency_runs: int = 200
    max_samples: int | None = None


@dataclass
class CompressResult:
    report: dict[str, Any]
    model_path: Path
    report_path: Path
    model: Any = None
    lines: list[str] = field(default_factory=list)


def compress(checkpoint: str | Path, recipe: str | Path | Recipe, data: str, output: str | Path, **options: Any) -> CompressResult:
    """Python API mirror of `edgeport compress`."""
    rec = recipe if isinstance(recipe, Recipe) else Path(recipe)
    return run_compress(CompressRequest(Path(checkpoint), rec, data, Path(output), **options))


def run_compress(req: CompressRequest) -> CompressResult:
    recipe = req.recipe if isinstance(req.recipe, Recipe) else load_recipe(req.recipe)
    options.latency_runs(req.latency_runs)
    if req.max_samples is not None:
        options.max_samples(req.max_samples)
    folder = req.output.parent if req.output.suffix.lower() in MODEL_SUFFIXES else req.output
    made = [d for d in (folder, *folder.parents) if not d.exists()]  # deepest first
    model_path, report_path = _output_paths(req.output, req.checkpoint)
    try:
        return _compress_into(req, recipe, model_path, report_path)
    except BaseException:
        for d in made:  # a failed run leaves nothing behind, not even the directories it made
            try:
                d.rmdir()
            except OSError:
                break
        raise


def _compress_into(req: CompressRequest, recipe: Recipe, model_path: Path, report_path: Path) -> CompressResult:
    loaded = load_checkpoint(req.checkpoint, req.model_class, req.model_kwargs, req.trust_pickle)
    if loaded.kind in ("onnx", "exported_program"):
        raise InputError(f"compress needs a trainable torch model, and '{req.checkpoint}' is {loaded.kind.replace('_', ' ')}",
                         hint="pass a state_dict with --model-class, a TorchScript file, or a pickled module")
    original = loaded.module.eval()
    notes: list[str] = []
    teacher = _teacher(req, original)
    model = clone_model(original)
    names = loaded.input_names
    if req.student:
        model = build_model(req.student, req.student_kwargs).eval()
        names = _forward_names(model)
        notes.append(f"student {req.student} starts from fresh weights; '{req.checkpoint.name}' is its teacher")
    for spec in recipe.passes:
        if spec.needs_module and isinstance(model, torch.jit.ScriptModule):
            raise InputError(f"recipe pass {spec.index} ({spec.label}) rebuilds layers, which TorchScript cannot do",
                             hint="compress the state_dict with --model-class instead, or use structured = false / cluster / distill")
    specs = _input_specs(names, req)
    estimate = memory.estimate_torch(model, specs)
    memory.check_fits(estimate, specs)
    train, val = _datasets(req, specs, list(estimate.outputs), notes)
    x_train = [torch.from_numpy(np.ascontiguousarray(train.inputs[s.name])) for s in specs]
    y_train = None if train.labels is None else torch.from_numpy(train.labels).long()
    x_val = [torch.from_numpy(np.ascontiguousarray(val.inputs[s.name])) for s in specs]
    y_val = None if val.labels is None else torch.from_numpy(val.labels).long()
    example = tuple(x[:1].clone() for x in x_val)
    reference = predict(original, x_val)

    torch.manual_seed(recipe.seed)
    with tempfile.TemporaryDirectory(prefix=".edgeport-compress-", dir=model_path.parent) as tmp:
        work = Path(tmp)
        latency = _Latency(req, specs, work) if req.latency else None
        report_original = _measure(original, example, x_val, y_val, reference, latency, "original")
        steps: list[dict[str, Any]] = []
        masks: dict[str, torch.Tensor] = {}
        for spec in recipe.passes:
            t0 = time.perf_counter()
            model, details, new_masks = _run_pass(spec, model, teacher, example, x_train, y_train, masks, recipe.seed)
            masks.update(new_masks)
            seconds = round(time.perf_counter() - t0, 2)
            metrics = _measure(model, example, x_val, y_val, reference, latency, f"pass{spec.index}")
            steps.append({"index": spec.index, "kind": spec.kind, "label": spec.label, "params": spec.params,
                          "seconds": seconds, "details": details, "metrics": metrics})
        final_tflite = steps[-1]["metrics"].get("tflite") if steps else None
        if final_tflite and final_tflite.get("error"):
            raise ConversionError(f"the compressed model does not convert to int8 TFLite: {final_tflite['error']}",
                                  hint="see the pass that broke it in --debug output; nothing was written")
        payload = _torchscript_bytes(model, example, x_val)
        _write_atomic(model_path, payload)
    report = {
        "checkpoint": str(req.checkpoint), "recipe": recipe.to_dict(), "versions": versions(),
        "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs],
        "data": {"train": _describe(train), "validation": _describe(val)},
        "latency_method": (f"int8 TFLite via edgeport.convert, profile {req.latency_profile!r}, {req.latency_runs} timed runs, p50"
                           if req.latency else None),
        "original": report_original, "passes": steps, "final": steps[-1]["metrics"] if steps else report_original,
        "output": {"path": str(model_path), "sha256": hashlib.sha256(payload).hexdigest(), "size_bytes": len(payload),
                   "format": "torchscript"},
        "notes": notes + [n for s in steps for n in (s["details"].get("notes") or [])],
    }
    write_json_atomic(report_path, report)
    return CompressResult(report, model_path, report_path, model, _lines(report, report_path))


def _teacher(req: CompressRequest, original: Any) -> Any:
    if req.teacher is None:
        return original
    loaded = load_checkpoint(req.teacher, req.teacher_class or req.model_class,
                             req.teacher_kwargs if req.teacher_class else (req.teacher_kwargs or req.model_kwargs), req.trust_pickle)
    if loaded.kind == "onnx":
        raise InputError(f"teacher '{req.teacher}' is ONNX; distillation needs a torch model", hint="pass a torch checkpoint as --teacher")
    return loaded.module.eval()


def _forward_names(model: nn.Module) -> tuple[str, ...] | None:
    import inspect

    params = inspect.signature(model.forward).parameters.values()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)) or None


def _output_paths(output: Path, checkpoint: Path) -> tuple[Path, Path]:
    """`out.ts` -> that file (report beside it); anything else is a directory."""
    if output.suffix.lower() in MODEL_SUFFIXES:
        folder, model_path = output.parent, output
    else:
        folder, model_path = output, output / f"{checkpoint.name.split('.')[0] or 'model'}_compressed.ts"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".edgeport-probe-").close()
    except OSError as exc:
        raise InputError(f"output directory '{folder}' is not writable ({exc.strerror or exc})",
                         hint="choose another --output or fix its permissions") from exc
    return model_path, folder / "compress_report.json"


def _input_specs(names: tuple[str, ...] | None, req: CompressRequest) -> list[TensorSpec]:
    shapes = dict(parse_shape(s) for s in req.input_shapes)
    names = tuple(names or ())
    if shapes:
        if None in shapes:
            if len(shapes) > 1 or len(names) > 1:
                raise InputError("--input-shape without a name, but the model takes several inputs",
                                 hint=f"name each: --input-shape {names[0] if names else 'x'}=1x3x224x224")
            return [TensorSpec(names[0] if names else "x", shapes[None])]
        missing = [n for n in names if n not in shapes]
        if missing:
            raise InputError(f"no --input-shape for input '{missing[0]}'", hint=f"give one for each of: {', '.join(names)}")
        return [TensorSpec(n, shapes[n]) for n in (names or tuple(shapes))]
    if not req.data.startswith("builtin:") and not Path(req.data).exists():
        cal.load_data(req.data, [TensorSpec(names[0] if names else "x", (1,))])  # raises its "not found" error
    guessed = cal.sample_shape(req.data)  # same shape inference as `convert`
    if guessed and len(names) <= 1:
        return [TensorSpec(names[0] if names else "x", (1, *guessed))]
    raise InputError("the input shape of this model is unknown", hint="pass --input-shape [NAME=]1x3x224x224 (one per input)")


def _datasets(req: CompressRequest, specs: list[TensorSpec], outputs: list[TensorSpec],
              notes: list[str]) -> tuple[cal.Dataset, cal.Dataset]:
    # outputs (from the shape-only pass) let labels be checked against the class count they score
    data = cal.load_data(req.data, specs, max_samples=req.max_samples, outputs=outputs or None)
    notes.extend(cal.check_data(data, specs, role="training"))
    if req.val:
        val = cal.load_data(req.val, specs, outputs=outputs or None)
        notes.extend(cal.check_data(val, specs, role="validation"))
        if val.sha256 == data.sha256:
            notes.append("--data and --val are the same data: accuracy is measured on training samples")
        return data, val
    train, val = cal.split_holdout(data, val_fraction=0.3, seed=0)
    notes.append(f"no --val: held out {val.count} of {data.count} samples of --data for accuracy (never trained on)")
    return train, val


def _describe(ds: cal.Dataset) -> dict[str, Any]:
    return {"source": ds.source, "samples": ds.count, "sha256": ds.sha256, "labels": ds.labels is not None}


def _run_pass(spec: PassSpec, model: Any, teacher: Any, example: tuple[torch.Tensor, ...], x: list[torch.Tensor],
              y: torch.Tensor | None, masks: dict[str, torch.Tensor], seed: int) -> tuple[Any, dict[str, Any], dict[str, torch.Tensor]]:
    p = dict(spec.params)
    torch.manual_seed(seed + spec.index)
    if spec.kind == "prune":
        res = prune(model, example, inputs=x, labels=y, teacher=teacher, **p)
        return res.model, res.summary(), res.masks
    if spec.kind == "lowrank":
        res_lr = low_rank(model, **p)
        return res_lr.model, res_lr.summary(), {}
    if spec.kind == "cluster":
        res_c = cluster_weights(model, **p)
        return res_c.model, res_c.summary(), {}
    samples = p.pop("samples")
    xs = [t[:samples] for t in x] if samples else x
    ys = None if y is None else (y[:samples] if samples else y)
    student = clone_model(model)
    res_d = distill(student, teacher, xs, ys, seed=seed + spec.index, masks=masks, **p)
    return res_d.model, res_d.summary(), {}


def count_macs(model: Any, example: tuple[torch.Tensor, ...]) -> int:
    """Multiply-accumulates of Conv and Linear layers for one forward pass, from forward hooks
    (BatchNorm and activations excluded, as is usual for MAC counts)."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.modules.conv._ConvNd):
            total += output.numel() * module.weight[0].numel()  # in_channels/groups * kernel per output value
        else:
            total += output.numel() * module.in_features

    if isinstance(model, torch.jit.ScriptModule):  # TorchScript has no hooks: count the traced ops instead
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(*example)
        return int(counter.get_total_flops() // 2)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(*example)
    finally:
        for h in handles:
            h.remove()
    return total


def _measure(model: Any, example: tuple[torch.Tensor, ...], x_val: list[torch.Tensor], y_val: torch.Tensor | None,
             reference: torch.Tensor, latency: _Latency | None, tag: str) -> dict[str, Any]:
    with single_thread():
        logits = predict(model, x_val)
        params = sum(int(p.numel()) for p in model.parameters())
        nonzero = sum(int((p != 0).sum()) for p in model.parameters())
        macs = count_macs(model, example)
    blob = state_dict_bytes(model)
    out: dict[str, Any] = {
        "params": params, "nonzero_params": nonzero, "macs": macs,
        "size": {"state_dict_bytes": len(blob), "gzip_bytes": gzip_size(blob)},
        "accuracy": None if y_val is None else round(float((logits.argmax(1) == y_val).float().mean()), 6),
        "top1_agreement_with_original": round(float((logits.argmax(1) == reference.argmax(1)).float().mean()), 6),
        "tflite": None,
    }
    if latency is not None:
        out["tflite"] = latency.measure(model, example, x_val, tag)
    return out


class _Latency:
    """Converts a step's model to int8 TFLite with `edgeport.convert` and keeps what the report needs."""

    def __init__(self, req: CompressRequest, specs: list[TensorSpec], work: Path) -> None:
        self.req, self.specs, self.work = req, specs, work

    def measure(self, model: Any, example: tuple[torch.Tensor, ...], x_val: list[torch.Tensor], tag: str) -> dict[str, Any]:
        from edgeport.pipeline import convert

        ts = self.work / f"{tag}.ts"
        ts.write_bytes(_torchscript_bytes(model, example, x_val))
        shapes = tuple(f"{s.name}={'x'.join(str(d) for d in s.shape)}" for s in self.specs)
        try:
            rep = convert(ts, self.req.latency_profile, calib=self.req.data, val=self.req.val, quant="int8",
                          input_shapes=shapes, output=self.work / tag, runs=self.req.latency_runs)
        except EdgeportError as exc:
            return {"error": exc.one_line()}
        d = rep.data
        lat = d["latency"]
        return {"int8_size_bytes": d["artifact"]["size_bytes"], "fp32_size_bytes": d["reference"]["size_bytes"],
                "accuracy": d["accuracy"]["tflite"], "drop_pp_vs_this_step": d["accuracy"]["drop_pp"],
                "top1_agreement_vs_this_step": d["accuracy"]["top1_agreement"],
                "host_p50_ms": lat["host"]["p50_ms"], "host_p90_ms": lat["host"]["p90_ms"],
                "simulated_p50_ms": (lat.get("simulated") or {}).get("p50_ms"),
                "verdict_passed": d["verdict"]["passed"], "runtime_error": d.get("runtime_error")}


def _torchscript_bytes(model: Any, example: tuple[torch.Tensor, ...], x_val: list[torch.Tensor]) -> bytes:
    """Trace (or keep) TorchScript and check it reproduces the eager model on real samples."""
    model.eval()
    with torch.no_grad():
        scripted = model if isinstance(model, torch.jit.ScriptModule) else torch.jit.trace(model, example, check_trace=False)
        for i in range(min(8, int(x_val[0].shape[0]))):
            sample = [x[i : i + 1] for x in x_val]
            want, got = model(*sample), scripted(*sample)
            want = want[0] if isinstance(want, (tuple, list)) else want
            got = got[0] if isinstance(got, (tuple, list)) else got
            if not torch.allclose(want, got, atol=1e-4, rtol=1e-3):
                raise ConversionError("the traced TorchScript model does not reproduce the compressed model",
                                      hint="the model's forward has data-dependent control flow; report this model")
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    return buf.getvalue()


def _write_atomic(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lines(report: dict[str, Any], report_path: Path) -> list[str]:
    def row(label: str, m: dict[str, Any]) -> str:
        t = m.get("tflite") or {}
        acc = f"{m['accuracy']:.2%}" if m["accuracy"] is not None else f"agree {m['top1_agreement_with_original']:.2%}"
        size = f"{t['int8_size_bytes'] / 1024:8.1f}" if t.get("int8_size_bytes") else f"{'-':>8}"
        lat = f"{t['host_p50_ms']:.3f} ms" if t.get("host_p50_ms") is not None else t.get("error", "-")[:60]
        return f"  {label:<24} {m['params']:>9,} {m['macs'] / 1e6:>8.2f}M {acc:>12} {size} {lat}"

    lines = [f"edgeport compress: {report['checkpoint']} -> {report['output']['path']}",
             f"  {'step':<24} {'params':>9} {'MACs':>9} {'accuracy':>12} {'int8 KiB':>8} host p50",
             row("original", report["original"])]
    lines += [row(f"{s['index']} {s['label']}", s["metrics"]) for s in report["passes"]]
    lines += [f"  note       {n}" for n in report["notes"]]
    lines.append(f"  report     {report_path}")
    return lines
