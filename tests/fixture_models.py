"""Tiny seeded models for end-to-end tests (importable as --model-class fixture_models:Name)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class TinyCNN(nn.Module):
    """3-channel image classifier: conv/BN/hard-swish, depthwise conv, ReLU6, residual, pooling."""

    def __init__(self, channels: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.BatchNorm2d(channels), nn.ReLU6())
        self.pw = nn.Conv2d(channels, channels, 1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.pw(self.dw(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class TwoInTwoOut(nn.Module):
    """An image and a feature vector in; class logits and a 4-D feature map out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.fc_vec = nn.Linear(8, 6)
        self.head = nn.Linear(6, 4)

    def forward(self, image: torch.Tensor, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = torch.relu(self.conv(image))
        pooled = fmap.mean(dim=(2, 3)) + self.fc_vec(vec)
        return self.head(pooled), fmap


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.3)
            nn.init.normal_(m.bias, std=0.05)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def write_tiny_tflite(path: Path, signature: bool = False, size: int = 16) -> Path:
    """A one-op float model (y = x + x, 1 x size) written with the TFLite flatbuffer schema: no TF import.

    `signature` adds a serving_default SignatureDef, as TF-converted models have (LiteRT's
    signature runner, used for local timing, needs one). A large `size` makes each run take a while
    (timeouts under test)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str, buffer: int) -> s.TensorT:
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, size], s.TensorType.FLOAT32, buffer, name
        return t

    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = [tensor("x", 1), tensor("y", 2)], [0], [1], [op], "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [s.BufferT(), s.BufferT(), s.BufferT()]
    if signature:
        sig = s.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = "serving_default", 0
        sig.inputs, sig.outputs = [s.TensorMapT()], [s.TensorMapT()]
        sig.inputs[0].name, sig.inputs[0].tensorIndex = "x", 0
        sig.outputs[0].name, sig.outputs[0].tensorIndex = "y", 1
        model.signatureDefs = [sig]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def image_data(n: int = 48, shape: tuple[int, ...] = (3, 32, 32), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32)


class GeluLayerNormMLP(nn.Module):
    """Exact GELU (ONNX Erf, a Flex op in TFLite) and LayerNorm (a DIV that int8 can break)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(32)
        self.b = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.norm(self.act(self.a(x))))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2Like(nn.Module):
    """MobileNetV2's layout (stem, 17 inverted residuals, 1x1 head, pooling, classifier) built here,
    without torchvision; `width` scales every channel count so tests can use a tiny one."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, width: float = 1.0, classes: int = 1000) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * width + 4) // 8 * 8)

        cin = ch(32)
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6())]
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(cin, ch(c), s if i == 0 else 1, t))
                cin = ch(c)
        last = max(ch(1280), 1280) if width > 1.0 else ch(1280)
        layers.append(nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2_like(width: float = 1.0, classes: int = 1000, seed: int = 0) -> nn.Module:
    """Seeded with He-style init so activations keep a sane range through 50+ layers (the std=0.3 of
    `seeded` would blow up over this depth)."""
    torch.manual_seed(seed)
    model = MobileNetV2Like(width, classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.05)
            m.running_var.uniform_(0.8, 1.2)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
    return model.eval()


class TinyVad(nn.Module):
    """A voice-activity-detector-shaped model: a signal tensor plus plain Python arguments, as real
    TorchScript VADs take `forward(x, sr: int)`."""

    def __init__(self, frame: int = 64) -> None:
        super().__init__()
        self.fc = nn.Linear(frame, 4)

    def forward(self, x: torch.Tensor, sr: int, gain: float = 1.0, crop: list[int] = (0, 64)) -> torch.Tensor:  # noqa: B006
        if sr != 16000 and sr != 8000:
            raise ValueError("sample rate must be 8000 or 16000")
        step = 1 if sr == 16000 else 2
        y = x[:, crop[0] : crop[1]]
        y = torch.nn.functional.pad(y[:, ::step], (0, self.fc.in_features - y[:, ::step].shape[1]))
        return self.fc(y) * gain


class KeywordVad(nn.Module):
    """A plain argument after `*`: it can only be passed by name."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor, *, sr: int) -> torch.Tensor:
        return self.fc(x) * (1.0 if sr == 16000 else 0.5)


class TinySENet(nn.Module):
    """One hard-swish inverted residual with squeeze-excite (hard-sigmoid -> TFLite RELU_0_TO_1, which
    AI Edge Quantizer leaves float and the TF converter quantizes), pooled to 10 outputs."""

    def __init__(self) -> None:
        super().__init__()
        from edgeport.zoo.cnn_families import InvertedResidual

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.block = InvertedResidual(16, 16, 1, 3, nn.Hardswish, se=True)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean(dim=(2, 3)))


class HardSwishStack(nn.Module):
    """Depthwise/pointwise blocks with a hard-swish after every conv, as in MobileNetV3 and PP-LCNet: in
    int8 the HARD_SWISH ops have no XNNPACK kernel and run on TFLite's builtin loops."""

    def __init__(self, channels: int = 16, blocks: int = 6, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.Hardswish()]
        for _ in range(blocks):
            layers += [nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Hardswish(),
                       nn.Conv2d(channels, channels, 1), nn.Hardswish()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))
