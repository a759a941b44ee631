"""Sequence models where the two export paths differ, with a small real task to judge int8 on.

- `GruClassifier`: the TF converter segfaults quantizing a GRU to int8 (TF 2.21), so onnx2tf
  cannot give it an int8 model; LiteRT Torch can.
- `TinyEncoder`: a 2-layer transformer encoder over 16 tokens of width 64 (batch_first).
- `GruKeywordSpotter`: a GRU keyword spotter over MFCC-like frames (`make_kws_data`), where the
  order of sounds decides the class, so int8 error in the recurrent state shows in the accuracy.

The task is seeded and learnable in seconds on a CPU: each sequence is noise plus one of four
sinusoid patterns spread over the channels, and the class is which pattern.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SEQ, FEATURES, CLASSES = 16, 8, 4
# Keyword spotting: 32 frames of 10 MFCC-like coefficients; 4 keywords, "unknown" and "silence".
KWS_FRAMES, KWS_FEATURES, KWS_PHONEMES = 32, 10, 8
KWS_KEYWORDS = ((0, 1, 2), (2, 1, 0), (3, 4, 5), (5, 3, 4))  # the same sounds in other orders
KWS_LABELS = ("kw0", "kw1", "kw2", "kw3", "unknown", "silence")
KWS_CLASSES = len(KWS_LABELS)


class GruClassifier(nn.Module):
    def __init__(self, features: int = FEATURES, hidden: int = 32, classes: int = CLASSES) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.head(out[:, -1])


class GruKeywordSpotter(GruClassifier):
    """One GRU layer over the frames, a linear head on its last state (the "Hello Edge" GRU KWS shape):
    GruClassifier's layers, sized for the keyword-spotting task."""

    def __init__(self, features: int = KWS_FEATURES, hidden: int = 48, classes: int = KWS_CLASSES) -> None:
        super().__init__(features, hidden, classes)


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


def make_kws_data(count: int, seed: int, noise: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(count, KWS_FRAMES, KWS_FEATURES) float32 utterances and int64 labels (index into KWS_LABELS).

    Each sound is a fixed seeded spectral shape held for 2-5 frames at a random loudness; a keyword is
    three sounds in a fixed order, starting anywhere in the window (so the state must carry it to the
    last frame); "unknown" is three other sounds in an order no keyword has; "silence" is noise.
    Every utterance has a random spectral tilt (channel offset) and white noise."""
    rng = np.random.default_rng(seed)
    sounds = np.random.default_rng(1234).normal(0.0, 1.0, (KWS_PHONEMES, KWS_FEATURES)).astype(np.float32)
    labels = rng.integers(0, KWS_CLASSES, count)
    x = rng.normal(0.0, noise, (count, KWS_FRAMES, KWS_FEATURES)) + rng.normal(0.0, 0.3, (count, 1, KWS_FEATURES))
    for i, label in enumerate(labels):
        if label < len(KWS_KEYWORDS):
            word = KWS_KEYWORDS[label]
        elif KWS_LABELS[label] == "unknown":
            word = tuple(rng.choice(KWS_PHONEMES, 3, replace=False))
            while word in KWS_KEYWORDS:
                word = tuple(rng.choice(KWS_PHONEMES, 3, replace=False))
        else:
            continue
        lengths = rng.integers(2, 6, len(word))
        pos = int(rng.integers(0, KWS_FRAMES - lengths.sum() + 1))
        loud = rng.uniform(0.6, 1.4)
        for sound, length in zip(word, lengths, strict=True):
            x[i, pos : pos + length] += loud * sounds[sound]
            pos += int(length)
    return x.astype(np.float32), labels.astype(np.int64)


def train(model: nn.Module, seed: int = 0, steps: int = 150,
          data: tuple[np.ndarray, np.ndarray] | None = None, lr: float = 3e-3) -> nn.Module:
    """A few hundred Adam steps: enough to classify the task well above chance. `data` defaults to
    1024 sequences of `make_data`."""
    torch.manual_seed(seed)
    x, y = make_data(1024, seed + 100) if data is None else data
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
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
