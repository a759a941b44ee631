"""A Linear-heavy model for weight-only quantization (`--quant w8` / `w4`): where the bytes are in
nn.Linear weights and activations can stay float, as in a transformer's MLP blocks.

`LinearHeavy`: `tokens` [1, T, dim] -> `blocks` pre-LayerNorm MLP blocks (Linear dim->hidden, GELU,
Linear hidden->dim, residual) -> mean over tokens -> LayerNorm -> Linear to `classes` logits. The
defaults (dim 512, hidden 2048, 5 blocks, 100 classes) hold 10.6 M parameters, 42 MB in float32.

Weights are seeded, not trained: each Linear's weights are Student-t draws (6 degrees of freedom)
scaled to PyTorch's default init variance, so, like trained weights and unlike a uniform init, a row
has a few large entries, which is what per-channel int8 and blockwise int4 scales have to handle. Built
at test time in a second; no weights are shipped.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

DIM, HIDDEN, BLOCKS, CLASSES, TOKENS = 512, 2048, 5, 100, 8


class MlpBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(self.norm(x))))


class LinearHeavy(nn.Module):
    def __init__(self, dim: int = DIM, hidden: int = HIDDEN, blocks: int = BLOCKS, classes: int = CLASSES,
                 seed: int = 0) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(MlpBlock(dim, hidden) for _ in range(blocks)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        _heavy_tailed_init(self, seed)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(tokens).mean(dim=1)))


def _heavy_tailed_init(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    df = 6.0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                fan_in = module.in_features
                # Student-t(df) = normal / sqrt(chi2(df)/df); variance df/(df-2), rescaled to 1/(3 fan_in)
                # (PyTorch's default uniform init has that variance)
                normal = torch.randn(module.weight.shape, generator=gen)
                chi2 = 2.0 * torch.empty(module.weight.shape).uniform_(generator=gen).clamp_min(1e-12).log().neg()
                for _ in range(int(df / 2) - 1):
                    chi2 += 2.0 * torch.empty(module.weight.shape).uniform_(generator=gen).clamp_min(1e-12).log().neg()
                t = normal / torch.sqrt(chi2 / df)
                module.weight.copy_(t / math.sqrt(df / (df - 2.0)) / math.sqrt(3.0 * fan_in))
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.02)


def build(**kwargs: int) -> LinearHeavy:
    return LinearHeavy(**kwargs).eval()


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_tokens(count: int, seed: int, tokens: int = TOKENS, dim: int = DIM) -> np.ndarray:
    """[count, tokens, dim] float32 inputs: seeded normal token embeddings."""
    return np.random.default_rng(seed).standard_normal((count, tokens, dim)).astype(np.float32)


class SensitiveMlp(nn.Module):
    """An MLP whose every layer breaks under int8: each hidden Linear writes one channel scaled up by
    `outlier` that the next Linear reads scaled down by the same factor. The float function is a plain
    MLP's, but a per-tensor int8 activation scale sized for the outlier channel flattens every other
    channel, so every op is sensitive and `--quant mixed` keeps most of them in float (the case where
    fp16 of the same model is the better answer). tanh between layers: no positive-homogeneous
    activation for cross-layer equalization to rescale the outlier away."""

    def __init__(self, dim: int = 64, hidden: int = 256, layers: int = 6, classes: int = 16, outlier: float = 1000.0,
                 seed: int = 0) -> None:
        super().__init__()
        sizes = [dim] + [hidden] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        self.head = nn.Linear(hidden, classes)
        _heavy_tailed_init(self, seed)
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                layer.weight[:, 0] /= outlier if i else 1.0  # reads the previous layer's outlier channel back down
                layer.weight[0] *= outlier
                layer.bias[0] *= outlier
            self.head.weight[:, 0] /= outlier
        self.outlier = outlier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(x)
            # tanh on every channel but the outlier, which stays linear (tanh would clamp it to 1)
            x = torch.cat([h[..., :1], torch.tanh(h[..., 1:])], dim=-1)
        return self.head(x)
