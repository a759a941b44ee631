"""Train the embedded default model (edgeport/zoo/DigitsNet) on the bundled digits training split.

Why this script is in the repo: the shipped weights must be reproducible from shipped data with one
command, so anyone can check that the demo's "before int8" accuracy is honest. Only x_train is used
for training; x_val is touched once, after the last epoch, to report accuracy (no model selection on
it). Runs single-threaded on CPU in about a minute.

    python scripts/train_default.py            # writes edgeport/zoo/digits_net.{pt,ts,json}
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeport.zoo.digits_net import DigitsNet, example_input, preprocess

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "calibration_data" / "digits" / "digits.npz"
DEFAULT_OUT = REPO / "edgeport" / "zoo"
# Background after preprocessing: raw pixel 0 -> -1.0. Shifted-in borders must look like paper, not
# like mid-grey ink, or the model learns that borders carry signal.
BACKGROUND = -1.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--max-shift", type=int, default=2, help="random translation in pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def set_determinism(seed: int) -> None:
    # One thread: the machine is shared, and single-threaded CPU kernels also make float reductions
    # run in a fixed order, so the same seed gives bit-identical weights.
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift] on both axes."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=BACKGROUND)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to zero; warm-up avoids early BatchNorm/AdamW blow-ups."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(x)


def count_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-accumulates of Conv2d and Linear layers for one forward pass (BN/activations excluded)."""
    total = 0

    def conv_hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        per_output = kh * kw * module.in_channels // module.groups
        total += output.numel() * per_output

    def linear_hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    model.eval()
    with torch.no_grad():
        model(sample)
    for handle in handles:
        handle.remove()
    return total


def write_atomic(path: Path, payload: bytes) -> None:
    """Write via a temp file in the same folder, then rename, so a crash never leaves a half file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; shipped artifacts should be readable like any other repo file.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def serialize(save: Callable[[io.BytesIO], None]) -> bytes:
    """Serialize in memory first: torch.save/jit.save name the zip's inner folder after the target
    file, so saving straight to a random temp name would make every run's bytes (and hash) differ."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(args: argparse.Namespace) -> tuple[DigitsNet, list[float]]:
    data = np.load(args.data)
    x_train = preprocess(data["x_train"])
    y_train = torch.from_numpy(data["y_train"]).long()
    model = DigitsNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    warmup = min(2 * steps_per_epoch, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup))
    # A private generator for shuffling/augmentation keeps the data order independent of how many
    # random numbers model construction happened to draw.
    generator = torch.Generator().manual_seed(args.seed)
    losses: list[float] = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running, seen = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            xb = random_shift(x_train[idx], args.max_shift, generator)
            # Label smoothing keeps logits moderate, which makes the int8 output scale less coarse.
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        losses.append(running / seen)
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(
                f"epoch {epoch + 1:3d}/{args.epochs}  loss {losses[-1]:.4f}  lr {scheduler.get_last_lr()[0]:.2e}"
            )
    model.eval()
    return model, losses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_determinism(args.seed)
    start = time.perf_counter()
    cpu_start = time.process_time()
    model, losses = train(args)
    train_seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start

    data = np.load(args.data)
    x_train, y_train = preprocess(data["x_train"]), torch.from_numpy(data["y_train"]).long()
    x_val, y_val = preprocess(data["x_val"]), torch.from_numpy(data["y_val"]).long()
    train_acc = accuracy(model, x_train, y_train)
    val_acc = accuracy(model, x_val, y_val)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model, example_input())
    print(f"train acc {train_acc:.4f}  val acc {val_acc:.4f}  params {params}  MACs {macs}")
    print(f"training took {train_seconds:.1f} s wall, {cpu_seconds:.1f} s CPU")

    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pt_path, ts_path, json_path = (out_dir / f"digits_net.{ext}" for ext in ("pt", "ts", "json"))
    write_atomic(pt_path, serialize(lambda b: torch.save(model.state_dict(), b)))
    with torch.no_grad():
        traced = torch.jit.trace(model, example_input())
    write_atomic(ts_path, serialize(lambda b: torch.jit.save(traced, b)))

    # Everything needed to reproduce or question the shipped weights: the exact command, versions,
    # data hash, and hashes of the files written next to this metadata.
    meta = {
        "model": "edgeport.zoo.digits_net:DigitsNet",
        "model_kwargs": {"num_classes": 10, "width": 1.0},
        "input_shape": list(example_input().shape),
        "preprocessing": "x = (raw / 255 - 0.5) / 0.5, NCHW float32 (calibration_data/manifest.toml [digits])",
        "val_accuracy": round(val_acc, 6),
        "train_accuracy": round(train_acc, 6),
        "val_samples": len(y_val),
        "train_samples": len(y_train),
        "params": params,
        "macs": macs,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": f"AdamW lr={args.lr} weight_decay={args.weight_decay}, warm-up + cosine",
        "augmentation": f"random shift +-{args.max_shift} px",
        "label_smoothing": 0.05,
        "final_train_loss": round(losses[-1], 6),
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "command": shlex.join(["python", *sys.argv])
        if argv is None
        else shlex.join(["python", __file__, *argv]),
        "data_sha256": sha256(args.data),
        "files": {
            pt_path.name: {"sha256": sha256(pt_path), "size_bytes": pt_path.stat().st_size},
            ts_path.name: {"sha256": sha256(ts_path), "size_bytes": ts_path.stat().st_size},
        },
    }
    write_atomic(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    for path in (pt_path, ts_path, json_path):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
