"""Rules that constrain which candidates a search may build, whatever builds them.

The Edge TPU rule: the compiler maps the graph to the TPU up to the first op it cannot run and leaves
everything after it to the CPU, so a float op in the middle of the graph would cut the TPU segment
there. On such a profile the only float set worth building is a tail: the last k ops. The search then
ranks ops last first (tail_steps) and smallest_prefix finds the shortest tail that fits; no a16w8 and
no refining, since dropping an op from the middle of a tail would cut the graph again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")
TAIL = "tail"  # runtime.float_layers of a profile that takes only a float tail


def tail_only(runtime: Any) -> bool:
    """Whether a profile's runtime takes only a float tail (Edge TPU, or float_layers = "tail")."""
    return getattr(runtime, "delegate", None) == "edgetpu" or getattr(runtime, "float_layers", "") == TAIL


def tail_steps(ops: Sequence[T], forced: int = 0) -> list[list[T]]:
    """Steps of a float-tail search over `ops` in execution order: the first k steps together are the
    last ops of the graph. When an op must stay float anyway (the builder has no quantized rule for it),
    the tail starts there at the latest: the `forced` ops after it are the first step."""
    last_first = list(reversed(ops))
    head = last_first[:forced]
    return ([head] if head else []) + [[op] for op in last_first[forced:]]


def tail(ops: Sequence[T], steps: int) -> list[T]:
    """The float set of the first `steps` single-op steps, in execution order: the last `steps` ops."""
    return list(ops[len(ops) - steps:])
