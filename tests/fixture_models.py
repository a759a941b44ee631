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


def write_tiny_tflite(path: Path, signature: bool = False) -> Path:
    """A one-op float model (y = x + x, 1x16) written with the TFLite flatbuffer schema: no TF import.

    `signature` adds a serving_default SignatureDef, as TF-converted models have (LiteRT's
    signature runner, used for local timing, needs one)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    def tensor(name: str, buffer: int) -> s.TensorT:
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 16], s.TensorType.FLOAT32, buffer, name
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
