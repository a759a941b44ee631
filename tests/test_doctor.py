"""`edgeport doctor`: what is installed vs needed vs verified; exit 1 only when something needed is missing."""

from __future__ import annotations

import json
import shutil

from edgeport import doctor
from edgeport.cli import main


def _without_import_check(monkeypatch):
    real = doctor.diagnose
    monkeypatch.setattr(doctor, "diagnose", lambda import_check=True: real(import_check=False))


def test_this_environment_is_complete_and_verified(monkeypatch, capsys):
    _without_import_check(monkeypatch)
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {p["name"]: p for p in data["packages"]}
    for needed in ("torch", "tensorflow", "onnx2tf", "ai-edge-litert", "numpy", "onnxruntime", "rich"):
        assert names[needed]["ok"] and names[needed]["installed"], names.get(needed)
    assert names["onnx2tf"]["required"] == "==1.28.8" and names["onnx2tf"]["verified"] == "1.28.8"
    assert data["verified_set"]["matches"] is True and data["verified_set"]["pins"] > 20
    assert {t["name"] for t in data["tools"]} == {"adb", "ssh", "scp", "edgetpu_compiler"}
    assert all(t["required"] is False for t in data["tools"])
    assert "host" in data["profiles"]["names"] and data["problems"] == []


def test_missing_package_is_exit_1_but_missing_device_tools_are_not(monkeypatch, capsys):
    _without_import_check(monkeypatch)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)  # no adb, ssh or edgetpu_compiler
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "adb                not found" in out and "edgetpu_compiler   not found" in out
    needs = doctor.requirements()
    monkeypatch.setattr(doctor, "requirements", lambda: {**needs, "edgeport-missing-dep": ">=1.0"})
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "edgeport-missing-dep: not installed" in out and "MISSING" in out


def test_version_drift_from_the_verified_set_is_reported(monkeypatch, tmp_path, capsys):
    _without_import_check(monkeypatch)
    pins = tmp_path / "constraints.txt"
    pins.write_text("# verified\nnumpy==1.0.0\nnot-installed-pkg==2.0\n")
    monkeypatch.setattr(doctor, "constraints_path", lambda: pins)
    data = doctor.diagnose(import_check=False)
    vs = data["verified_set"]
    assert vs["matches"] is False and [d["name"] for d in vs["differences"]] == ["numpy"]
    assert vs["not_installed"] == ["not-installed-pkg"]
    assert any("verified   no: 1 of 2 pins differ: numpy" in ln for ln in doctor.summary(data))


def test_broken_profiles_directory_is_exit_1(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEPORT_PROFILES_DIR", str(tmp_path / "nowhere"))
    data = doctor.diagnose(import_check=False)
    assert data["exit_code"] == 1 and any(p.startswith("profiles:") for p in data["problems"])


def test_import_check_catches_an_installed_but_broken_module():
    errors = doctor._import_check(["json", "edgeport_no_such_module_xyz"])
    assert errors["json"] is None and "ModuleNotFoundError" in errors["edgeport_no_such_module_xyz"]


def test_tool_versions_are_read_when_present():
    if shutil.which("ssh") is None:
        return
    entry = doctor._tool("ssh")
    assert entry["path"] and entry["version"] and "ssh" in entry["version"].lower()


def test_optional_extras_are_reported_with_what_they_unlock(monkeypatch):
    real = doctor._installed
    monkeypatch.setattr(doctor, "_installed", lambda dist: None if dist == "litert-torch" else real(dist))
    data = doctor.diagnose(import_check=False)
    rows = {o["name"]: o for o in data["optional"]}
    assert rows["litert-torch"]["usable"] is False and "--exporter litert-torch" in rows["litert-torch"]["for"]
    assert data["exit_code"] == 0 or all("litert" not in p for p in data["problems"])  # an extra is never required
    assert any("litert-torch" in line and "not installed" in line for line in doctor.summary(data))
