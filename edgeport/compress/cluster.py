"""Weight clustering (weight sharing): each layer's weights snap to N centroids found by 1-D k-means.

Why: a tensor with few distinct values compresses well (gzip/zip of the app bundle or an OTA
download); the .tflite itself keeps one float (or int8) per weight, so the file on disk does not
shrink and latency does not change. The report measures the compressed size instead of promising
it. Centroids start evenly spaced between the layer's min and max ("linear" init, as in the
TensorFlow Model Optimization toolkit): deterministic, and it keeps the rare large weights that
density-based starts would merge away.

Only tensors with at least 2 dimensions (Conv/Linear kernels) are clustered; biases and BatchNorm
parameters are tiny and sensitive. Works on TorchScript too (it only rewrites parameter values).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
from dataclasses import dataclass, field
from typing import Any

import torch

from edgeport.compress.distill import clone_model
from edgeport.errors import InputError


@dataclass
class ClusterResult:
    model: Any
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"layers_clustered": len(self.layers), "layers": self.layers, "notes": self.notes}


def kmeans_1d(values: torch.Tensor, clusters: int, iterations: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Centroids (sorted, empty clusters dropped) and the index of each value's centroid."""
    x = values.detach().double().flatten()
    lo, hi = float(x.min()), float(x.max())
    centroids = torch.linspace(lo, hi, clusters, dtype=torch.float64)
    for _ in range(iterations):
        # In 1-D the nearest centroid is found by the midpoints between sorted centroids.
        assign = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.zeros_like(centroids).index_add_(0, assign, torch.ones_like(x))
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = updated
    assign = torch.bucketize(x, (centroids[1:] + centroids[:-1]) / 2)
    used = torch.unique(assign)
    remap = torch.full((len(centroids),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    return centroids[used], remap[assign]


def cluster_weights(
    model: Any,
    clusters: int = 16,
    *,
    iterations: int = 30,
    layers: tuple[str, ...] | list[str] = (),
    skip: tuple[str, ...] | list[str] = (),
) -> ClusterResult:
    """Return a copy of `model` whose selected weight tensors hold at most `clusters` distinct values each."""
    if clusters < 2:
        raise InputError(f"cluster clusters={clusters} is too small", hint="use at least 2 (16 is a common choice)")
    model = clone_model(model)
    report, notes = [], []
    with torch.no_grad():
        for name, p in model.named_parameters():
            layer = name.rpartition(".")[0]
            if p.ndim < 2 or (layers and not any(fnmatch.fnmatchcase(layer, pat) for pat in layers)):
                continue
            if any(fnmatch.fnmatchcase(layer, pat) for pat in skip):
                continue
            before = int(torch.unique(p).numel())
            if before <= clusters:
                notes.append(f"{name} already has {before} distinct values (<= {clusters})")
                continue
            centroids, assign = kmeans_1d(p, clusters, iterations)
            clustered = centroids[assign].reshape(p.shape).to(p.dtype)
            err = float((clustered - p).pow(2).mean().sqrt() / p.pow(2).mean().sqrt().clamp_min(1e-30))
            p.copy_(clustered)
            report.append({"param": name, "numel": p.numel(), "unique_before": before,
                           "unique_after": int(torch.unique(p).numel()), "relative_rmse": round(err, 6)})
    if not report:
        raise InputError("no weight tensor was clustered", hint=f"check 'layers'/'skip', or use fewer than {clusters} clusters")
    return ClusterResult(model, report, notes)


def unique_values(model: Any) -> dict[str, int]:
    """Distinct values per parameter with >= 2 dims: what clustering promises to bound."""
    return {n: int(torch.unique(p.detach()).numel()) for n, p in model.named_parameters() if p.ndim >= 2}


def state_dict_bytes(model: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def gzip_size(payload: bytes) -> int:
    """Compressed size at gzip's default level 9 with a fixed mtime, so equal bytes give equal sizes."""
    return len(gzip.compress(payload, compresslevel=9, mtime=0))
