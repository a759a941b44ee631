"""Train the task fixtures that need training (edgeport/zoo/task_models.py) and write their weights.

    .venv/bin/python scripts/train_task_models.py   # -> edgeport/zoo/tiny_segmenter.pt (~40 s on 2 busy cores)
"""

from __future__ import annotations

import numpy as np
import torch

from edgeport.tasks.segment import miou
from edgeport.zoo.task_models import ZOO, scenes, train_segmenter


def main() -> None:
    model = train_segmenter()
    x, masks = scenes(64, seed=1)
    with torch.no_grad():
        found = model(torch.from_numpy(x)).numpy().argmax(1)
    print(f"tiny_segmenter: held-out pixel accuracy {np.mean(found == masks):.4f}, mIoU {miou(masks, found):.4f}")
    torch.save(model.state_dict(), ZOO / "tiny_segmenter.pt")


if __name__ == "__main__":
    main()
