"""A seeded, detector-shaped CNN (backbone + FPN + per-level heads) for scaling measurements.

It exists to time `--quant mixed` on a graph the size of a real mobile detector (~500 TFLite ops at
480x480): what matters is the op count, the feature-map sizes and the layer patterns (hard-swish
inverted residuals, squeeze-excite, nearest upsampling + add, reshape/concat of the head outputs),
not trained weights. `inject_outliers` plants float-equivalent outlier channels in two heads' linear
bottlenecks (as edgeport.zoo.hard_cases does for a classifier), so plain int8 loses output accuracy in
known places and a mixed-precision search has something to find.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeport.zoo.cnn_families import InvertedResidual, _cbr, randomize_norms

# (out channels, stride, expansion, squeeze-excite) per block; strides put C3/C4/C5 at 1/8, 1/16, 1/32.
BACKBONE = [
    (16, 1, 1, False),
    (24, 2, 4, False), (24, 1, 3, False),
    (40, 2, 3, True), (48, 1, 3, True), (48, 1, 3, True),  # C3
    (80, 2, 4, False), (80, 1, 3, False), (80, 1, 3, False), (80, 1, 3, False), (96, 1, 3, True),
    (112, 1, 3, True), (112, 1, 3, True), (112, 1, 3, True),  # C4
    (160, 2, 4, True), (160, 1, 4, True), (160, 1, 4, True), (160, 1, 4, True), (160, 1, 4, True),  # C5
]
TAPS = (5, 13, 18)  # block indices whose outputs feed the FPN
OUTLIER_HEADS = (("box", 0), ("cls", 1))  # (head, FPN level) whose bottleneck carries an outlier channel


class Head(nn.Module):
    """Depthwise-separable conv tower, then one 1x1 conv to anchors x values, flattened to rows."""

    def __init__(self, c: int, depth: int, out_per_anchor: int, anchors: int) -> None:
        super().__init__()
        tower: list[nn.Module] = []
        for _ in range(depth):
            tower += [nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c), nn.Hardswish(),
                      nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish()]
        self.tower = nn.Sequential(*tower)
        # linear bottleneck (no activation) before the output conv, as in SSD-lite style heads
        self.proj = nn.Sequential(nn.Conv2d(c, c // 2, 1, bias=False), nn.BatchNorm2d(c // 2))
        self.out = nn.Conv2d(c // 2, anchors * out_per_anchor, 1)
        self.k = out_per_anchor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(self.proj(self.tower(x)))
        return y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.k)


class DetectorNet(nn.Module):
    def __init__(self, classes: int = 10, fpn: int = 64, head_depth: int = 7, anchors: int = 3) -> None:
        super().__init__()
        act = nn.Hardswish
        self.stem = _cbr(3, 16, 3, 2, act=act)
        blocks, cin = [], 16
        for cout, stride, expand, se in BACKBONE:
            blocks.append(InvertedResidual(cin, cout, stride, expand, act, se=se))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        tap_c = [BACKBONE[i][0] for i in TAPS]
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn, 1) for c in tap_c)
        self.smooth = nn.ModuleList(_cbr(fpn, fpn, 3, act=act) for _ in tap_c)
        self.extra = nn.ModuleList(_cbr(fpn, fpn, 3, 2, act=act) for _ in range(2))  # P6, P7
        levels = len(tap_c) + len(self.extra)
        self.cls = nn.ModuleList(Head(fpn, head_depth, classes, anchors) for _ in range(levels))
        self.box = nn.ModuleList(Head(fpn, head_depth, 4, anchors) for _ in range(levels))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in TAPS:
                taps.append(x)
        feats = [lat(t) for lat, t in zip(self.lateral, taps, strict=True)]
        for i in range(len(feats) - 2, -1, -1):  # top-down: upsample the coarser level and add
            feats[i] = feats[i] + nn.functional.interpolate(feats[i + 1], scale_factor=2.0, mode="nearest")
        feats = [s(f) for s, f in zip(self.smooth, feats, strict=True)]
        for extra in self.extra:
            feats.append(extra(feats[-1]))
        scores = torch.cat([h(f) for h, f in zip(self.cls, feats, strict=True)], 1)
        boxes = torch.cat([h(f) for h, f in zip(self.box, feats, strict=True)], 1)
        return torch.sigmoid(scores), boxes

    @torch.no_grad()
    def inject_outliers(self, heads: tuple[tuple[str, int], ...] = OUTLIER_HEADS, channel: int = 3,
                        factor: float = 200.0) -> None:
        """Scale one channel of a head's linear bottleneck by `factor` and divide it out of the output
        conv that reads it: the float function is unchanged, the int8 range of that tensor is not."""
        for kind, level in heads:
            head = (self.cls if kind == "cls" else self.box)[level]
            bn, out = head.proj[1], head.out
            bn.weight[channel] *= factor
            bn.bias[channel] *= factor
            out.weight[:, channel] /= factor


def smooth_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Seeded NCHW images with image-like spatial correlation: coarse noise upsampled, plus fine noise."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(count, 3, max(size // 16, 2), max(size // 16, 2), generator=gen)
    x = nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x + 0.1 * torch.randn(count, 3, size, size, generator=gen)


def build(seed: int = 0, outliers: bool = True, **kwargs: object) -> DetectorNet:
    """Seeded eval-mode detector; BatchNorm statistics randomised so folding is real (as cnn_families.build).

    With random weights the net is in the "ordered" regime: errors made early fade before the outputs
    (int8 alone keeps ~40-50 dB output SNR here), while errors in the heads reach them. BatchNorm
    statistics measured on data instead make it chaotic (1e-4 of input noise grows to 30 dB output
    SNR, even all-int16 loses everything), which no trained detector is; so the planted outliers sit in
    the heads' linear bottlenecks."""
    torch.manual_seed(seed)
    model = randomize_norms(DetectorNet(**kwargs))
    model.eval()
    if outliers:
        model.inject_outliers()
    return model
