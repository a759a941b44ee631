"""TinyVit: a small Vision Transformer for the bundled 32x32 digits, built from `nn.TransformerEncoder`.

Why it exists: attention models are what users bring after CNNs, and the way PyTorch users write them
is `nn.TransformerEncoder` with pre-norm (`norm_first=True`) and GELU, not hand-written blocks. Its
ONNX export holds the idioms full int8 trips on (LayerNorm as ReduceMean/Sub/Pow/Sqrt/Div, GELU as
Erf, multi-head attention with Softmax), so converting the trained model with the default exporter
is the end-to-end check that those idioms reach full int8 without losing accuracy.

Sizes avoid shared axis lengths (64 tokens, width 96, 4 heads of 24, MLP 192): onnx2tf guesses
layouts from sizes and went wrong on a transformer block where tokens and MLP width were equal.

Input contract as DigitsNet (calibration_data/manifest.toml [digits]): NCHW float32 1x1x32x32,
``x = (raw / 255 - 0.5) / 0.5``. Weights: `vit_digits.pt` (state_dict), trained by
scripts/train_vit.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

INPUT_SHAPE: tuple[int, int, int, int] = (1, 1, 32, 32)
WEIGHTS = Path(__file__).with_name("vit_digits.pt")


class TinyVit(nn.Module):
    """Patch-embedding conv (4x4, stride 4: 64 tokens) + learned position embedding + pre-norm GELU
    `nn.TransformerEncoder` + final LayerNorm + mean pooling over tokens + Linear head."""

    def __init__(self, num_classes: int = 10, dim: int = 96, depth: int = 2, heads: int = 4,
                 mlp: int = 192, patch: int = 4, in_channels: int = 1, image: int = 32) -> None:
        super().__init__()
        tokens = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=mlp, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        # enable_nested_tensor only matters for padded batches; off, it also silences its norm_first warning.
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, tokens, dim)
        x = self.norm(self.encoder(x))
        return self.head(x.mean(dim=1))


def load(path: Path = WEIGHTS) -> TinyVit:
    """The shipped trained model in eval mode."""
    model = TinyVit()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
