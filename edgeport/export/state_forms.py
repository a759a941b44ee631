"""The forms a state_dict arrives in: containers, wrapper prefixes, raw beside EMA weights.

Trainers rarely save a bare `model.state_dict()`. The PyTorch tutorial saves `{'epoch',
'model_state_dict', 'optimizer_state_dict'}`; Lightning saves `{'state_dict': {'model.…'}}`; timm adds
`state_dict_ema`; `torch.compile` prefixes every key with `_orig_mod.` and DataParallel/DDP with
`module.`. Each form is unwrapped only when the result matches the model class exactly (every key,
every shape), and what was done is said in a note; anything less is left to the caller's mismatch error.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from edgeport.errors import InputError

RAW_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
EMA_KEYS = ("ema", "model_ema", "state_dict_ema", "ema_state_dict")
# Every key carries these (the wrapper holds the model as its only child).
WRAPPER_PREFIXES = {"_orig_mod.": "torch.compile", "module.": "DataParallel/DDP or an EMA wrapper"}
# The model is one attribute of a bigger module (LightningModule, a training wrapper): keys of its other
# parts (a loss with weights, metrics) sit beside it and are left out.
ATTRIBUTE_PREFIXES = {"model.": "a wrapper's `model` attribute (e.g. Lightning)",
                      "net.": "a wrapper's `net` attribute (e.g. Lightning)"}
# Bookkeeping buffers that wrappers add beside the model's own keys (torch.optim.swa_utils.AveragedModel).
WRAPPER_BUFFERS = ("n_averaged",)
DTYPE_NAMES = {"torch.float32": "float32", "torch.float16": "float16", "torch.bfloat16": "bfloat16",
               "torch.float64": "float64"}


def is_tensor_dict(obj: Any) -> bool:
    import torch

    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def find_weights(obj: Any, weights: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The state_dict inside a loaded checkpoint object and notes saying where it came from, or
    (None, []) when there is none. `weights` (ema|raw) picks one when the file holds both."""
    if is_tensor_dict(obj):
        if weights == "ema":
            raise InputError("--weights ema, but the checkpoint is a plain state_dict with no EMA weights",
                             hint="drop --weights, or pass the checkpoint that holds the EMA weights")
        return obj, []
    if not isinstance(obj, dict):
        return None, []
    raw = next((k for k in RAW_KEYS if is_tensor_dict(obj.get(k))), None)
    ema = next((k for k in EMA_KEYS if is_tensor_dict(obj.get(k))), None)
    if weights is not None and (raw if weights == "raw" else ema) is None:
        held = ", ".join(repr(k) for k in obj if isinstance(k, str)) or "nothing named"
        raise InputError(f"--weights {weights}, but the checkpoint holds no {weights.upper() if weights == 'ema' else weights} "
                         f"weights (its keys: {held[:200]})", hint="drop --weights, or pass the other choice")
    if raw and ema:
        use = ema if weights in (None, "ema") else raw
        other = raw if use == ema else ema
        kind = "EMA" if use == ema else "raw"
        return obj[use], [f"the checkpoint holds raw ('{raw}') and EMA ('{ema}') weights; loaded the {kind} "
                          f"weights from '{use}' (--weights {'raw' if use == ema else 'ema'} for '{other}')"]
    key = raw or ema
    if key is None:
        return None, []
    return obj[key], [f"weights read from the checkpoint's '{key}' entry"
                      + (" (EMA weights)" if key == ema else "")]


def match(own: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """`state` with wrapper prefixes stripped so that it fits `own` (the class's state_dict) exactly, and
    notes saying so; None when no unwrapping gives an exact fit (the caller reports today's mismatch)."""
    if _fits(own, state):
        return state, []
    prefixes = [*WRAPPER_PREFIXES, *ATTRIBUTE_PREFIXES]
    for depth in (1, 2):  # torch.compile inside DDP leaves two: module._orig_mod.
        for chain in itertools.product(prefixes, repeat=depth):
            stripped, dropped = _strip(state, chain)
            extra = [k for k in stripped if k not in own and k in WRAPPER_BUFFERS]
            for k in extra:
                stripped.pop(k)
            if stripped and _fits(own, stripped):
                why = "; ".join(f"'{p}' ({WRAPPER_PREFIXES.get(p) or ATTRIBUTE_PREFIXES[p]})" for p in chain)
                note = f"state_dict keys carried the prefix {''.join(chain)!r}: stripped {why} to match the model class"
                left = [*dropped, *extra]
                if left:
                    note += f"; left out {len(left)} key(s) outside the model ({', '.join(left[:3])})"
                return stripped, [note]
    return None


def _strip(state: dict[str, Any], chain: tuple[str, ...]) -> tuple[dict[str, Any], list[str]]:
    current, dropped = dict(state), []
    for prefix in chain:
        inside = {k[len(prefix):]: v for k, v in current.items() if k.startswith(prefix)}
        outside = [k for k in current if not k.startswith(prefix)]
        if prefix in WRAPPER_PREFIXES and [k for k in outside if k not in WRAPPER_BUFFERS]:
            return {}, []
        dropped += [k for k in outside if prefix in ATTRIBUTE_PREFIXES]
        current = {**inside, **{k: current[k] for k in outside if k in WRAPPER_BUFFERS}}
    return current, dropped


def _fits(own: dict[str, Any], state: dict[str, Any]) -> bool:
    return set(own) == set(state) and all(tuple(own[k].shape) == tuple(state[k].shape) for k in own)


def tensors_dtype(tensors: Any) -> str | None:
    """The floating-point dtype most of the weights' elements are stored in (float32, float16,
    bfloat16), with the others named when the weights mix them; None without float tensors."""
    counts: Counter[str] = Counter()
    for t in tensors:
        if getattr(t, "is_floating_point", lambda: False)():
            counts[DTYPE_NAMES.get(str(t.dtype), str(t.dtype).replace("torch.", ""))] += int(t.numel())
    if not counts:
        return None
    main, *rest = [name for name, _ in counts.most_common()]
    return main if not rest else f"{main} (also {', '.join(rest)})"
