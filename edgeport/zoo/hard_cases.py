"""Models on which plain int8 fails, trained on the shipped digits data (proof for `--quant mixed`).

OutlierNet: hard-swish CNN with a float-equivalent outlier channel between two convs — the activation
tensor's per-tensor int8 scale is set by one channel and the other channels lose their precision,
the failure mode of real depthwise/linear-bottleneck models. AttnNet: a one-block vision transformer
(LayerNorm, softmax attention, GELU-tanh MLP); int8 LayerNorm/attention math is its weak point.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(self.project(self.down(self.stem(x))))
        return self.classifier(torch.flatten(self.pool(x), 1))

    @torch.no_grad()
    def inject_outlier(self, channel: int = OUTLIER_CHANNEL, factor: float = OUTLIER_FACTOR) -> None:
        """Scale one channel of `project`'s output by `factor` and divide it out of `expand`'s input."""
        bn = self.project[1]
        bn.weight[channel] *= factor
        bn.bias[channel] *= factor
        self.expand[0].weight[:, channel] /= factor


class AttnNet(nn.Module):
    """4x4 patches of a 32x32 digit -> 64 tokens of width 32 -> one transformer block -> classes."""

    def __init__(self, num_classes: int = 10, dim: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(1, dim, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 64, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch(x).flatten(2).transpose(1, 2) + self.pos  # (B, 64, dim)
        b, n, d = t.shape
        q, k, v = self.qkv(self.norm1(t)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5, dim=-1)
        t = t + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
        t = t + self.mlp(self.norm2(t))
        return self.classifier(self.norm3(t).mean(dim=1))
