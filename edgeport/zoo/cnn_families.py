"""Small, seeded members of the common CNN families, built from plain torch layers.

They exist to check how each family's int8 model behaves under XNNPACK (benchmarks/xnnpack_survey.py,
tests): the layer patterns matter (padded and ceil-mode max-pools, PReLU, concat, hard-swish), not
trained weights. torchvision cannot be imported with the CPU torch build, so nothing comes from it.
"""

from __future__ import annotations

import torch
from torch import nn


def _cbr(cin: int, cout: int, k: int, s: int = 1, p: int | None = None, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2 if p is None else p, bias=False), nn.BatchNorm2d(cout), act())


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class ResNet18(nn.Module):
    """ResNet-18 layout (7x7/2 stem, MaxPool2d(3, 2, padding=1), [2, 2, 2, 2] basic blocks)."""

    def __init__(self, width: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [width, width * 2, width * 4, width * 8]
        layers, cin = [], width
        for i, w in enumerate(widths):
            layers.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], 1)


class SqueezeNet(nn.Module):
    """SqueezeNet 1.1 layout: ceil-mode 3x3/2 max-pools between Fire modules, conv classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 8, 32), Fire(64, 8, 32), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 48), Fire(96, 16, 48), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(96, 24, 64))
        self.classifier = nn.Sequential(nn.Conv2d(128, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int) -> None:
        super().__init__()
        self.branch1 = _cbr(cin, c1, 1)
        self.branch2 = nn.Sequential(_cbr(cin, c3r, 1), _cbr(c3r, c3, 3))
        self.branch3 = nn.Sequential(_cbr(cin, c5r, 1), _cbr(c5r, c5, 3))
        # GoogLeNet's pool branch: a 3x3/1 ceil-mode max-pool with padding 1.
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), _cbr(cin, cp, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """GoogLeNet layout: 7x7/2 stem, ceil-mode 3x3/2 max-pools, inception blocks with pool branches."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(_cbr(3, 16, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True), _cbr(16, 16, 1), _cbr(16, 48, 3),
                                  nn.MaxPool2d(3, 2, ceil_mode=True))
        self.inception3a = Inception(48, 16, 24, 32, 4, 8, 8)
        self.inception3b = Inception(64, 32, 32, 48, 8, 24, 16)
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.inception4a = Inception(120, 48, 24, 52, 4, 12, 16)
        self.fc = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(self.stem(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int, act: type[nn.Module], se: bool = False) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [_cbr(cin, hidden, 1, act=act), _dw(hidden, stride, act)]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _dw(c: int, stride: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c), act())


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(8, c // 4), 1)
        self.fc2 = nn.Conv2d(max(8, c // 4), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))


class MobileNet(nn.Module):
    """MobileNetV2 (ReLU6) or V3-style (hard-swish, squeeze-excite) inverted residual stack."""

    def __init__(self, version: int = 2, classes: int = 10) -> None:
        super().__init__()
        act = nn.ReLU6 if version == 2 else nn.Hardswish
        cfg = [(16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4), (64, 2, 4), (64, 1, 4)]
        layers: list[nn.Module] = [_cbr(3, 16, 3, 2, act=act)]
        cin = 16
        for cout, stride, expand in cfg:
            layers.append(InvertedResidual(cin, cout, stride, expand, act, se=version == 3 and stride == 2))
            cin = cout
        layers.append(_cbr(cin, 128, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class MobileNetV3(MobileNet):
    def __init__(self, classes: int = 10) -> None:
        super().__init__(version=3, classes=classes)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(), nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    """DenseNet layout: conv-BN-ReLU-MaxPool2d(3, 2, 1) stem, then BN-ReLU-conv dense layers."""

    def __init__(self, growth: int = 8, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c = 16
        for block in range(2):
            for _ in range(3):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block == 0:
                layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class VGG(nn.Module):
    """VGG layout: 3x3 conv-BN-ReLU pairs and unpadded 2x2/2 max-pools."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for w in (16, 32, 64):
            layers += [_cbr(cin, w, 3), _cbr(w, w, 3), nn.MaxPool2d(2, 2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class FaceDetector(nn.Module):
    """MTCNN O-Net-style detector: conv + PReLU + ceil-mode max-pools, three heads
    (face score, box regression, five landmarks). Takes 1x3x48x48 crops, as O-Net does."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3), nn.PReLU(16), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(16, 32, 3), nn.PReLU(32), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(32, 32, 3), nn.PReLU(32), nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(32, 64, 2), nn.PReLU(64))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.PReLU(128))
        self.score = nn.Linear(128, 2)
        self.box = nn.Linear(128, 4)
        self.landmarks = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.fc(self.body(x))
        return torch.softmax(self.score(h), 1), self.box(h), self.landmarks(h)


class ReproStem(nn.Module):
    """Issue 14's first reproduction: 4 conv-BN-ReLU -> MaxPool2d(3, 2, 1) -> conv -> mean -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for w in (8, 8, 16, 16):
            layers.append(_cbr(cin, w, 3))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.pool(self.features(x))).mean((2, 3)))


class ReproCeil(nn.Module):
    """Issue 14's second reproduction: Conv -> MaxPool2d(3, 2, ceil_mode=True) -> Linear (16x16 input)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc = nn.Linear(8 * 7 * 7, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class PReLUPaddedPool(nn.Module):
    """Conv -> PReLU -> MaxPool2d(3, 2, 1, ceil_mode=True): no lower bound and not SAME at 18x18, so
    the rewrite must replicate the border (the `edge` form)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.act = nn.PReLU(8)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.head = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.pool(self.act(self.conv(x)))).mean((2, 3)))


FAMILIES: dict[str, type[nn.Module]] = {
    "repro_stem": ReproStem, "repro_ceil": ReproCeil, "prelu_padded_pool": PReLUPaddedPool,
    "resnet18": ResNet18, "squeezenet": SqueezeNet, "googlenet": GoogLeNet, "mobilenet_v2": MobileNet, "mobilenet_v3": MobileNetV3,
    "densenet": DenseNet, "vgg": VGG, "face_detector": FaceDetector,
}


def build(name: str, seed: int = 0, **kwargs: object) -> nn.Module:
    """A seeded eval-mode member of a family; BatchNorm statistics are randomised so folding is real."""
    torch.manual_seed(seed)
    return randomize_norms(FAMILIES[name](**kwargs)).eval()


def randomize_norms(model: nn.Module) -> nn.Module:
    """Seeded-random BatchNorm statistics and affine terms (folding them into the convs is then real
    work) and PReLU slopes, drawn in module order."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(0.1, 0.3)
    return model
