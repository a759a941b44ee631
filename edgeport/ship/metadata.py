"""Standard TFLite model metadata (schema M001): the TFLITE_METADATA buffer plus zip-appended files.

This is the metadata that the Android Task Library, MediaPipe Tasks and the metadata extractor read:
name/version/description, per-input normalization and image properties, per-output names, and label
files packed as a zip archive appended to the flatbuffer.

The schema code is not ours: it is the flatbuffer bindings that mediapipe (1.2.2, pinned) generates
from the official .fbs files, `metadata_schema_py_generated.py` (M001) and `schema_py_generated.py`
(the TFLite model schema; byte-identical to the one in TensorFlow 2.21, whose converter wrote our
models, so re-packing a model loses no field). They are loaded from their files on purpose: importing
them through the `mediapipe` package first imports TensorFlow and OpenCV (~5 s), and mediapipe's
high-level metadata writer modules fail to import in 1.2.2 (a pywrap module is missing from the wheel).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeport.errors import EdgeportError, InputError

METADATA_NAME = "TFLITE_METADATA"
MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
# Every field written here exists since metadata schema 1.0.0, so any parser can read it in full.
MIN_PARSER_VERSION = "1.0.0"
# Fixed zip entry time (the zip format's epoch): the same input must give byte-identical files.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class InputMeta:
    """One model input. mean/std are in the units the app feeds (0..255 pixels for images)."""

    name: str
    description: str
    color_space: str | None = None  # "RGB" or "GRAYSCALE" for image inputs, None for plain features
    size: tuple[int, int] | None = None  # (width, height) of an image input
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class OutputMeta:
    name: str
    description: str
    labels_file: str | None = None  # name of the TENSOR_AXIS_LABELS file inside the model's zip


@dataclass(frozen=True)
class ModelMeta:
    name: str
    version: str
    description: str
    author: str | None
    inputs: tuple[InputMeta, ...]
    outputs: tuple[OutputMeta, ...]


@functools.cache
def schemas() -> tuple[ModuleType, ModuleType]:
    """(M001 metadata bindings, TFLite model bindings) from the installed mediapipe wheel."""
    spec = importlib.util.find_spec("mediapipe")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise EdgeportError("the TFLite metadata schema bindings are missing (they come with mediapipe 1.2.2)",
                            hint="install them with: pip install 'edgeport[ship]' (or rerun ./scripts/setup_env.sh)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "metadata"
    return _load(folder / "metadata_schema_py_generated.py"), _load(folder / "schema_py_generated.py")


def _load(path: Path) -> ModuleType:
    if not path.is_file():
        raise EdgeportError(f"mediapipe's generated schema file {path.name} is missing from {path.parent}",
                            hint="reinstall the pinned version: pip install 'edgeport[ship]'")
    spec = importlib.util.spec_from_file_location(f"_edgeport_schema_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def metadata_bytes(meta: ModelMeta) -> bytes:
    """The M001 flatbuffer for `meta` (deterministic: same meta, same bytes)."""
    import flatbuffers

    md, _ = schemas()
    sub = md.SubGraphMetadataT()
    sub.inputTensorMetadata = [_input(md, i) for i in meta.inputs]
    sub.outputTensorMetadata = [_output(md, o) for o in meta.outputs]
    model = md.ModelMetadataT()
    model.name, model.version, model.description = meta.name, meta.version, meta.description
    model.author = meta.author
    model.subgraphMetadata = [sub]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _input(md: ModuleType, spec: InputMeta) -> Any:
    t = md.TensorMetadataT()
    t.name, t.description = spec.name, spec.description
    t.content = md.ContentT()
    if spec.color_space is not None:
        props = md.ImagePropertiesT()
        props.colorSpace = getattr(md.ColorSpaceType, spec.color_space)
        if spec.size is not None:
            props.defaultSize = md.ImageSizeT()
            props.defaultSize.width, props.defaultSize.height = spec.size
        t.content.contentPropertiesType, t.content.contentProperties = md.ContentProperties.ImageProperties, props
    else:
        t.content.contentPropertiesType = md.ContentProperties.FeatureProperties
        t.content.contentProperties = md.FeaturePropertiesT()
    if spec.mean is not None and spec.std is not None:
        norm = md.NormalizationOptionsT()
        norm.mean, norm.std = list(spec.mean), list(spec.std)
        unit = md.ProcessUnitT()
        unit.optionsType, unit.options = md.ProcessUnitOptions.NormalizationOptions, norm
        t.processUnits = [unit]
        # Value range after normalization, for readers that show or check it (Stats is per channel).
        lo = [(0.0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
        hi = [(255.0 - m) / s for m, s in zip(spec.mean, spec.std, strict=True)]
        t.stats = md.StatsT()
        t.stats.min, t.stats.max = lo, hi
    return t


def _output(md: ModuleType, spec: OutputMeta) -> Any:
    t = md.TensorMetadataT()
    t.name, t.description = spec.name, spec.description
    t.content = md.ContentT()
    t.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    t.content.contentProperties = md.FeaturePropertiesT()
    if spec.labels_file:
        f = md.AssociatedFileT()
        f.name, f.description = spec.labels_file, "class labels, one per line, in output index order"
        f.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
        t.associatedFiles = [f]
    return t


def attach(model: bytes, meta: ModelMeta, files: dict[str, bytes]) -> bytes:
    """`model` with `meta` in its TFLITE_METADATA buffer and `files` zip-appended (replacing any old ones).

    The model's own tables and buffers are re-packed unchanged; only a metadata entry and its buffer
    are added, so the shipped model computes exactly what the validated one did.
    """
    import flatbuffers

    _, tfl = schemas()
    if not tfl.Model.ModelBufferHasIdentifier(model, 0):
        raise InputError("the file is not a TFLite flatbuffer (no TFL3 identifier)", hint="pass the .tflite edgeport wrote")
    obj = tfl.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if any(getattr(b, "offset", 0) for b in obj.buffers or []):
        # Buffers stored outside the flatbuffer (models over 2 GB) would be lost by a re-pack.
        raise InputError("this model keeps its weights outside the flatbuffer (a >2 GB model)",
                         hint="edgeport ship handles models under 2 GB")
    blob = tfl.BufferT()
    blob.data = np.frombuffer(metadata_bytes(meta), np.uint8)
    old = [m for m in obj.metadata or [] if _text(m.name) == METADATA_NAME]
    if old:  # re-shipping a shipped model: reuse its buffer so no orphan buffer is left behind
        obj.buffers[old[0].buffer] = blob
        obj.metadata = [m for m in obj.metadata if m is old[0] or _text(m.name) != METADATA_NAME]
    else:
        obj.buffers = [*(obj.buffers or []), blob]
        entry = tfl.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(obj.buffers) - 1
        obj.metadata = [*(obj.metadata or []), entry]
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(obj.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    if files:
        # Appended the way the TFLite metadata populator does it ("a" mode on a non-zip): offsets count
        # from the start of the file, entries are stored uncompressed so readers can map them directly.
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(files):
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[name])
    return out.getvalue()


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def without_metadata(model: bytes) -> bytes:
    """The model re-packed with no TFLITE_METADATA entry and no appended files: what `attach` started
    from, in canonical form. Comparing it for the source and the shipped model proves the graph,
    tensors and weights are unchanged."""
    import flatbuffers

    _, tfl = schemas()
    obj = tfl.ModelT.InitFromPackedBuf(bytearray(model), 0)
    drop = {m.buffer for m in obj.metadata or [] if _text(m.name) == METADATA_NAME}
    obj.metadata = [m for m in obj.metadata or [] if _text(m.name) != METADATA_NAME] or None
    if drop and max(drop) == len(obj.buffers) - 1 and len(drop) == 1:
        obj.buffers = obj.buffers[:-1]  # the buffer attach() appended
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    return bytes(builder.Output())


def read(model: bytes) -> dict[str, Any] | None:
    """The model's M001 metadata as plain data (None when it has none), plus the appended files."""
    md, tfl = schemas()
    root = tfl.Model.GetRootAs(model, 0)
    buf_index = next((root.Metadata(i).Buffer() for i in range(root.MetadataLength())
                      if _text(root.Metadata(i).Name()) == METADATA_NAME), None)
    if buf_index is None:
        return None
    raw = root.Buffers(buf_index).DataAsNumpy()
    raw = bytes(raw) if isinstance(raw, np.ndarray) else b""
    if not md.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise InputError(f"the {METADATA_NAME} buffer is not M001 metadata", hint="re-ship the model with edgeport ship")
    meta = md.ModelMetadataT.InitFromPackedBuf(bytearray(raw), 0)
    sub = (meta.subgraphMetadata or [None])[0]
    return {
        "name": _text(meta.name), "version": _text(meta.version), "description": _text(meta.description),
        "min_parser_version": _text(meta.minParserVersion), "metadata_bytes": len(raw),
        "inputs": [_tensor_dict(md, t) for t in (sub.inputTensorMetadata or [])] if sub else [],
        "outputs": [_tensor_dict(md, t) for t in (sub.outputTensorMetadata or [])] if sub else [],
        "files": _zip_files(model),
    }


def _tensor_dict(md: ModuleType, t: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(t.name), "mean": None, "std": None, "color_space": None, "size": None,
                           "labels_file": None}
    props = t.content.contentProperties if t.content else None
    if t.content and t.content.contentPropertiesType == md.ContentProperties.ImageProperties:
        names = {v: k for k, v in vars(md.ColorSpaceType).items() if not k.startswith("_")}
        out["color_space"] = names.get(props.colorSpace, "UNKNOWN")
        if props.defaultSize is not None:
            out["size"] = [props.defaultSize.width, props.defaultSize.height]
    for unit in t.processUnits or []:
        if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions:
            out["mean"], out["std"] = [float(v) for v in unit.options.mean], [float(v) for v in unit.options.std]
    for f in t.associatedFiles or []:
        if f.type == md.AssociatedFileType.TENSOR_AXIS_LABELS:
            out["labels_file"] = _text(f.name)
    return out


def _zip_files(model: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def io_shapes(model: bytes) -> tuple[list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...]]]]:
    """(name, shape) of the main subgraph's inputs and outputs, read from the flatbuffer itself."""
    _, tfl = schemas()
    graph = tfl.Model.GetRootAs(model, 0).Subgraphs(0)

    def tensor(i: int) -> tuple[str, tuple[int, ...]]:
        t = graph.Tensors(i)
        shape = t.ShapeAsNumpy()
        return _text(t.Name()) or f"tensor{i}", tuple(int(d) for d in shape) if isinstance(shape, np.ndarray) else ()

    return ([tensor(int(graph.Inputs(k))) for k in range(graph.InputsLength())],
            [tensor(int(graph.Outputs(k))) for k in range(graph.OutputsLength())])
