"""Sequence models where the two export paths differ, with a small real task to judge int8 on.

- `GruClassifier`: the TF converter segfaults quantizing a GRU to int8 (TF 2.21), so onnx2tf
  cannot give it an int8 model; LiteRT Torch can.
- `TinyEncoder`: a 2-layer transformer encoder over 16 tokens of width 64 (batch_first).

The task is seeded and learnable in seconds on a CPU: each sequence is noise plus one of four
sinusoid patterns spread over the channels, and the class is which pattern.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEQ, FEATURES, CLASSES = 16, 8, 4


class GruClassifier(nn.Module):
    def __init__(self, features: int = FEATURES, hidden: int = 32, classes: int = CLASSES) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class TinyEncoder(nn.Module):
    def __init__(self, features: int = FEATURES, dim: int = 64, heads: int = 4, layers: int = 2,
                 classes: int = CLASSES) -> None:
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.pos = nn.Parameter(torch.zeros(1, SEQ, dim))
        block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.pos).mean(dim=1))


def make_data(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, SEQ, FEATURES) float32 sequences and int64 labels in [0, CLASSES)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    t = np.arange(SEQ, dtype=np.float32)[:, None]
    channels = np.arange(FEATURES, dtype=np.float32)[None, :]
    patterns = np.stack([np.sin(2 * np.pi * (k + 1) * t / SEQ + channels * (k + 1) / 3) for k in range(CLASSES)])
    x = patterns[labels] + rng.normal(0, 0.6, (count, SEQ, FEATURES))
    return x.astype(np.float32), labels.astype(np.int64)


def train(model: nn.Module, seed: int = 0, steps: int = 150) -> nn.Module:
    """A few hundred Adam steps: enough to classify the task well above chance."""
    torch.manual_seed(seed)
    x, y = make_data(1024, seed + 100)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(np.random.default_rng(seed + step).integers(0, len(x), 64))
        loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(-1).numpy() == y).mean())
