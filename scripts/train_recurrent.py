"""Train the recurrent zoo models (edgeport/zoo/recurrent.py) on their seeded generated tasks.

    .venv/bin/python scripts/train_recurrent.py        # ~40 s on one core

Writes edgeport/zoo/lstm_encoder.pt and edgeport/zoo/crnn.pt (state_dicts) and prints each model's
float quality on held-out data: nearest-neighbour class accuracy of the embeddings, and the share of
text lines whose greedy CTC decode equals the label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeport.zoo import recurrent, sequence_models

ZOO = Path(__file__).resolve().parent.parent / "edgeport" / "zoo"


def main() -> None:
    torch.set_num_threads(1)
    enc = recurrent.train_encoder(recurrent.LstmEncoder())
    x, y = sequence_models.make_data(400, 999)
    with torch.no_grad():
        emb = enc(torch.from_numpy(x)).numpy()
    sim = emb @ emb.T
    np.fill_diagonal(sim, -np.inf)
    print(f"lstm_encoder: nearest-neighbour class accuracy {np.mean(y[sim.argmax(1)] == y):.3f}")
    torch.save(enc.state_dict(), ZOO / "lstm_encoder.pt")

    crnn = recurrent.train_crnn(recurrent.Crnn())
    lines, texts = recurrent.make_lines(300, 999)
    with torch.no_grad():
        decoded = recurrent.greedy_ctc(crnn(torch.from_numpy(lines)).numpy())
    print(f"crnn: line accuracy {np.mean([d == t for d, t in zip(decoded, texts, strict=True)]):.3f}")
    torch.save(crnn.state_dict(), ZOO / "crnn.pt")


if __name__ == "__main__":
    main()
