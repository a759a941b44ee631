"""Train the int8 hard cases (edgeport/zoo/hard_cases.py) on the shipped digits training split.

    .venv/bin/python scripts/train_hard_cases.py        # ~2 min on one core

Writes edgeport/zoo/outlier_net.pt (outlier injected after training: float-equivalent),
edgeport/zoo/attn_net.pt and edgeport/zoo/head_net.pt as state_dicts, plus hard_cases.json with their
float val accuracy. `--only head_net` trains only the last one.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeport.zoo.hard_cases import AttnNet, HeadNet, OutlierNet

REPO = Path(__file__).resolve().parent.parent
ZOO = REPO / "edgeport" / "zoo"


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(REPO / "calibration_data/digits/digits.npz") as d:
        x = (d[f"x_{split}"].astype(np.float32) / 255.0 - 0.5) / 0.5
        return torch.from_numpy(x), torch.from_numpy(d[f"y_{split}"])


def train(model: nn.Module, epochs: int, lr: float, seed: int = 0) -> float:
    torch.manual_seed(seed)
    x, y = load_split("train")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * ((len(x) + 63) // 64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(64):
            shift = torch.randint(-2, 3, (2,), generator=gen)
            xb = torch.roll(x[idx], shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return evaluate(model)


@torch.no_grad()
def evaluate(model: nn.Module) -> float:
    model.eval()
    x, y = load_split("val")
    return float((model(x).argmax(1) == y).float().mean())


def save(model: nn.Module, name: str) -> None:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    tmp = ZOO / f".{name}.tmp"
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, ZOO / name)


def train_head_net(seed: int = 0) -> tuple[HeadNet, float]:
    """Train HeadNet, pin one hidden unit in hard-swish's linear range, re-fit the last layer on the
    frozen features, then inject the massive activation (float-equivalent). Returns (model, val
    accuracy before the injection)."""
    torch.manual_seed(seed)
    model = HeadNet()
    train(model, epochs=30, lr=5e-3, seed=seed)
    x, y = load_split("train")
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        model.pin_unit(torch.cat([feats, model.features(load_split("val")[0])]))
        hidden = model.classifier[1](model.classifier[0](feats))
    last = model.classifier[2]
    opt = torch.optim.AdamW(last.parameters(), lr=1e-2, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(20):
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = nn.functional.cross_entropy(last(hidden[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    acc = evaluate(model)
    model.inject_outlier()
    return model, acc


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("head_net",), help="train only this model (the others are left as they are)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    meta = json.loads((ZOO / "hard_cases.json").read_text()) if args.only else {}
    t0 = time.time()
    torch.manual_seed(0)
    head, acc = train_head_net()
    meta["head_net"] = {"val_accuracy_before_injection": acc, "val_accuracy": evaluate(head),
                        "class": "edgeport.zoo.hard_cases:HeadNet"}
    save(head, "head_net.pt")
    if args.only:
        meta["seconds_head_net"] = round(time.time() - t0, 1)
        (ZOO / "hard_cases.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(json.dumps(meta["head_net"], indent=2))
        return
    torch.manual_seed(0)
    outlier = OutlierNet()
    acc = train(outlier, epochs=30, lr=5e-3)
    outlier.inject_outlier()
    meta["outlier_net"] = {"val_accuracy_before_injection": acc, "val_accuracy": evaluate(outlier),
                           "class": "edgeport.zoo.hard_cases:OutlierNet"}
    save(outlier, "outlier_net.pt")
    torch.manual_seed(0)
    attn = AttnNet()
    acc = train(attn, epochs=30, lr=3e-3)
    attn.inject_outlier()
    meta["attn_net"] = {"val_accuracy_before_injection": acc, "val_accuracy": evaluate(attn),
                        "class": "edgeport.zoo.hard_cases:AttnNet"}
    save(attn, "attn_net.pt")
    meta["seconds"] = round(time.time() - t0, 1)
    meta["command"] = "python scripts/train_hard_cases.py"
    (ZOO / "hard_cases.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
