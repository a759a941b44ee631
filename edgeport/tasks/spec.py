"""What a task is (`--task NAME[:key=value,...]`) and what scoring it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeport.errors import InputError

TASKS = ("classify", "ctc", "detect", "embed", "segment", "raw")
# Each task's default floor for its primary metric (the profiles' [budgets] min_* keys default to the same
# figures); raw has none: it is judged by the profile's min_snr_db as before tasks existed.
DEFAULT_MIN = {"classify": 0.98, "ctc": 0.98, "detect": 0.95, "embed": 0.99, "segment": 0.95}
# Each task's options: name -> (parser, example). A typo in a key or value is exit 2, not a silent default.
DETECT_LAYOUTS = ("yolo", "yolov8", "pairs")  # [N,B,5+C] with objectness | [N,4+C,B] | boxes [N,B,4] + scores [N,B,C]
CTC_LAYOUTS = ("ntc", "tnc", "nct")
SEGMENT_LAYOUTS = ("nchw", "nhwc")


def _choice(values: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in values:
            raise ValueError(f"one of {', '.join(values)}")
        return text
    return parse


def _fraction(text: str) -> str:
    try:
        ok = 0.0 < float(text) <= 1.0
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("a number in (0, 1]")
    return text


def _index(text: str) -> str:
    if not text.isdigit():
        raise ValueError("a class index >= 0")
    return str(int(text))


OPTIONS: dict[str, dict[str, tuple[Any, str]]] = {
    "classify": {},
    "ctc": {"blank": (_index, "0"), "layout": (_choice(CTC_LAYOUTS), "ntc")},
    "detect": {"layout": (_choice(DETECT_LAYOUTS), "yolo"), "iou": (_fraction, "0.45"), "score": (_fraction, "0.25")},
    "embed": {},
    "segment": {"layout": (_choice(SEGMENT_LAYOUTS), "nchw")},
    "raw": {},
}


@dataclass(frozen=True)
class TaskSpec:
    name: str  # one of TASKS
    options: dict[str, str] = field(default_factory=dict)  # e.g. {"blank": "0"}
    detected: bool = False  # guessed from the outputs (detect_task), not given with --task
    reason: str = ""  # one line: why this task

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)


@dataclass(frozen=True)
class TaskScore:
    task: str
    metric: str  # the primary metric's name; higher is better
    value: float
    details: dict[str, Any] = field(default_factory=dict)  # every other figure, JSON-safe

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "value": self.value, "details": dict(self.details)}


def parse_task(text: str) -> TaskSpec:
    """`--task ctc:blank=0,layout=ntc` -> TaskSpec; InputError (exit 2) names the bad part."""
    name, _, rest = str(text).strip().partition(":")
    name = name.strip().lower()
    if name not in TASKS:
        raise InputError(f"--task '{text}': unknown task '{name}'", hint=f"use one of {', '.join(TASKS)} (e.g. --task ctc:blank=0)")
    options: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        known = OPTIONS[name]
        if not sep or key not in known:
            keys = ", ".join(f"{k}={ex}" for k, (_, ex) in known.items()) or "none"
            raise InputError(f"--task '{text}': '{item}' is not an option of {name}", hint=f"{name} takes: {keys}")
        parser, example = known[key]
        try:
            options[key] = parser(value)
        except ValueError as exc:
            raise InputError(f"--task '{text}': {key}={value!r} must be {exc}", hint=f"e.g. --task {name}:{key}={example}") from None
    return TaskSpec(name, options, detected=False, reason="given with --task")
