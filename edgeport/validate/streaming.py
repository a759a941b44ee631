"""Stateful streaming models (`--state IN=OUT`): validation and calibration over real sequences.

A streaming model (a voice-activity detector, a keyword spotter) takes one chunk of signal plus its own
previous state and returns a result plus the next state. Judging it on independent chunks with zero
state misses what matters: errors that build up as the state is carried. So with `--state`:
- data for the other inputs holds sequences, `[S, T, ...]` (S sequences of T chunks each); state
  inputs may give each sequence's first state (`[S, ...]`), else it starts at zeros;
- `unroll` runs the float reference chunk by chunk, feeding each output state back in, and writes the
  chunks as ordinary samples (S*T of them, in order) with the states the float model carried: the
  calibration then sees real states, not zeros;
- `attach` marks the state inputs in the conversion's input map, so every TFLite validation run
  (`tflite/runner.py`) feeds its own output state back within each sequence: the TFLite model
  is judged closed-loop, on every chunk, against the float model's closed loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import InputError
from edgeport.types import TensorSpec


def parse_states(items: tuple[str, ...] | list[str], inputs: tuple[TensorSpec, ...],
                 outputs: tuple[TensorSpec, ...]) -> dict[str, str]:
    """`IN=OUT` strings -> {state input: state output}, each checked against the model's I/O."""
    pairs: dict[str, str] = {}
    in_names, out_names = [s.name for s in inputs], [s.name for s in outputs]
    shapes = {s.name: tuple(s.shape) for s in (*inputs, *outputs)}
    for item in items:
        src, sep, dst = (part.strip() for part in item.partition("="))
        if not sep or not src or not dst:
            raise InputError(f"--state '{item}' is not IN=OUT", hint="e.g. --state state=stateN (input name = output name)")
        if src not in in_names:
            raise InputError(f"--state {item}: '{src}' is not a model input (inputs: {', '.join(in_names)})",
                             hint="name the input that takes the previous state")
        if dst not in out_names:
            raise InputError(f"--state {item}: '{dst}' is not a model output (outputs: {', '.join(out_names)})",
                             hint="name the output that returns the next state")
        if src in pairs:
            raise InputError(f"--state {src} is given twice", hint="pair each state input once")
        if shapes[src] != shapes[dst] and -1 not in shapes[src] + shapes[dst]:
            raise InputError(f"--state {item}: input shape {list(shapes[src])} differs from output shape {list(shapes[dst])}",
                             hint="pair an input with the output that has the same shape")
        if not shapes[src] or shapes[src][0] != 1:
            raise InputError(f"--state {item}: the state's first axis is {shapes[src][:1] or 'missing'}, not a batch of 1",
                             hint="edgeport stacks samples on the first axis; export the state batch-first, e.g. [1, 2, 128]")
        pairs[src] = dst
    if pairs and len(pairs) == len(in_names):
        raise InputError("--state names every model input as state", hint="leave at least the signal input unpaired")
    return pairs


def unroll(spec: str, pairs: dict[str, str], inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...],
           reference, out_path: Path, *, max_samples: int) -> tuple[int, int]:
    """Sequence data `spec` -> `out_path` .npz of S*T chunk samples with the float model's carried states.

    `reference(data)` returns the float outputs for a batch of samples (validate.run.reference_outputs).
    Returns (sequences, steps). Labels (`y`, one per chunk: [S, T, ...]) are flattened the same way."""
    if not str(spec).endswith(".npz") or not Path(spec).is_file():
        raise InputError(f"--state needs sequence data in an .npz file, not '{spec}'",
                         hint="save np.savez(path, x=[S, T, ...]) with S sequences of T chunks")
    with np.load(spec) as data:
        arrays = {k: data[k] for k in data.files}
    signal = [s for s in inputs if s.name not in pairs]
    missing = [s.name for s in signal if s.name not in arrays]
    if missing:
        raise InputError(f"--state: {spec} has no arrays for inputs {', '.join(missing)}",
                         hint="save one [S, T, ...] array per non-state input")
    first = arrays[signal[0].name]
    for s in signal:
        arr = arrays[s.name]
        if arr.ndim != len(s.shape) + 1 or arr.shape[:2] != first.shape[:2] or not _fits(arr.shape[2:], s.shape[1:]):
            raise InputError(f"--state: {spec}: input '{s.name}' has shape {list(arr.shape)}, not [S, T, "
                             f"{', '.join(str(d) for d in s.shape[1:])}]", hint="S sequences of T chunks each, chunks as the model takes them")
    sequences, steps = int(first.shape[0]), int(first.shape[1])
    sequences = max(1, min(sequences, max_samples // max(steps, 1)))
    state = {}
    for name in pairs:
        spec_shape = next(s.shape for s in inputs if s.name == name)
        given = arrays.get(name)
        state[name] = (given[:sequences].astype(np.float32) if given is not None
                       else np.zeros((sequences, *spec_shape[1:]), np.float32))
    out_index = {o.name: i for i, o in enumerate(outputs)}
    chunks: dict[str, list[np.ndarray]] = {s.name: [] for s in inputs}
    for t in range(steps):
        feed = {s.name: arrays[s.name][:sequences, t] for s in signal}
        feed.update(state)
        for name, value in feed.items():
            chunks[name].append(value)
        outs = reference(feed)
        state = {src: np.asarray(outs[out_index[dst]], np.float32) for src, dst in pairs.items()}
    # chunk t of sequence s goes to sample s*T + t: sequences stay whole and in order
    flat = {name: np.stack(parts, axis=1).reshape(sequences * steps, *parts[0].shape[1:]) for name, parts in chunks.items()}
    if "y" in arrays:
        flat["y"] = arrays["y"][:sequences].reshape(sequences * steps, *arrays["y"].shape[2:])
    np.savez(out_path, **flat)
    return sequences, steps


def split_sequences(path: Path, steps: int, val_fraction: float = 0.3) -> tuple[Path, Path]:
    """Hold out whole sequences (the last ones) for validation when no --val is given."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    sequences = len(next(iter(arrays.values()))) // steps
    held = max(1, int(round(sequences * val_fraction))) if sequences > 1 else 0
    cut = (sequences - held) * steps
    calib, val = path.with_name(path.stem + "_calib.npz"), path.with_name(path.stem + "_val.npz")
    np.savez(calib, **{k: v[:cut] for k, v in arrays.items()})
    np.savez(val, **{k: v[cut:] for k, v in arrays.items()})
    return calib, val


def attach(input_map: dict[str, dict[str, Any]], pairs: dict[str, str], steps: int, output_names: list[str]) -> None:
    """Mark state inputs in a conversion's input map (in place: every later validation run reads this
    map), so the TFLite runner feeds each one from its paired output within a sequence of `steps`.
    The output is named by its position among the model's outputs, the order TFLite keeps."""
    for entry in input_map.values():
        if entry.get("source") in pairs:
            entry["state_from"] = output_names.index(pairs[entry["source"]])
            entry["steps"] = int(steps)


def _fits(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(got) == len(want) and all(w <= 0 or g == w for g, w in zip(got, want, strict=True))
