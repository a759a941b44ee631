"""Recurrent models of the kinds users bring, trained on small seeded tasks that a CPU learns in seconds.

- `LstmEncoder`: a speaker-embedding-style encoder — a 3-layer batch-first `nn.LSTM` whose last
  layer's final state `h_n[-1]` goes through a Linear and is L2-normalised. Trained as a classifier
  over the embedding (cosine logits), judged by the embedding's cosine to float.
- `Crnn`: a text-line recognizer — conv stem over a 1x16xW line image, a bidirectional LSTM over
  the columns, a Linear to the alphabet plus the CTC blank (index 0). Trained with CTC on generated
  lines of glyphs, judged by greedy-decoded strings.

`scripts/train_recurrent.py` trains both and writes their state_dicts next to this file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeport.zoo import sequence_models

ENC_FEATURES, ENC_HIDDEN, ENC_LAYERS, ENC_DIM = sequence_models.FEATURES, 64, 3, 32
LINE_H, LINE_W, GLYPH_W, ALPHABET = 16, 64, 5, 10  # glyphs are digits 0-9; class k+1, blank 0
MAX_CHARS = 8


class LstmEncoder(nn.Module):
    def __init__(self, features: int = ENC_FEATURES, hidden: int = ENC_HIDDEN, layers: int = ENC_LAYERS,
                 dim: int = ENC_DIM) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)
        e = self.proj(h_n[-1])
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class Crnn(nn.Module):
    def __init__(self, classes: int = ALPHABET + 1, hidden: int = 48) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d((2, 1)),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d((2, 1)),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d((4, 1)),
        )
        self.rnn = nn.LSTM(32, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x).squeeze(2).transpose(1, 2)  # (N, W, C): one step per image column
        out, _ = self.rnn(f)
        return self.head(out)  # (N, W, classes) logits


def glyphs(seed: int = 7) -> np.ndarray:
    """One fixed random binary bitmap per digit, (ALPHABET, LINE_H - 4, GLYPH_W)."""
    rng = np.random.default_rng(seed)
    return (rng.random((ALPHABET, LINE_H - 4, GLYPH_W)) < 0.45).astype(np.float32)


def make_lines(count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """(count, 1, LINE_H, LINE_W) float32 line images with noise and their digit strings."""
    rng = np.random.default_rng(seed)
    g = glyphs()
    x = rng.normal(0.0, 0.15, (count, 1, LINE_H, LINE_W)).astype(np.float32)
    texts = []
    for i in range(count):
        n = int(rng.integers(3, MAX_CHARS + 1))
        digits = rng.integers(0, ALPHABET, n)
        col = int(rng.integers(0, 3))
        for d in digits:  # at most MAX_CHARS * (GLYPH_W + 2) + 2 = 58 < LINE_W columns
            top = int(rng.integers(1, 4))
            x[i, 0, top:top + LINE_H - 4, col:col + GLYPH_W] += g[d]
            col += GLYPH_W + int(rng.integers(1, 3))
        texts.append("".join(str(int(d)) for d in digits))
    return x, texts


def greedy_ctc(logits: np.ndarray, blank: int = 0) -> list[str]:
    """(N, T, classes) -> strings: argmax per step, merge repeats, drop blanks."""
    out = []
    for seq in np.asarray(logits).argmax(-1):
        chars, prev = [], blank
        for k in seq:
            if k != blank and k != prev:
                chars.append(str(int(k) - 1))
            prev = k
        out.append("".join(chars))
    return out


def train_crnn(model: Crnn, seed: int = 0, steps: int = 1200) -> Crnn:
    torch.manual_seed(seed)
    x, texts = make_lines(4096, seed + 100)
    xs = torch.from_numpy(x)
    targets = [torch.tensor([int(c) + 1 for c in t]) for t in texts]
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        idx = np.random.default_rng(seed + step).integers(0, len(x), 32)
        logp = model(xs[idx]).log_softmax(-1).transpose(0, 1)  # (T, N, C)
        tgt = [targets[i] for i in idx]
        loss = ctc(logp, torch.cat(tgt), torch.full((len(idx),), logp.shape[0], dtype=torch.long),
                   torch.tensor([len(t) for t in tgt]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def train_encoder(model: LstmEncoder, seed: int = 0, steps: int = 300) -> LstmEncoder:
    """Cosine-softmax over class prototypes: embeddings of one class cluster together."""
    torch.manual_seed(seed)
    x, y = sequence_models.make_data(2048, seed + 100)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    prototypes = nn.Parameter(torch.randn(sequence_models.CLASSES, ENC_DIM))
    opt = torch.optim.Adam([*model.parameters(), prototypes], lr=3e-3)
    model.train()
    for step in range(steps):
        idx = torch.from_numpy(np.random.default_rng(seed + step).integers(0, len(x), 64))
        logits = 10.0 * model(xs[idx]) @ nn.functional.normalize(prototypes, dim=-1).T
        loss = nn.functional.cross_entropy(logits, ys[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
