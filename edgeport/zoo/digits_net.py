"""DigitsNet: a small MobileNetV2/V3-style CNN for the bundled 32x32 digits set.

Why it exists: the default demo model must be a *real* trained network built from the blocks that
phones and Edge TPUs actually run (depthwise convs, BatchNorm, ReLU6/hard-swish, residual adds), so
that int8 conversion, accuracy validation and latency timing show realistic behaviour rather than
numbers from a toy linear layer.

Input contract (fixed, see calibration_data/manifest.toml): NCHW float32 1x1x32x32,
``x = (raw / 255 - 0.5) / 0.5``, i.e. values in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

INPUT_SHAPE: tuple[int, int, int, int] = (1, 1, 32, 32)
# Same numbers as the [digits] entry of calibration_data/manifest.toml; kept here so the zoo model can
# be used without parsing the manifest.
PIXEL_SCALE = 1.0 / 255.0
PIXEL_MEAN = 0.5
PIXEL_STD = 0.5

# (expand ratio, output channels at width 1.0, stride, activation). The stride-2 blocks take the
# 32x32 feature map to 16x16, 8x8 and 4x4; every stride-1 block with equal channels is residual.
_BLOCKS: tuple[tuple[int, int, int, str], ...] = (
    (1, 16, 1, "relu6"),
    (4, 24, 2, "relu6"),
    (3, 24, 1, "relu6"),
    (3, 32, 2, "hardswish"),
    (3, 32, 1, "hardswish"),
    (4, 64, 2, "hardswish"),
    (4, 64, 1, "hardswish"),
)
_STEM_CHANNELS = 16
_HEAD_CHANNELS = 128


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of `divisor`, as MobileNet does.

    Multiples of 8 keep int8 kernels (and Edge TPU / NNAPI vector units) on their fast paths; never
    round down by more than 10% so a width multiplier does not silently starve a layer.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation(name: str) -> nn.Module:
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "hardswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias: BatchNorm follows) + BatchNorm2d + optional activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation is not None:
            layers.append(_activation(activation))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear project, plus a skip when shapes allow."""

    def __init__(
        self, in_channels: int, out_channels: int, expand_ratio: int, stride: int, activation: str
    ) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        # The skip only exists when the block keeps the shape; `use_residual` is public so tests and
        # graph checks can see which blocks should produce an Add in the exported model.
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation=activation))
        layers.append(ConvBNAct(hidden, hidden, 3, stride=stride, groups=hidden, activation=activation))
        # No activation after the projection (linear bottleneck): a nonlinearity on the narrow
        # representation destroys information (MobileNetV2, section 3.2).
        layers.append(ConvBNAct(hidden, out_channels, 1, activation=None))
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


class DigitsNet(nn.Module):
    """Mobile-style classifier for 1x32x32 digits; ~70k parameters and ~5.5M MACs at width 1.0."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, activation: str = "relu6") -> None:
        """activation: "relu6" everywhere (the shipped default), "hardswish" everywhere, or "v3"
        (MobileNetV3's mix: ReLU6 early, hard-swish late). The default is ReLU6 because on the
        LiteRT 2.3 XNNPACK delegate an int8 HARD_SWISH is not delegated: each one splits the graph
        and int8 ends up slower than fp32 on the host (measured: 0.27 ms vs 0.07 ms)."""
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if activation not in ("relu6", "hardswish", "v3"):
            raise ValueError(f"activation must be relu6, hardswish or v3, got {activation!r}")

        def pick(block_act: str) -> str:
            return block_act if activation == "v3" else activation

        stem = make_divisible(_STEM_CHANNELS * width)
        layers: list[nn.Module] = [ConvBNAct(INPUT_SHAPE[1], stem, 3, stride=1, activation=pick("hardswish"))]
        channels = stem
        for expand, out, stride, act in _BLOCKS:
            out_channels = make_divisible(out * width)
            layers.append(InvertedResidual(channels, out_channels, expand, stride, pick(act)))
            channels = out_channels
        # The head keeps at least 128 channels at width <= 1 as in MobileNetV2's last conv, because
        # thinning the final features hurts accuracy far more than it saves compute at 4x4.
        head = make_divisible(_HEAD_CHANNELS * max(1.0, width))
        layers.append(ConvBNAct(channels, head, 1, activation=pick("hardswish")))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(head, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Explicit init draws only from torch's global generator in a fixed module order, so
        # `torch.manual_seed(s); DigitsNet()` gives identical weights on every run and machine.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def example_input() -> torch.Tensor:
    """A deterministic input of the model's fixed shape (1x1x32x32, values in [-1, 1]) for export/tracing."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand(INPUT_SHAPE, generator=generator) * 2.0 - 1.0


def preprocess(raw: np.ndarray) -> torch.Tensor:
    """uint8 NCHW pixels -> model input, exactly as the manifest's [digits] entry specifies."""
    x = raw.astype(np.float32) * np.float32(PIXEL_SCALE)
    return torch.from_numpy((x - np.float32(PIXEL_MEAN)) / np.float32(PIXEL_STD))
