"""Task metrics: judge a quantized model by what its user's task needs, against the float model.

classify: top-1 agreement (accuracy vs integer labels is judged by the verdict's label drop).
ctc: greedy-decoded strings identical to float, character error rate vs float (and vs label sequences).
detect: decode + class-wise NMS, then recall and precision of the float detections at IoU 0.5 (and mAP50
vs box labels). embed: the worst sample's cosine, and nearest-neighbour identity within the set.
segment: mean IoU of the per-pixel argmax against float, and pixel agreement. raw: SNR and cosine.
Pure numpy, no I/O: the pipeline (validate/task_score.py) ties these to a run and a budget.

    spec = parse_task("ctc:blank=0")  or  detect_task(io.outputs, references, labels)
    check(spec, references, labels)                     # InputError (exit 2) when the task cannot fit
    found = score(spec, references, outputs, labels)   # -> TaskScore(task, metric, value, details)

`labels` is the data's class ids (np.ndarray [N]) or its TaskLabels (text + charset, tokens, boxes,
masks), or None: calibration.Dataset.scored_labels gives whichever the data has.

Owns: what a task is and its parsing (spec), labels besides class ids (labels), the guess of a
model's task (detect_kind), whether a task fits the outputs and labels (fit), and one scorer per task
(classify, ctc, detection, embed, segment, raw).
May import: edgeport.errors, edgeport.types, edgeport.validate.metrics
raw is today's SNR and cosine, so it takes them from validate.metrics, imported inside the function
because validate (task_score) imports the tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeport.tasks import classify, ctc, detection, embed, raw, segment
from edgeport.tasks.detect_kind import detect_task
from edgeport.tasks.fit import check
from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import DEFAULT_MIN, TASKS, TaskScore, TaskSpec, parse_task

__all__ = ["DEFAULT_MIN", "TASKS", "TaskLabels", "TaskScore", "TaskSpec", "check", "detect_task", "parse_task", "score"]

_SCORERS = {"classify": classify.score, "ctc": ctc.score, "detect": detection.score, "embed": embed.score,
            "segment": segment.score, "raw": raw.score}


def score(spec: TaskSpec, references: Sequence[np.ndarray], outputs: Sequence[np.ndarray],
          labels: object | None = None) -> TaskScore:
    """The task's metrics for `outputs` (each stacked over samples) against the float `references`."""
    return _SCORERS[spec.name](spec, list(references), list(outputs), labels)
