"""`--exporter auto|onnx2tf|litert-torch`: which backend converts, chosen by evidence.

`auto` tries onnx2tf first (the reference path, whose ONNX graph lets edgeport name the layer that
went wrong). When it fails to export or convert, or its float32 TFLite disagrees with the reference,
a PyTorch model gets a second try through LiteRT Torch; the backend whose float model matches the
reference is kept, and the report says which one and why. ONNX files have only the ONNX path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgeport.errors import ConversionError, InputError
from edgeport.export.backend import BACKENDS, Conversion, ExportRequest

PREFERENCE = ("onnx2tf", "litert-torch")  # what auto tries, in this order
EXPORTERS = ("auto", *PREFERENCE)


@dataclass(frozen=True)
class FloatCheck:
    """The float32 TFLite against the reference on a few samples; `run` is kept for its host timing."""

    matches: bool
    result: dict[str, Any]
    run: Any


@dataclass(frozen=True)
class Attempt:
    backend: str
    converted: bool
    float_matches: bool | None = None
    cosine_min: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "converted": self.converted, "float_matches": self.float_matches,
                "cosine_min": self.cosine_min, "error": self.error}


@dataclass(frozen=True)
class ExportChoice:
    conversion: Conversion
    float_check: FloatCheck
    requested: str
    reason: str
    attempts: tuple[Attempt, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.conversion.backend, "requested": self.requested, "reason": self.reason,
                "attempts": [a.to_dict() for a in self.attempts]}


def check_name(requested: str) -> str:
    if requested not in EXPORTERS:
        raise InputError(f"--exporter '{requested}' is not one of {', '.join(EXPORTERS)}",
                         hint="use auto (onnx2tf, then LiteRT Torch when onnx2tf fails), onnx2tf or litert-torch")
    return requested


def candidates(requested: str, kind: str, mode: str) -> list[str]:
    """Backends to try, in order; an explicit choice that cannot take this model is the user's error."""
    check_name(requested)
    names = list(PREFERENCE) if requested == "auto" else [requested]
    usable = []
    for name in names:
        why = _refusal(name, kind, mode)
        if why is None:
            usable.append(name)
        elif requested != "auto":
            raise InputError(f"--exporter {name} cannot convert this model: {why}",
                             hint="use --exporter auto (or onnx2tf), or see 'edgeport doctor'")
    return usable


def _refusal(name: str, kind: str, mode: str) -> str | None:
    backend = _backend(name)
    if backend is None:
        return "its package is not installed (pip install 'edgeport[litert]')"
    return backend.refuses(kind, mode)


def _backend(name: str):
    if name not in BACKENDS:
        _load_backends()
    return BACKENDS.get(name)


def _load_backends() -> None:
    """Backends register themselves on import; one whose package is missing stays unregistered."""
    import importlib

    for module in ("edgeport.export.onnx2tf_backend", "edgeport.export.litert_torch_backend"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue


def export(req: ExportRequest, requested: str, kind: str, mode: str, check: Callable[[Conversion], FloatCheck],
           note: Callable[[str], None] = lambda _: None) -> ExportChoice:
    """Convert with the first backend whose float32 model matches the reference (see module doc)."""
    names = candidates(requested, kind, mode)
    attempts: list[Attempt] = []
    kept: tuple[Conversion, FloatCheck] | None = None
    first_error: ConversionError | None = None
    for name in names:
        backend = _backend(name)
        work = req.work if not attempts else req.work / name  # a second backend never reads the first one's files
        try:
            conv = backend.convert(replace(req, work=work))
        except ConversionError as exc:
            attempts.append(Attempt(name, False, error=exc.one_line()))
            first_error = first_error or exc
            if len(names) > 1:
                note(f"exporter {name} failed: {' '.join(exc.message.split())[:300]}")
            continue
        checked = check(conv)
        attempts.append(Attempt(name, True, checked.matches, checked.result.get("cosine_min")))
        if kept is None or (checked.matches and not kept[1].matches):
            kept = (conv, checked)
        if checked.matches:
            break
        if len(names) > 1 and name != names[-1]:
            note(f"exporter {name}: the float32 TFLite disagrees with the reference "
                 f"(cosine {checked.result.get('cosine_min')}); trying the next exporter")
    if kept is None:
        assert first_error is not None
        if len(attempts) > 1:
            others = "; ".join(f"{a.backend}: {a.error}" for a in attempts[1:])
            raise ConversionError(f"{first_error.message} (also tried {others})"[:1200], hint=first_error.hint)
        raise first_error
    conv, checked = kept
    return ExportChoice(conv, checked, requested, _reason(requested, conv.backend, attempts), tuple(attempts))


def _reason(requested: str, chosen: str, attempts: list[Attempt]) -> str:
    if requested != "auto":
        return f"--exporter {requested}"
    if len(attempts) == 1:
        return f"{chosen} converted and its float32 model matches the reference" if attempts[0].float_matches \
            else f"{chosen} is the only exporter for this model"
    failed = [a for a in attempts if a.backend != chosen]
    why = "; ".join(f"{a.backend} {'failed: ' + (a.error or '')[:200] if not a.converted else 'float32 model disagrees with the reference'}"
                    for a in failed)
    win = next(a for a in attempts if a.backend == chosen)
    return f"{why}; {chosen} {'matches the reference' if win.float_matches else 'kept, but it disagrees too'}"
