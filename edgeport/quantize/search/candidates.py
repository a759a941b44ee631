"""Candidates of both searches: which ops must change level together, and the groups the scoring measures.

A tensor keeps more precision only if its producer AND every op that computes with it do: with the
producer float (or a16w8) and a consumer at int8, the builder requantizes the tensor to int8 in front of
that consumer and the precision is lost again. So both searches move *units*: an op plus the ops that
read its output, followed through data-movement ops (a PAD or RESHAPE passes its input's precision on).
The converter search (converter_worker) builds units on the int8 model's graph; the AEQ search
(aeq_search) on the float model's op records, where it also measures groups of consecutive units.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass

from edgeport.quantize.aeq import OpRecord

# Ops that only move data: a tensor's precision flows through them to the op that computes.
MOVERS = frozenset({"RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "PAD", "PADV2", "GATHER", "STRIDED_SLICE",
                    "SLICE", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "CONCATENATION"})


def closure(name: str, readers: Mapping[str, Sequence[str]], kind: Mapping[str, str], allowed: Container[str]) -> list[str]:
    """The op `name` plus every allowed op that reads its output, followed through MOVERS: keeping these
    at one level keeps the tensor at that level all the way to the ops that compute with it."""
    members, queue = [name], list(readers.get(name, []))
    while queue:
        nxt = queue.pop(0)
        if nxt in members or nxt not in allowed:
            continue
        members.append(nxt)
        if kind.get(nxt) in MOVERS:
            queue.extend(readers.get(nxt, []))
    return members


@dataclass(frozen=True)
class Unit:
    key: str  # the producing op's output tensor
    index: int  # the producing op's index (execution order)
    ops: tuple[str, ...]  # op output tensors in the unit, producer first


def adjustable(ops: Sequence[OpRecord]) -> list[OpRecord]:
    """Ops whose level the search may choose (AEQ supports more than float for them)."""
    return [o for o in ops if len(o.levels) > 1]


def units(ops: Sequence[OpRecord]) -> list[Unit]:
    """One unit per adjustable op that computes (movers only ride along), duplicates removed."""
    can = {o.tensor for o in adjustable(ops)}
    owner = {out: o.tensor for o in ops for out in o.outputs}
    readers: dict[str, list[str]] = {}
    for o in ops:
        for name in o.inputs:
            if name in owner:
                readers.setdefault(owner[name], []).append(o.tensor)
    kind = {o.tensor: o.op for o in ops}
    seen: set[frozenset[str]] = set()
    out = []
    for o in ops:
        if o.tensor not in can or (o.op in MOVERS and o.inputs and all(owner.get(i) in can for i in o.inputs)):
            continue
        members = closure(o.tensor, readers, kind, can)
        key = frozenset(members)
        if key not in seen:
            seen.add(key)
            out.append(Unit(o.tensor, o.index, tuple(members)))
    return out


@dataclass(frozen=True)
class Node:
    """A set of units measured together: a top-level group or a half of a measured node."""

    units: tuple[Unit, ...]

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(t for u in self.units for t in u.ops)

    @property
    def ordered_ops(self) -> tuple[str, ...]:
        """The ops in unit order: a frozenset's order changes with each process's string hashing, and a
        candidate's levels are built in this order, which report.json's float_layers lists keep."""
        return tuple(dict.fromkeys(t for u in self.units for t in u.ops))

    @property
    def name(self) -> str:
        first, last = self.units[0], self.units[-1]
        return first.key if len(self.units) == 1 else f"{len(self.units)} units, ops {first.index}..{last.index}"

    def halves(self) -> tuple[Node, Node]:
        mid = len(self.units) // 2
        return Node(self.units[:mid]), Node(self.units[mid:])


def groups(all_units: Sequence[Unit], count: int) -> list[Node]:
    """`count` groups of consecutive units (execution order) of near-equal size: contiguous, so an
    outlier that spreads over a few neighbouring ops lands in one group."""
    ordered = sorted(all_units, key=lambda u: u.index)
    count = max(1, min(count, len(ordered)))
    bounds = [round(i * len(ordered) / count) for i in range(count + 1)]
    return [Node(tuple(ordered[a:b])) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]
