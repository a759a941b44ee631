"""Channel pruning (structured, physically smaller layers) and elementwise sparsity (unstructured).

Structured pruning removes whole output channels of Conv/Linear layers, so every layer that reads
those channels must shrink too: the following BatchNorm, depthwise convs (which carry channels
through unchanged), the next layer's input channels, every branch of a residual add (all operands
of an add must keep the *same* channels), concatenations and the final Linear's input features.
Those dependencies are found by tracing the model with torch.fx (see `channel_groups`), not by
knowing the architecture; anything the tracer does not understand is left alone, with a note.

Importance criteria (per channel, higher = keep):
- magnitude: L1/L2 norm of each output channel's weights, with a following BatchNorm folded in
  (gamma / sqrt(var + eps)), because that folded weight is what the exported model computes.
- entropy: statistics of the activations *entering the next layer*, from forward pre-hooks over
  calibration data: the entropy of each channel's pooled activation under a common per-layer
  histogram (a channel stuck in one bin tells the next layer nothing), or its variance.
- gradient: first-order Taylor |w * dL/dw| summed over the channel's weights (producer, BN and
  depthwise parameters) and over batches; the loss is cross-entropy to labels, or to the teacher.

Unstructured sparsity zeroes individual weights. TFLite's CPU kernels (builtin and XNNPACK) run
dense, so it saves no time and no file size; only a compressed download gets smaller.
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeport.compress.deps import Layout, analyze, layout_indices
from edgeport.compress.distill import batches, clone_model, first_output, recalibrate_batchnorm, single_thread
from edgeport.errors import InputError

CRITERIA = ("magnitude", "entropy", "gradient")
STATISTICS = ("entropy", "variance")
SCOPES = ("layer", "global")
TARGETS = ("auto", "labels", "teacher", "teacher_hard")
UNSTRUCTURED_NOTE = ("unstructured sparsity: TFLite CPU kernels (builtin and XNNPACK) compute dense, so the zeros "
                     "save no latency and no .tflite size; only a gzip/zip-compressed download shrinks")
_HIST_BINS = 32


@dataclass
class PruneResult:
    model: nn.Module
    structured: bool
    groups: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # unstructured: param name -> 0/1 mask
    sparsity: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        pruned = [g for g in self.groups if g["after"] < g["before"]]
        return {"structured": self.structured, "groups_pruned": len(pruned),
                "channels_before": sum(g["before"] for g in pruned), "channels_after": sum(g["after"] for g in pruned),
                "groups": self.groups, "sparsity": {k: round(v, 4) for k, v in self.sparsity.items()},
                "notes": self.notes}


def prune(
    model: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    *,
    criterion: str = "magnitude",
    amount: float = 0.5,
    structured: bool = True,
    scope: str = "layer",
    norm: int = 2,
    statistic: str = "entropy",
    round_to: int = 1,
    min_channels: int = 1,
    layers: tuple[str, ...] | list[str] = (),
    skip: tuple[str, ...] | list[str] = (),
    inputs: list[torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
    teacher: Any = None,
    target: str = "auto",
    samples: int = 256,
    batch_size: int = 64,
    compensate: bool = True,
    recalibrate_bn: bool = True,
) -> PruneResult:
    """Return a pruned copy of `model`. `inputs`/`labels` (calibration samples) feed the entropy and
    gradient criteria; `layers`/`skip` are fnmatch patterns on module names (producers for structured).

    With data, two cheap repairs follow the cut (both standard, both need no labels): `compensate`
    folds the removed input channels' mean contribution into each consumer's bias, and
    `recalibrate_bn` re-estimates BatchNorm statistics. Without them every BatchNorm after a pruned
    layer sees shifted inputs and errors compound through the network."""
    _check_options(criterion, amount, scope, norm, statistic, target, structured, round_to, min_channels)
    if criterion != "magnitude" and inputs is None:
        raise InputError(f"criterion {criterion!r} needs calibration data", hint="pass --data, or use criterion = \"magnitude\"")
    model = clone_model(model).eval()
    data = None if inputs is None else [x[:samples] for x in inputs]
    lab = None if labels is None else labels[:samples]
    if not structured:
        result = _unstructured(model, criterion, amount, scope, layers, skip, data, lab, teacher, target, batch_size)
        if data is not None and recalibrate_bn:
            recalibrate_batchnorm(result.model, data, batch_size)
        return result
    deps = analyze(model, example_inputs)
    prunable, notes = _select_groups(deps, layers, skip, min_channels)
    with single_thread():
        scores = _scores(model, deps, prunable, criterion, norm, statistic, data, lab, teacher, target, batch_size, notes)
    keep = _choose(prunable, scores, amount, scope, round_to, min_channels, deps)
    means = _input_means(model, deps, data, batch_size) if data is not None and compensate else {}
    _apply(model, deps, keep, means)
    if data is not None and recalibrate_bn:
        recalibrate_batchnorm(model, data, batch_size)
    elif data is None and (compensate or recalibrate_bn):
        notes.append("no calibration data: removed channels' mean contribution is not compensated and "
                     "BatchNorm statistics are not re-estimated")
    groups = [{"producers": g.producers, "before": g.size, "after": len(keep[g.gid]) if g.gid in keep else g.size,
               "fixed": g.fixed} for g in deps.groups.values() if g.producers]
    return PruneResult(model, True, groups, [*deps.notes, *notes])


def _check_options(criterion: str, amount: float, scope: str, norm: int, statistic: str, target: str,
                   structured: bool, round_to: int, min_channels: int) -> None:
    for name, value, allowed in (("criterion", criterion, CRITERIA), ("scope", scope, SCOPES),
                                 ("statistic", statistic, STATISTICS), ("target", target, TARGETS)):
        if value not in allowed:
            raise InputError(f"prune {name}={value!r} is not known", hint=f"use one of: {', '.join(allowed)}")
    if not 0 <= amount < 1:
        raise InputError(f"prune amount={amount} is out of range", hint="use a fraction 0 <= amount < 1, e.g. 0.5")
    if norm not in (1, 2):
        raise InputError(f"prune norm={norm} is not supported", hint="use 1 (L1) or 2 (L2)")
    if round_to < 1 or min_channels < 1:
        raise InputError("prune round_to and min_channels must be at least 1", hint=f"got {round_to} and {min_channels}")
    if not structured and criterion == "entropy":
        raise InputError("criterion \"entropy\" ranks channels, not single weights",
                         hint="use structured = true, or criterion \"magnitude\"/\"gradient\" for unstructured sparsity")


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _select_groups(deps: Any, layers: Any, skip: Any, min_channels: int) -> tuple[list[Any], list[str]]:
    """Groups that may be pruned; an explicitly requested layer that cannot be pruned is an InputError."""
    notes: list[str] = []
    chosen = []
    for g in deps.groups.values():
        if not g.producers:
            continue
        requested = bool(layers) and any(_matches(p, layers) for p in g.producers)
        if layers and not requested:
            continue
        if g.fixed:
            if requested:
                raise InputError(f"cannot prune the output channels of {', '.join(g.producers)}: {g.fixed}",
                                 hint="remove it from 'layers' (the tracer keeps such channels to keep the model valid)")
            continue
        if any(_matches(p, skip) for p in g.producers):
            notes.append(f"skipped by 'skip': {', '.join(g.producers)}")
            continue
        if g.size <= min_channels:
            continue
        chosen.append(g)
    if not chosen:
        reasons = sorted({g.fixed for g in deps.groups.values() if g.producers and g.fixed})
        raise InputError("no prunable channels in this model" + (f" ({'; '.join(reasons)[:300]})" if reasons else ""),
                         hint="check 'layers'/'skip', or use structured = false for elementwise sparsity")
    return chosen, notes


def _normalized(score: torch.Tensor) -> torch.Tensor:
    # Scores from different layers live on different scales; dividing by the mean lets a residual
    # group sum its producers fairly and lets global ranking compare layers.
    score = score.double().clamp_min(0)
    return score / score.mean().clamp_min(1e-12)


def _scores(model: nn.Module, deps: Any, groups: list[Any], criterion: str, norm: int, statistic: str,
            inputs: list[torch.Tensor] | None, labels: torch.Tensor | None, teacher: Any, target: str,
            batch_size: int, notes: list[str]) -> dict[int, torch.Tensor]:
    mods = dict(model.named_modules())
    if criterion == "gradient":
        assert inputs is not None
        return _taylor(model, mods, deps, groups, inputs, labels, teacher, target, batch_size, notes)
    if criterion == "entropy":
        assert inputs is not None
        stats = _activation_scores(mods, deps, inputs, model, statistic, batch_size)
        out = {}
        for g in groups:
            if g.gid in stats:
                out[g.gid] = stats[g.gid]
            else:
                notes.append(f"no layer reads the channels of {', '.join(g.producers)} through a Conv/Linear: ranked by magnitude")
                out[g.gid] = _magnitude(mods, deps, g, norm)
        return out
    return {g.gid: _magnitude(mods, deps, g, norm) for g in groups}


def _magnitude(mods: dict[str, nn.Module], deps: Any, group: Any, norm: int) -> torch.Tensor:
    total = torch.zeros(group.size, dtype=torch.float64)
    for name in group.producers:
        w = mods[name].weight.detach().flatten(1)
        bn = deps.folded_bn.get(name)
        if bn is not None and isinstance(mods[bn], nn.modules.batchnorm._BatchNorm):
            m = mods[bn]
            gamma = m.weight.detach() if m.weight is not None else torch.ones(w.shape[0])
            w = w * (gamma / torch.sqrt(m.running_var + m.eps))[:, None]
        total += _normalized(w.abs().sum(1) if norm == 1 else w.pow(2).sum(1).sqrt())
    return total


def _activation_scores(mods: dict[str, nn.Module], deps: Any, inputs: list[torch.Tensor], model: nn.Module,
                       statistic: str, batch_size: int) -> dict[int, torch.Tensor]:
    """Per-group channel statistics of the tensors that Conv/Linear consumers read (forward pre-hooks)."""
    pooled: dict[str, list[torch.Tensor]] = {}

    def hook(name: str, layout: Layout):
        def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().float().movedim(layout.dim, 1)
            pooled.setdefault(name, []).append(x.flatten(2).mean(2) if x.ndim > 2 else x)
            if statistic == "variance":  # per-channel variance needs every position, not just the mean
                pooled.setdefault(name + "\0var", []).append(x.flatten(2).var(2, unbiased=False) if x.ndim > 2 else x * 0)
        return record

    _forward_with_pre_hooks(model, {n: hook(n, lay) for n, lay in deps.consumers.items()}, mods, inputs, batch_size)
    out: dict[int, torch.Tensor] = {}
    for name, layout in deps.consumers.items():
        if name not in pooled:
            continue
        means = torch.cat(pooled[name])  # (samples, features)
        if statistic == "entropy":
            score = _entropy(means)
        else:  # law of total variance: between-sample variance of means + mean within-sample variance
            score = means.var(0, unbiased=False) + torch.cat(pooled[name + "\0var"]).mean(0)
        offset = 0
        for seg in layout.segs:
            root = deps.find(seg.gid)
            n = deps.size[root] * seg.inner
            part = score[offset : offset + n].reshape(deps.size[root], seg.inner).sum(1)
            out[root] = out.get(root, 0) + _normalized(part)
            offset += n
    return out


def _entropy(values: torch.Tensor) -> torch.Tensor:
    """Entropy (bits) of each column under one shared histogram: like a per-tensor quantizer, a channel
    whose values all land in a bin or two is nearly constant to the next layer."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:
        return torch.zeros(values.shape[1])
    bins = ((values - lo) / (hi - lo) * _HIST_BINS).long().clamp(0, _HIST_BINS - 1)
    counts = F.one_hot(bins, _HIST_BINS).sum(0).double()  # (features, bins)
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(1) + 1e-6


def _loss_fn(target: str, labels: torch.Tensor | None, teacher: Any):
    if target == "auto":
        # Soft teacher targets give a zero gradient when the model *is* the teacher (the first pass of
        # a recipe), so unlabeled data falls back to the teacher's (or the model's own) argmax.
        target = "labels" if labels is not None else "teacher_hard"
    if target == "labels" and labels is None:
        raise InputError("prune target = \"labels\" but the data has no labels", hint="use target = \"teacher\" or \"auto\"")

    def loss(out: torch.Tensor, idx: torch.Tensor, xb: list[torch.Tensor]) -> torch.Tensor:
        if target == "labels":
            assert labels is not None
            return F.cross_entropy(out, labels[idx])
        with torch.no_grad():
            ref = first_output(teacher(*xb)).float() if teacher is not None else out.detach()
        if target == "teacher":
            return F.kl_div(F.log_softmax(out, 1), F.log_softmax(ref, 1), reduction="batchmean", log_target=True)
        return F.cross_entropy(out, ref.argmax(1))

    return loss


def _taylor(model: nn.Module, mods: dict[str, nn.Module], deps: Any, groups: list[Any], inputs: list[torch.Tensor],
            labels: torch.Tensor | None, teacher: Any, target: str, batch_size: int, notes: list[str]) -> dict[int, torch.Tensor]:
    """First-order Taylor importance, accumulated per batch so opposite-signed batches do not cancel."""
    loss_fn = _loss_fn(target, labels, teacher)
    if teacher is not None:
        teacher.eval()
    members: dict[int, list[tuple[torch.Tensor, Layout | None]]] = {}
    for g in groups:
        for name in g.producers:
            m = mods[name]
            members.setdefault(g.gid, []).extend((p, None) for p in (m.weight, m.bias) if p is not None)
        for name, layout in deps.passthrough.items():
            if any(deps.find(s.gid) == g.gid for s in layout.segs):
                m = mods[name]
                members.setdefault(g.gid, []).extend((p, layout) for p in (m.weight, m.bias) if p is not None)
    params = [p for lst in members.values() for p, _ in lst]
    scores = {g.gid: torch.zeros(g.size, dtype=torch.float64) for g in groups}
    model.eval()  # BatchNorm statistics as deployed; gradients still flow
    for idx in batches(inputs, batch_size):
        xb = [x[idx] for x in inputs]
        out = first_output(model(*xb)).float()
        grads = torch.autograd.grad(loss_fn(out, idx, xb), params, allow_unused=True)
        by_param = {id(p): g for p, g in zip(params, grads, strict=True)}
        for g in groups:
            for p, layout in members[g.gid]:
                grad = by_param[id(p)]
                if grad is None:
                    continue
                contrib = (p.detach() * grad).abs().flatten(1).sum(1) if p.ndim > 1 else (p.detach() * grad).abs()
                if layout is not None:  # a shared passthrough layer: take this group's slice of its channels
                    contrib = _slice_for_group(contrib, layout, g.gid, deps)
                    if contrib is None:
                        continue
                scores[g.gid] += contrib.double()
    if all(float(s.sum()) == 0 for s in scores.values()):
        notes.append("all Taylor scores are zero (loss gradient vanished): channel order is arbitrary")
    return scores


def _slice_for_group(values: torch.Tensor, layout: Layout, gid: int, deps: Any) -> torch.Tensor | None:
    offset = 0
    for seg in layout.segs:
        root = deps.find(seg.gid)
        n = deps.size[root] * seg.inner
        if root == gid:
            return values[offset : offset + n].reshape(deps.size[root], seg.inner).sum(1)
        offset += n
    return None


def _n_keep(size: int, amount: float, round_to: int, min_channels: int) -> int:
    keep = size - int(math.floor(amount * size))
    keep = int(math.ceil(keep / round_to) * round_to)  # multiples of 4/8 keep SIMD kernels on fast paths
    return max(min(size, max(keep, min_channels)), 1)


def _choose(groups: list[Any], scores: dict[int, torch.Tensor], amount: float, scope: str, round_to: int,
            min_channels: int, deps: Any) -> dict[int, torch.Tensor]:
    keep: dict[int, torch.Tensor] = {}
    if scope == "layer":
        for g in groups:
            k = _n_keep(g.size, amount, round_to, min_channels)
            keep[g.gid] = torch.sort(torch.topk(scores[g.gid], k).indices).values
        return keep
    # Global: one threshold over mean-normalized scores, so layers with many unimportant channels
    # give up more; every group still keeps at least min_channels (rounded).
    flat = torch.cat([_normalized(scores[g.gid]) for g in groups])
    n_remove = int(math.floor(amount * len(flat)))
    threshold = torch.sort(flat).values[n_remove - 1] if n_remove else -1.0
    for g in groups:
        s = _normalized(scores[g.gid])
        k = int((s > threshold).sum())
        k = max(min(g.size, int(math.ceil(max(k, min_channels) / round_to) * round_to)), 1)
        keep[g.gid] = torch.sort(torch.topk(s, k).indices).values
    return keep


def _input_means(model: nn.Module, deps: Any, inputs: list[torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
    """Mean of every input feature of every consumer over the data (for bias compensation)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    mods = dict(model.named_modules())

    def hook(name: str, dim: int):
        def record(_module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach().double().movedim(dim, 1)
            x = x.flatten(2) if x.ndim > 2 else x[:, :, None]
            sums[name] = sums.get(name, 0) + x.sum((0, 2))
            counts[name] = counts.get(name, 0) + x.shape[0] * x.shape[2]
        return record

    _forward_with_pre_hooks(model, {n: hook(n, lay.dim) for n, lay in deps.consumers.items()}, mods, inputs, batch_size,
                            one_thread=True)
    return {n: sums[n] / counts[n] for n in sums}


def _compensation(m: nn.Module, in_idx: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """What the removed input features added on average: W[:, removed] . mean[removed] (kernel summed;
    exact away from zero-padded borders)."""
    w = m.weight.detach().double()
    removed = torch.ones(w.shape[1], dtype=torch.bool)
    removed[in_idx] = False
    w = w.flatten(2).sum(2) if w.ndim > 2 else w
    return (w[:, removed] @ mean[removed]).to(m.weight.dtype)


def _apply(model: nn.Module, deps: Any, keep: dict[int, torch.Tensor], means: dict[str, torch.Tensor]) -> None:
    """Slice parameters and buffers of every member; a layer may be producer and consumer at once."""
    def take(t: torch.Tensor | None, dim: int, idx: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or idx is None else t.detach().index_select(dim, idx).clone()

    def idx_for(layout: Layout) -> torch.Tensor | None:
        if all(deps.find(s.gid) not in keep for s in layout.segs):
            return None
        return layout_indices(layout, deps, keep)

    names = set(deps.producers) | set(deps.consumers) | set(deps.passthrough)
    for name in names:
        m = model.get_submodule(name)
        out_idx = keep.get(deps.find(deps.producers[name])) if name in deps.producers else None
        in_idx = idx_for(deps.consumers[name]) if name in deps.consumers else None
        thru = idx_for(deps.passthrough[name]) if name in deps.passthrough else None
        if out_idx is None and in_idx is None and thru is None:
            continue
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for attr in ("weight", "bias"):
                if getattr(m, attr) is not None:
                    setattr(m, attr, nn.Parameter(take(getattr(m, attr), 0, thru)))
            for attr in ("running_mean", "running_var"):
                if getattr(m, attr) is not None:
                    setattr(m, attr, take(getattr(m, attr), 0, thru))
            m.num_features = int(m.weight.shape[0] if m.weight is not None else m.running_mean.shape[0])
        elif isinstance(m, nn.PReLU):
            m.weight = nn.Parameter(take(m.weight, 0, thru))
            m.num_parameters = int(m.weight.shape[0])
        if in_idx is not None and name in means and isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            comp = _compensation(m, in_idx, means[name])
            m.bias = nn.Parameter(comp if m.bias is None else m.bias.detach() + comp)
        if isinstance(m, nn.modules.conv._ConvNd):
            o = thru if thru is not None else out_idx
            m.weight = nn.Parameter(take(take(m.weight, 0, o), 1, in_idx))
            if m.bias is not None:
                m.bias = nn.Parameter(take(m.bias, 0, o))
            m.out_channels = int(m.weight.shape[0])
            m.in_channels = m.out_channels if thru is not None else int(m.weight.shape[1]) * m.groups
            if thru is not None:
                m.groups = m.out_channels
        elif isinstance(m, nn.Linear):
            m.weight = nn.Parameter(take(take(m.weight, 0, out_idx), 1, in_idx))
            if m.bias is not None:
                m.bias = nn.Parameter(take(m.bias, 0, out_idx))
            m.out_features, m.in_features = (int(s) for s in m.weight.shape)


def _unstructured(model: nn.Module, criterion: str, amount: float, scope: str, layers: Any, skip: Any,
                  inputs: list[torch.Tensor] | None, labels: torch.Tensor | None, teacher: Any, target: str,
                  batch_size: int) -> PruneResult:
    """Zero the lowest-scoring weights of Conv/Linear layers (per layer, or one global threshold)."""
    weights = {f"{n}.weight": m.weight for n, m in model.named_modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and (not layers or _matches(n, layers))
               and not _matches(n, skip)}
    if not weights:
        raise InputError("no Conv/Linear weights selected for sparsity", hint="check 'layers'/'skip'")
    scores = {k: w.detach().abs() for k, w in weights.items()}
    if criterion == "gradient":
        assert inputs is not None
        loss_fn = _loss_fn(target, labels, teacher)
        scores = {k: torch.zeros_like(w) for k, w in weights.items()}
        with single_thread():
            for idx in batches(inputs, batch_size):
                xb = [x[idx] for x in inputs]
                grads = torch.autograd.grad(loss_fn(first_output(model(*xb)).float(), idx, xb), list(weights.values()))
                for (k, w), g in zip(weights.items(), grads, strict=True):
                    scores[k] += (w.detach() * g).abs()
    if scope == "global":
        flat = torch.cat([_normalized(s.flatten()) for s in scores.values()])
        n = int(math.floor(amount * len(flat)))
        threshold = float(torch.sort(flat).values[n - 1]) if n else -1.0
        masks = {k: (_normalized(s.flatten()) > threshold).reshape(s.shape) for k, s in scores.items()}
    else:
        masks = {}
        for k, s in scores.items():
            n = int(math.floor(amount * s.numel()))
            mask = torch.ones(s.numel(), dtype=torch.bool)
            mask[torch.argsort(s.flatten())[:n]] = False  # argsort is stable: ties resolve the same way every run
            masks[k] = mask.reshape(s.shape)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, mask in masks.items():
            params[k].mul_(mask.to(params[k].dtype))
    sparsity = {k: 1.0 - float(m.float().mean()) for k, m in masks.items()}
    return PruneResult(model, False, [], [UNSTRUCTURED_NOTE], {k: m.float() for k, m in masks.items()}, sparsity)


def _forward_with_pre_hooks(model: nn.Module, hooks: dict[str, Any], mods: dict[str, nn.Module], inputs: list[torch.Tensor],
                            batch_size: int, *, one_thread: bool = False) -> None:
    """Run the calibration data through `model` in eval mode with forward pre-hooks that record
    consumer-layer inputs; the hooks are always removed again."""
    handles = [mods[n].register_forward_pre_hook(fn) for n, fn in hooks.items()]
    try:
        with torch.no_grad(), (single_thread() if one_thread else contextlib.nullcontext()):
            model.eval()
            for idx in batches(inputs, batch_size):
                model(*[x[idx] for x in inputs])
    finally:
        for h in handles:
            h.remove()
