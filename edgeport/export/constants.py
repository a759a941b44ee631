"""Bind a model's non-tensor forward() arguments (`--const sr=16000`) so it can be exported.

Real models take plain Python values beside their tensors: a sample rate, a flag, a size. ONNX and
TFLite graphs only have tensor inputs, so such a value must be fixed at export time. This module finds
those arguments (TorchScript schema, Python signature, or a torch.export program's constants), checks
each bound value against the declared type, and wraps the model so that only tensors are passed.
An argument is a `Param`, defined in checkpoint.py beside the LoadedModel that carries them.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from dataclasses import replace
from typing import Any

from edgeport.errors import InputError
from edgeport.export.checkpoint import LoadedModel, Param

MAX_LIST = 64  # "a small list": longer values are data, which belongs in a tensor input


def parse_const_args(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`NAME=VALUE` strings -> {name: python value}. VALUE is a Python/JSON literal: 16000, 0.5,
    true/True, [1, 2]; anything else is taken as a string."""
    found: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise InputError(f"--const '{item}' is not NAME=VALUE", hint="e.g. --const sr=16000 or --const sizes=[3,5]")
        if name in found:
            raise InputError(f"--const {name} is given twice", hint="bind each argument once")
        found[name] = _literal(text.strip())
    return found


def _literal(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def forward_params(loaded: LoadedModel) -> list[Param] | None:
    """The model's forward() arguments in call order, or None when they cannot be read."""
    if loaded.params is not None:
        return list(loaded.params)
    module = loaded.module
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:
        out = []
        for arg in schema.arguments:
            if arg.name == "self":
                continue
            type_name = _script_type(str(arg.type))
            has_default = arg.has_default_value()
            out.append(Param(arg.name, _is_tensor_type(type_name), type_name, has_default,
                             arg.default_value if has_default else None, keyword_only=bool(arg.kwarg_only)))
        return out
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError, AttributeError):
        return None
    try:
        hints = typing.get_type_hints(module.forward)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to their text
        hints = {}
    out = []
    for p in sig.parameters.values():
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) or p.name == "self":
            continue
        ann = hints.get(p.name, p.annotation)
        type_name = "?" if ann is inspect.Parameter.empty else _py_type(ann)
        has_default = p.default is not inspect.Parameter.empty
        tensor = _is_tensor_type(type_name) or (type_name == "?" and not (has_default and _is_plain(p.default)))
        out.append(Param(p.name, tensor, type_name if type_name != "?" or tensor else type(p.default).__name__,
                         has_default, p.default if has_default else None, keyword_only=p.kind == p.KEYWORD_ONLY))
    return out


def bind_constants(loaded: LoadedModel, consts: dict[str, Any], shape_names: list[str]) -> tuple[LoadedModel, list[dict[str, Any]]]:
    """A LoadedModel whose module takes only the tensor arguments, plus the bindings for the report.
    For an ONNX file, `consts` name graph inputs (a scalar `sr`) to fold into constants.

    Fails with one line for a value of the wrong type, an unknown name, a shape given for a plain
    argument, and a plain argument with neither a default nor a value."""
    if loaded.kind == "onnx":
        if not consts:
            return loaded, []
        # A graph input is bound instead: checked here, folded when the graph is normalised
        # (onnx_prep.prepare_onnx, via model_io), which reads the values from `params`.
        from edgeport.export.onnx_constants import onnx_bindings

        bindings = onnx_bindings(loaded.path, consts, shape_names)
        params = tuple(Param(b["name"], False, b["type"], True, consts[b["name"]]) for b in bindings)
        return replace(loaded, params=params), bindings
    params = forward_params(loaded)
    if params is None:
        if consts:
            raise InputError(f"cannot read this model's forward() arguments to bind --const {next(iter(consts))}",
                             hint="bind the value in the model before saving it")
        return loaded, []
    by_name = {p.name: p for p in params}
    for name in consts:
        if name not in by_name:
            raise InputError(f"--const names unknown argument '{name}'",
                             hint=f"forward() takes: {', '.join(f'{p.name}: {p.type}' for p in params)}")
        if by_name[name].tensor:
            raise InputError(f"'{name}' is a tensor input ({by_name[name].type}), not a plain value",
                             hint=f"give its shape with --input-shape {name}=1x...; --const is for int/float/bool/list arguments")
    for name in shape_names:
        p = by_name.get(name)
        if p is not None and not p.tensor:
            raise InputError(f"'{name}' is a plain {p.type} argument, not a tensor: it has no shape",
                             hint=f"bind its value with --const {name}=VALUE instead of --input-shape")
    plain = [p for p in params if not p.tensor]
    if not plain:
        return loaded, []
    bindings: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for p in plain:
        if p.name in consts:
            value = check_value(p, consts[p.name])
            if p.exported and value != p.default:
                raise InputError(f"'{p.name}' was fixed to {p.default!r} when this torch.export program was made; "
                                 f"--const {p.name}={consts[p.name]} cannot change it",
                                 hint=f"drop --const {p.name}, or re-export the program with {p.name}={value!r}")
            source = "--const"
        elif p.exported or p.has_default:
            value, source = p.default, "exported" if p.exported else "default"
        else:
            raise InputError(f"forward() argument '{p.name}' ({p.type}) is not a tensor and has no value",
                             hint=f"bind it with --const {p.name}=VALUE")
        values[p.name] = value
        bindings.append({"name": p.name, "type": p.type, "value": value, "source": source})
    tensor_names = tuple(p.name for p in params if p.tensor)
    module = _bound_module(loaded.module, params, values)
    specs = loaded.example_inputs
    if specs is not None:
        specs = tuple(s for s in specs if s.name in tensor_names) or None
    return replace(loaded, module=module, input_names=tensor_names or None, example_inputs=specs), bindings


def check_value(param: Param, value: Any) -> Any:
    """`value` converted to the argument's declared type, or one clear line."""
    ok, converted = _convert(param.type, value)
    if not ok:
        raise InputError(f"--const {param.name}={value!r} does not fit its type {param.type}",
                         hint=f"give a value of type {param.type}, e.g. --const {param.name}={_example(param.type)}")
    return converted


def _convert(type_name: str, value: Any) -> tuple[bool, Any]:
    t = type_name.replace(" ", "")
    optional = re.fullmatch(r"Optional\[(.+)\]", t)
    if optional:
        return (True, None) if value is None else _convert(optional.group(1), value)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool), value
    if t == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if t == "bool":
        return isinstance(value, bool), value
    if t == "str":
        return isinstance(value, str), value
    seq = re.fullmatch(r"(?:List|list|Tuple|tuple)\[(.+?)(?:,\.\.\.)?\]", t)
    if seq:
        if not isinstance(value, (list, tuple)) or len(value) > MAX_LIST:
            return False, value
        inner = seq.group(1).split(",")
        items = [_convert(inner[i] if len(inner) == len(value) else inner[0], v) for i, v in enumerate(value)]
        if not all(ok for ok, _ in items):
            return False, value
        return True, [v for _, v in items] if t.lower().startswith("list") else tuple(v for _, v in items)
    # Unannotated or an unusual type: accept plain literals, never data-sized values.
    return _is_plain(value) or (isinstance(value, (list, tuple)) and len(value) <= MAX_LIST), value


def _example(type_name: str) -> str:
    return {"int": "16000", "float": "0.5", "bool": "true", "str": "name"}.get(type_name, "[1,2]" if "[" in type_name else "VALUE")


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _is_tensor_type(type_name: str) -> bool:
    return "Tensor" in type_name or type_name == "?"


def _script_type(text: str) -> str:
    """TorchScript spells types 'int', 'float', 'List[int]', 'Optional[Tensor]', 'Tensor'."""
    return text.replace("number", "float")


def _py_type(ann: Any) -> str:
    if isinstance(ann, str):  # an annotation typing could not resolve
        return ann.replace("torch.", "")
    if isinstance(ann, type):
        return "Tensor" if ann.__name__ == "Tensor" else ann.__name__
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return f"Optional[{_py_type(rest[0])}]" if len(rest) == 1 else str(ann)
    if origin in (list, tuple):
        name = "List" if origin is list else "Tuple"
        inner = ", ".join("..." if a is Ellipsis else _py_type(a) for a in args)
        return f"{name}[{inner}]" if inner else name
    return str(ann).replace("typing.", "").replace("torch.", "")


def _bound_module(inner: Any, params: list[Param], values: dict[str, Any]) -> Any:
    import torch

    class BoundConstants(torch.nn.Module):
        """Calls the model with the bound values in their places; the ONNX exporter traces through it,
        so each value becomes a constant of the graph."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = inner
            # The ONNX exporter cannot trace into a TorchScript module from a plain wrapper ("not part
            # of the active trace"); a torch.jit.trace of the wrapper first can (see torch_to_onnx).
            self.trace_before_export = isinstance(inner, torch.jit.ScriptModule)
            self.bound_values = {p.name: values[p.name] for p in params if p.name in values}  # named in export errors

        def forward(self, *tensors: Any) -> Any:
            it = iter(tensors)
            given = {p.name: values[p.name] if p.name in values else next(it) for p in params}
            args = [given[p.name] for p in params if not p.keyword_only]
            return self.inner(*args, **{p.name: given[p.name] for p in params if p.keyword_only})

    return BoundConstants().eval()
