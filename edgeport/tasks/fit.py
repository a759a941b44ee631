"""Does the task fit the model's outputs and the labels? Checked once, right after the float reference
runs, so `--task detect` on a classifier or a charset one class short is exit 2 before any conversion
instead of a traceback after it."""

from __future__ import annotations

import numpy as np

from edgeport.errors import InputError
from edgeport.tasks import detection
from edgeport.tasks.labels import TaskLabels
from edgeport.tasks.spec import TaskSpec


def check(spec: TaskSpec, references: list[np.ndarray], labels: object | None = None) -> None:
    """InputError (one line, a hint) when `spec` cannot score these float outputs or labels."""
    shapes = [tuple(int(d) for d in r.shape) for r in references]
    first, where = shapes[0], f"--task {spec.name}" + (" (detected)" if spec.detected else "")
    seen = f"the model's first output has shape {list(first)}"
    if spec.name == "ctc":
        _ctc(spec, first, labels, where, seen)
    elif spec.name == "detect":
        layout = spec.options.get("layout")
        guessed, why = detection.guess_layout(shapes)
        if layout is None and guessed is None:
            raise InputError(f"{where}: {why}", hint="pass --task detect:layout=yolo|yolov8|pairs, or another --task")
        if layout and not _fits_layout(layout, shapes):
            raise InputError(f"{where}: layout {layout} does not fit outputs {[list(s) for s in shapes]}",
                             hint="yolo: one [N, B, 5+C]; yolov8: one [N, 4+C, B]; pairs: [N, B, 4] boxes + [N, B, C] scores")
    elif spec.name == "segment":
        if len(first) != 4:
            raise InputError(f"{where}: {seen}, not per-pixel class scores", hint="segment scores [N, C, H, W] or [N, H, W, C]")
        masks = labels.masks if isinstance(labels, TaskLabels) else None
        if masks is not None and tuple(masks.shape[1:]) not in (first[2:4], first[1:3]):
            raise InputError(f"{where}: masks of {list(masks.shape[1:])} pixels, {seen}",
                             hint="save masks at the output's resolution (N, H, W)")
    elif spec.name in ("classify", "embed") and (len(first) < 2 or int(np.prod(first[1:])) < 2):
        raise InputError(f"{where}: {seen}, one value per sample", hint="pass --task raw to judge it by SNR")


def _ctc(spec: TaskSpec, first: tuple[int, ...], labels: object | None, where: str, seen: str) -> None:
    if len(first) != 3:
        raise InputError(f"{where}: {seen}, not per-step class scores",
                         hint="ctc scores [N, T, C] (or layout=tnc [T, N, C], layout=nct [N, C, T])")
    layout = spec.option("layout", "ntc")
    classes = first[1] if layout == "nct" else first[2]
    blank = int(spec.option("blank", "0"))
    if blank >= classes:
        raise InputError(f"{where}: blank={blank} but the output has {classes} classes ({seen}, layout {layout})",
                         hint=f"pass --task ctc:blank=K with K < {classes}, or the layout= that puts the classes last")
    charset = labels.charset if isinstance(labels, TaskLabels) else None
    if charset is not None and len(charset) != classes:
        raise InputError(f"{where}: the charset has {len(charset)} entries but the output has {classes} classes",
                         hint="save one charset entry per class, the blank's slot included (e.g. '-0123456789' for 11)")


def _fits_layout(layout: str, shapes: list[tuple[int, ...]]) -> bool:
    if layout == "pairs":
        return len(shapes) == 2 and all(len(s) == 3 for s in shapes) and 4 in (shapes[0][-1], shapes[1][-1]) \
            and shapes[0][1] == shapes[1][1]
    first = shapes[0]
    return len(first) == 3 and (first[2] >= 6 if layout == "yolo" else first[1] >= 5)
