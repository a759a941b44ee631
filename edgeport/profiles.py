"""Device profiles: what a target device is, what its runtime accepts, and the budgets a model must meet.

Profiles are data (DESIGN principle 2): one TOML file per device in device_profiles/, parsed with the
stdlib `tomllib` and validated here, so an impossible request (fp16 on an Edge TPU) fails before any
work starts. Every problem in a profile file becomes one `ProfileError` line naming the field path and
the fix — never a traceback — because users write their own profiles for their own boards.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgeport import modes
from edgeport.errors import ProfileError

QUANT_MODES = modes.NAMES
IO_DTYPES = ("float32", "int8", "uint8")
DELEGATES = ("xnnpack", "gpu", "edgetpu")
FLOAT_LAYER_POLICIES = ("allow", "forbid", "tail")
CONNECTION_KINDS = ("adb", "ssh")
# int8 dot-product instruction classes (hardware.int8_dot); latency.host_machine gives their gains.
INT8_DOT_CLASSES = ("none", "dotprod", "i8mm", "avx-vnni", "avx512-vnni", "amx")
# Edge TPU executes only full-integer graphs; "mixed" stays legal because its search can keep float
# layers at the tail, which the compiler leaves on the CPU (see runtime.float_layers = "tail").
EDGETPU_QUANT = modes.runs_on("edgetpu")

_ENV_DIR = "EDGEPORT_PROFILES_DIR"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEX_RE = re.compile(r"^(0x)?[0-9a-fA-F]{1,64}$")
_MAX_SHOWN = 60  # longest user text echoed in an error, so a messy file still gives a readable line
_MAX_BYTES = 1 << 20  # profiles are a few KB; refuse to slurp a device file or a model by mistake


@dataclass(frozen=True)
class Hardware:
    soc: str
    cpu: str
    cores: int
    memory_mb: int
    accelerator: str | None = None
    int8_dot: str | None = None  # int8 dot-product instructions: see latency.host_machine.INT8_DOT_GAIN


@dataclass(frozen=True)
class Runtime:
    default_quant: str
    allowed_quant: tuple[str, ...]
    io_dtype: str
    threads: int
    delegate: str | None
    static_shapes: bool
    float_layers: str
    taskset: str | None
    quant_note: str | None = None  # why modes are restricted; quoted by check_quant_allowed


@dataclass(frozen=True)
class Budgets:
    latency_p50_ms: float | None = None
    model_size_mb: float | None = None
    accuracy_drop_pp: float | None = None
    min_top1_agreement: float | None = None
    min_snr_db: float | None = None
    min_edgetpu_op_share: float | None = None
    # The task metric's floor (edgeport/tasks): share of CTC strings identical to float, detection recall
    # and precision vs the float detections at IoU 0.5, the worst embedding cosine, segmentation mIoU vs float.
    min_ctc_identical: float = 0.98
    min_detect_recall: float = 0.95
    min_embed_cosine: float = 0.99
    min_segment_miou: float = 0.95
    # On-device validation (runners/device_eval.py): every output of the device run must match the host's
    # TFLite run of the same samples, by mean cosine or, for a classifier output, by top-1 agreement.
    min_device_cosine: float = 0.999
    min_device_top1_agreement: float = 0.995

    def task_minimum(self, task: str) -> float | None:
        """The floor of `task`'s primary metric; None for classify and raw, judged by today's checks."""
        key = TASK_BUDGETS.get(task)
        return getattr(self, key) if key else None


TASK_BUDGETS = {"ctc": "min_ctc_identical", "detect": "min_detect_recall", "embed": "min_embed_cosine",
                "segment": "min_segment_miou"}
DEVICE_BUDGETS = ("min_device_cosine", "min_device_top1_agreement")  # defaulted like the task floors


@dataclass(frozen=True)
class Connection:
    kind: str | None = None
    target: str | None = None
    benchmark_binary: str | None = None
    remote_python: str = "python3"
    timeout_s: float = 300.0
    # The device is an emulator (qemu-user): its outputs are real ARM kernel results, its times are not
    # device times, so they are recorded but never judged against the latency budget.
    emulated: bool = False


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    path: Path
    hardware: Hardware
    runtime: Runtime
    budgets: Budgets
    connection: Connection
    simulator: dict[str, float] = field(default_factory=dict)
    host_fit: bool = False  # [simulator] is a fallback: the table comes from a fit on the machine in use
    fit: dict[str, Any] | None = None  # which fit the [simulator] table came from (set by host_fit.resolve)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy for report.json (provenance: the resolved profile, not just its name)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["runtime"]["allowed_quant"] = list(self.runtime.allowed_quant)
        return data

    def allows(self, quant_mode: str) -> bool:
        return quant_mode in self.runtime.allowed_quant


# Every key a profile may contain, by table; "" is the top level. Drives unknown-key detection.
_SCHEMA: dict[str, tuple[str, ...]] = {
    "": ("name", "description", "host_fit", "hardware", "runtime", "budgets", "connection", "simulator"),
    "hardware": ("soc", "cpu", "cores", "memory_mb", "accelerator", "int8_dot"),
    "runtime": ("default_quant", "allowed_quant", "io_dtype", "threads", "delegate", "static_shapes",
                "float_layers", "taskset", "quant_note"),
    "budgets": ("latency_p50_ms", "model_size_mb", "accuracy_drop_pp", "min_top1_agreement", "min_snr_db",
                "min_edgetpu_op_share", "min_ctc_identical", "min_detect_recall", "min_embed_cosine", "min_segment_miou",
                "min_device_cosine", "min_device_top1_agreement"),
    "connection": ("kind", "target", "benchmark_binary", "remote_python", "timeout_s", "emulated"),
}
_ALL_FIELDS = tuple(f"{t}.{k}" if t else k for t, keys in _SCHEMA.items() for k in keys)


SHIPPED_PROFILES_DIR = Path(__file__).resolve().parent.parent / "device_profiles"


def profiles_dir() -> Path:
    """Folder of shipped profiles; EDGEPORT_PROFILES_DIR overrides it (tests, site-specific fleets)."""
    override = os.environ.get(_ENV_DIR)
    if override:
        return Path(override).expanduser()
    return SHIPPED_PROFILES_DIR


def list_profiles() -> list[DeviceProfile]:
    """Every profile in profiles_dir(), sorted by name; a broken file fails loudly, naming itself."""
    return [_load_file(p) for p in _profile_files(profiles_dir())]


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (`raspberry-pi-4`) or any profile file by path."""
    if isinstance(name_or_path, Path) or _looks_like_path(name_or_path):
        return _load_file(_expand(Path(name_or_path)))
    name = name_or_path.strip()
    directory = profiles_dir()
    if _NAME_RE.match(name):
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return _load_file(candidate)
    names = [p.stem for p in _profile_files(directory, missing_ok=True)]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    available = ", ".join(names) if names else f"none (no .toml files in {_p(directory)})"
    raise ProfileError(
        f"unknown profile '{_show(name)}'",
        hint=f"{hint}available: {available}; or pass the path to a .toml profile",
    )


def check_quant_allowed(profile: DeviceProfile, mode: str) -> None:
    """Refuse a quantization mode the device's runtime cannot run, before any conversion work."""
    if mode not in QUANT_MODES:
        close = difflib.get_close_matches(mode, QUANT_MODES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ProfileError(f"unknown --quant '{_show(mode)}'", hint=f"{hint}choose one of {', '.join(QUANT_MODES)}")
    if profile.allows(mode):
        return
    reason = f" ({profile.runtime.quant_note})" if profile.runtime.quant_note else ""
    allowed = " or ".join(profile.runtime.allowed_quant)
    raise ProfileError(
        f"profile '{profile.name}' does not allow --quant {mode}{reason}",
        hint=f"use --quant {allowed}, or choose another profile",
    )


# ---------------------------------------------------------------------------------------- files


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or os.sep in text or text.startswith((".", "~"))


def _profile_files(directory: Path, *, missing_ok: bool = False) -> list[Path]:
    if not directory.is_dir():
        if missing_ok:
            return []
        raise ProfileError(
            f"profiles directory {_p(directory)} does not exist",
            hint=f"create it or point {_ENV_DIR} at a folder of .toml profiles",
        )
    return sorted(p for p in directory.glob("*.toml") if p.is_file())


def _expand(path: Path) -> Path:
    try:
        return path.expanduser()
    except RuntimeError:  # "~someone" with no such user: keep it literal, the existence check reports it
        return path


def _load_file(path: Path) -> DeviceProfile:
    raw = _read_bytes(path)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(f"profile file {_p(path)} is not UTF-8 text", hint="save it as UTF-8 TOML") from exc
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        # tomllib reports "(at line L, column C)" in its message; ValueError/RecursionError cover huge
        # integers and absurd nesting, which must also end as a clear error, not a traceback.
        detail = str(exc) or type(exc).__name__
        raise ProfileError(f"{_show(path.name)} is not valid TOML: {detail}", hint=f"fix the syntax in {_p(path)}") from exc
    return _build(data, path)


def _read_bytes(path: Path) -> bytes:
    # Path.exists() itself raises on names the OS rejects (too long, NUL byte), hence the broad guard.
    try:
        if path.is_dir():
            raise ProfileError(f"profile path {_p(path)} is a directory", hint="pass a .toml file or a profile name")
        if not path.exists():
            raise ProfileError(f"profile file {_p(path)} does not exist", hint=_missing_hint(path))
        if not path.is_file():
            raise ProfileError(f"profile path {_p(path)} is not a regular file", hint="pass a .toml file")
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise ProfileError(f"profile file {_p(path)} is {size} bytes, too big for a profile", hint="pass a .toml profile")
        return path.read_bytes()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ProfileError(f"cannot read profile file {_p(path)}: {_show(reason)}", hint="check the path") from exc


def _missing_hint(path: Path) -> str:
    if _NAME_RE.match(path.stem) and (profiles_dir() / f"{path.stem}.toml").is_file():
        return f"to use the shipped profile, pass its name: --profile {path.stem}"
    return "check the path"


# ----------------------------------------------------------------------------------- validation


def _show(value: object, limit: int = _MAX_SHOWN) -> str:
    """User text made safe for a one-line message: escaped control characters, bounded length."""
    text = value if isinstance(value, str) else str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _p(path: Path) -> str:
    return _show(path, limit=300)  # paths get more room: the tail of a long temp path is the useful part


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"'{_show(value)}'"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return _show(value)
    return f"a {type(value).__name__} value '{_show(value)}'"


def _suggest(section: str, key: str) -> str | None:
    """Closest known field for a misspelt or misplaced key, as a full dotted path."""
    by_leaf = {f.rsplit(".", 1)[-1]: f for f in _ALL_FIELDS}
    if key in by_leaf:  # right name, wrong table: `threads` under [hardware] means runtime.threads
        return by_leaf[key]
    local = difflib.get_close_matches(key, _SCHEMA.get(section, ()), n=1)
    if local:
        return f"{section}.{local[0]}" if section else local[0]
    close = difflib.get_close_matches(f"{section}.{key}" if section else key, _ALL_FIELDS, n=1)
    if close:
        return close[0]
    leaf = difflib.get_close_matches(key, list(by_leaf), n=1, cutoff=0.8)
    return by_leaf[leaf[0]] if leaf else None


class _Table:
    """One TOML table plus where it came from, so every error can name the field path and the file."""

    def __init__(self, data: Mapping[str, Any], section: str, path: Path) -> None:
        self.data, self.section, self.path = data, section, path

    def fail(self, message: str) -> ProfileError:
        return ProfileError(message, hint=f"fix it in {_p(self.path)}")

    def where(self, key: str) -> str:
        return f"{self.section}.{_show(key)}" if self.section else _show(key)

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in allowed:
                suggestion = _suggest(self.section, key)
                hint = f"did you mean '{suggestion}'?" if suggestion else f"allowed here: {', '.join(allowed)}"
                raise ProfileError(f"unknown key '{self.where(key)}' in {_show(self.path.name)}", hint=hint)

    def get(self, key: str, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise self.fail(f"missing required key '{self.where(key)}' in {_show(self.path.name)}")
            return None
        return self.data[key]

    def text(self, key: str, *, required: bool = False, choices: tuple[str, ...] = ()) -> str | None:
        value = self.get(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(f"{self.where(key)} must be a string, got {_describe(value)}")
        if choices and value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            guess = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.fail(f"{self.where(key)} must be one of {', '.join(choices)}, got {_describe(value)}{guess}")
        if not choices and not value.strip():
            raise self.fail(f"{self.where(key)} must not be empty")
        return value

    def integer(self, key: str, *, low: int, high: int, required: bool = False) -> int | None:
        value = self.get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{self.where(key)} must be an integer, got {_describe(value)}")
        if not low <= value <= high:
            raise self.fail(f"{self.where(key)} must be between {low} and {high}, got {_describe(value)}")
        return value

    def number(self, key: str, *, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> float | None:
        value = self.get(key, False)
        return None if value is None else self.check_number(key, value, low, high, low_open)

    def check_number(self, key: str, value: object, low: float, high: float, low_open: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{self.where(key)} must be a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer too big for a float is out of range like any other
            number = math.inf
        too_low = number <= low if low_open else number < low
        if math.isfinite(number) and not too_low and number <= high:
            return number
        bounds = [f"{'>' if low_open else '>='} {low:g}"] if low > -math.inf else []
        bounds += [f"<= {high:g}"] if high < math.inf else []
        wanted = " and ".join(bounds)
        raise self.fail(f"{self.where(key)} must be a finite number{' ' + wanted if wanted else ''}, got {_describe(value)}")

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(f"{self.where(key)} must be true or false, got {_describe(value)}")
        return value


def _section(top: _Table, key: str, *, required: bool) -> _Table:
    value = top.get(key, required)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise top.fail(f"{key} must be a table ([{key}]), got {_describe(value)}")
    table = _Table(value, key, top.path)
    if key in _SCHEMA:
        table.check_keys(_SCHEMA[key])
    return table


def _build(data: dict[str, Any], path: Path) -> DeviceProfile:
    top = _Table(data, "", path)
    top.check_keys(_SCHEMA[""])
    # Resolve every table's keys before reading values, so a typo reports "did you mean" rather than a
    # confusing "missing required key" for the field the user did try to set.
    names = ("hardware", "runtime", "budgets", "connection", "simulator")
    tables = {k: _section(top, k, required=k in ("hardware", "runtime")) for k in names}
    name = top.text("name")
    if name is not None and not _NAME_RE.match(name):
        raise top.fail(f"name must use letters, digits, '.', '_' or '-', got {_describe(name)}")
    description = top.text("description", required=True) or ""
    hardware = _hardware(tables["hardware"])
    runtime = _runtime(tables["runtime"], hardware.cores)
    sim = tables["simulator"]
    return DeviceProfile(
        name=name or path.stem,
        description=description,
        path=path.resolve(),
        hardware=hardware,
        runtime=runtime,
        budgets=_budgets(tables["budgets"], runtime),
        connection=_connection(tables["connection"]),
        simulator={k: sim.check_number(k, v, -math.inf, math.inf, True) for k, v in sim.data.items()},
        host_fit=top.flag("host_fit", default=False),
    )


def _hardware(t: _Table) -> Hardware:
    return Hardware(
        soc=t.text("soc", required=True) or "",
        cpu=t.text("cpu", required=True) or "",
        cores=t.integer("cores", low=1, high=4096, required=True) or 1,
        memory_mb=t.integer("memory_mb", low=1, high=1 << 40, required=True) or 1,
        accelerator=t.text("accelerator"),
        int8_dot=t.text("int8_dot", choices=INT8_DOT_CLASSES),
    )


def _runtime(t: _Table, cores: int) -> Runtime:
    default_quant = t.text("default_quant", required=True, choices=QUANT_MODES) or ""
    allowed = _quant_list(t)
    if default_quant not in allowed:
        raise t.fail(f"runtime.default_quant '{default_quant}' is not in runtime.allowed_quant ({', '.join(allowed)})")
    delegate = t.text("delegate", choices=DELEGATES)
    io_dtype = t.text("io_dtype", choices=IO_DTYPES) or "float32"
    static_shapes = t.flag("static_shapes", default=delegate == "edgetpu")
    float_layers = t.text("float_layers", choices=FLOAT_LAYER_POLICIES) or ("tail" if delegate == "edgetpu" else "allow")
    if delegate == "edgetpu":
        _check_edgetpu(t, allowed, io_dtype, static_shapes, float_layers)
    return Runtime(
        default_quant=default_quant,
        allowed_quant=allowed,
        io_dtype=io_dtype,
        threads=t.integer("threads", low=1, high=1024, required=True) or 1,
        delegate=delegate,
        static_shapes=static_shapes,
        float_layers=float_layers,
        taskset=_taskset(t, cores),
        quant_note=t.text("quant_note"),
    )


def _quant_list(t: _Table) -> tuple[str, ...]:
    value = t.get("allowed_quant", False)
    if value is None:
        return QUANT_MODES
    if not isinstance(value, list) or not value:
        raise t.fail(f"runtime.allowed_quant must be a non-empty list of modes, got {_describe(value)}")
    for mode in value:
        if not isinstance(mode, str) or mode not in QUANT_MODES:
            raise t.fail(f"runtime.allowed_quant has {_describe(mode)}; modes are {', '.join(QUANT_MODES)}")
    if len(set(value)) != len(value):
        raise t.fail("runtime.allowed_quant lists a mode twice")
    return tuple(value)


def _check_edgetpu(t: _Table, allowed: tuple[str, ...], io_dtype: str, static: bool, float_layers: str) -> None:
    # The Edge TPU compiler accepts only fully 8-bit quantized graphs with static shapes; a profile
    # claiming otherwise would promise models the device cannot run.
    extra = [m for m in allowed if m not in EDGETPU_QUANT]
    if extra:
        raise t.fail(f"runtime.allowed_quant includes {', '.join(extra)}, but the edgetpu delegate runs only int8 / mixed")
    if io_dtype == "float32":
        raise t.fail("runtime.io_dtype must be int8 or uint8 with the edgetpu delegate, got 'float32'")
    if not static:
        raise t.fail("runtime.static_shapes must be true with the edgetpu delegate")
    if float_layers == "allow":
        raise t.fail("runtime.float_layers must be 'tail' or 'forbid' with the edgetpu delegate, got 'allow'")


def _taskset(t: _Table, cores: int) -> str | None:
    mask = t.text("taskset")
    if mask is None:
        return None
    if not _HEX_RE.match(mask) or int(mask, 16) == 0:
        raise t.fail(f"runtime.taskset must be a non-zero hex CPU mask such as 'c0', got {_describe(mask)}")
    if int(mask, 16) >> cores:
        raise t.fail(f"runtime.taskset '{mask}' names CPUs beyond hardware.cores = {cores}")
    return mask.lower().removeprefix("0x")


def _budgets(t: _Table, runtime: Runtime) -> Budgets:
    share = t.number("min_edgetpu_op_share", low=0.0, high=1.0, low_open=False)
    if share is not None and runtime.delegate != "edgetpu":
        raise t.fail("budgets.min_edgetpu_op_share applies only to profiles with runtime.delegate = \"edgetpu\"")
    return Budgets(
        latency_p50_ms=t.number("latency_p50_ms"),
        model_size_mb=t.number("model_size_mb"),
        accuracy_drop_pp=t.number("accuracy_drop_pp", high=100.0),
        min_top1_agreement=t.number("min_top1_agreement", high=1.0, low_open=False),
        min_snr_db=t.number("min_snr_db"),
        min_edgetpu_op_share=share,
        **{key: value for key in (*TASK_BUDGETS.values(), *DEVICE_BUDGETS)
           if (value := t.number(key, high=1.0, low_open=False)) is not None},
    )


def _connection(t: _Table) -> Connection:
    kind = t.text("kind", choices=CONNECTION_KINDS)
    target = t.text("target")
    if target is not None:
        scheme = target.split("://", 1)[0] if "://" in target else ""
        if scheme not in CONNECTION_KINDS:
            raise t.fail(f"connection.target must start with adb:// or ssh://, got {_describe(target)}")
        if kind is not None and kind != scheme:
            raise t.fail(f"connection.target {_describe(target)} does not match connection.kind '{kind}'")
        kind = scheme
        if not _valid_target(target):
            raise t.fail(f"connection.target must look like ssh://[user@]host[:port] or adb://[SERIAL], got {_describe(target)}")
    elif kind == "ssh":
        raise t.fail("connection.kind 'ssh' needs connection.target, e.g. 'ssh://pi@raspberrypi.local'")
    elif kind == "adb":
        target = "adb://"  # the only device `adb devices` lists, as adb itself does without -s
    return Connection(
        kind=kind,
        target=target,
        benchmark_binary=t.text("benchmark_binary"),
        remote_python=t.text("remote_python") or "python3",
        timeout_s=t.number("timeout_s") or 300.0,
        emulated=t.flag("emulated", False),
    )


def _valid_target(target: str) -> bool:
    if any(c.isspace() or not c.isprintable() for c in target):
        return False
    if target.startswith("adb://"):
        return "/" not in target[len("adb://"):]
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - property access validates the port and raises ValueError if bad
    except ValueError:
        return False
    return bool(parts.hostname) and parts.path in ("", "/") and not parts.query and not parts.fragment
