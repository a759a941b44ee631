"""Device profiles: shipped files load and are sourced; every bad input is one clear ProfileError."""

from __future__ import annotations

import json
import math
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeport.errors import InputError, ProfileError
from edgeport.profiles import (
    QUANT_MODES,
    DeviceProfile,
    check_quant_allowed,
    list_profiles,
    load_profile,
    profiles_dir,
)

SHIPPED = ("coral-dev-board", "coral-usb", "host", "pixel-7", "raspberry-pi-4-emulated", "raspberry-pi-4", "raspberry-pi-5")
PI4_TEXT = (profiles_dir() / "raspberry-pi-4.toml").read_text()

MINIMAL = """
description = "my board"
[hardware]
soc = "RK3588"
cpu = "4x A76 + 4x A55"
cores = 8
memory_mb = 4096
[runtime]
default_quant = "int8"
threads = 4
"""


def _write(tmp_path: Path, text: str, name: str = "raspberry-pi-4.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(source: str | Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(source)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ shipped profiles


def test_all_shipped_profiles_load() -> None:
    profiles = list_profiles()
    assert tuple(p.name for p in profiles) == SHIPPED
    for profile in profiles:
        assert load_profile(profile.name) == profile
        assert profile.runtime.default_quant in profile.runtime.allowed_quant
        assert profile.budgets.accuracy_drop_pp == 1.0
        assert profile.budgets.min_top1_agreement == 0.98
        assert profile.budgets.latency_p50_ms and profile.budgets.model_size_mb
        assert profile.simulator, f"{profile.name} has no [simulator] numbers"


def test_shipped_edge_tpu_and_phone_specifics() -> None:
    coral = load_profile("coral-usb")
    assert coral.runtime.allowed_quant == ("int8", "mixed")
    assert (coral.runtime.delegate, coral.runtime.io_dtype, coral.runtime.float_layers) == ("edgetpu", "uint8", "tail")
    assert coral.budgets.min_edgetpu_op_share == 0.9
    pixel = load_profile("pixel-7")
    assert (pixel.connection.kind, pixel.runtime.taskset, pixel.runtime.threads) == ("adb", "c0", 2)
    assert load_profile("coral-dev-board").connection.target == "ssh://mendel@coral.local"
    assert load_profile("host").connection.kind is None


def _table_lines(text: str, tables: tuple[str, ...]) -> list[str]:
    lines, current = [], ""
    for line in text.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
        elif current in tables:
            lines.append(line)
    return lines


@pytest.mark.parametrize("name", SHIPPED)
def test_every_numeric_hardware_and_simulator_line_has_a_source_comment(name: str) -> None:
    text = (profiles_dir() / f"{name}.toml").read_text()
    numeric = re.compile(r"^\s*[A-Za-z0-9_]+\s*=\s*[-+]?[0-9][0-9_.eE+-]*\s*(#.*)?$")
    checked = 0
    for line in _table_lines(text, ("hardware", "simulator")):
        if numeric.match(line):
            checked += 1
            comment = line.partition("#")[2].strip()
            assert len(comment) >= 10, f"{name}.toml: no source comment on: {line.strip()}"
    assert checked >= 4


@pytest.mark.parametrize("profile", list_profiles(), ids=lambda p: p.name)
def test_to_dict_is_json_serialisable(profile: DeviceProfile) -> None:
    data = json.loads(json.dumps(profile.to_dict()))
    assert data["name"] == profile.name and data["path"] == str(profile.path)
    assert data["runtime"]["allowed_quant"] == list(profile.runtime.allowed_quant)
    assert set(data) >= {"hardware", "runtime", "budgets", "connection", "simulator"}


# ------------------------------------------------------------------------------ lookup and paths


def test_unknown_profile_name_lists_names_and_suggests_closest() -> None:
    message = _error("raspbery-pi-4")
    assert "unknown profile 'raspbery-pi-4'" in message
    assert "did you mean 'raspberry-pi-4'?" in message
    assert all(name in message for name in SHIPPED)


def test_custom_profile_path_works_as_str_and_path(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL, "rock-5b.toml")
    for source in (path, str(path)):
        profile = load_profile(source)
        assert profile.name == "rock-5b" and profile.path == path.resolve()
        assert profile.runtime.allowed_quant == QUANT_MODES  # defaults keep a small profile small
        assert (profile.runtime.io_dtype, profile.runtime.delegate, profile.connection.kind) == ("float32", None, None)
        assert profile.budgets.latency_p50_ms is None and profile.simulator == {}


def test_missing_path_directory_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "does not exist" in _error(tmp_path / "nope.toml")
    assert "pass its name: --profile pixel-7" in _error(tmp_path / "pixel-7.toml")
    assert "is a directory" in _error(tmp_path)
    _write(tmp_path, MINIMAL, "lab-board.toml")
    monkeypatch.setenv("EDGEPORT_PROFILES_DIR", str(tmp_path))
    assert profiles_dir() == tmp_path
    assert [p.name for p in list_profiles()] == ["lab-board"]
    assert "available: lab-board" in _error("pixel-7")


# ------------------------------------------------------------------------------ validation messages


def test_unknown_key_suggests_the_right_field(tmp_path: Path) -> None:
    path = _write(tmp_path, PI4_TEXT.replace("threads = 4", "thread = 4"))
    assert _error(path) == "unknown key 'runtime.thread' in raspberry-pi-4.toml — did you mean 'runtime.threads'?"
    misplaced = _write(tmp_path, MINIMAL.replace("cores = 8", "cores = 8\nthreads = 2"), "b.toml")
    assert "unknown key 'hardware.threads'" in _error(misplaced) and "'runtime.threads'" in _error(misplaced)


def test_wrong_type_names_the_field_path(tmp_path: Path) -> None:
    path = _write(tmp_path, PI4_TEXT.replace("threads = 4", 'threads = "four"'))
    message = _error(path)
    assert message.startswith("runtime.threads must be an integer, got 'four'")
    assert str(path) in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("threads = 4", "", "missing required key 'runtime.threads'"),
        ("threads = 4", "threads = 0", "runtime.threads must be between 1 and"),
        ("latency_p50_ms = 100.0", "latency_p50_ms = -5", "budgets.latency_p50_ms must be a finite number > 0"),
        ("latency_p50_ms = 100.0", "latency_p50_ms = nan", "budgets.latency_p50_ms must be a finite number"),
        ("min_top1_agreement = 0.98", "min_top1_agreement = 1.5", "budgets.min_top1_agreement must be a finite number >= 0 and <= 1"),
        ("min_snr_db = 15.0", "min_edgetpu_op_share = 0.9", "min_edgetpu_op_share applies only to profiles with"),
        ('default_quant = "int8"', 'default_quant = "int4"', "runtime.default_quant must be one of fp32"),
        ('"int16x8", "mixed"]', '"int16x8", "mixed", "int8"]', "lists a mode twice"),
        ('allowed_quant = ["fp32", "fp16", "dynamic", "int8",', 'allowed_quant = ["fp32", "fp16", "dynamic",', "'int8' is not in runtime.allowed_quant"),
        ('delegate = "xnnpack"', 'delegate = "xnnpak"', "did you mean 'xnnpack'?"),
        ('delegate = "xnnpack"', 'delegate = "xnnpack"\ntaskset = "1f"', "runtime.taskset '1f' names CPUs beyond hardware.cores = 4"),
        ('delegate = "xnnpack"', 'delegate = "xnnpack"\ntaskset = "big"', "runtime.taskset must be a non-zero hex CPU mask"),
        ('static_shapes = true', 'static_shapes = "yes"', "runtime.static_shapes must be true or false, got 'yes'"),
        ("ssh://pi@raspberrypi.local", "ssh://pi@host:99999", "connection.target must look like ssh://[user@]host[:port]"),
        ('kind = "ssh"', 'kind = "adb"', "does not match connection.kind 'adb'"),
        ("[simulator]", "[simulator]\nbogus = \"fast\"", "simulator.bogus must be a number, got 'fast'"),
        ('description = "', 'description = 1979-05-27 # "', "description must be a string, got a date"),
    ],
)
def test_invalid_values_give_one_clear_line(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in PI4_TEXT
    assert expected in _error(_write(tmp_path, PI4_TEXT.replace(old, new, 1)))


def test_section_of_the_wrong_type(tmp_path: Path) -> None:
    text = 'description = "x"\nhardware = 3\n[runtime]\ndefault_quant = "int8"\nthreads = 1\n'
    assert "hardware must be a table ([hardware]), got 3" in _error(_write(tmp_path, text))


def test_edgetpu_profiles_cannot_promise_float_models(tmp_path: Path) -> None:
    coral = (profiles_dir() / "coral-usb.toml").read_text()
    bad = coral.replace('allowed_quant = ["int8", "mixed"]', 'allowed_quant = ["int8", "mixed", "fp16"]')
    assert "includes fp16, but the edgetpu delegate runs only int8 / mixed" in _error(_write(tmp_path, bad))
    floaty = coral.replace('io_dtype = "uint8"', 'io_dtype = "float32"')
    assert "runtime.io_dtype must be int8 or uint8" in _error(_write(tmp_path, floaty))


def test_malformed_toml_reports_line_and_column(tmp_path: Path) -> None:
    message = _error(_write(tmp_path, PI4_TEXT.replace("threads = 4", "threads = = 4")))
    assert "raspberry-pi-4.toml is not valid TOML" in message
    assert re.search(r"line \d+, column \d+", message)


def test_binary_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.toml"
    path.write_bytes(b"TFL3\xff\xfe\x00\x01")
    assert "is not UTF-8 text" in _error(path)


def test_profile_error_is_an_input_error_with_exit_code_2() -> None:
    with pytest.raises(InputError) as info:
        load_profile("no-such-device")
    assert info.value.exit_code == 2


# ------------------------------------------------------------------------------ quantization checks


def test_check_quant_allowed() -> None:
    coral = load_profile("coral-usb")
    with pytest.raises(ProfileError) as info:
        check_quant_allowed(coral, "fp16")
    assert str(info.value) == (
        "profile 'coral-usb' does not allow --quant fp16 (Edge TPU runs full-integer int8 models only)"
        " — use --quant int8 or mixed, or choose another profile"
    )
    check_quant_allowed(coral, "int8")
    check_quant_allowed(load_profile("raspberry-pi-4"), "fp16")
    assert coral.allows("mixed") and not coral.allows("fp32")
    with pytest.raises(ProfileError, match="did you mean 'int8'"):
        check_quant_allowed(coral, "int9")


# ------------------------------------------------------------------------------ property tests
# Any input must end as a valid profile or a one-line ProfileError: never another exception.


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # JSON strings are TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _to_toml(document: dict[str, Any]) -> str:
    return "\n".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in document.items()) + "\n"


_keys = st.one_of(st.sampled_from(["threads", "cores", "kind", "target", "name", "runtime", "taskset"]), st.text(max_size=12))
_scalars = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(QUANT_MODES + ("edgetpu", "xnnpack", "ssh://h", "adb://x", "ff", "uint8", "tail")),
)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3), max_leaves=8)
_BASES = [tomllib.loads((profiles_dir() / f"{n}.toml").read_text()) for n in SHIPPED]
_PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_text_or_bytes(content: str | bytes) -> DeviceProfile | None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            assert str(exc) and "\n" not in str(exc)
            return None
    json.dumps(profile.to_dict())
    return profile


@_PROPERTY
@given(data=st.data())
def test_mutated_profiles_never_raise_anything_but_profile_error(data: st.DataObject) -> None:
    document = json.loads(json.dumps(data.draw(st.sampled_from(_BASES))))  # deep copy
    for _ in range(data.draw(st.integers(1, 4))):
        section = data.draw(st.sampled_from([None, *document]))
        target = document if section is None or not isinstance(document.get(section), dict) else document[section]
        key = data.draw(st.one_of(st.sampled_from(list(target) or ["x"]), _keys))
        if data.draw(st.booleans()) and key in target:
            del target[key]
        else:
            target[key] = data.draw(_values)
    _load_text_or_bytes(_to_toml(document))


@_PROPERTY
@given(document=st.dictionaries(_keys, _values, max_size=6))
def test_random_documents_never_raise_anything_but_profile_error(document: dict[str, Any]) -> None:
    _load_text_or_bytes(_to_toml(document))


@_PROPERTY
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200), st.binary(max_size=40).map(lambda b: PI4_TEXT.encode() + b)))
def test_random_bytes_never_raise_anything_but_profile_error(content: bytes | str) -> None:
    _load_text_or_bytes(content)


@_PROPERTY
@given(name=st.text(max_size=40))
def test_random_names_never_raise_anything_but_profile_error(name: str) -> None:
    try:
        load_profile(name)
    except ProfileError as exc:
        assert "\n" not in str(exc)
