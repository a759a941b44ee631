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
