"""Load a checkpoint of any supported kind without executing untrusted code by default.

Kinds: ONNX, TorchScript archive, torch.export program (.pt2), state_dict (+ --model-class), and a
whole pickled nn.Module only with trust_pickle=True (pickle can run arbitrary code).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import InputError, captured_logs, cause_line
from edgeport.types import TensorSpec


@dataclass(frozen=True)
class Param:
    """One forward() argument: a tensor input or a plain value to bind.

    Defined here, beside the LoadedModel that carries them, because the loader fills them for a
    torch.export program and export/constants.py reads and binds them: kept in constants.py, the two
    modules would import each other."""

    name: str
    tensor: bool
    type: str  # "Tensor", "int", "float", "bool", "str", "List[int]", ... ("?" when unannotated)
    has_default: bool = False
    default: Any = None
    exported: bool = False  # a torch.export constant: its value is baked into the program
    keyword_only: bool = False  # after `*` in forward(): passed by name


@dataclass(frozen=True)
class LoadedModel:
    kind: str  # onnx | torchscript | exported_program | state_dict | pickled_module
    path: Path
    module: Any = None  # a callable torch model for every kind but onnx
    input_names: tuple[str, ...] | None = None
    example_inputs: tuple[TensorSpec, ...] | None = None  # known shapes (exported programs)
    # forward() arguments when the loader knows them better than the module's signature does
    # (torch.export programs: which inputs are baked-in constants); bound by export/constants.py
    params: tuple[Param, ...] | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)  # how the weights were found (report: model.notes)
    dtype: str | None = None  # the checkpoint's floating-point weights: float32, float16, bfloat16 (report: model.dtype)


def load_checkpoint(
    path: str | Path,
    model_class: str | None = None,
    model_kwargs: str | dict[str, Any] | None = None,
    trust_pickle: bool = False,
    weights: str | None = None,
) -> LoadedModel:
    """`weights` (ema|raw) picks one set when a checkpoint holds both; for any other kind it is an error."""
    p = check_checkpoint_path(path)
    if p.suffix.lower() == ".onnx" or _looks_like_onnx(p):
        return _only_state_dict_takes(weights, LoadedModel(kind="onnx", path=p, dtype=_onnx_dtype(p)))
    import torch

    if p.suffix.lower() == ".pt2":
        return _only_state_dict_takes(weights, _load_exported_program(p, torch))
    if zipfile.is_zipfile(p):
        names = _zip_names(p)
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return _only_state_dict_takes(weights, _load_torchscript(p, torch))
        if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
            return _only_state_dict_takes(weights, _load_exported_program(p, torch))
    return _load_pickle_checkpoint(p, torch, model_class, model_kwargs, trust_pickle, weights)


def _only_state_dict_takes(weights: str | None, loaded: LoadedModel) -> LoadedModel:
    if weights is not None:
        raise InputError(f"--weights {weights} chooses between raw and EMA weights of a saved state_dict; "
                         f"'{loaded.path.name}' is a {loaded.kind.replace('_', ' ')} with one set of weights",
                         hint="drop --weights")
    return loaded


def _module_dtype(module: Any) -> str | None:
    from edgeport.export.state_forms import tensors_dtype

    try:
        return tensors_dtype([*module.parameters(), *module.buffers()])
    except Exception:  # noqa: BLE001 - a module that cannot list its tensors simply has no recorded dtype
        return None


def _onnx_dtype(p: Path) -> str | None:
    try:
        import onnx

        model = onnx.load(str(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - a broken file is reported where it is prepared
        return None
    names = {1: "float32", 10: "float16", 16: "bfloat16", 11: "float64"}
    counts: dict[str, int] = {}
    for t in model.graph.initializer:
        if t.data_type in names:
            n = 1
            for d in t.dims:
                n *= int(d)
            counts[names[t.data_type]] = counts.get(names[t.data_type], 0) + n
    ranked = sorted(counts, key=lambda k: -counts[k])
    if not ranked:
        return None
    return ranked[0] if len(ranked) == 1 else f"{ranked[0]} (also {', '.join(ranked[1:])})"


def check_checkpoint_path(path: str | Path) -> Path:
    """Cheap checks that run before any other work, so a typo fails first and fast."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"checkpoint '{p}' does not exist", hint="check the path")
    if p.is_dir():
        raise InputError(f"checkpoint '{p}' is a directory", hint="pass a .pt/.pt2/.ts/.onnx file")
    if p.stat().st_size == 0:
        raise InputError(f"checkpoint '{p}' is empty", hint="re-export or re-download it")
    return p


def _looks_like_onnx(p: Path) -> bool:
    if zipfile.is_zipfile(p):
        return False
    head = p.read_bytes()[:64]
    # A ModelProto starts with ir_version (field 1, varint) and usually a producer_name string.
    return head[:1] == b"\x08" and (b"pytorch" in head or b"onnx" in head.lower() or b"tf2onnx" in head)


def _zip_names(p: Path) -> list[str]:
    try:
        with zipfile.ZipFile(p) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"checkpoint '{p}' is a damaged archive ({exc})", hint="re-export or re-download it") from exc


def _load_torchscript(p: Path, torch: Any) -> LoadedModel:
    try:
        module = torch.jit.load(str(p), map_location="cpu").eval()
    except Exception as exc:
        raise InputError(
            f"TorchScript archive '{p}' could not be loaded ({cause_line(exc)})",
            hint="the file is truncated or corrupt; re-save it with torch.jit.save",
        ) from exc
    names = _forward_names(module)
    return LoadedModel(kind="torchscript", path=p, module=module, input_names=names, dtype=_module_dtype(module))


def _load_exported_program(p: Path, torch: Any) -> LoadedModel:
    from edgeport.export import pt2_device

    # Without a GPU, an archive saved on cuda is rewritten to cpu before torch reads it (pt2_device.py).
    on_cuda = not torch.cuda.is_available() and pt2_device.saved_on_cuda(p)
    notes: list[str] = []
    with captured_logs("torch.export") as logged:
        try:
            if on_cuda:
                program = pt2_device.to_cpu(torch.export.load(pt2_device.cpu_archive(p)))
                notes.append("torch.export program saved on cuda: its storages were mapped to CPU and the program "
                             "moved to CPU")
            else:
                program = torch.export.load(str(p))
        except Exception as exc:
            # torch logs the real error (with a traceback) and raises "check the warnings above":
            # condense both into one line and keep the logged error in the chain for --debug.
            inner = next((r.exc_info[1] for r in logged if r.exc_info and r.exc_info[1] is not None), None)
            if inner is not None and exc.__cause__ is None:
                exc.__cause__ = inner
            raise _pt2_error(p, exc, logged, on_cuda, torch) from exc
    specs = []
    args, _ = program.example_inputs or ((), {})
    for i, arg in enumerate(args):
        if hasattr(arg, "shape"):
            specs.append(TensorSpec(f"input_{i}", tuple(int(d) for d in arg.shape), str(arg.dtype).replace("torch.", "")))
    user = [s.arg for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    # torch.export specialises plain arguments (an int sample rate) to the value it was exported
    # with; the program still takes them, and rejects any other value.
    params = tuple(Param(a.name, False, type(a.value).__name__, True, a.value, exported=True)
                   if type(a).__name__ == "ConstantArgument" else Param(a.name, True, "Tensor") for a in user)
    tensor_names = [p.name for p in params if p.tensor]
    if len(tensor_names) == len(specs):
        specs = [TensorSpec(n, s.shape, s.dtype) for n, s in zip(tensor_names, specs, strict=True)]
    return LoadedModel(
        kind="exported_program",
        path=p,
        module=_no_train_toggle(program.module()),
        input_names=tuple(p.name for p in params) or None,
        example_inputs=tuple(specs) or None,
        params=params or None,
        notes=tuple(notes),
        dtype=_module_dtype(program),
    )


def _pt2_error(p: Path, exc: Exception, logged: Any, on_cuda: bool, torch: Any) -> InputError:
    """One line naming the real cause: a GPU-only program, or the torch version that wrote the file."""
    from edgeport.export import pt2_device

    saved = pt2_device.saved_torch_version(p)
    here = torch.__version__
    versions = f" (saved by torch {saved}, loading with torch {here})" if saved and saved != here else ""
    cause = cause_line(exc, logged, limit=200)
    if on_cuda:
        return InputError(f"torch.export program '{p}' was exported on CUDA and could not be moved to this CPU{versions} "
                          f"({cause})", hint="exported on CUDA: re-export on CPU with torch.export.export(model.cpu(), ...) "
                          "and torch.export.save")
    hint = (f"re-export it with torch {here} (torch.export.export + torch.export.save), or pass the model's "
            "state_dict with --model-class" if versions else
            "the file is truncated or not a torch.export archive; re-save it with torch.export.save")
    return InputError(f"torch.export program '{p}' could not be loaded{versions} ({cause})", hint=hint)


def _no_train_toggle(module: Any) -> Any:
    """Wrap an ExportedProgram's module for the ONNX exporter, which toggles train()/eval(): such
    modules reject that call, and they are already frozen in inference form."""
    import torch

    class ExportedProgramModule(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            object.__setattr__(self, "inner", inner)  # unregistered: train() must not reach it
            for param in inner.parameters():  # traced as constants, which must not require grad
                param.requires_grad_(False)

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

        def train(self, mode: bool = True) -> ExportedProgramModule:
            return self

    return ExportedProgramModule(module)


def _load_pickle_checkpoint(
    p: Path, torch: Any, model_class: str | None, model_kwargs: Any, trust_pickle: bool, weights: str | None = None
) -> LoadedModel:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _is_unsafe_pickle_error(exc):
            raise InputError(
                f"checkpoint '{p}' could not be read ({cause_line(exc)})",
                hint="the file is truncated, corrupt or not a torch checkpoint",
            ) from exc
        if not trust_pickle:
            raise InputError(
                f"checkpoint '{p}' contains pickled Python objects (such as a whole nn.Module) that could run "
                "arbitrary code when loaded, so edgeport refused to unpickle it",
                hint="save a state_dict and pass --model-class module:Class, or TorchScript/torch.export; "
                "pass --trust-pickle only if you trust where the file came from",
            ) from exc
        obj = _load_trusted_pickle(p, torch)
    if isinstance(obj, torch.nn.Module):
        return _only_state_dict_takes(weights, LoadedModel(kind="pickled_module", path=p, module=obj.eval(),
                                                           input_names=_forward_names(obj), dtype=_module_dtype(obj)))
    from edgeport.export.state_forms import find_weights, match, tensors_dtype

    state, notes = find_weights(obj, weights)
    if state is None:
        raise InputError(
            f"checkpoint '{p}' holds a {type(obj).__name__}, not a state_dict or a model",
            hint="save model.state_dict() or a TorchScript/torch.export file",
        )
    if not model_class:
        raise InputError(
            f"checkpoint '{p}' is a state_dict (weights only) and needs its model class",
            hint="pass --model-class package.module:ClassName (and --model-kwargs '{\"arg\": value}' if needed)",
        )
    module = build_model(model_class, model_kwargs)
    fitted = match(module.state_dict(), state)
    if fitted is None:
        _load_state(module, state, p, model_class)  # raises today's line: what is missing, unexpected, mis-shaped
    else:
        state, more = fitted
        notes += more
        module.load_state_dict(state, strict=True)
    dtype = tensors_dtype(state.values())
    model_dtype = _module_dtype(module)
    if dtype and model_dtype and dtype != model_dtype:
        notes.append(f"weights stored as {dtype} were loaded into the {model_dtype} model")
    return LoadedModel(kind="state_dict", path=p, module=module.eval(), input_names=_forward_names(module),
                       notes=tuple(notes), dtype=dtype)


def _is_unsafe_pickle_error(exc: Exception) -> bool:
    """True when the file is a valid pickle that names Python objects to import (code could run);
    garbage bytes fail differently ("Unsupported operand") and are reported as corrupt."""
    text = str(exc)
    return "Unsupported global" in text or "GLOBAL" in text or "not an allowed global" in text


def _load_trusted_pickle(p: Path, torch: Any) -> Any:
    try:
        return torch.load(str(p), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(
            f"pickled checkpoint '{p}' could not be loaded ({cause_line(exc)})",
            hint="the classes it refers to must be importable; run from the project that defines them",
        ) from exc


def build_model(model_class: str, model_kwargs: str | dict[str, Any] | None) -> Any:
    """Instantiate `module:Class` with keyword arguments given as JSON or a dict."""
    if ":" not in model_class:
        raise InputError(f"--model-class '{model_class}' is not of the form module:Class", hint="e.g. mypkg.nets:ResNet")
    mod_name, _, cls_name = model_class.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # let users point at a model file in their project directory
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:
        raise InputError(f"cannot import '{mod_name}' for --model-class ({cause_line(exc)})",
                         hint="run from the directory that contains it or install its package") from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise InputError(f"'{mod_name}' has no attribute '{cls_name}'", hint="check the class name in --model-class")
    kwargs = parse_kwargs(model_kwargs)
    try:
        model = cls(**kwargs)
    except Exception as exc:  # the user's constructor: any failure is theirs to fix, not an internal error
        raise InputError(f"{model_class}(**{kwargs}) failed: {cause_line(exc)}",
                         hint="fix --model-kwargs to match the constructor") from exc
    import torch

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"--model-class {model_class} made a {type(model).__name__}, not a torch.nn.Module",
                         hint="name the model's class, e.g. mypkg.nets:ResNet")
    return model


def parse_kwargs(model_kwargs: str | dict[str, Any] | None) -> dict[str, Any]:
    if model_kwargs is None or model_kwargs == "":
        return {}
    if isinstance(model_kwargs, dict):
        return model_kwargs
    try:
        value = json.loads(model_kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"--model-kwargs is not valid JSON ({exc.msg})", hint='use e.g. \'{"width": 0.5}\'') from exc
    if not isinstance(value, dict):
        raise InputError("--model-kwargs must be a JSON object", hint='use e.g. \'{"width": 0.5}\'')
    return value


def _load_state(module: Any, state: dict[str, Any], p: Path, model_class: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"shape mismatch {len(wrong)} (e.g. {'; '.join(wrong[:2])})")
        raise InputError(
            f"state_dict '{p.name}' does not match {model_class}: {'; '.join(parts)}",
            hint="pass the class (and --model-kwargs) the weights were trained with",
        )
    module.load_state_dict(state, strict=True)


def _forward_names(module: Any) -> tuple[str, ...] | None:
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # TorchScript methods expose their arguments through the schema
        return tuple(a.name for a in schema.arguments if a.name != "self") or None
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return None
    names = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self")
    return names or None

