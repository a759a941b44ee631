"""Refuse an input shape whose export would need more memory than this machine has, before any
activation is allocated (otherwise the OS kills the process halfway, with no message at all).

The estimate is a floor, not a guess: the peak live bytes of ONE forward pass at the requested
shape, taken as the largest, over all ops, of (bytes of the op's tensor inputs + bytes of its
outputs). While an op runs, its inputs and outputs must all exist at once, so no runtime can do
this forward pass in less. Every later stage runs that forward pass at least once (the export
trace, onnx2tf's own check inference, the reference run, each TFLite run), so a machine that
cannot hold the floor cannot convert the model. A multiplier for TensorFlow's and onnx2tf's extra
copies would catch more cases, but it varies by op and version; guessing it would refuse runs
that fit, which is worse than letting a borderline run try.

Shapes come from a shape-only pass, never from real tensors: torch models run under
FakeTensorMode (every op computes its output shape and dtype, and nothing is allocated), ONNX
models use onnx.shape_inference on the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import InputError
from edgeport.types import TensorSpec

_ONNX_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}


@dataclass(frozen=True)
class Estimate:
    peak_bytes: int  # lower bound on live memory during one forward pass
    where: str  # the op at which that peak happens, for the message
    outputs: tuple[TensorSpec, ...] = ()  # output shapes seen on the way (labels are checked against them)
    exact: bool = True  # False when the shape pass failed and only the inputs were counted


def available_bytes() -> int:
    """Memory this process can still get: the smaller of the machine's available memory and what
    is left under a cgroup (container) limit, which psutil alone does not see."""
    import psutil

    free = int(psutil.virtual_memory().available)
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            free = min(free, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return free


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_fits(estimate: Estimate, shapes: Iterable[TensorSpec], *, available: int | None = None) -> None:
    free = available_bytes() if available is None else available
    if estimate.peak_bytes <= free:
        return
    shown = ", ".join(s.describe() for s in shapes)
    raise InputError(
        f"input {shown} needs at least {estimate.peak_bytes:,} bytes ({_gib(estimate.peak_bytes)}) for one forward pass "
        f"(peak at {estimate.where}), but only {free:,} bytes ({_gib(free)}) are available",
        hint="pass a smaller --input-shape, or run on a machine with more memory",
    )


def _input_floor(specs: Sequence[TensorSpec]) -> Estimate:
    import numpy as np

    total = sum(int(np.prod(s.shape, dtype=np.float64)) * np.dtype(s.dtype if s.dtype != "bool" else "bool").itemsize
                for s in specs)
    return Estimate(int(total), "the inputs", (), exact=False)


def estimate_torch(module: Any, specs: Sequence[TensorSpec]) -> Estimate:
    """Shape-only forward pass of a torch model (nn.Module, TorchScript or an ExportedProgram's module)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    def nbytes(values: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tree_leaves(values) if isinstance(t, torch.Tensor))

    class Peak(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.peak, self.where = 0, "the inputs"

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            # Outputs that alias an input (views, in-place and out= ops) take no new memory;
            # counting them would double a tensor and break the lower bound.
            schema = getattr(func, "_schema", None)
            aliased = schema is not None and any(r.alias_info is not None for r in schema.returns)
            live = nbytes(args) + nbytes(kwargs or {}) + (0 if aliased else nbytes(out))
            if live > self.peak:
                self.peak, self.where = live, f"aten.{getattr(func, '__name__', func)}"
            return out

    floor = _input_floor(specs)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            # factory calls under FakeTensorMode make fake tensors: shape and dtype, no storage
            inputs = [torch.empty(s.shape, dtype=getattr(torch, s.dtype)) for s in specs]
            with Peak() as peak, torch.no_grad():
                result = module(*inputs)
    except Exception:  # noqa: BLE001 - data-dependent ops cannot run on fake tensors; the real export will say more
        return floor
    from edgeport.export.torch_to_onnx import flatten_outputs

    outs = [t for t in flatten_outputs(result) if isinstance(t, torch.Tensor)]
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    specs_out = tuple(TensorSpec(n, tuple(int(d) for d in t.shape), str(t.dtype).replace("torch.", ""))
                      for n, t in zip(names, outs, strict=True))
    if peak.peak < floor.peak_bytes:
        return Estimate(floor.peak_bytes, floor.where, specs_out)
    return Estimate(int(peak.peak), peak.where, specs_out)


def estimate_onnx(path: Path) -> Estimate:
    """Peak over nodes of input + output bytes, from the (static-shaped) prepared ONNX graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without shapes there is no floor to compute
        return Estimate(0, "unknown", (), exact=False)
    sizes: dict[str, int] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in t.shape.dim]
        count = 1
        for d in dims:
            count *= max(d, 0)  # an unknown dim counts as 0: a floor must not invent memory
        sizes[vi.name] = count * _ONNX_ITEMSIZE.get(t.elem_type, 4)
    for init in model.graph.initializer:
        count = 1
        for d in init.dims:
            count *= d
        sizes[init.name] = count * _ONNX_ITEMSIZE.get(init.data_type, 4)
    peak, where = 0, "the inputs"
    for node in model.graph.node:
        live = sum(sizes.get(n, 0) for n in (*node.input, *node.output) if n)
        if live > peak:
            peak, where = live, f"{node.op_type} node '{node.name}'" if node.name else node.op_type
    return Estimate(peak, where, ())
