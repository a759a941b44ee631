"""The one table of `convert` options: the CLI's convert parser and the sweep plan are both built from it.

Each row says how the flag is parsed (argparse keywords, with the same checker from edgeport/options.py),
which ConvertRequest field it fills, and which plan key carries it, or why a plan does not take it. A new
convert option is added here once, so the sweep cannot forget it: tests/test_sweep_plan.py walks the real
convert parser and fails for any option that the plan neither accepts nor excludes with a reason.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport import modes, options
from edgeport.errors import InputError

# Plan keys that plan.py handles itself rather than as one value: a checkpoint path, profiles and modes
# (each value becomes its own cell), data paths (relative to the plan, checked to exist).
PLAN_OWN_KEYS = frozenset({"checkpoint", "profiles", "modes", "calib", "val"})


def _pair(flag: str, example: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        left, sep, right = str(value).partition("=")
        if not sep or not left.strip() or not right.strip():
            raise InputError(f"{flag} '{value}' is not {example.split(' ')[0]}", hint=f"e.g. {flag} {example.split(' ')[-1]}")
        return str(value)

    return check


def _model_class(value: str) -> str:
    if ":" not in str(value):
        raise InputError(f"--model-class '{value}' is not of the form module:Class", hint="e.g. mypkg.nets:ResNet")
    return str(value)


def _kwargs_json(value: Any) -> str:
    """A plan writes a table, the CLI a JSON object; both become the JSON text ConvertRequest takes."""
    from edgeport.export.checkpoint import parse_kwargs

    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
    parse_kwargs(text)
    return text


def _max_samples(flag: str) -> Callable[[Any], int]:
    return lambda value: options.int_in_range(flag, value, 1, 10**9, "300")


def _const_items(value: Any) -> list[str]:
    """A plan's `const = { sr = 16000 }` table, or NAME=VALUE strings as on the command line."""
    from edgeport.export.constants import parse_const_args

    items = [f"{k}={json.dumps(v)}" for k, v in value.items()] if isinstance(value, dict) else value
    items = [items] if isinstance(items, str) else items
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InputError("must be a table or NAME=VALUE strings", hint='e.g. const = { sr = 16000 }')
    parse_const_args(items)
    return items


def _preprocess_items(value: Any) -> dict[str, str]:
    items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else value
    items = [items] if isinstance(items, str) else items
    found = {}
    for item in items or []:
        key, sep, text = str(item).partition("=")
        if not sep:
            raise InputError(f"--preprocess '{item}' is not KEY=VALUE", hint="e.g. --preprocess mean=0.5,0.5,0.5")
        found[key.strip()] = text.strip()
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Option:
    """One convert option. `plan` is its key in a sweep plan ([[models]] entries and top-level defaults);
    when None, `excluded` says why a plan does not take it."""

    flags: tuple[str, ...]
    field: str | None  # ConvertRequest field it fills (None: a flag of the command, not of the conversion)
    plan: str | None = None
    excluded: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    # plan/CLI value -> request value where argparse's own parsing is not the whole story
    convert: Callable[[Any], Any] | None = None
    path: bool = False  # a host path: a plan gives it relative to the plan file

    def __post_init__(self) -> None:
        if (self.plan is None) == (not self.excluded):
            raise ValueError(f"{self.flags}: give a plan key or the reason it has none, not both")

    @property
    def dest(self) -> str:
        return self.kwargs.get("dest") or self.flags[0].lstrip("-").replace("-", "_")


_O = Option
OPTIONS: tuple[Option, ...] = (
    _O(("checkpoint",), "checkpoint", plan="checkpoint", kwargs={"type": Path}),
    _O(("--profile",), "profile", plan="profiles",
       kwargs={"required": True, "help": "profile name (see 'edgeport profiles') or path to a .toml"}),
    _O(("--calib",), "calib", plan="calib", kwargs={"help": "calibration data: .npz, .npy, image folder or builtin:NAME"}),
    _O(("--val",), "val", plan="val", kwargs={"help": "held-out validation data (same kinds); default: split from --calib"}),
    _O(("--quant",), "quant", plan="modes",
       kwargs={"choices": modes.QUANT_CHOICES,
               "help": "default: the profile's; auto builds the modes the profile allows and keeps the best"}),
    _O(("--input-shape",), "input_shapes", plan="input_shapes",
       kwargs={"action": "append", "type": options.input_shape, "metavar": "[NAME=]1x3x224x224"}),
    _O(("--model-class",), "model_class", plan="model_class",
       kwargs={"type": _model_class, "metavar": "module:Class", "help": "class for a state_dict checkpoint"}),
    _O(("--model-kwargs",), "model_kwargs", plan="model_kwargs",
       kwargs={"metavar": "JSON", "help": "constructor kwargs for --model-class, as a JSON object"}, convert=_kwargs_json),
    _O(("--weights",), "weights", plan="weights",
       kwargs={"choices": ("ema", "raw"),
               "help": "a checkpoint holding both raw and EMA (exponential moving average) weights: which to load "
                       "(default: ema, as trainers evaluate with it)"}),
    _O(("--const",), "constants", plan="const", convert=_const_items,
       kwargs={"action": "append", "metavar": "NAME=VALUE",
               "help": "bind a plain forward() argument for export: int, float, bool or a small list, e.g. --const sr=16000"}),
    _O(("--trust-pickle",), "trust_pickle", plan="trust_pickle",
       kwargs={"action": "store_true", "help": "allow unpickling a whole module (runs code from the file)"}),
    _O(("--output", "-o"), "output", excluded="each cell writes into its own folder under the sweep's output "
       "([sweep] output or `edgeport sweep -o`)", kwargs={"type": Path, "default": Path("edgeport-out")}),
    _O(("--opset",), "opset", plan="opset", kwargs={"type": options.opset}),
    _O(("--state",), "states", plan="state",
       kwargs={"action": "append", "metavar": "IN=OUT", "type": _pair("--state", "IN=OUT state=stateN"),
               "help": "carried state of a streaming model: input IN takes output OUT of the previous chunk; data holds "
                       "sequences [S, T, ...] and validation runs them chunk by chunk, closed-loop"}),
    _O(("--exporter",), "exporter", plan="exporter",
       kwargs={"type": options.exporter, "metavar": "{auto,onnx2tf,litert-torch}",
               "help": "PyTorch -> TFLite path: onnx2tf (via ONNX), litert-torch (LiteRT Torch, no ONNX), or auto "
                       "(onnx2tf, then LiteRT Torch when onnx2tf fails or its float model disagrees; default)"}),
    _O(("--runs",), "runs", plan="runs",
       kwargs={"type": options.runs, "help": "timed host runs after warm-up (default 50; a sweep's [sweep] runs)"}),
    _O(("--max-calib-samples",), "max_calib_samples", plan="max_calib_samples",
       kwargs={"type": _max_samples("--max-calib-samples"), "metavar": "N",
               "help": "use at most N calibration samples (default 300)"}),
    _O(("--max-val-samples",), "max_val_samples", plan="max_val_samples",
       kwargs={"type": _max_samples("--max-val-samples"), "metavar": "N",
               "help": "validate on at most N held-out samples (default 1000)"}),
    _O(("--preprocess",), "preprocessing", plan="preprocess", convert=_preprocess_items,
       kwargs={"action": "append", "metavar": "KEY=VALUE",
               "help": "image-folder preprocessing: resize, crop, scale, mean, std, color, layout"}),
    _O(("--keep-work",), "keep_work", plan="keep_work",
       kwargs={"action": "store_true", "help": "keep the intermediate ONNX/SavedModel for debugging"}),
    _O(("--mixed-search",), "mixed_search", plan="mixed_search",
       kwargs={"choices": ("auto", "aeq", "converter"),
               "help": "with --quant mixed: aeq (AI Edge Quantizer, calibrate once, int8/a16w8/float per op), converter "
                       "(the TFLite converter per candidate, int8/float), or auto (aeq on CPU profiles, converter on Edge TPU)"}),
    _O(("--task",), "task", plan="task",
       kwargs={"metavar": "TASK[:key=value,...]",
               "help": "what the model does, which decides the verdict's metric: classify, ctc (e.g. ctc:blank=0), "
                       "detect (e.g. detect:layout=boxes_last), embed, segment or raw (default: detected from the outputs)"}),
    _O(("--diagnose",), "diagnose", plan="diagnose",
       kwargs={"action": "store_true",
               "help": "with --quant int8: per-layer int8 sensitivity traced to ONNX nodes and PyTorch modules"}),
    _O(("--target",), "targets", plan="targets",
       kwargs={"action": "append", "type": options.target,
               "help": "also time on: sim, adb://SERIAL, ssh://[user@]host[:port] (the device result decides the latency check)"}),
    _O(("--benchmark-binary",), "benchmark_binary", plan="benchmark_binary", path=True,
       kwargs={"help": "host path of TFLite's benchmark_model for adb targets"}),
    _O(("--eval-binary",), "eval_binary", plan="eval_binary", path=True,
       kwargs={"help": "adb targets without Python: host path of an evaluation tool for the device, which runs the "
                       "validation data there (see README 'Check on the device')"}),
    _O(("--ssh-option",), "ssh_options", plan="ssh_options",
       kwargs={"action": "append", "metavar": "OPT", "help": "extra ssh/scp option for ssh targets"}),
)
# Flags every command has; they shape what the terminal shows, not the conversion.
COMMON_EXCLUDED = {
    "help": "prints usage; not an option of the conversion",
    "json": "the sweep always writes results.json and each cell's report.json",
    "debug": "a cell's full log is kept in its record; tracebacks are for interactive runs",
    "quiet": "cells run without a terminal; their progress goes to the cell's log",
}
BY_PLAN_KEY = {o.plan: o for o in OPTIONS if o.plan}
# API-only ConvertRequest fields: no flag on purpose (studies and tests switch them off).
API_ONLY_FIELDS = {"rewrite_pools": "turns off the max-pool rewrite to study the unrewritten model (survey, tests)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for opt in OPTIONS:
        kwargs = dict(opt.kwargs)
        if kwargs.get("action") == "append":
            kwargs.setdefault("default", [])
        parser.add_argument(*opt.flags, **kwargs)


def request_from_args(args: argparse.Namespace) -> Any:
    """The ConvertRequest the command line asks for; flags left out keep ConvertRequest's defaults."""
    values = {}
    for opt in OPTIONS:
        value = getattr(args, opt.dest)
        if opt.convert is not None and value not in (None, []):
            value = opt.convert(value)
        values[opt.field] = value
    return make_request(values)


def make_request(values: dict[str, Any]) -> Any:
    """ConvertRequest from field values (a sweep cell's JSON or parsed flags): lists become tuples,
    paths Paths, and None or empty values leave the field at its default."""
    from edgeport.pipeline import ConvertRequest

    kinds = {f.name: str(f.type) for f in fields(ConvertRequest)}
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise InputError(f"unknown convert option '{unknown[0]}'", hint="see 'edgeport convert --help'")
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or (isinstance(value, (list, tuple, dict)) and not value):
            continue
        if isinstance(value, list):
            value = tuple(value)
        if kinds[name].startswith("Path"):
            value = Path(value)
        out[name] = value
    return ConvertRequest(**out)


def plan_value(opt: Option, value: Any, base: Path) -> Any:
    """A plan's TOML value for `opt`, checked exactly as the flag is: one InputError line when it is not
    (the plan adds which entry). Returns the request field's value (JSON-safe: lists, not tuples)."""
    kw = opt.kwargs
    if kw.get("action") == "store_true":
        if not isinstance(value, bool):
            raise InputError(f"{value!r} must be true or false", hint=f"e.g. {opt.plan} = true")
        return value
    if isinstance(value, dict) and opt.convert is not None:  # model_kwargs, const, preprocess as TOML tables
        return opt.convert(value)
    if kw.get("action") == "append":
        items = [value] if _scalar(value) else value
        if not isinstance(items, list) or not items or not all(_scalar(v) for v in items):
            raise InputError("must be a non-empty list of strings", hint=f'e.g. {opt.plan} = ["..."]')
        checked = [kw["type"](str(v)) if "type" in kw else str(v) for v in items]
        return opt.convert(checked) if opt.convert is not None else checked
    if not _scalar(value):
        raise InputError(f"{value!r} must be a single value", hint=f"e.g. {opt.plan} = {_example(opt)}")
    if "choices" in kw and value not in kw["choices"]:
        raise InputError(f"{value!r} is not one of {', '.join(kw['choices'])}", hint=f"e.g. {opt.plan} = {_example(opt)}")
    if "type" in kw:
        value = kw["type"](value)
    elif not isinstance(value, str):
        raise InputError(f"{value!r} must be a string", hint=f"e.g. {opt.plan} = {_example(opt)}")
    if opt.convert is not None:
        value = opt.convert(value)
    if opt.path:
        value = str(Path(base, str(value)).expanduser())
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _example(opt: Option) -> str:
    choices = opt.kwargs.get("choices")
    return json.dumps(choices[0]) if choices else '"..."'
