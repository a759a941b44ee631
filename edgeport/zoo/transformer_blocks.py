"""Tiny seeded transformer-style models whose ONNX export (opset < 17) holds the idioms int8 trips on.

At opset 11..16 torch.onnx writes `nn.LayerNorm` as ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div and
`nn.GELU` as Div(√2)/Erf/Add(1)/Mul(x)/Mul(0.5): the TFLite that onnx2tf makes of them holds DIVs by
computed values, which full int8 cannot run (export/rewrites/ turns them into GELU/RSQRT forms).

- `SvtrBlock`: an SVTR-style text-recognizer slice: conv stem, pre-norm blocks of multi-head
  self-attention written out by hand (as SVTR does) and an Erf-GELU MLP, height pooled, a per-column
  Linear head (CTC-style logits, one row per column).
- `ConvNextStack`: ConvNeXt-style blocks: depthwise 7x7 conv, LayerNorm over channels (channels-last
  permute, as ConvNeXt writes it), pointwise expand, GELU, pointwise project, residual.

No two axes share a size (128 tokens, width 48, MLP 192): onnx2tf guesses layouts from sizes, and
with 128 tokens and a 128-wide MLP its float TFLite of this block disagreed with torch (cosine 0.82),
with or without the rewrites.

Weights are seeded (`build`), so the same model and ONNX come out on every run; the tests need no
training, because what they check is how close int8 stays to the float model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

SVTR_INPUT = (1, 3, 32, 64)
CONVNEXT_INPUT = (1, 3, 32, 32)
SVTR_LINES_WEIGHTS = Path(__file__).with_name("svtr_lines.pt")  # trained SvtrRecognizer (scripts/train_vit.py --svtr)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, approximate: str) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate=approximate), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SvtrBlock(nn.Module):
    """(1, 3, 32, 64) image -> (1, 16, classes) logits, one row per 4-pixel column."""

    def __init__(self, dim: int = 48, heads: int = 4, depth: int = 2, classes: int = 37,
                 approximate: str = "none") -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dim // 2, 3, 2, 1), nn.BatchNorm2d(dim // 2), nn.GELU(approximate=approximate),
            nn.Conv2d(dim // 2, dim, 3, 2, 1), nn.BatchNorm2d(dim), nn.GELU(approximate=approximate))
        self.blocks = nn.Sequential(*[_Block(dim, heads, approximate) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (1, dim, 8, 16): 128 tokens
        b, c, h, w = x.shape
        x = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))  # (1, h*w, dim)
        x = x.reshape(b, h, w, c).mean(dim=1)  # pool the height: one token per column
        return self.head(x)


class _ConvNextBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # NHWC: LayerNorm over channels, as ConvNeXt writes it
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNextStack(nn.Module):
    """(1, 3, 32, 32) image -> (1, classes) logits."""

    def __init__(self, dim: int = 32, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.blocks = nn.Sequential(*[_ConvNextBlock(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(self.norm(x.mean(dim=(2, 3))))


BUILDERS = {"svtr": (SvtrBlock, SVTR_INPUT), "convnext": (ConvNextStack, CONVNEXT_INPUT)}


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """A seeded model in eval mode. BatchNorm statistics are set to non-trivial values so the stem is
    not an identity scale."""
    cls, _ = BUILDERS[name]
    torch.manual_seed(seed)
    model = cls(**kwargs)
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        if isinstance(m, nn.LayerNorm):  # trained LayerNorms are not the identity affine
            m.weight.data.copy_(1 + torch.randn(m.normalized_shape, generator=gen) * 0.2)
            m.bias.data.copy_(torch.randn(m.normalized_shape, generator=gen) * 0.1)
    return model.eval()


def inputs(name: str, count: int, seed: int = 0) -> np.ndarray:
    """Seeded images in [0, 1] with some structure (smooth gradients plus noise), shaped like the model's input."""
    _, shape = BUILDERS[name]
    rng = np.random.default_rng(seed)
    h, w = shape[2], shape[3]
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([np.sin(3 * xx + k) * np.cos(2 * yy - k) for k in range(3)])
    x = 0.5 + 0.3 * base[None] * rng.uniform(0.5, 1.5, (count, 3, 1, 1)) + rng.normal(0, 0.15, (count, *shape[1:]))
    return np.clip(x, 0, 1).astype(np.float32)


def export(name: str, path: Path, opset: int = 11, seed: int = 0, **kwargs) -> Path:
    """The seeded model as ONNX at `opset` with the TorchScript exporter (what edgeport uses)."""
    _, shape = BUILDERS[name]
    return export_module(build(name, seed, **kwargs), shape, path, opset)


def export_module(model: nn.Module, shape: tuple[int, ...], path: Path, opset: int = 11) -> Path:
    """`model` as ONNX at `opset` with the TorchScript exporter, input `x`, output `output`."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), str(path), opset_version=opset, dynamo=False,
                          input_names=["x"], output_names=["output"], do_constant_folding=True)
    return path


def calibration(name: str, path: Path, count: int = 32, seed: int = 1) -> Path:
    """An .npz of seeded inputs keyed by the exported input name, for --calib."""
    np.savez(path, x=inputs(name, count, seed))
    return path


class SvtrRecognizer(nn.Module):
    """A tiny SVTR-style text-line recognizer for the synthetic digit lines of edgeport.zoo.recurrent:
    (1, 1, 16, 64) line -> (1, 32, 11) CTC logits (blank 0, digit k is class k + 1).

    Conv stem (16x64 -> 4x32: 128 tokens), pre-norm blocks of global multi-head self-attention written
    out by hand and an Erf-GELU MLP (the `_Block` above), height pooled to one token per column, a
    per-column Linear head. Sizes do not repeat (128 tokens, width 96, 6 heads of 16, MLP 384, 32
    columns) so onnx2tf's layout guesses have nothing to confuse. Trained by scripts/train_vit.py --svtr
    into `svtr_lines.pt`."""

    def __init__(self, dim: int = 96, heads: int = 6, depth: int = 2, classes: int = 11) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, dim // 2, 3, 2, 1), nn.BatchNorm2d(dim // 2), nn.GELU(),
            nn.Conv2d(dim // 2, dim, 3, (2, 1), 1), nn.BatchNorm2d(dim), nn.GELU())
        self.pos_embed = nn.Parameter(torch.zeros(1, 128, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[_Block(dim, heads, "none") for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (1, dim, 4, 32)
        b, c, h, w = x.shape
        x = self.norm(self.blocks(x.flatten(2).transpose(1, 2) + self.pos_embed))
        return self.head(x.reshape(b, h, w, c).mean(dim=1))  # (1, 32, classes)
