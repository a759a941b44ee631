"""The task a convert judges (given with --task or detected) and its figures as report.json shows them.

edgeport/tasks computes the metrics; this module ties them to a run: which task, the profile's floor
for it, and one line that says what the figure means. classify and raw keep today's checks (top-1 and
the label drop; SNR), the others are judged by their own metric (validate/judge.py TASK_CHECKS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeport.profiles import Budgets
from edgeport.types import TensorSpec

_MEANING = {
    "ctc_identical": "greedy-decoded strings identical to the float model's",
    "detect_recall": "float detections found again at IoU 0.5 after decoding and NMS",
    "embed_cosine_min": "the worst sample's cosine to the float embedding",
    "segment_miou": "mean IoU of the per-pixel classes against the float model",
    "top1_agreement": "top-1 class identical to the float model's",
}


def resolve(text: str | None, outputs: Sequence[TensorSpec], references: list[np.ndarray], labels: object | None):
    """The TaskSpec: parsed from --task, else detected from the float outputs and the labels. A given
    task that cannot score these outputs or labels is the user's error (exit 2); a detected one that
    cannot falls back to raw, saying why."""
    from edgeport.errors import InputError
    from edgeport.tasks import TaskSpec, check, detect_task, parse_task

    spec = parse_task(text) if text else detect_task(outputs, references, labels)
    try:
        check(spec, references, labels)
    except InputError as exc:
        if not spec.detected:
            raise
        return TaskSpec("raw", {}, detected=True, reason=f"{spec.reason}, but {exc.message}: judged by SNR")
    return spec


def objective(budget: dict[str, Any], references: list[np.ndarray], outputs: list[np.ndarray],
              labels: object | None) -> tuple[bool, float] | None:
    """(meets the floor, value) of the task metric for the mixed searches (quantize/search/budget.budget_for puts
    the task in their budget), or None when the task is judged by today's figures (classify, raw)."""
    task = budget.get("task")
    if not task:
        return None
    from edgeport.tasks import TaskSpec, score

    found = score(TaskSpec(task["name"], dict(task["options"]), False, "the mixed search's objective"),
                  references, outputs, labels)
    floor = float(budget["task_min"])
    ok = found.value >= floor
    if task["name"] == "detect":  # as the verdict: recall and precision both
        ok = ok and float(found.details.get("precision", 0.0)) >= floor
    return ok, float(found.value)


def figures(spec: Any, references: list[np.ndarray], outputs: list[np.ndarray] | None, labels: object | None,
            budgets: Budgets) -> dict[str, Any]:
    """report.json `accuracy.task`: the spec, the metric against the float model, the floor and one line."""
    from edgeport.tasks import score

    section: dict[str, Any] = {"task": spec.name, "options": dict(spec.options), "detected": spec.detected,
                               "reason": spec.reason, "budget": budgets.task_minimum(spec.name)}
    if outputs is None:
        return {**section, "metric": None, "value": None, "details": {}, "summary": "no outputs to judge"}
    found = score(spec, references, outputs, labels).to_dict()
    section.update(metric=found["metric"], value=found["value"], details=found.get("details") or {})
    meaning = _MEANING.get(found["metric"], "")
    section["summary"] = f"{found['metric']} {found['value']:.4g}" + (f": {meaning}" if meaning else "")
    return section
