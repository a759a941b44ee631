"""Planted faults on the task fixtures' real float outputs (torch forward), each small enough to keep
SNR at or above a profile's min_snr_db and large enough to break what the task needs. The tests prove
the verdict then passes on SNR alone and fails on the task metric; `python -m edgeport.zoo.task_faults`
prints the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeport.tasks.labels import TaskLabels
from edgeport.zoo import task_models as tm


@dataclass(frozen=True, eq=False)
class Fault:
    name: str
    task: str  # --task text
    what: str
    reference: np.ndarray
    faulted: np.ndarray
    labels: TaskLabels | None = None


def _forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def plant(snr_floor: float = 15.0) -> list[Fault]:
    from edgeport.zoo.recurrent import Crnn, make_lines

    crnn = Crnn()
    crnn.load_state_dict(torch.load(tm.ZOO / "crnn.pt", weights_only=True))
    lines = _forward(crnn, make_lines(100, 2)[0])
    swapped = lines.copy()
    swapped[:50, :, [3, 4]] = swapped[:50, :, [4, 3]]  # digits 2 and 3 trade scores on half the lines

    det = _forward(tm.seeded(tm.YoloStyleDetector()), tm.images(32, 64, seed=2))
    moved, classes = det.copy(), det.copy()
    moved[..., 0] += 4.0  # every box 4 pixels right
    classes[..., [5, 6]] = classes[..., [6, 5]]  # classes 0 and 1 trade scores

    emb = _forward(tm.seeded(tm.EmbeddingNet()), tm.images(32, seed=2))
    share = emb**2  # each channel's share of each sample's (unit) energy
    quiet = share.mean(0) < 10 ** (-snr_floor / 10)  # zeroing one of these alone keeps SNR above the floor
    channel = int(np.argmax(np.where(quiet, share.max(0), -1)))  # ...and the one that matters most to some sample
    zeroed = emb.copy()
    zeroed[:, channel] = 0

    x, masks = tm.scenes(16, seed=2)
    seg = _forward(tm.trained_segmenter(), x)
    order = np.argsort(seg, 1)
    top = np.take_along_axis(seg, order, 1)
    n, h, w = np.nonzero(top[:, -1] - top[:, -2] <= np.quantile(top[:, -1] - top[:, -2], 0.05))
    best, second = order[:, -1][n, h, w], order[:, -2][n, h, w]
    edges = seg.copy()  # the least sure pixels are the objects' edges, where quantization noise lands first
    edges[n, best, h, w], edges[n, second, h, w] = seg[n, second, h, w], seg[n, best, h, w]

    return [Fault("crnn_scores_swapped", "ctc", "two digits' scores swapped on half the lines", lines, swapped),
            Fault("detector_box_offset", "detect:layout=yolo", "every box 4 pixels right", det, moved),
            Fault("detector_scores_swapped", "detect:layout=yolo", "two classes' scores swapped", det, classes),
            Fault("embedding_channel_zeroed", "embed", f"channel {channel} zeroed", emb, zeroed),
            Fault("segmenter_edges_swapped", "segment", "the two best classes swapped on the 5% least sure pixels",
                  seg, edges, TaskLabels(masks=masks))]


if __name__ == "__main__":
    from edgeport.tasks import parse_task, score
    from edgeport.validate.metrics import compare_output

    print(f"{'fault':26s} {'SNR dB':>7s}  task metric")
    for f in plant():
        found = score(parse_task(f.task), [f.reference], [f.faulted], f.labels)
        snr = compare_output("output", f.reference, f.faulted).snr_db
        print(f"{f.name:26s} {snr:7.2f}  {found.metric} {found.value:.4f}  ({f.what})")
