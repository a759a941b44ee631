"""Low-rank factorization of Linear and Conv layers by truncated SVD.

A Linear W (out x in) becomes Linear(in -> r, no bias) then Linear(r -> out, bias); a Conv with a
k x k kernel becomes a k x k Conv with r output channels (same stride/padding/dilation) followed by
a 1x1 Conv to the original outputs. Both halves get sqrt(S) so neither carries all the scale, which
keeps their int8 ranges similar. Depthwise/grouped convs are skipped (their kernels are already
rank-1 per channel), and a layer is only replaced when r * (fan_in + out) < fan_in * out.

Rank per layer: the smallest r that keeps `energy` of the squared singular values, or, with
`param_budget`, one energy level found by bisection so the factorizable layers fit in that
fraction of their original parameters.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeport.errors import InputError

KINDS = ("all", "linear", "conv")


@dataclass
class LowRankResult:
    model: nn.Module
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    energy: float | None = None

    def summary(self) -> dict[str, Any]:
        done = [x for x in self.layers if x["factorized"]]
        return {"factorized": len(done), "params_before": sum(x["params_before"] for x in done),
                "params_after": sum(x["params_after"] for x in done), "energy": self.energy,
                "layers": self.layers, "notes": self.notes}


def _matrix(m: nn.Module) -> torch.Tensor:
    return m.weight.detach().double().flatten(1)  # (out, in * kh * kw)


def _candidates(model: nn.Module, kinds: str, layers: Any, skip: Any) -> list[tuple[str, nn.Module]]:
    out = []
    for name, m in model.named_modules():
        if layers and not any(fnmatch.fnmatchcase(name, p) for p in layers):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in skip):
            continue
        if isinstance(m, nn.Linear) and kinds in ("all", "linear"):
            out.append((name, m))
        elif (isinstance(m, nn.modules.conv._ConvNd) and not m.transposed and m.groups == 1
              and kinds in ("all", "conv")):
            out.append((name, m))
    return out


def rank_for_energy(singular: torch.Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep `energy` of sum(S^2)."""
    power = singular.double().pow(2)
    total = float(power.sum())
    if total == 0:
        return 1
    cum = torch.cumsum(power, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(energy - 1e-12, dtype=cum.dtype)).item()) + 1


def _params(out: int, fan_in: int, rank: int) -> int:
    return rank * (fan_in + out)


def factorize(m: nn.Module, rank: int) -> nn.Sequential:
    """The two-layer replacement for `m` at `rank` (weights from the truncated SVD)."""
    w = _matrix(m)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first_w = (root[:, None] * vh[:rank]).float()
    second_w = (u[:, :rank] * root[None, :]).float()
    bias = m.bias.detach().clone() if m.bias is not None else None
    if isinstance(m, nn.Linear):
        a, b = nn.Linear(m.in_features, rank, bias=False), nn.Linear(rank, m.out_features, bias=bias is not None)
        a.weight.data.copy_(first_w)
        b.weight.data.copy_(second_w)
    else:
        conv = type(m)
        a = conv(m.in_channels, rank, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                 bias=False, padding_mode=m.padding_mode)
        b = conv(rank, m.out_channels, 1, bias=bias is not None)
        a.weight.data.copy_(first_w.reshape(rank, *m.weight.shape[1:]))
        b.weight.data.copy_(second_w.reshape(m.out_channels, rank, *([1] * (m.weight.ndim - 2))))
    if bias is not None:
        b.bias.data.copy_(bias)
    return nn.Sequential(a, b)


def low_rank(
    model: nn.Module,
    *,
    energy: float = 0.9,
    param_budget: float | None = None,
    kinds: str = "all",
    min_rank: int = 1,
    layers: tuple[str, ...] | list[str] = (),
    skip: tuple[str, ...] | list[str] = (),
) -> LowRankResult:
    """Return a copy of `model` with its Linear/Conv layers factorized where that saves parameters."""
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("low-rank factorization replaces layers and needs a Python nn.Module, not TorchScript",
                         hint="load the state_dict with --model-class")
    if not 0 < energy <= 1:
        raise InputError(f"lowrank energy={energy} is out of range", hint="use a fraction 0 < energy <= 1, e.g. 0.9")
    if param_budget is not None and not 0 < param_budget <= 1:
        raise InputError(f"lowrank param_budget={param_budget} is out of range",
                         hint="use a fraction 0 < param_budget <= 1 of the factorizable layers' parameters")
    if kinds not in KINDS:
        raise InputError(f"lowrank layers kind {kinds!r} is not known", hint=f"use one of: {', '.join(KINDS)}")
    model = copy.deepcopy(model)
    cands = _candidates(model, kinds, layers, skip)
    if not cands:
        raise InputError("no Linear or (non-grouped) Conv layer to factorize", hint="check 'layers'/'skip'/'kinds'")
    spectra = {name: torch.linalg.svdvals(_matrix(m)) for name, m in cands}
    shapes = {name: tuple(_matrix(m).shape) for name, m in cands}

    def plan(level: float) -> dict[str, int]:
        ranks = {}
        for name, s in spectra.items():
            out, fan_in = shapes[name]
            r = max(min_rank, rank_for_energy(s, level))
            if _params(out, fan_in, r) < out * fan_in and r < min(out, fan_in):
                ranks[name] = r
        return ranks

    def total(ranks: dict[str, int]) -> int:
        return sum(_params(*shapes[n], ranks[n]) if n in ranks else shapes[n][0] * shapes[n][1] for n in shapes)

    notes: list[str] = []
    level = energy
    if param_budget is not None:
        # Energy and size move together, so bisection finds the highest energy that fits the budget.
        budget = param_budget * sum(o * i for o, i in shapes.values())
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if total(plan(mid)) <= budget else (lo, mid)
        level = lo
        if total(plan(level)) > budget:
            notes.append(f"param_budget {param_budget} is below what rank {min_rank} allows; kept the smallest ranks")
    ranks = plan(level)
    report = []
    for name, m in cands:
        out, fan_in = shapes[name]
        s = spectra[name]
        r = ranks.get(name)
        kept = float(s[:r].pow(2).sum() / s.pow(2).sum().clamp_min(1e-30)) if r else 1.0
        report.append({"layer": name, "shape": [out, fan_in], "rank": r, "full_rank": int(min(out, fan_in)),
                       "energy_kept": round(kept, 6), "factorized": r is not None, "params_before": out * fan_in,
                       "params_after": _params(out, fan_in, r) if r else out * fan_in})
        if r is not None:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, factorize(m, r))
    if not ranks:
        notes.append("no layer was factorized: at this energy no rank saves parameters")
    return LowRankResult(model, report, notes, round(level, 6))
