"""A torch.export archive (.pt2) saved on a GPU, read on a machine without one.

torch.export.load has no map_location: a program exported on cuda names `cuda` in every tensor's
metadata (weights, graph values, device arguments such as `arange(..., device=…)`) and pickles its
sample inputs with cuda storages. A CPU-only torch then fails with "Torch not compiled with CUDA
enabled", and a partly rewritten archive can abort the whole process in C++. So the archive is
rewritten in memory before torch reads it: every device record becomes cpu and pickled tensors are
re-saved with their storages mapped to CPU; the loaded program is then moved to CPU as a whole
(torch.export.passes.move_to_device_pass) for anything the records did not say.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

_CUDA_RECORD = re.compile(rb'\{"type": "cuda", "index": (?:\d+|null)\}')
_CPU_RECORD = b'{"type": "cpu", "index": null}'


def saved_on_cuda(path: Path) -> bool:
    """True when the archive's JSON records name a cuda device (cheap: no tensor is read)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(_CUDA_RECORD.search(zf.read(n)) for n in zf.namelist() if n.endswith(".json"))
    except (zipfile.BadZipFile, OSError, KeyError):
        return False


def saved_torch_version(path: Path) -> str | None:
    """The torch version that wrote the archive (models/*.json `torch_version`), when it says."""
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if "/models/" in name and name.endswith(".json"):
                    return json.loads(zf.read(name)).get("torch_version")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError):
        return None
    return None


def cpu_archive(path: Path) -> io.BytesIO:
    """The archive with its device records set to cpu and its pickled tensors mapped to CPU."""
    import torch

    out = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        pickled = _pickled_weights(zin)
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith(".json"):
                data = _CUDA_RECORD.sub(_CPU_RECORD, data)
            elif info.filename in pickled or info.filename.endswith(".pt"):
                data = _remap_pickle(data, torch)
            zout.writestr(info, data)
    out.seek(0)
    return out


def _pickled_weights(zf: zipfile.ZipFile) -> set[str]:
    """Weights and constants stored as torch.save pickles (use_pickle) instead of raw bytes."""
    found = set()
    for name in zf.namelist():
        if name.endswith("_config.json"):
            folder = name.rsplit("/", 1)[0]
            config = json.loads(zf.read(name)).get("config", {})
            found |= {f"{folder}/{entry['path_name']}" for entry in config.values() if entry.get("use_pickle")}
    return found


def _remap_pickle(data: bytes, torch: Any) -> bytes:
    obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def to_cpu(program: Any) -> Any:
    from torch.export.passes import move_to_device_pass

    return move_to_device_pass(program, "cpu")
