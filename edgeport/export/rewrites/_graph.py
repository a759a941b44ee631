"""Graph look-ups the pattern rewrites share: who makes a tensor, who reads it, which tensors are scalars."""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphIndex:
    """Producers and readers of every tensor of `model.graph`, read once; rewrites edit the graph
    afterwards, so an index is good for one pass only."""

    def __init__(self, model: Any, ctx) -> None:
        self.ctx = ctx
        self.producer = {out: node for node in model.graph.node for out in node.output}
        self.readers: dict[str, list[Any]] = {}
        for node in model.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in model.graph.output}

    def scalar(self, name: str) -> float | None:
        """The value of a one-element float constant, else None."""
        value = self.ctx.constants.get(name)
        if value is None or value.size != 1 or not np.issubdtype(value.dtype, np.floating):
            return None
        return float(value.reshape(()))

    def only_reader(self, name: str) -> Any | None:
        """The single node reading `name`, when the tensor feeds nothing else (nor a graph output)."""
        readers = self.readers.get(name, [])
        if len(readers) != 1 or name in self.graph_outputs:
            return None
        return readers[0]

    def private(self, name: str, inside: set[int]) -> bool:
        """True when every reader of `name` is one of the nodes `inside` (ids), so removing them loses nothing."""
        return name not in self.graph_outputs and all(id(n) in inside for n in self.readers.get(name, []))


def is_float32(model: Any, name: str) -> bool:
    """True when `name` is declared float32 (the constants the rewrites add are float32; mixing types
    would fail the float proof and drop every rewrite)."""
    from onnx import TensorProto

    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        if vi.name == name:
            return vi.type.tensor_type.elem_type == TensorProto.FLOAT
    return False


def opset(model: Any) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def use_domain(model: Any, domain: str, version: int = 1) -> None:
    """Declare `domain` in the model's opset imports (nodes of an undeclared domain are invalid)."""
    from onnx import helper

    if domain and not any(o.domain == domain for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(domain, version))


def replace(model: Any, old: Any, *new: Any) -> None:
    """Put the `new` nodes, in order, where `old` was (that position keeps the list topologically sorted)."""
    graph = model.graph
    index = next(i for i, n in enumerate(graph.node) if n is old)
    graph.node.remove(old)
    for offset, node in enumerate(new):
        graph.node.insert(index + offset, node)


def close(a: float | None, b: float, rel: float = 1e-5) -> bool:
    """Exporter constants are float32 roundings of the exact ones (1.4142135 for √2)."""
    return a is not None and abs(a - b) <= rel * abs(b)
