"""The host profile's fit: machine facts, cache key, resolution and the fallback (fast: no timing).

The real fit on the machine that runs the tests is exercised in test_simulator_validation.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgeport.cli import main
from edgeport.errors import InputError, ProfileError
from edgeport.latency import host_fit
from edgeport.latency.host_machine import INT8_DOT_GAIN, HostMachine, detect, fit_key, int8_dot_class
from edgeport.profiles import INT8_DOT_CLASSES, load_profile

AVX2_EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
cpu MHz\t\t: 2250.000
flags\t\t: fpu sse4_1 sse4_2 avx f16c fma avx2 bmi2
"""
VNNI_XEON = AVX2_EPYC.replace("AMD EPYC 7B12", "Intel(R) Xeon(R) Platinum 8375C").replace(
    "avx2 bmi2", "avx2 avx512f avx512bw avx512vl avx512_vnni bmi2")
PI5 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU part\t: 0xd0b
"""


def _machine(cpuinfo: str, cores: int = 2) -> HostMachine:
    return dataclasses.replace(detect(cpuinfo), cores=cores, cache_mb=32.0)


def test_int8_dot_classes_from_cpu_flags() -> None:
    assert _machine(AVX2_EPYC).int8_dot == "none"
    assert _machine(VNNI_XEON).int8_dot == "avx512-vnni"
    assert _machine(PI5).int8_dot == "dotprod"
    assert int8_dot_class(["asimd", "asimddp", "i8mm"]) == "i8mm"
    assert int8_dot_class(["avx2", "avx_vnni"]) == "avx-vnni"
    assert int8_dot_class(["avx512f", "avx512_vnni", "amx_int8"]) == "amx"
    assert set(INT8_DOT_GAIN) == set(INT8_DOT_CLASSES)


def test_machine_facts_from_cpuinfo() -> None:
    m = _machine(AVX2_EPYC)
    assert m.cpu_model == "AMD EPYC 7B12" and m.cpu_ghz == 2.25
    assert m.simd_lanes == 8.0 and _machine(VNNI_XEON).simd_lanes == 16.0 and _machine(PI5).simd_lanes == 4.0
    assert "avx2" in m.isa and "avx512f" not in m.isa and "bmi2" not in m.isa  # only flags that pick kernels


def test_fit_key_changes_with_cpu_isa_threads_runtime_and_fit_set() -> None:
    a, b = _machine(AVX2_EPYC), _machine(VNNI_XEON)
    base = fit_key(a, 2, "ai-edge-litert 2.3.0", "abc")
    assert base == fit_key(a, 2, "ai-edge-litert 2.3.0", "abc")
    others = {fit_key(b, 2, "ai-edge-litert 2.3.0", "abc"), fit_key(a, 1, "ai-edge-litert 2.3.0", "abc"),
              fit_key(a, 2, "ai-edge-litert 2.4.0", "abc"), fit_key(a, 2, "ai-edge-litert 2.3.0", "abd"),
              fit_key(dataclasses.replace(a, isa=(*a.isa, "avx_vnni")), 2, "ai-edge-litert 2.3.0", "abc")}
    assert base not in others and len(others) == 5


def test_fallback_is_carried_to_the_running_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped table was fitted on an AVX-512 VNNI host; on AVX2 without VNNI its MAC rates must drop:
    fp32 by the vector width (16 -> 8 lanes), int8 also by the dot-product gain."""
    shipped = load_profile("host")
    assert shipped.host_fit and shipped.hardware.int8_dot == "avx512-vnni"
    monkeypatch.setattr(host_fit, "detect", lambda: _machine(AVX2_EPYC))
    prof = host_fit.resolve(shipped, mode="fallback")
    fp32 = prof.simulator["cpu_macs_per_cycle_fp32"] / shipped.simulator["cpu_macs_per_cycle_fp32"]
    int8 = prof.simulator["cpu_macs_per_cycle_int8"] / shipped.simulator["cpu_macs_per_cycle_int8"]
    assert fp32 == pytest.approx(0.5) and int8 == pytest.approx(0.5 / INT8_DOT_GAIN["avx512-vnni"])
    assert prof.simulator["cpu_ghz"] == 2.25 and prof.simulator["cpu_channel_tile"] == 8.0
    assert prof.hardware.cpu.startswith("AMD EPYC 7B12") and prof.hardware.int8_dot == "none"
    assert prof.fit["source"] == "fallback" and "EDGEPORT_HOST_FIT=fallback" in prof.fit["reason"]


def test_cached_mode_without_a_fit_uses_the_fallback_and_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path))
    prof = host_fit.resolve(load_profile("host"), mode="cached")
    assert prof.fit["source"] == "fallback" and "no cached fit" in prof.fit["reason"]
    assert not (tmp_path / "host-fits").exists()  # cached mode never fits


def test_a_cached_fit_is_what_host_resolves_to(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path))
    machine = detect()
    threads = min(load_profile("host").runtime.threads, machine.cores)
    params = {**load_profile("host").simulator, "cpu_macs_per_cycle_int8": 123.0}
    fit = host_fit.HostFit(key=host_fit.key_for(machine, threads), machine=machine.to_dict(), threads=threads,
                           runtime="ai-edge-litert test", fit_set=host_fit.fit_set_version(), fitted_at="2026-11-29T00:00:00+00:00",
                           seconds=12.0, params=params, samples=(host_fit.Sample("m", "int8", 1, 1.0, 1.1),))
    stored = host_fit._store(fit)
    assert Path(stored.path).is_file() and Path(stored.path).parent == tmp_path / "host-fits"
    for mode in ("auto", "cached"):  # auto finds the cache and does not fit again
        prof = host_fit.resolve(load_profile("host"), mode=mode)
        assert prof.fit["source"] == "host-fit" and prof.fit["key"] == fit.key and prof.fit["cached"] is True
        assert prof.simulator["cpu_macs_per_cycle_int8"] == 123.0
    assert host_fit.resolve(load_profile("host"), mode="fallback").fit["source"] == "fallback"
    # A profile without host_fit is never touched.
    pi = load_profile("raspberry-pi-4")
    assert host_fit.resolve(pi, mode="auto") is pi


def test_unreadable_cache_entry_means_no_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path))
    machine = detect()
    threads = min(load_profile("host").runtime.threads, machine.cores)
    (tmp_path / "host-fits").mkdir()
    (tmp_path / "host-fits" / f"{host_fit.key_for(machine, threads)}.json").write_text("{not json")
    assert host_fit.cached_fit(machine, threads) is None


def test_bad_mode_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPORT_HOST_FIT", "sometimes")
    with pytest.raises(InputError, match="EDGEPORT_HOST_FIT"):
        host_fit.resolve(load_profile("host"))


def test_profiles_declare_int8_dot_product_support() -> None:
    expected = {"raspberry-pi-4": "none", "raspberry-pi-5": "dotprod", "pixel-7": "dotprod", "coral-dev-board": "none"}
    for name, cls in expected.items():
        assert load_profile(name).hardware.int8_dot == cls, name


def test_int8_dot_value_is_validated(tmp_path: Path) -> None:
    text = (Path(load_profile("raspberry-pi-4").path)).read_text().replace('int8_dot = "none"', 'int8_dot = "vnni512"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ProfileError, match="hardware.int8_dot must be one of"):
        load_profile(bad)


def test_profiles_show_host_names_the_fit_without_fitting(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEPORT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("EDGEPORT_HOST_FIT", "auto")
    assert main(["profiles", "show", "host", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fit"]["source"] == "fallback" and "no cached fit" in data["fit"]["reason"]
    assert data["hardware"]["cores"] == detect().cores
    assert not (tmp_path / "host-fits").exists()


def test_fit_host_rejects_bad_threads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "fit-host", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
