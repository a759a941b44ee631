"""Models on which plain int8 fails, trained on the shipped digits data (proof for `--quant mixed`).

OutlierNet: hard-swish CNN with a float-equivalent outlier channel between two convs — the activation
tensor's per-tensor int8 scale is set by one channel and the other channels lose their precision,
the failure mode of real depthwise/linear-bottleneck models. AttnNet: a one-block vision transformer
(LayerNorm, softmax attention) with a float-equivalent outlier feature after its first LayerNorm,
the pattern that breaks int8 in real transformers. HeadNet: OutlierNet's trunk without its outlier and
a MobileNetV3-style classifier head (Linear -> Hardswish -> Linear) whose hidden layer carries one
massive activation (a unit far larger than the rest, held in hard-swish's linear range): the head's
int8 tensors lose the other units, and equalization cannot move it (hard-swish is not homogeneous).
"""

from __future__ import annotations

import torch
from torch import nn

OUTLIER_CHANNEL = 5
OUTLIER_FACTOR = 300.0


class OutlierNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.Hardswish())
        # Linear bottleneck: no activation, so scaling a channel here and unscaling it in the next
        # conv leaves the float function unchanged.
        self.project = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.expand = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled trunk output the classifier reads."""
        return torch.flatten(self.pool(self.expand(self.project(self.down(self.stem(x))))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    @torch.no_grad()
    def inject_outlier(self, channel: int = OUTLIER_CHANNEL, factor: float = OUTLIER_FACTOR) -> None:
        """Scale one channel of `project`'s output by `factor` and divide it out of `expand`'s input."""
        bn = self.project[1]
        bn.weight[channel] *= factor
        bn.bias[channel] *= factor
        self.expand[0].weight[:, channel] /= factor


HEAD_UNIT = 7
HEAD_LINEAR_FROM = 3.0  # hard-swish(x) == x for x >= 3


class HeadNet(OutlierNet):
    """OutlierNet's trunk (no outlier planted in it) with a sensitive classifier head."""

    def __init__(self, num_classes: int = 10, hidden: int = 128) -> None:
        super().__init__(num_classes)
        self.classifier = nn.Sequential(nn.Linear(64, hidden), nn.Hardswish(), nn.Linear(hidden, num_classes))

    @torch.no_grad()
    def pin_unit(self, features: torch.Tensor, unit: int = HEAD_UNIT, margin: float = 1.0) -> None:
        """Shift one hidden unit's bias so its pre-activation stays in hard-swish's linear range on
        `features` (the classifier is then re-fitted: this changes the float function)."""
        z = self.classifier[0](features)[:, unit]
        self.classifier[0].bias[unit] += max(0.0, HEAD_LINEAR_FROM - float(z.min())) + margin

    @torch.no_grad()
    def inject_outlier(self, unit: int = HEAD_UNIT, factor: float = OUTLIER_FACTOR) -> None:
        """Scale the pinned unit by `factor` and divide it out of the last layer: float-equivalent
        wherever the unit stays in the linear range (hard-swish(f*x) == f*hard-swish(x) for x >= 3)."""
        first, last = self.classifier[0], self.classifier[2]
        first.weight[unit] *= factor
        first.bias[unit] *= factor
        last.weight[:, unit] /= factor


class AttnNet(nn.Module):
    """4x4 patches of a 32x32 digit -> 64 tokens of width 32 -> one transformer block -> classes.

    q, k and v are separate projections with 4-D head tensors, and the MLP sub-block is off by default:
    onnx2tf 1.28 mis-converts both the fused-qkv 5-D reshape/permute and the second residual
    (token MLP) of this block in float32 — edgeport's validation reports such a model as failed
    (tests/test_convert_e2e.py::test_misconverted_model_never_passes), so the int8 proof uses the
    form that converts exactly."""

    def __init__(self, num_classes: int = 10, dim: int = 32, heads: int = 2, use_mlp: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.use_mlp = use_mlp
        self.patch = nn.Conv2d(1, dim, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 64, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    @torch.no_grad()
    def inject_outlier(self, channel: int = OUTLIER_CHANNEL, factor: float = OUTLIER_FACTOR) -> None:
        """The transformer "outlier feature" (a few hidden dims far larger than the rest), made
        float-equivalent: scale one LayerNorm output channel and divide it out of q, k and v."""
        self.norm1.weight[channel] *= factor
        self.norm1.bias[channel] *= factor
        for lin in (self.q, self.k, self.v):
            lin.weight[:, channel] /= factor

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.reshape(b, n, self.heads, d // self.heads).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # (B, 64, dim)
        b, n, d = t.shape
        h = self.norm1(t)
        q, k, v = self._heads(self.q(h)), self._heads(self.k(h)), self._heads(self.v(h))
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        t = t + self.proj((att @ v).permute(0, 2, 1, 3).reshape(b, n, d))
        if self.use_mlp:
            t = t + self.mlp(self.norm2(t))
        return self.classifier(self.norm3(t).mean(dim=1))
