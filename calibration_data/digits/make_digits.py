"""Rebuild digits.npz from scikit-learn's bundled copy of the UCI optical digits set.

Why this exists: the repo ships the data (offline rule), and this script documents exactly how it
was produced. Run once with scikit-learn installed; the result is committed.

Each 8x8 image (0..16 counts) is upsampled to 32x32 with bilinear interpolation (the original NIST
bitmaps were 32x32) and stored as uint8 0..255 in NCHW layout. The split is fixed (seed 0):
1197 train (training + calibration) and 600 validation samples.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits


def main() -> None:
    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = np.clip(np.round(x.numpy() * 255.0), 0, 255).astype(np.uint8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    train, val = order[:1197], order[1197:]
    out = Path(__file__).with_name("digits.npz")
    np.savez_compressed(out, x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val])
    print(f"wrote {out} train={len(train)} val={len(val)}")


if __name__ == "__main__":
    main()
