"""Export a loaded torch model to ONNX at a stated opset with static shapes."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeport.errors import ConversionError, InputError, cause_line
from edgeport.types import TensorSpec

DEFAULT_OPSET = 17


def example_tensors(specs: list[TensorSpec]) -> tuple[Any, ...]:
    import torch

    gen = torch.Generator().manual_seed(0)
    out = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype, None)
        if dtype is None:
            raise InputError(f"input '{spec.name}' has unsupported dtype '{spec.dtype}'", hint="use float32/int64/int32")
        if dtype.is_floating_point:
            out.append(torch.randn(spec.shape, generator=gen).to(dtype))
        else:
            out.append(torch.zeros(spec.shape, dtype=dtype))
    return tuple(out)


def output_names(count: int) -> list[str]:
    """The names every backend gives the model's outputs, in flattened order."""
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def probe_outputs(module: Any, inputs: list[TensorSpec]) -> list[TensorSpec]:
    """Run the model once on seeded inputs: it must work at these shapes, and its outputs name the
    tensors the data's labels and the validation compare against."""
    import torch

    try:
        with torch.no_grad():
            sample = flatten_outputs(module(*example_tensors(inputs)))
    except Exception as exc:
        shapes = ", ".join(s.describe() for s in inputs)
        raise InputError(
            f"the model failed on inputs {shapes}: {cause_line(exc)}",
            hint="pass the model's real input shape(s) with --input-shape [NAME=]1x3x224x224",
        ) from exc
    return [TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for name, t in zip(output_names(len(sample)), sample, strict=True)]


def export_onnx(module: Any, inputs: list[TensorSpec], path: Path, opset: int = DEFAULT_OPSET) -> list[str]:
    """Write `path`; returns the output names. The TorchScript-based exporter is used on purpose:
    its node names carry the PyTorch module path (/features/features.3/conv/Conv), which per-layer
    diagnostics map back to `features.3.conv`.

    A TorchScript model with bound `--const` values keeps its int/bool logic in the traced graph
    (`if not rest:` on a size), which the exporter may refuse ("bitwise Not for non-boolean input
    values"). Then the graph is specialised (`_specialised`) and exported again; if that fails too,
    the error is one line naming the op and the way around it."""
    import torch

    args = example_tensors(inputs)
    n_out = len(probe_outputs(module, inputs))
    traced = None
    if getattr(module, "trace_before_export", False):
        with torch.no_grad():
            traced = torch.jit.trace(module, args, check_trace=False)
    names = output_names(n_out)
    try:
        _export(traced if traced is not None else module, args, path, opset, inputs, names)
    except Exception as exc:
        bound = getattr(module, "bound_values", None)
        if traced is None or not bound:
            raise ConversionError(f"torch.onnx.export failed at opset {opset}: {cause_line(exc)}",
                                  hint="try --opset 13..18 or rewrite the unsupported op in the model") from exc
        try:
            _export(_specialised(traced, args), args, path, opset, inputs, names)
        except Exception as again:
            raise _bound_error(exc, bound, opset) from again
    return names


def _export(module: Any, args: tuple[Any, ...], path: Path, opset: int, inputs: list[TensorSpec], names: list[str]) -> None:
    import torch

    # On a failure the exporter prints the whole TorchScript graph to stdout (its ONNX log is always
    # on during export): the CLI's output is one line, and --json's stdout must stay JSON.
    with warnings.catch_warnings(), _stdout_to_null():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), opset_version=opset, dynamo=False,
            input_names=[s.name for s in inputs], output_names=names, do_constant_folding=True,
        )


def _specialised(traced: Any, args: tuple[Any, ...]) -> Any:
    """`traced` frozen (the TorchScript model's methods inlined, its attributes and the bound values
    constants), its inputs typed with their static shapes, then constant propagation and peepholes
    to a fixed point: int logic on the bound values and on sizes folds away before the exporter
    sees it. Node names lose their module paths, so this is only the fallback."""
    import torch

    with torch.no_grad():
        frozen = torch.jit.freeze(traced.eval())
    graph = frozen.graph
    for value, tensor in zip(list(graph.inputs())[1:], args, strict=True):
        value.setType(torch._C.TensorType.create_from_tensor(tensor))
    before = None
    for _ in range(8):
        torch._C._jit_pass_constant_propagation(graph)
        torch._C._jit_pass_peephole(graph, False)  # False: shape peepholes on (aten::size of a typed input)
        torch._C._jit_pass_dce(graph)
        if str(graph) == before:
            break
        before = str(graph)
    return frozen


def _bound_error(exc: BaseException, bound: dict[str, Any], opset: int) -> ConversionError:
    """One line: the op the exporter refused, and how to get the model through as ONNX."""
    text = " ".join(str(exc).split())
    op = re.search(r"exporting (.+?) for ", text) or re.search(r"[Ee]xporting the operator '?([\w:.]+)'?", text)
    where = re.search(r'File "([^"]+)", line (\d+)', str(exc))
    what = f"op {op.group(1)!r}" if op else cause_line(exc, limit=160)
    at = (f" on a value from {Path(where.group(1)).name}:{where.group(2)}"
          if where and not where.group(1).startswith("code/") else "")
    first = next(iter(bound))
    consts = " ".join(f"--const {n}={_literal(v)}" for n, v in bound.items())
    return ConversionError(
        f"torch.onnx.export (opset {opset}) cannot export this TorchScript model with "
        f"{', '.join(f'{n}={_literal(v)}' for n, v in bound.items())} bound: it refuses {what}{at}, "
        "also after folding the bound values and static shapes into the graph",
        hint=f"export the model to ONNX yourself with {first} as an input and pass {consts} to the ONNX file")


def _literal(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value).replace(" ", "")


@contextlib.contextmanager
def _stdout_to_null() -> Iterator[None]:
    """Redirect file descriptor 1 (C++ writes to it directly) for the duration."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to protect
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def flatten_outputs(obj: Any) -> list[Any]:
    """Model outputs (tensors in nested tuples/lists/dicts) in a flat list, in ONNX output order."""
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in flatten_outputs(item)]
    if isinstance(obj, dict):
        return [x for item in obj.values() for x in flatten_outputs(item)]
    return [obj]

