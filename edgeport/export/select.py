"""`--exporter auto|onnx2tf|litert-torch`: which backend converts, chosen by evidence.

`auto` tries onnx2tf first (the reference path, whose ONNX graph lets edgeport name the layer that
went wrong). A PyTorch model gets a second try through LiteRT Torch when onnx2tf fails to convert,
when its float32 TFLite disagrees with the reference or does not fit it (another output count or
shape), or when its artifact (the file for --quant) fails at run time or misses the accuracy budget.
Every attempt, with its figures, goes into the report; which one is kept, and why, follows the rule in
export/arbitrate.py. ONNX files have only the ONNX path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edgeport.errors import ConversionError, InputError
from edgeport.export import arbitrate
from edgeport.export.arbitrate import ArtifactCheck, Attempt
from edgeport.export.backend import BACKENDS, Conversion, ExportRequest

PREFERENCE = ("onnx2tf", "litert-torch")  # what auto tries, in this order
EXPORTERS = ("auto", *PREFERENCE)
__all__ = ["ArtifactCheck", "Attempt", "ExportChoice", "FloatCheck", "candidates", "check_name", "export"]


@dataclass(frozen=True)
class FloatCheck:
    """The float32 TFLite against the reference on a few samples; `run` is kept for its host timing.
    `mismatch`: its outputs do not fit the reference (count or shape), which rejects the exporter."""

    matches: bool
    result: dict[str, Any]
    run: Any
    mismatch: str | None = None


@dataclass(frozen=True)
class ExportChoice:
    conversion: Conversion
    float_check: FloatCheck
    requested: str
    reason: str
    attempts: tuple[Attempt, ...]

    @property
    def kept(self) -> Attempt:
        return next(a for a in self.attempts if a.kept)

    @property
    def validated(self) -> ArtifactCheck | None:
        """The kept artifact, already validated (None: validate it after the mixed search / diagnosis)."""
        return self.kept.artifact

    def answer_check(self) -> tuple[bool, str] | None:
        """(passed, detail) for the verdict's `fallback_exporter_is_an_answer`, when a fallback exporter's
        artifact is kept: it was judged, and one that is no answer must fail the verdict."""
        kept = self.kept
        if kept is self.attempts[0] or kept.artifact is None:
            return None
        if kept.objection is None:
            return True, ""
        others = "; ".join(arbitrate.describe(a) for a in self.attempts if a is not kept)
        return False, f"{kept.backend}'s {kept.objection}, and no exporter did better ({others})"[:600]

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
           note: Callable[[str], None] = lambda _: None,
           validate: Callable[[Conversion], ArtifactCheck] | None = None) -> ExportChoice:
    """Convert with one candidate exporter after another until one settles the choice, then keep the
    best attempt (export/arbitrate.py). `check` runs the float32 model against the reference;
    `validate` (None when the artifact is built later: --quant mixed, --diagnose) validates the artifact."""
    names = candidates(requested, kind, mode)
    attempts: list[Attempt] = []
    found: dict[int, tuple[Conversion, FloatCheck]] = {}
    errors: list[tuple[str, ConversionError]] = []
    for i, name in enumerate(names):
        attempt, got = _attempt(i, name, req, check, validate, attempts, errors)
        attempts.append(attempt)
        if got is not None:
            found[i] = got
        if arbitrate.settles(attempt):
            break
        if len(names) > 1:
            then = f"; trying {names[i + 1]}" if i + 1 < len(names) else ""
            note(f"exporter {' '.join(arbitrate.describe(attempt).split())[:400]}{then}")
    if not found:
        raise _no_exporter(errors)
    kept = arbitrate.best(attempts, sorted(found))
    assert kept is not None
    attempts = arbitrate.explain(attempts, kept)
    conv, checked = found[kept]
    return ExportChoice(conv, checked, requested, _reason(requested, attempts, kept), tuple(attempts))


def _attempt(order: int, name: str, req: ExportRequest, check: Callable[[Conversion], FloatCheck],
             validate: Callable[[Conversion], ArtifactCheck] | None, earlier: list[Attempt],
             errors: list[tuple[str, ConversionError]]) -> tuple[Attempt, tuple[Conversion, FloatCheck] | None]:
    """One exporter: convert, check the float32 model, validate the artifact. Returns the evidence and,
    when the attempt is usable, what it produced."""
    work = req.work if order == 0 else req.work / name  # a second backend never reads the first one's files
    try:
        conv = _backend(name).convert(replace(req, work=work))
    except ConversionError as exc:
        errors.append((name, exc))
        return Attempt(name, False, error=exc.one_line()), None
    checked = check(conv)
    cosine = checked.result.get("cosine_min")
    if checked.mismatch:
        errors.append((name, _mismatch_error(name, "float32", checked.mismatch)))
        return Attempt(name, True, False, cosine, error=checked.mismatch, mismatch=checked.mismatch), None
    art = validate(conv) if validate is not None else None
    if art is not None and art.mismatch:
        errors.append((name, _mismatch_error(name, art.key, art.mismatch)))
        return Attempt(name, True, checked.matches, cosine, error=art.mismatch, mismatch=art.mismatch, artifact=art), None
    objection = None
    if order > 0 and art is not None:  # a fallback is judged before it is kept
        first = next((a for a in earlier if a.cosine_min is not None), None)
        objection = arbitrate.objection(art, first.cosine_min if first else cosine, first.backend if first else name)
    error = checked.result.get("error") or (art.runtime_error if art is not None else None)
    return Attempt(name, True, checked.matches, cosine, error=error, artifact=art, objection=objection), (conv, checked)


def _mismatch_error(name: str, what: str, mismatch: str) -> ConversionError:
    return ConversionError(f"{name}'s {what} TFLite model does not fit the reference: {mismatch}",
                           hint="the converter changed the model's outputs (their count or shape), so it cannot be "
                                "validated; try another --exporter, or rerun with --keep-work and report the model")


def _no_exporter(errors: list[tuple[str, ConversionError]]) -> ConversionError:
    first = errors[0][1]
    if len(errors) == 1:
        return first
    others = "; ".join(f"{name}: {e.one_line()}" for name, e in errors[1:])
    return ConversionError(f"{first.message} (also tried {others})"[:1200], hint=first.hint)


def _reason(requested: str, attempts: list[Attempt], kept: int) -> str:
    if requested != "auto":
        return f"--exporter {requested}"
    win = attempts[kept]
    if len(attempts) == 1:
        return f"{win.backend} converted, {arbitrate.merit(win)}" if arbitrate.settles(win) \
            else f"{win.backend} is the only exporter for this model"
    return "; ".join(f"{a.backend} {a.why}" if i == kept else arbitrate.describe(a) for i, a in enumerate(attempts))
