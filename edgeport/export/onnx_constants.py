"""`--const NAME=VALUE` on an ONNX file: a scalar or small graph input becomes a constant.

Streaming models often take a plain setting as a graph input (a VAD's scalar `sr`) and branch on it
with an ONNX `If`, which onnx2tf converts poorly. Binding the input folds it away:
- the input becomes an initializer of its declared dtype (the value must fit it) and shape (a
  scalar fills any one-element shape), and leaves the graph inputs;
- every node whose inputs are then all constant, and that depends on the bound value, is evaluated
  (onnx.reference) and replaced by its result;
- an `If` whose condition became constant is replaced by the nodes of the branch it takes: the
  branch outputs are renamed to the If's outputs; names the branch reads from the enclosing graph
  stay valid. Ifs nested in the taken branch are folded in turn, and so are Ifs inside the bodies of
  nodes that stay (Loop, Scan, an If still decided at run time). Nothing else is rewritten.
Constants that nothing reads any more are dropped. onnxslim, which runs afterwards, folds the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import InputError

MAX_ELEMENTS = 64  # a bound value is a setting, not data (as for torch arguments: constants.MAX_LIST)
MAX_FOLDED = 1 << 20  # elements: a folded result larger than this stays a node (the file would balloon)
_NO_FOLD = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli",
            "Dropout"}
_INTS = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 12: "uint32", 13: "uint64"}
_FLOATS = {1: "float32", 10: "float16", 11: "float64"}
_BOOL = {9: "bool"}


@dataclass(frozen=True)
class GraphInput:
    name: str
    elem_type: int
    dims: tuple[int | str, ...] | None  # None: the file states no shape

    @property
    def dtype(self) -> str:
        return {**_INTS, **_FLOATS, **_BOOL}.get(self.elem_type, f"onnx type {self.elem_type}")

    def describe(self) -> str:
        return f"{self.name}: {self.dtype}[{'x'.join(str(d) for d in self.dims) if self.dims is not None else '?'}]"


def graph_inputs(model) -> list[GraphInput]:
    """The graph's real inputs (initializers listed as inputs by older exporters are not inputs)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = None
        if tt.HasField("shape"):
            dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                         for d in tt.shape.dim)
        out.append(GraphInput(vi.name, int(tt.elem_type), dims))
    return out


def onnx_bindings(path: Path, consts: dict[str, Any], shape_names: list[str]) -> list[dict[str, Any]]:
    """The report's `model.constants` rows for `--const` on the ONNX file at `path`; one clear line
    (exit 2) for an unknown name, a value that does not fit, or an --input-shape for a bound input."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = {i.name: i for i in graph_inputs(model)}
    rows = []
    for name, value in consts.items():
        spec = _input(inputs, name)
        if name in shape_names:
            raise InputError(f"'{name}' is bound with --const, so it is no longer an input and has no shape",
                             hint=f"drop --input-shape {name}")
        value_array(spec, value)  # fits, or one line
        rows.append({"name": name, "type": spec.dtype, "value": _as_given(spec.elem_type, value), "source": "--const"})
    return rows


def _as_given(elem_type: int, value: Any) -> Any:
    """The value as the user wrote it, in the input's kind (2 -> 2.0 for a float input), as the
    torch path reports bindings: not the float32-rounded array."""
    if isinstance(value, (list, tuple)):
        return [_as_given(elem_type, v) for v in value]
    return float(value) if elem_type in _FLOATS else value


def value_array(spec: GraphInput, value: Any) -> np.ndarray:
    """`value` as an array of the input's declared dtype and shape, or one clear line."""
    dtype = spec.dtype
    if spec.elem_type not in {**_INTS, **_FLOATS, **_BOOL}:
        raise InputError(f"--const {spec.name}: input '{spec.name}' has {dtype}, which --const cannot fold",
                         hint="bind numeric or bool inputs only")
    try:
        raw = np.array(value, dtype=object)
    except ValueError:  # ragged nested lists
        raw = None
    flat = [] if raw is None else raw.reshape(-1).tolist()
    if raw is None or raw.size > MAX_ELEMENTS or any(not _fits(spec.elem_type, v) for v in flat) or raw.size == 0:
        raise InputError(f"--const {spec.name}={value!r} does not fit input '{spec.name}' ({dtype})",
                         hint=f"give {_kind(spec.elem_type)} (at most {MAX_ELEMENTS} of them), "
                              f"e.g. --const {spec.name}={_example(spec.elem_type)}")
    arr = np.array(flat, dtype=np.dtype(dtype)).reshape(raw.shape)
    dims = spec.dims
    if dims is None:
        return arr
    if arr.size == 1 and all(d == 1 or isinstance(d, str) for d in dims):
        return arr.reshape([1] * len(dims))  # a scalar fills any one-element shape
    if arr.ndim == len(dims) and all(isinstance(d, str) or d == s for d, s in zip(dims, arr.shape, strict=True)):
        return arr
    shape = "x".join(str(d) for d in arr.shape) or "a scalar"
    raise InputError(f"--const {spec.name}={value!r} has shape {shape} but input '{spec.name}' is "
                     f"{'x'.join(str(d) for d in dims) or 'a scalar'}",
                     hint=f"give a value of that shape (a list per dim), e.g. --const {spec.name}={_example(spec.elem_type)}"
                          if not dims else "give a list of that shape, e.g. [[1, 2]] for 1x2")


def fold_constants(model, consts: dict[str, Any]) -> list[str]:
    """Bind `consts` in `model` (edited in place; see the module doc); returns notes for the report."""
    from onnx import numpy_helper

    graph = model.graph
    inputs = {i.name: i for i in graph_inputs(model)}
    derived: dict[str, np.ndarray] = {}
    for name, value in consts.items():
        arr = value_array(_input(inputs, name), value)
        graph.input.remove(next(vi for vi in graph.input if vi.name == name))
        graph.initializer.append(numpy_helper.from_array(arr, name))
        derived[name] = arr
    state = _Fold(graph, _opset(model))
    static = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name not in derived}
    state.graph(graph, derived, static, where="")
    bound = set(consts)
    _drop_unused(graph, bound | state.made)
    notes = [f"--const {', '.join(f'{n}={_show(v)}' for n, v in consts.items())}: "
             f"{'input' if len(consts) == 1 else 'inputs'} {', '.join(repr(n) for n in consts)} folded into constants"
             + (f"; {state.nodes} dependent node(s) constant-folded" if state.nodes else "")]
    if state.ifs:
        notes.append(f"folded {len(state.ifs)} If node(s) decided by --const into the branch taken: {', '.join(state.ifs)}")
    return notes


class _Fold:
    def __init__(self, root, opset: int) -> None:
        self.root = root  # the main graph: names inlined into it must stay unique in the whole model
        self.opset = opset
        self.made: set[str] = set()  # initializers this pass added
        self.ifs: list[str] = []
        self.nodes = 0
        self.fresh: set[str] = set()  # names given to inlined values (their Ifs are not gone until a pass ends)

    def graph(self, graph, derived: dict[str, np.ndarray], static: dict[str, np.ndarray], where: str) -> None:
        """Fold `graph` until nothing changes, then the subgraphs of the nodes that stay. `derived`:
        constants computed from the bound values; `static`: the other constants in scope."""
        from onnx import numpy_helper

        derived, static = dict(derived), dict(static)
        changed = True
        while changed:
            changed = False
            kept = []
            constant_nodes = {o: n for n in graph.node if n.op_type == "Constant" and not n.input for o in n.output}
            for node in list(graph.node):
                if node.op_type == "If" and node.domain in ("", "ai.onnx") and node.input[0] in derived:
                    taken = bool(np.asarray(derived[node.input[0]]).reshape(-1)[0])
                    nodes, moved = self.inline(graph, node, taken)
                    kept.extend(nodes)
                    static.update(moved)  # the branch's initializers, now in this graph
                    label = node.name or f"If -> {node.output[0]}"
                    self.ifs.append(f"'{label}'{f' (in {where})' if where else ''} -> "
                                    f"{'then' if taken else 'else'} branch")
                    changed = True
                    continue
                values = self.foldable(node, derived, static, constant_nodes)
                if values is not None:
                    for name, value in zip(node.output, values, strict=True):
                        if name:
                            derived[name] = value
                            graph.initializer.append(numpy_helper.from_array(value, name))
                            self.made.add(name)
                    self.nodes += 1
                    changed = True
                    continue
                kept.append(node)
            del graph.node[:]
            graph.node.extend(kept)
        for node in graph.node:
            for attr in node.attribute:
                for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                    inner = f"'{node.name or node.op_type}'" + (f" in {where}" if where else "")
                    sub_static = {**static, **{i.name: numpy_helper.to_array(i) for i in sub.initializer}}
                    self.graph(sub, derived, sub_static, inner)

    def foldable(self, node, derived: dict[str, np.ndarray], static: dict[str, np.ndarray],
                 constant_nodes: dict) -> list[np.ndarray] | None:
        """The node's outputs when it reads a bound value and only constants, else None."""
        names = [n for n in node.input if n]
        if (node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD or not names
                or any(a.HasField("g") or len(a.graphs) for a in node.attribute)
                or not any(n in derived for n in names)):
            return None
        for n in names:
            if n not in derived and n not in static and n in constant_nodes:
                values = self.evaluate(constant_nodes[n], [])
                if values is not None:
                    static.update(zip(constant_nodes[n].output, values, strict=True))
        if not all(n in derived or n in static for n in names):
            return None
        return self.evaluate(node, [derived[n] if n in derived else static[n] if n else None for n in node.input])

    def evaluate(self, node, args: list[np.ndarray | None]) -> list[np.ndarray] | None:
        from onnx.reference import ReferenceEvaluator

        try:
            feeds = {n: a for n, a in zip(node.input, args, strict=True) if n}
            out = ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the reference cannot run stays a node for onnxslim/onnx2tf
            return None
        values = [np.asarray(v) for v in out]
        if any(v.dtype == object or v.size > MAX_FOLDED for v in values):
            return None
        return values

    def inline(self, graph, node, taken: bool) -> tuple[list, dict[str, np.ndarray]]:
        """The taken branch's nodes, its outputs renamed to the If's outputs, and its initializers,
        which move to `graph`. A branch-local name also defined elsewhere in the model (a sibling branch may reuse
        it) gets a fresh name, so the graph stays in SSA form."""
        import onnx
        from onnx import numpy_helper

        branch = next(onnx.helper.get_attribute_value(a) for a in node.attribute
                      if a.name == ("then_branch" if taken else "else_branch"))
        produced = {o for n in branch.node for o in n.output if o} | {i.name for i in branch.initializer}
        defined = _definitions(self.root)
        used = _all_names(self.root) | self.fresh
        rename: dict[str, str] = {}
        tail = []
        for out_name, target in zip((o.name for o in branch.output), node.output, strict=True):
            if not target:
                continue
            if out_name in produced and out_name not in rename:
                rename[out_name] = target
            else:  # an outer name, or a branch value that is already another output
                tail.append(onnx.helper.make_node("Identity", [out_name], [target], name=f"{node.name}_out_{target}"))
        for name in sorted(produced - set(rename)):
            if defined.get(name, 0) > 1:
                k = 1
                while f"{name}__{k}" in used:
                    k += 1
                rename[name] = f"{name}__{k}"
                used.add(rename[name])
                self.fresh.add(rename[name])
        nodes = []
        for n in [*branch.node, *tail]:
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            _rename(copy, rename)
            nodes.append(copy)
        moved = {}
        for init in branch.initializer:
            copy = onnx.TensorProto()
            copy.CopyFrom(init)
            copy.name = rename.get(init.name, init.name)
            graph.initializer.append(copy)
            moved[copy.name] = numpy_helper.to_array(copy)
        return nodes, moved


def _rename(node, mapping: dict[str, str]) -> None:
    """Rename values read or written by `node`, and read inside its subgraphs (outer-scope names)."""
    if not mapping:
        return
    for i, n in enumerate(node.input):
        if n in mapping:
            node.input[i] = mapping[n]
    for i, n in enumerate(node.output):
        if n in mapping:
            node.output[i] = mapping[n]
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            for inner in sub.node:
                _rename(inner, mapping)
            for out in sub.output:
                if out.name in mapping:
                    out.name = mapping[out.name]


def _all_names(graph) -> set[str]:
    names = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {o.name for o in graph.output}
    for node in graph.node:
        names.update(n for n in (*node.input, *node.output) if n)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= _all_names(sub)
    return names


def _definitions(graph, counts: dict[str, int] | None = None) -> dict[str, int]:
    """How often each name is defined (input, initializer, node output) in `graph` and its subgraphs."""
    counts = {} if counts is None else counts
    for name in [*(i.name for i in graph.input), *(i.name for i in graph.initializer),
                 *(o for n in graph.node for o in n.output if o)]:
        counts[name] = counts.get(name, 0) + 1
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _definitions(sub, counts)
    return counts


def _read_names(graph) -> set[str]:
    """Names read anywhere in `graph`, its subgraphs included (they may read outer-scope names)."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(n for n in node.input if n)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                names |= _read_names(sub)
    return names


def _drop_unused(graph, candidates: set[str]) -> None:
    """Initializers among `candidates` (here and in subgraphs) that nothing reads any more."""
    read = _read_names(graph)
    keep = [i for i in graph.initializer if i.name not in candidates or i.name in read]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                _drop_unused(sub, candidates)


def _input(inputs: dict[str, GraphInput], name: str) -> GraphInput:
    if name not in inputs:
        listed = ", ".join(i.describe() for i in inputs.values()) or "none"
        raise InputError(f"--const names unknown input '{name}' of this ONNX file",
                         hint=f"its inputs are: {listed}")
    return inputs[name]


def _fits(elem_type: int, v: Any) -> bool:
    if elem_type in _BOOL:
        return isinstance(v, bool)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if elem_type in _INTS:
        if not isinstance(v, int):
            return False
        info = np.iinfo(np.dtype(_INTS[elem_type]))
        return info.min <= v <= info.max
    return bool(np.isfinite(v)) and abs(v) <= float(np.finfo(np.dtype(_FLOATS[elem_type])).max)


def _kind(elem_type: int) -> str:
    if elem_type in _BOOL:
        return "true or false"
    if elem_type in _INTS:
        info = np.iinfo(np.dtype(_INTS[elem_type]))
        return f"integers in [{info.min}, {info.max}]"
    return f"finite numbers within {_FLOATS[elem_type]}"


def _example(elem_type: int) -> str:
    return "true" if elem_type in _BOOL else "16000" if elem_type in _INTS else "0.5"


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value).replace(" ", "")


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
