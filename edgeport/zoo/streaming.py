"""A tiny seeded streaming voice-activity detector shaped like the third-party VADs users bring.

`StreamingVad.forward(x, state, sr: int)`: one audio chunk `x` [1, 512], the recurrent state `state`
[1, 2, HIDDEN] (h and c of an LSTM cell) and a plain sample rate. `sr` picks the front end with a
Python `if sr == 16000:` (16 kHz: the whole chunk through one conv; otherwise the first 256 samples
through another), then one LSTM cell step and a sigmoid speech probability. Returns
`(prob [1, 1], new_state [1, 2, HIDDEN])`. The state is batch-first because edgeport feeds data
samples along the first axis of every input (a state laid out [2, 1, H], as some VADs ship it,
cannot be fed from an .npz of samples).

It ships two ways, as such models do:
- `save_torchscript`: `torch.jit.script` keeps `sr: int` in the forward() schema. Its forward pads a
  chunk up to whole frames with `if not rest:` on an int, as real VADs check their chunk sizes:
  torch.onnx.export of that (with sr bound) fails with "bitwise Not for non-boolean input values"
  unless the sizes and the bound value are folded first (export/torch_to_onnx.py does);
- `save_onnx`: `sr` is a scalar int64 graph input feeding a real ONNX `If` (the scripted model with
  `sr` taken as a tensor, exported by the TorchScript-based exporter).

The cell step is written out with `nn.LSTMCell`'s own weights by default (`cell="gates"`: MatMul,
Sigmoid, Tanh in ONNX). `build(cell="lstm")` calls the `nn.LSTMCell`, which torch.onnx writes as an
ONNX LSTM node with a carried (non-zero) initial state.

Weights are seeded (`build`); nothing is trained: the tests check that conversion keeps what the
model computes, not what it detects.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 512  # samples per chunk at 16 kHz (256 of them are used at 8 kHz)
HIDDEN = 32
FEATURES = 24


class StreamingVad(nn.Module):
    def __init__(self, hidden: int = HIDDEN, features: int = FEATURES, cell: str = "gates") -> None:
        super().__init__()
        if cell not in ("gates", "lstm"):
            raise ValueError(f"cell must be 'gates' or 'lstm', not {cell!r}")
        self.front16k = nn.Sequential(nn.Conv1d(1, 16, 32, stride=16), nn.ReLU(), nn.Conv1d(16, features, 5, stride=3),
                                      nn.ReLU())
        self.front8k = nn.Sequential(nn.Conv1d(1, 16, 16, stride=8), nn.ReLU(), nn.Conv1d(16, features, 3, stride=2),
                                     nn.ReLU())
        self.cell = nn.LSTMCell(features, hidden)
        self.head = nn.Linear(hidden, 1)
        self.half = CHUNK // 2  # the 8 kHz chunk (an attribute: TorchScript cannot read module globals)
        self.gates = cell == "gates"

    def features(self, x: torch.Tensor, sr: int) -> torch.Tensor:
        if sr == 16000:
            f = self.front16k(x.unsqueeze(1))
        else:
            f = self.front8k(x[:, : self.half].unsqueeze(1))
        return f.mean(dim=2)

    def step(self, f: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state[:, 0], state[:, 1]
        if self.gates:  # nn.LSTMCell's arithmetic, gates in its i, f, g, o order
            z = F.linear(f, self.cell.weight_ih, self.cell.bias_ih) + F.linear(h, self.cell.weight_hh, self.cell.bias_hh)
            i, g_f, g, o = z.chunk(4, 1)
            c = torch.sigmoid(g_f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            h, c = self.cell(f, (h, c))
        return torch.sigmoid(self.head(h)), torch.stack([h, c], dim=1)

    def forward(self, x: torch.Tensor, state: torch.Tensor, sr: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame = 2 * self.half if sr == 16000 else self.half
        rest = x.shape[-1] % frame
        if not rest:
            y = x
        else:  # a short last chunk: zero-padded to a whole frame
            y = F.pad(x, (0, frame - rest))
        return self.step(self.features(y, sr), state)


class _TensorSr(nn.Module):
    """The same model with `sr` a tensor, as the ONNX release takes it: scripting turns the branch on
    its value into an ONNX `If`."""

    def __init__(self, vad: StreamingVad) -> None:
        super().__init__()
        self.vad = vad

    def forward(self, x: torch.Tensor, state: torch.Tensor, sr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if bool(sr == 16000):
            f = self.vad.front16k(x.unsqueeze(1))
        else:
            f = self.vad.front8k(x[:, : self.vad.half].unsqueeze(1))
        return self.vad.step(f.mean(dim=2), state)


def build(seed: int = 0, cell: str = "gates") -> StreamingVad:
    torch.manual_seed(seed)
    model = StreamingVad(cell=cell)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.4)
            nn.init.normal_(m.bias, std=0.05)
    return model.eval()


def example_inputs(count: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` chunks of noisy audio [count, 1, CHUNK] and states in [-1, 1] [count, 1, 2, HIDDEN]
    (what the model itself would carry); each [i] is one call's arguments."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(count, 1, CHUNK, generator=gen)
    state = torch.tanh(torch.randn(count, 1, 2, HIDDEN, generator=gen))
    return x, state


def save_torchscript(model: StreamingVad, path: Path) -> Path:
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def save_onnx(model: StreamingVad, path: Path, opset: int = 17) -> Path:
    """Inputs `x`, `state` and a scalar int64 `sr`; outputs `prob`, `new_state`."""
    scripted = torch.jit.script(_TensorSr(model).eval())
    x, state = example_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(scripted, (x[0], state[0], torch.tensor(16000)), str(path), dynamo=False, opset_version=opset,
                          input_names=["x", "state", "sr"], output_names=["prob", "new_state"])
    return path
