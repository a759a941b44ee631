"""One small seeded model per task, with data, for the task metrics' tests and benchmarks.

- CTC: the trained CRNN of edgeport/zoo/recurrent.py (crnn.pt) on its synthetic digit lines.
- YoloStyleDetector: one concatenated output [N, 192, 4+1+C] (cx, cy, w, h in pixels, sigmoid
  objectness and class scores), as YOLOv5/YOLOX heads export.
- EmbeddingNet: a conv tower to a 64-d L2-normalised embedding.
- TinySegmenter: per-pixel class logits [N, 4, H, W], trained (tiny_segmenter.pt, train_segmenter)
  on `scenes`: rectangles of classes 1-3 on a background, each class raising one colour channel.
The detector and the embedding net are untrained (seeded): their metrics compare the quantized model
with the float one, so a deterministic model with a realistic output structure exercises them. The
segmenter is trained because an untrained one's logits tie at most pixels, which no real segmenter
does, and mIoU against float would then measure the ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

ZOO = Path(__file__).resolve().parent


class YoloStyleDetector(nn.Module):
    def __init__(self, classes: int = 3, anchors: int = 3, size: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())
        self.out = nn.Conv2d(32, anchors * (5 + classes), 1)
        self.k, self.anchors, self.stride = 5 + classes, anchors, 8
        grid = size // self.stride
        ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
        self.register_buffer("cells", torch.stack([xs, ys], -1).reshape(1, -1, 1, 2).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(self.body(x))
        n, _, h, w = y.shape
        y = y.permute(0, 2, 3, 1).reshape(n, h * w, self.anchors, self.k)
        xy = (torch.sigmoid(y[..., :2]) + self.cells) * self.stride
        wh = torch.exp(torch.tanh(y[..., 2:4]) * 0.5) * 2 * self.stride  # 10 to 26 pixels
        rest = torch.sigmoid(y[..., 4:] * 3 - 4)  # few anchors score high, as in a trained head
        return torch.cat([xy, wh, rest], -1).reshape(n, h * w * self.anchors, self.k)


class EmbeddingNet(nn.Module):
    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.body(x)
        return e / e.norm(dim=-1, keepdim=True).clamp_min(1e-6)


class TinySegmenter(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),
                                  nn.Conv2d(16, classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=0.25)
            nn.init.normal_(m.bias, std=0.05)
    return model.eval()


def scenes(count: int, size: int = 32, seed: int = 0, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 3, size, size], masks [N, size, size]): 1-4 rectangles of classes 1..classes-1 on a
    noisy background (class 0); class c raises colour channel c-1 inside its rectangle."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (count, 3, size, size)).astype(np.float32)
    masks = np.zeros((count, size, size), np.int64)
    for i in range(count):
        for _ in range(int(rng.integers(1, 5))):
            c = int(rng.integers(1, classes))
            h, w = rng.integers(6, size // 2, 2)
            top, left = rng.integers(0, size - h), rng.integers(0, size - w)
            x[i, :, top:top + h, left:left + w] = rng.normal(0, 0.3, (3, h, w))
            x[i, c - 1, top:top + h, left:left + w] += 1.0
            masks[i, top:top + h, left:left + w] = c
    return x, masks


def train_segmenter(steps: int = 200, seed: int = 0) -> TinySegmenter:
    """Cross-entropy on 512 scenes, Adam; ~99.8% pixel accuracy on held-out scenes (scripts/train_task_models.py)."""
    torch.manual_seed(seed)
    model = TinySegmenter()
    x, y = (torch.from_numpy(a) for a in scenes(512, seed=seed))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (32,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def trained_segmenter() -> TinySegmenter:
    model = TinySegmenter()
    model.load_state_dict(torch.load(ZOO / "tiny_segmenter.pt", weights_only=True))
    return model.eval()


def images(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random images (blobs), so neighbouring pixels correlate as in photos."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(-1, 1, (count, 3, size // 4, size // 4)).astype(np.float32)
    return np.repeat(np.repeat(small, 4, 2), 4, 3) + rng.normal(0, 0.1, (count, 3, size, size)).astype(np.float32)


# name -> (class path, checkpoint builder, input shape, data builder)
FIXTURES = {
    "yolo_detector": ("edgeport.zoo.task_models:YoloStyleDetector", lambda: seeded(YoloStyleDetector()), (3, 64, 64)),
    "embedding_net": ("edgeport.zoo.task_models:EmbeddingNet", lambda: seeded(EmbeddingNet()), (3, 32, 32)),
    "tiny_segmenter": ("edgeport.zoo.task_models:TinySegmenter", trained_segmenter, (3, 32, 32)),
}


def write(name: str, folder: Path, calib: int = 64, val: int = 32) -> list[str]:
    """Checkpoint and data for FIXTURES[name] (or the CRNN) in `folder`: the convert arguments.

    The validation .npz carries the task's labels (edgeport/tasks/labels.py): the CRNN's true `text`
    and its `charset`, the segmenter's true `masks`; for the untrained detector, the float model's
    own detections as `boxes` (pseudo ground truth: the float model scores 1.0 against them, so the
    quantized model's mAP50 vs labels shows only what quantization lost).
    """
    folder.mkdir(parents=True, exist_ok=True)
    calib_path, val_path = folder / f"{name}_calib.npz", folder / f"{name}_val.npz"
    if name == "crnn_ctc":
        from edgeport.zoo.recurrent import make_lines

        np.savez(calib_path, x=make_lines(calib, 1)[0])
        x, texts = make_lines(val, 2)
        np.savez(val_path, x=x, text=np.array(texts), charset=np.array(CRNN_CHARSET))
        return [str(ZOO / "crnn.pt"), "--model-class", "edgeport.zoo.recurrent:Crnn",
                "--calib", str(calib_path), "--val", str(val_path)]
    cls, build, shape = FIXTURES[name]
    ckpt = folder / f"{name}.pt"
    model = build()
    torch.save(model.state_dict(), ckpt)
    if name == "tiny_segmenter":
        np.savez(calib_path, x=scenes(calib, shape[-1], 1)[0])
        x, masks = scenes(val, shape[-1], 2)
        np.savez(val_path, x=x, masks=masks)
    else:
        np.savez(calib_path, x=images(calib, shape[-1], 1))
        x = images(val, shape[-1], 2)
        np.savez(val_path, x=x, **pseudo_labels(name, model, x))
    return [str(ckpt), "--model-class", cls, "--input-shape", "1x" + "x".join(map(str, shape)),
            "--calib", str(calib_path), "--val", str(val_path)]


CRNN_CHARSET = "-0123456789"  # class 0 is the CTC blank, class k+1 prints digit k (zoo/recurrent.py)


def pseudo_labels(name: str, model: nn.Module, x: np.ndarray) -> dict[str, np.ndarray]:
    """The float model's own answers in the task-label format (none for the embedding net)."""
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    if name == "yolo_detector":
        from edgeport.tasks import detection

        found = [detection.nms(d, 0.45) for d in detection.decode([y], "yolo", 0.25)]
        boxes = np.full((len(x), max(1, max(len(f) for f in found)), 5), -1.0, np.float32)
        for i, f in enumerate(found):
            boxes[i, :len(f)] = f[:, [0, 1, 2, 3, 5]]
        return {"boxes": boxes}
    return {}


def bench_fixtures(folder: Path) -> dict[str, list[str]]:
    return {name: write(name, folder / name) for name in ("crnn_ctc", *FIXTURES)}


if __name__ == "__main__":  # python -m edgeport.zoo.task_models OUT_DIR: every fixture's files and convert line
    import shlex
    import sys

    for fixture, args in bench_fixtures(Path(sys.argv[1] if len(sys.argv) > 1 else "task_fixtures")).items():
        print(f"{fixture}: edgeport convert {shlex.join(args)} --profile raspberry-pi-4")
