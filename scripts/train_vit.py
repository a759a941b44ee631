"""Train edgeport/zoo/TinyVit (nn.TransformerEncoder, pre-norm, GELU) on the bundled digits training split.

Why: the transformer fixture of the int8 benchmarks must be a trained network, so that its accuracy
drop against the labels means something; the weights must be reproducible from shipped data with one
command. Only x_train is used for training; x_val is read once, after the last epoch, to report
accuracy. Same recipe as scripts/train_default.py (AdamW, warm-up + cosine, random shifts, label
smoothing), one thread, seeded.

    .venv/bin/python scripts/train_vit.py            # writes edgeport/zoo/vit_digits.{pt,json}
    .venv/bin/python scripts/train_vit.py --svtr     # writes edgeport/zoo/svtr_lines.pt

`--svtr` trains the SVTR-style recognizer of edgeport/zoo/transformer_blocks.py with CTC on the
synthetic digit lines of edgeport/zoo/recurrent.py (as scripts/train_recurrent.py trains the CRNN),
and prints its line accuracy on held-out lines.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeport.zoo import recurrent
from edgeport.zoo.digits_net import preprocess
from edgeport.zoo.transformer_blocks import SvtrRecognizer
from edgeport.zoo.vit import TinyVit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_default import accuracy, lr_factor, random_shift, serialize, set_determinism, sha256, write_atomic  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / "calibration_data" / "digits" / "digits.npz"
DEFAULT_OUT = REPO / "edgeport" / "zoo"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=None, help="default 2e-3, with --svtr 1e-3")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--max-shift", type=int, default=2, help="random translation in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--svtr", action="store_true", help="train the SVTR-style CTC recognizer instead")
    parser.add_argument("--steps", type=int, default=500, help="--svtr: optimizer steps of 32 lines")
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> tuple[TinyVit, list[float]]:
    data = np.load(args.data)
    x_train, y_train = preprocess(data["x_train"]), torch.from_numpy(data["y_train"]).long()
    model = TinyVit()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    total = args.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 2 * steps_per_epoch))
    generator = torch.Generator().manual_seed(args.seed)
    losses: list[float] = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        running = 0.0
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            loss = F.cross_entropy(model(random_shift(x_train[idx], args.max_shift, generator)), y_train[idx],
                                   label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # Attention logits can spike early in training on so little data; clipping keeps runs stable.
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(idx)
        losses.append(running / len(order))
        print(f"epoch {epoch + 1:3d}/{args.epochs}  loss {losses[-1]:.4f}", flush=True)
    return model.eval(), losses


def train_svtr(args: argparse.Namespace) -> int:
    """CTC on generated lines; the held-out lines (seed 999) are the ones train_recurrent.py reports on."""
    torch.manual_seed(args.seed)
    model = SvtrRecognizer()
    x, texts = recurrent.make_lines(4096, args.seed + 100)
    xs = torch.from_numpy(x)
    targets = [torch.tensor([int(c) + 1 for c in t]) for t in texts]
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.steps, args.steps // 10))
    start = time.perf_counter()
    model.train()
    for step in range(args.steps):
        idx = np.random.default_rng(args.seed + step).integers(0, len(x), 32)
        logp = model(xs[idx]).log_softmax(-1).transpose(0, 1)  # (T, N, C)
        tgt = [targets[i] for i in idx]
        loss = ctc(logp, torch.cat(tgt), torch.full((len(idx),), logp.shape[0], dtype=torch.long),
                   torch.tensor([len(t) for t in tgt]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 49:
            print(f"step {step + 1}/{args.steps}  ctc {loss.item():.4f}", flush=True)
    model.eval()
    lines, truth = recurrent.make_lines(300, 999)
    with torch.no_grad():
        decoded = recurrent.greedy_ctc(model(torch.from_numpy(lines)).numpy())
    acc = float(np.mean([d == t for d, t in zip(decoded, truth, strict=True)]))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "svtr_lines.pt"
    write_atomic(path, serialize(lambda b: torch.save(model.state_dict(), b)))
    print(f"svtr: line accuracy {acc:.3f} on 300 held-out lines, {time.perf_counter() - start:.0f} s; "
          f"wrote {path} ({path.stat().st_size} bytes, sha256 {sha256(path)[:12]})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.lr = args.lr or (1e-3 if args.svtr else 2e-3)
    set_determinism(args.seed)
    if args.svtr:
        return train_svtr(args)
    start = time.perf_counter()
    model, losses = train(args)
    seconds = time.perf_counter() - start
    data = np.load(args.data)
    train_acc = accuracy(model, preprocess(data["x_train"]), torch.from_numpy(data["y_train"]).long())
    val_acc = accuracy(model, preprocess(data["x_val"]), torch.from_numpy(data["y_val"]).long())
    params = sum(p.numel() for p in model.parameters())
    print(f"train acc {train_acc:.4f}  val acc {val_acc:.4f}  params {params}  {seconds:.0f} s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    pt_path, json_path = args.out_dir / "vit_digits.pt", args.out_dir / "vit_digits.json"
    write_atomic(pt_path, serialize(lambda b: torch.save(model.state_dict(), b)))
    meta = {
        "model": "edgeport.zoo.vit:TinyVit", "input_shape": [1, 1, 32, 32],
        "preprocessing": "x = (raw / 255 - 0.5) / 0.5, NCHW float32 (calibration_data/manifest.toml [digits])",
        "val_accuracy": round(val_acc, 6), "train_accuracy": round(train_acc, 6),
        "val_samples": int(len(data["y_val"])), "train_samples": int(len(data["y_train"])), "params": params,
        "epochs": args.epochs, "batch_size": args.batch_size,
        "optimizer": f"AdamW lr={args.lr} weight_decay={args.weight_decay}, warm-up + cosine, grad clip 1.0",
        "augmentation": f"random shift +-{args.max_shift} px", "label_smoothing": 0.05,
        "final_train_loss": round(losses[-1], 6), "seed": args.seed, "threads": torch.get_num_threads(),
        "train_seconds": round(seconds, 1), "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "data_sha256": sha256(args.data),
        "files": {pt_path.name: {"sha256": sha256(pt_path), "size_bytes": pt_path.stat().st_size}},
    }
    write_atomic(json_path, (json.dumps(meta, indent=2) + "\n").encode())
    print(f"wrote {pt_path} ({pt_path.stat().st_size} bytes) and {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
