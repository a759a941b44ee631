"""Knowledge distillation: fine-tune a student on a teacher's outputs (Hinton et al., 2015).

Why it is a pass of its own: pruning and low-rank factorization remove capacity in one step, and
the fastest way to win back accuracy is to let the original model teach the smaller one. The
teacher also labels unlabeled data, so calibration images without labels are enough to fine-tune.

Modes:
- ``soft``: ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, hard targets)``,
  with ``_T`` meaning softmax at temperature T. The T^2 factor keeps the soft-target gradients at the
  same scale as the hard term when T changes (Hinton et al., section 2).
- ``hard``: cross-entropy against hard targets only.
Hard targets are the data's labels or the teacher's argmax (``hard_target``: auto | labels | teacher).

The first model output is taken as the logits; other outputs are ignored.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeport.errors import InputError

MODES = ("soft", "hard")
HARD_TARGETS = ("auto", "labels", "teacher")


@contextmanager
def single_thread() -> Iterator[None]:
    """The machine is shared: training loops run on one thread, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def clone_model(model: Any) -> Any:
    """An independent copy. TorchScript goes through save/load: copy.deepcopy of a ScriptModule
    returns non-leaf parameters, which optimizers refuse."""
    if isinstance(model, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(model, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")
    return copy.deepcopy(model)


def first_output(out: Any) -> torch.Tensor:
    """The logits of a model that may return a tuple/list/dict of outputs."""
    while isinstance(out, (tuple, list, dict)):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def batches(inputs: list[torch.Tensor], batch_size: int, order: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """Index tensors for successive batches (all inputs share the sample axis 0)."""
    n = int(inputs[0].shape[0])
    idx = torch.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        yield idx[start : start + batch_size]


@torch.no_grad()
def predict(model: Any, inputs: list[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """First-output logits for every sample, in eval mode (the mode restored afterwards)."""
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        outs = [first_output(model(*[x[i] for x in inputs])).float() for i in batches(inputs, batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs)


def kl_to_teacher(student: Any, teacher: Any, inputs: list[torch.Tensor], temperature: float = 1.0) -> float:
    """Mean KL(teacher_T || student_T) per sample: how far the student's predictions are from the teacher's."""
    s = predict(student, inputs) / temperature
    t = predict(teacher, inputs) / temperature
    return float(F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), reduction="batchmean", log_target=True))


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each NCHW image by up to `max_shift` pixels. Replicated borders keep the background
    (usually the border colour) instead of inventing a value, so this stays dataset-agnostic."""
    if max_shift <= 0 or x.ndim != 4:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def recalibrate_batchnorm(model: nn.Module, inputs: list[torch.Tensor], batch_size: int = 64) -> None:
    """Re-estimate BatchNorm running statistics on `inputs` (cumulative average, other layers in eval)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    model.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None = exact average over all batches seen
        m.train()
    try:
        with torch.no_grad(), single_thread():
            for idx in batches(inputs, batch_size):
                if len(idx) > 1:  # a batch of one has no variance
                    model(*[x[idx] for x in inputs])
    finally:
        for m, momentum in zip(bns, saved, strict=True):
            m.momentum = momentum
        model.eval()


@dataclass
class DistillResult:
    model: nn.Module
    epochs: int
    losses: list[float]
    kl_before: float
    kl_after: float
    hard_target: str | None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "final_loss": round(self.losses[-1], 6) if self.losses else None,
                "kl_to_teacher_before": round(self.kl_before, 6), "kl_to_teacher_after": round(self.kl_after, 6),
                "hard_target": self.hard_target, "notes": self.notes}


def resolve_hard_target(hard_target: str, labels: torch.Tensor | None) -> str:
    if hard_target not in HARD_TARGETS:
        raise InputError(f"hard_target={hard_target!r} is not known", hint=f"use one of: {', '.join(HARD_TARGETS)}")
    if hard_target == "labels" and labels is None:
        raise InputError("hard_target = \"labels\" but the data has no labels",
                         hint="use hard_target = \"teacher\" (teacher argmax), or data with labels (npz 'y' or class folders)")
    if hard_target == "auto":
        return "labels" if labels is not None else "teacher"
    return hard_target


def distill(
    student: nn.Module,
    teacher: Any,
    inputs: list[torch.Tensor],
    labels: torch.Tensor | None = None,
    *,
    mode: str = "soft",
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    hard_target: str = "auto",
    shift: int = 0,
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
) -> DistillResult:
    """Fine-tune `student` (in place) toward `teacher` on `inputs`; returns losses and KL before/after.

    `masks` (parameter name -> 0/1 tensor) keeps unstructured-pruned weights at zero: the mask is
    applied to gradients and re-applied after every step, or fine-tuning would regrow them.
    """
    if mode not in MODES:
        raise InputError(f"distillation mode {mode!r} is not known", hint=f"use one of: {', '.join(MODES)}")
    if not (temperature > 0 and 0 <= alpha <= 1 and epochs >= 0 and lr > 0 and batch_size >= 1):
        raise InputError("distillation needs temperature > 0, 0 <= alpha <= 1, epochs >= 0, lr > 0, batch_size >= 1",
                         hint=f"got temperature={temperature}, alpha={alpha}, epochs={epochs}, lr={lr}, batch_size={batch_size}")
    target = resolve_hard_target(hard_target, labels)
    notes: list[str] = []
    if mode == "soft" and labels is None and alpha < 1:
        notes.append("no labels: the hard term uses the teacher's argmax")
    teacher.eval()
    params = dict(student.named_parameters())
    live_masks = {k: m.to(params[k].dtype) for k, m in (masks or {}).items() if k in params}
    with single_thread():
        kl_before = kl_to_teacher(student, teacher, inputs, temperature)
        optimizer = torch.optim.AdamW([p for p in params.values() if p.requires_grad], lr=lr, weight_decay=weight_decay)
        steps = max(1, epochs * math.ceil(int(inputs[0].shape[0]) / batch_size))
        # Cosine decay to zero: the student starts close to a good solution, and a decaying rate
        # settles it instead of ending on a noisy step.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
        generator = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        for _ in range(epochs):
            student.train()
            total, seen = 0.0, 0
            for idx in batches(inputs, batch_size, torch.randperm(int(inputs[0].shape[0]), generator=generator)):
                xb = [random_shift(x[idx], shift, generator) for x in inputs]
                with torch.no_grad():
                    t_logits = first_output(teacher(*xb)).float()
                s_logits = first_output(student(*xb)).float()
                hard = labels[idx] if target == "labels" and labels is not None else t_logits.argmax(1)
                loss = F.cross_entropy(s_logits, hard)
                if mode == "soft":
                    soft = F.kl_div(F.log_softmax(s_logits / temperature, 1), F.log_softmax(t_logits / temperature, 1),
                                    reduction="batchmean", log_target=True) * temperature**2
                    loss = alpha * soft + (1 - alpha) * loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for name, mask in live_masks.items():
                    if params[name].grad is not None:
                        params[name].grad.mul_(mask)
                optimizer.step()
                scheduler.step()
                if live_masks:
                    with torch.no_grad():  # AdamW's weight decay and momentum would still move masked weights
                        for name, mask in live_masks.items():
                            params[name].mul_(mask)
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            losses.append(total / max(1, seen))
        student.eval()
        kl_after = kl_to_teacher(student, teacher, inputs, temperature)
    return DistillResult(student, epochs, losses, kl_before, kl_after, target if (mode == "hard" or alpha < 1) else None, notes)
