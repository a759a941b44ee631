"""Which channels must be pruned together: a torch.fx trace turned into channel groups.

Every tensor in the traced graph gets a *layout*: which channel group(s) its channel axis holds,
in order. A Conv (groups=1) or Linear starts a new group with its output channels (a *producer*)
and is a *consumer* of its input layout; BatchNorm, depthwise convs and PReLU carry their input's
channels through and must be sliced with them (*passthrough*); activations, pooling and dropout
keep the layout; `add`/`mul` of full tensors merge the operands' groups (a residual add needs the
same channels in every branch); `cat` on the channel axis concatenates layouts; `flatten` of
(N, C, H, W) stretches each channel over H*W features so the next Linear loses whole blocks.

Anything the tracer does not understand (reshapes with literal sizes, grouped convs, LayerNorm,
softmax over channels, indexing, custom leaf modules, the model's inputs and outputs) *fixes* the
groups it touches: they are never pruned, and the reason is kept for the report. Being conservative
keeps the pruned model valid; a missed opportunity only costs compression.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from edgeport.errors import InputError


@dataclass(frozen=True)
class Seg:
    gid: int
    inner: int = 1  # features per channel after a flatten (H*W), 1 otherwise


@dataclass(frozen=True)
class Layout:
    segs: tuple[Seg, ...]
    dim: int  # the tensor axis that holds the channels/features


@dataclass
class ChannelGroup:
    gid: int
    size: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    passthrough: list[str] = field(default_factory=list)
    fixed: str | None = None  # why it must not be pruned


@dataclass
class Deps:
    parent: dict[int, int] = field(default_factory=dict)
    size: dict[int, int] = field(default_factory=dict)
    fixed: dict[int, str] = field(default_factory=dict)
    producers: dict[str, int] = field(default_factory=dict)  # module name -> output group
    consumers: dict[str, Layout] = field(default_factory=dict)  # module name -> input layout
    passthrough: dict[str, Layout] = field(default_factory=dict)
    folded_bn: dict[str, str] = field(default_factory=dict)  # producer -> BatchNorm right after it
    notes: list[str] = field(default_factory=list)
    groups: dict[int, ChannelGroup] = field(default_factory=dict)

    def new(self, size: int, fixed: str | None = None) -> int:
        gid = len(self.parent)
        self.parent[gid], self.size[gid] = gid, size
        if fixed:
            self.fixed[gid] = fixed
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.fixed and ra not in self.fixed:
                self.fixed[ra] = self.fixed[rb]

    def fix(self, gid: int, reason: str) -> None:
        self.fixed.setdefault(self.find(gid), reason)

    def finish(self) -> None:
        roots = {self.find(g) for g in self.parent}
        self.groups = {r: ChannelGroup(r, self.size[r], fixed=self.fixed.get(r)) for r in sorted(roots)}
        for name, gid in self.producers.items():
            self.groups[self.find(gid)].producers.append(name)
        for table, attr in ((self.consumers, "consumers"), (self.passthrough, "passthrough")):
            for name, layout in table.items():
                for root in dict.fromkeys(self.find(s.gid) for s in layout.segs):
                    getattr(self.groups[root], attr).append(name)
        for g in self.groups.values():
            if g.producers and g.fixed and g.fixed != "reaches the model output":
                self.notes.append(f"left alone: output channels of {', '.join(g.producers)} ({g.fixed})")


def layout_indices(layout: Layout, deps: Deps, keep: dict[int, torch.Tensor]) -> torch.Tensor:
    """Indices along the layout's axis that survive when each group keeps `keep[root]` (default: all)."""
    parts, offset = [], 0
    for seg in layout.segs:
        root = deps.find(seg.gid)
        n = deps.size[root]
        kept = keep.get(root, torch.arange(n))
        parts.append(offset + (kept[:, None] * seg.inner + torch.arange(seg.inner)[None, :]).reshape(-1))
        offset += n * seg.inner
    return torch.cat(parts)


_KEEP_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd, nn.Upsample, nn.modules.padding._ConstantPadNd,
    nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d,
)
_KEEP_FUNCS = {
    F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu, F.gelu, F.elu, F.leaky_relu, F.hardtanh, F.mish, F.softplus,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d,
    F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.interpolate, F.pad, F.sigmoid, F.tanh,
    torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.abs, torch.neg, torch.exp, operator.neg,
}
_KEEP_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "contiguous",
                 "float", "clone", "detach", "abs", "neg", "exp", "hardswish"}
_BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
           torch.add, torch.sub, torch.mul, torch.div, torch.maximum, torch.minimum}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_REDUCE = {"mean", "sum", "amax", "amin"}
_SHAPE_ONLY = {getattr, "size", "dim", "numel"}
_OUTPUT = "reaches the model output"


def analyze(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> Deps:
    """Trace `model` (torch.fx + shape propagation on `example_inputs`) into channel groups."""
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("structured pruning needs a Python nn.Module, not TorchScript",
                         hint="load the state_dict with --model-class, or use structured = false")
    was_training = model.training
    model.eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:
        raise InputError(f"structured pruning could not trace {type(model).__name__} with torch.fx ({_line(exc)})",
                         hint="make forward traceable (no Python branches on tensor values), or use structured = false") from exc
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*example_inputs)
    except Exception as exc:
        raise InputError(f"{type(model).__name__} does not run on the example input ({_line(exc)})",
                         hint="pass --input-shape with the model's real input shape") from exc
    finally:
        model.train(was_training)
    deps = Deps()
    walker = _Walker(deps, dict(gm.named_modules()))
    for node in gm.graph.nodes:
        walker.visit(node)
    deps.finish()
    return deps


def channel_groups(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> list[ChannelGroup]:
    """Public view of the analysis: one entry per group of channels that must be pruned together."""
    return list(analyze(model, example_inputs).groups.values())


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(int(s) for s in meta.shape) if isinstance(meta, TensorMetadata) else None


class _Walker:
    def __init__(self, deps: Deps, modules: dict[str, nn.Module]) -> None:
        self.d = deps
        self.mods = modules
        self.lay: dict[fx.Node, Layout] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def fresh(self, node: fx.Node, fixed: str | None, dim: int = 1) -> Layout | None:
        shape = _shape(node)
        if not shape:
            return None
        dim = min(dim, len(shape) - 1) if dim >= 0 else len(shape) + dim
        return Layout((Seg(self.d.new(shape[dim], fixed)),), dim)

    def fix(self, layout: Layout | None, reason: str) -> None:
        for seg in layout.segs if layout else ():
            self.d.fix(seg.gid, reason)

    def unify(self, a: Layout, b: Layout, reason: str) -> None:
        sizes = [self.d.size[self.d.find(s.gid)] for s in (*a.segs, *b.segs)]
        n = len(a.segs)
        same = (a.dim == b.dim and n == len(b.segs) and all(x.inner == y.inner for x, y in zip(a.segs, b.segs, strict=True))
                and sizes[:n] == sizes[n:])
        if not same:
            self.fix(a, reason)
            self.fix(b, reason)
            return
        for x, y in zip(a.segs, b.segs, strict=True):
            self.d.union(x.gid, y.gid)

    def register(self, table: dict[str, Layout], name: str, layout: Layout) -> None:
        if name in table:  # a module called twice must see the same channels both times
            self.unify(table[name], layout, f"module '{name}' is called on differently shaped inputs")
        else:
            table[name] = layout

    def produce(self, name: str, node: fx.Node, dim: int) -> Layout | None:
        shape = _shape(node)
        if shape is None:
            return None
        dim = dim % len(shape)
        if name not in self.d.producers:
            self.d.producers[name] = self.d.new(shape[dim])
        return Layout((Seg(self.d.producers[name]),), dim)

    def unknown(self, node: fx.Node, what: str) -> None:
        reason = f"read by {what}, which the channel tracer does not understand"
        touched = [self.lay[n] for n in node.all_input_nodes if n in self.lay]
        for layout in touched:
            self.fix(layout, reason)
        if touched:
            self.d.notes.append(f"left alone: channels read by {what} (node {node.name})")
        self.lay_set(node, self.fresh(node, f"produced by {what}"))

    def lay_set(self, node: fx.Node, layout: Layout | None) -> None:
        if layout is not None:
            self.lay[node] = layout

    def arg_layout(self, node: fx.Node) -> Layout | None:
        first = node.args[0] if node.args else None
        return self.lay.get(first) if isinstance(first, fx.Node) else None

    def keep_if_same(self, node: fx.Node, what: str) -> None:
        layout, src = self.arg_layout(node), node.args[0] if node.args else None
        out, inp = _shape(node), _shape(src)
        if layout is None or out is None or inp is None or len(out) != len(inp) or out[layout.dim] != inp[layout.dim]:
            self.unknown(node, what)
        else:
            self.lay[node] = layout

    # -- dispatch --------------------------------------------------------------------------------
    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            self.lay_set(node, self.fresh(node, "model input"))
        elif node.op == "get_attr":
            self.lay_set(node, self.fresh(node, "combined with a constant tensor of the model"))
        elif node.op == "output":
            for n in node.all_input_nodes:
                self.fix(self.lay.get(n), _OUTPUT)
        elif node.op == "call_module":
            self.module(node, self.mods[str(node.target)])
        else:
            self.function(node)

    def module(self, node: fx.Node, m: nn.Module) -> None:
        name, what = str(node.target), f"{type(m).__name__} '{node.target}'"
        layout = self.arg_layout(node)
        if isinstance(m, nn.modules.conv._ConvNd) and not m.transposed and layout is not None and layout.dim == 1:
            if m.groups == 1:
                self.register(self.d.consumers, name, layout)
                self.lay_set(node, self.produce(name, node, 1))
            elif m.groups == m.in_channels == m.out_channels:
                self.register(self.d.passthrough, name, layout)  # depthwise: channel c in, channel c out
                self.lay[node] = layout
            else:
                self.fix(layout, f"read by grouped conv '{name}' (groups={m.groups})")
                self.d.notes.append(f"left alone: grouped conv '{name}' (groups={m.groups}) and the channels around it")
                self.lay_set(node, self.fresh(node, f"output of grouped conv '{name}' (groups={m.groups})"))
        elif isinstance(m, nn.Linear) and layout is not None and layout.dim == len(_shape(node.args[0]) or ()) - 1:
            self.register(self.d.consumers, name, layout)
            self.lay_set(node, self.produce(name, node, -1))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and layout is not None and layout.dim == 1:
            self.register(self.d.passthrough, name, layout)
            src = node.args[0]
            if isinstance(src, fx.Node) and src.op == "call_module" and str(src.target) in self.d.producers:
                self.d.folded_bn[str(src.target)] = name
            self.lay[node] = layout
        elif isinstance(m, nn.PReLU) and layout is not None and layout.dim == 1:
            if m.num_parameters > 1:
                self.register(self.d.passthrough, name, layout)
            self.lay[node] = layout
        elif isinstance(m, _KEEP_MODULES):
            self.keep_if_same(node, what)
        elif isinstance(m, nn.Flatten):
            self.flatten(node, m.start_dim, m.end_dim, what)
        else:
            self.unknown(node, what)

    def function(self, node: fx.Node) -> None:
        target = node.target
        method = node.op == "call_method"
        what = f".{target}()" if method else f"{getattr(target, '__name__', str(target))}()"
        if target in _SHAPE_ONLY and _shape(node) is None:
            return  # reads sizes, not channel values
        if (method and target in _KEEP_METHODS) or (not method and target in _KEEP_FUNCS):
            self.keep_if_same(node, what)
        elif (method and target in _BINARY_METHODS) or (not method and target in _BINARY):
            self.binary(node, what)
        elif not method and target in (torch.cat, torch.concat, torch.concatenate):
            self.cat(node, what)
        elif target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, int(start), int(end), what)
        elif target in ("view", "reshape", torch.reshape):
            self.reshape(node, what)
        elif (method and target in _REDUCE) or (not method and getattr(target, "__name__", "") in _REDUCE
                                                 and getattr(torch, getattr(target, "__name__", ""), None) is target):
            self.reduce(node, what)
        else:
            self.unknown(node, what)

    # -- shape-changing ops ----------------------------------------------------------------------
    def binary(self, node: fx.Node, what: str) -> None:
        out = _shape(node)
        full: list[Layout] = []
        for arg in [*node.args[:2], node.kwargs.get("other")]:
            layout, shape = self.lay.get(arg) if isinstance(arg, fx.Node) else None, _shape(arg)
            if layout is None or shape is None or math.prod(shape) == 1:
                continue  # Python scalars and 1-element tensors broadcast over every channel
            if out is None or len(shape) != len(out):
                return self.unknown(node, what)
            if shape[layout.dim] == out[layout.dim]:
                full.append(layout)
            elif shape[layout.dim] != 1:
                return self.unknown(node, what)
        for other in full[1:]:
            self.unify(full[0], other, f"added/multiplied by tensors with different channel layouts in {what}")
        self.lay_set(node, full[0] if full else self.fresh(node, f"produced by {what}"))

    def cat(self, node: fx.Node, what: str) -> None:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        out = _shape(node)
        layouts = [self.lay.get(t) if isinstance(t, fx.Node) else None for t in tensors]  # type: ignore[union-attr]
        if out is None or not layouts or any(lay is None for lay in layouts):
            return self.unknown(node, what)
        dim = int(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)) % len(out)
        lays = [lay for lay in layouts if lay is not None]
        if all(lay.dim == dim for lay in lays):
            self.lay[node] = Layout(tuple(s for lay in lays for s in lay.segs), dim)
            return
        for other in lays[1:]:  # concatenated along another axis: channels must line up
            self.unify(lays[0], other, f"concatenated along a non-channel axis in {what}")
        self.lay[node] = lays[0]

    def flatten(self, node: fx.Node, start: int, end: int, what: str) -> None:
        layout, inp = self.arg_layout(node), _shape(node.args[0]) if node.args else None
        if layout is None or inp is None:
            return self.unknown(node, what)
        start, end = start % len(inp), end % len(inp)
        if not start <= layout.dim <= end:
            dim = layout.dim if layout.dim < start else layout.dim - (end - start)
            self.lay[node] = Layout(layout.segs, dim)
        elif start == layout.dim:  # channel-major: each channel becomes a block of H*W features
            inner = math.prod(inp[layout.dim + 1 : end + 1])
            self.lay[node] = Layout(tuple(Seg(s.gid, s.inner * inner) for s in layout.segs), layout.dim)
        else:
            self.unknown(node, what)

    def reshape(self, node: fx.Node, what: str) -> None:
        """Only the flatten idiom x.view(x.size(0), -1) is understood: a literal feature count would be
        wrong after pruning."""
        rest = node.args[1:]
        sizes = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        inp, out = _shape(node.args[0]), _shape(node)
        if inp is not None and out is not None and len(sizes) == 2 and sizes[1] == -1 and len(out) == 2 and out[0] == inp[0]:
            return self.flatten(node, 1, -1, what)
        self.unknown(node, what)

    def reduce(self, node: fx.Node, what: str) -> None:
        layout, inp = self.arg_layout(node), _shape(node.args[0]) if node.args else None
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
        if layout is None or inp is None or dims is None:
            return self.unknown(node, what)
        dims = {int(d) % len(inp) for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
        if layout.dim in dims:
            return self.unknown(node, what)
        dim = layout.dim if keepdim else layout.dim - sum(d < layout.dim for d in dims)
        self.lay[node] = Layout(layout.segs, dim)
