"""The model's inputs and outputs, and the data fed to them: settled before any backend runs.

Every backend converts the same static shapes and is judged on the same calibration and validation
data, so both are fixed here, from the loaded model alone (a torch model is run once; an ONNX file is
normalised first, its graph states the inputs).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeport.data import calibration as cal
from edgeport.data.preprocessing import parse_preprocessing
from edgeport.errors import InputError
from edgeport.export import memory
from edgeport.export.checkpoint import LoadedModel
from edgeport.export.onnx_prep import PreparedOnnx
from edgeport.types import TensorSpec

GENERATED_INPUTS = "seeded standard normal, seed 0"
GENERATED_SOURCE = "<generated>"  # not a path anyone passes as --calib/--val


@dataclass(frozen=True)
class ModelIO:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    onnx: PreparedOnnx | None = None  # ONNX inputs only: the normalised graph every later stage reads


@dataclass(frozen=True)
class Data:
    calib: cal.Dataset | None
    val: cal.Dataset

    @property
    def generated(self) -> bool:
        return self.val.source == GENERATED_SOURCE

    def calibration_arrays(self, inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray] | None:
        if self.calib is None:
            return None
        return {s.name: self.calib.inputs[s.name].astype(np.float32) if "float" in s.dtype else self.calib.inputs[s.name]
                for s in inputs}


def model_io(loaded: LoadedModel, shapes: dict, data_hint: str | None, work: Path, rewrite_pools: bool = True) -> ModelIO:
    if loaded.kind == "onnx":
        from edgeport.export.onnx_prep import prepare_onnx

        # Inputs bound with --const (constants.bind_constants) are folded into the graph here.
        bound = {p.name: p.default for p in loaded.params or () if not p.tensor}
        prepared = prepare_onnx(loaded.path, work / "model.onnx", shapes, rewrite_pools=rewrite_pools, constants=bound)
        memory.check_fits(memory.estimate_onnx(prepared.path), prepared.inputs)
        check_batch_axes(list(prepared.inputs))
        return ModelIO(prepared.inputs, prepared.outputs, prepared)
    from edgeport.export.torch_to_onnx import probe_outputs

    specs = torch_input_specs(loaded, shapes, data_hint)
    ints = cal.integer_arrays(data_hint or "")
    if ints:  # token ids / indices: export integer inputs, as the data is
        specs = [replace(s, dtype=ints.get(s.name, ints.get("x") if len(specs) == 1 else None) or s.dtype) for s in specs]
    memory.check_fits(memory.estimate_torch(loaded.module, specs), specs)
    check_batch_axes(specs)
    return ModelIO(tuple(specs), tuple(probe_outputs(loaded.module, specs)))


def torch_input_specs(loaded: LoadedModel, shapes: dict, data_hint: str | None) -> list[TensorSpec]:
    names = list(loaded.input_names or [])
    if shapes:
        if None in shapes:
            if len(shapes) > 1 or len(names) > 1:
                raise InputError("--input-shape without a name, but the model takes several inputs",
                                 hint=f"name each: --input-shape {names[0] if names else 'x'}=1x3x224x224")
            return [TensorSpec(names[0] if names else "input", shapes[None])]
        if names:
            unknown = [n for n in shapes if n not in names]
            if unknown:
                raise InputError(f"--input-shape names unknown input '{unknown[0]}'", hint=f"the model's inputs are: {', '.join(names)}")
            missing = [n for n in names if n not in shapes]
            if missing:
                raise InputError(f"no --input-shape for input '{missing[0]}'", hint=f"give one for each of: {', '.join(names)}")
            return [TensorSpec(n, shapes[n]) for n in names]
        return [TensorSpec(n, s) for n, s in shapes.items()]
    if loaded.example_inputs:
        return list(loaded.example_inputs)
    guessed = cal.sample_shape(data_hint) if data_hint else None
    if guessed and len(names) <= 1:
        return [TensorSpec(names[0] if names else "input", (1, *guessed))]
    raise InputError("the input shape of this torch model is unknown",
                     hint="pass --input-shape [NAME=]1x3x224x224 (one per input)")


def load_data(io: ModelIO, calib_source: str | None, val_source: str | None, preprocessing: dict[str, str] | None,
              max_calib: int, max_val: int, notes: list[str]) -> Data:
    inputs, outputs = list(io.inputs), list(io.outputs)
    pre = parse_preprocessing(preprocessing) if preprocessing else None
    calib = cal.load_data(calib_source, inputs, pre, outputs=outputs) if calib_source else None
    val = cal.load_data(val_source, inputs, pre, outputs=outputs) if val_source else None
    if len(outputs) > 1 and any(ds is not None and ds.labels is not None for ds in (calib, val)):
        notes.append(f"labels score the first output '{outputs[0].name}' of {len(outputs)}")
    for ds, role in ((calib, "calibration"), (val, "validation")):
        if ds is not None:
            for warning in cal.check_data(ds, inputs, role=role):
                notes.append(warning)
    if calib is not None and val is None:
        calib, val = cal.split_holdout(calib, val_fraction=0.3, seed=0)
        notes.append(f"no --val given: held out {val.count} of {calib.count + val.count} calibration samples for validation "
                     "(never used for calibration)")
    if calib is not None and val is not None and calib.sha256 == val.sha256:
        notes.append("--calib and --val are the same data: accuracy is measured on calibration samples")
    if val is None:
        val = random_inputs(inputs)
        notes.append(f"no data given: validated on {val.count} generated inputs ({GENERATED_INPUTS}), not real data; "
                     "pass --val DATA to measure accuracy on real samples")
    if calib is not None and calib.count > max_calib:
        calib = calib.take(np.arange(max_calib))
        notes.append(f"calibration uses the first {max_calib} samples")
    if val.count > max_val:
        val = val.take(np.arange(max_val))
    return Data(calib, val)


def check_batch_axes(inputs: list[TensorSpec]) -> None:
    """Samples, given or generated, are stacked on each input's first axis and fed one at a time, so that
    axis must be a batch of 1. A state laid out [2, 1, 128] (Silero VAD's) would reach the model as
    [1, 1, 128]: refuse it here in one line, not as a runtime's shape error later."""
    for spec in inputs:
        if spec.shape and spec.shape[0] not in (1, -1):
            dims = "x".join(str(d) for d in spec.shape)
            raise InputError(f"input '{spec.name}' is {dims}: its first axis is {spec.shape[0]}, but edgeport feeds samples "
                             "one at a time along the first axis, which must be a batch of 1",
                             hint="re-export the model with that input's batch axis first (a [2, 1, 128] state as "
                                  f"[1, 2, 128]), or pass --input-shape {spec.name}=1x... when the first axis is the batch")


def random_inputs(inputs: list[TensorSpec]) -> cal.Dataset:
    rng = np.random.default_rng(0)
    arrays = {}
    for s in inputs:
        shape = (32, *s.shape[1:])
        arrays[s.name] = rng.standard_normal(shape).astype(np.float32) if "float" in s.dtype else np.zeros(shape, s.dtype)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in arrays.values())).hexdigest()
    return cal.Dataset(inputs=arrays, labels=None, source=GENERATED_SOURCE, sha256=digest, preprocessing=None)
