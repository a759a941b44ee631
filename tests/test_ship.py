"""`edgeport ship` and `ship --check` on a tiny real .tflite (no conversion, so these stay fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ship_fixtures import run_tflite, tiny_tflite, write_result

from edgeport.cli import main
from edgeport.data import calibration as cal
from edgeport.ship import metadata as tm
from edgeport.ship.bundle import MANIFEST

NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def result(tmp_path: Path) -> Path:
    return write_result(tmp_path / "out", class_names=NAMES)


def _ship(*args: str) -> int:
    return main(["ship", *map(str, args)])


def test_ship_writes_metadata_labels_and_manifest(result: Path, tmp_path: Path, capsys) -> None:
    app = tmp_path / "app" / "src" / "main" / "assets"
    assert _ship(result, "--to", app) == 0
    shipped = (app / "tiny_int8.tflite").read_bytes()
    meta = tm.read(shipped)
    assert meta is not None and meta["name"] == "tiny" and meta["min_parser_version"] == "1.0.0"
    (inp,) = meta["inputs"]
    # recorded preprocessing (x/255 - 0.5) / 0.25 in pixel units: (x - 127.5) / 63.75
    assert inp["name"] == "x" and inp["color_space"] == "RGB" and inp["size"] == [4, 4]
    assert inp["mean"] == pytest.approx([127.5] * 3) and inp["std"] == pytest.approx([63.75] * 3)
    assert "per-channel" not in capsys.readouterr().out
    assert [o["name"] for o in meta["outputs"]] == ["logits"] and meta["outputs"][0]["labels_file"] == "labels.txt"
    assert meta["files"] == {"labels.txt": b"cat\ndog\nbird\n"}
    assert (app / "tiny_int8.labels.txt").read_text() == "cat\ndog\nbird\n"
    entry = json.loads((app / MANIFEST).read_text())["models"]["tiny_int8"]
    src = (result / "tiny_int8.tflite").read_bytes()
    assert entry["model"]["metadata_bytes_added"] == len(shipped) - len(src) > 0
    assert entry["profile"] == "raspberry-pi-4" and entry["quant_mode"] == "int8"
    assert entry["accuracy"]["tflite"] == 0.875 and entry["latency"]["host"]["p50_ms"] == 0.2
    assert entry["verdict"] == {"passed": True, "failed_checks": [], "forced": False}
    assert entry["source"]["checkpoint"]["sha256"] == "ab" * 32 and entry["source"]["calibration"]["sha256"] == "cd" * 32
    assert entry["labels"]["count"] == 3 and entry["versions"]["ship"]["mediapipe"]
    assert not [p for p in app.iterdir() if p.name.startswith(".")]


def test_shipped_model_gives_bit_identical_outputs(result: Path, tmp_path: Path) -> None:
    assert _ship(result, "--to", tmp_path / "app") == 0
    src = (result / "tiny_int8.tflite").read_bytes()
    shipped = (tmp_path / "app" / "tiny_int8.tflite").read_bytes()
    assert shipped != src and tm.without_metadata(shipped) == tm.without_metadata(src) == src
    x = np.random.default_rng(3).standard_normal((1, 4, 4, 3)).astype(np.float32)
    a, b = run_tflite(src, x), run_tflite(shipped, x)
    assert a[0].tobytes() == b[0].tobytes()


def test_ship_is_idempotent(result: Path, tmp_path: Path, capsys) -> None:
    app = tmp_path / "app"
    assert _ship(result, "--to", app) == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in app.iterdir()}
    capsys.readouterr()
    assert _ship(result, "--to", app, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["written"] == [] and sorted(out["unchanged"]) == sorted(before)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in app.iterdir()} == before
    other = tmp_path / "app2"  # a fresh folder gets byte-identical files too, whichever way RESULT is named
    assert _ship(result / "report.json", "--to", other) == 0
    assert {p.name: p.read_bytes() for p in other.iterdir()} == {k: v[0] for k, v in before.items()}
    (result / "report.json").rename(result / "tiny_int8.report.json")  # as convert names it beside the model
    assert _ship(result / "tiny_int8.tflite", "--to", tmp_path / "app3") == 0
    assert (tmp_path / "app3" / "tiny_int8.tflite").read_bytes() == before["tiny_int8.tflite"][0]


def test_failed_verdict_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    bad = write_result(tmp_path / "bad", passed=False, class_names=NAMES)
    assert _ship(bad, "--to", tmp_path / "app") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verdict FAILED (accuracy_drop_pp)" in err[0] and "--force" in err[0]
    assert not (tmp_path / "app" / "tiny_int8.tflite").exists()
    assert _ship(bad, "--to", tmp_path / "app", "--force") == 0
    entry = json.loads((tmp_path / "app" / MANIFEST).read_text())["models"]["tiny_int8"]
    assert entry["verdict"] == {"passed": False, "failed_checks": ["accuracy_drop_pp"], "forced": True}


def test_label_count_mismatch_is_exit_2(result: Path, tmp_path: Path, capsys) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert _ship(result, "--to", tmp_path / "app", "--labels", labels) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 label(s) but the model's first output has 3" in err[0]
    assert not (tmp_path / "app").exists() or not any((tmp_path / "app").iterdir())
    mismatched = write_result(tmp_path / "r4", class_names=["a", "b", "c", "d"])
    assert _ship(mismatched, "--to", tmp_path / "app") == 2


def test_labels_file_and_explicit_normalization(result: Path, tmp_path: Path, capsys) -> None:
    labels = tmp_path / "my_labels.txt"
    labels.write_text("red\ngreen\nblue\n\n")
    app = tmp_path / "app"
    assert _ship(result, "--to", app, "--labels", labels, "--mean", "123.7,116.3,103.5", "--std", "58.4,57.1,57.4",
                 "--model-version", "2.1", "--model-name", "colors") == 0
    meta = tm.read((app / "tiny_int8.tflite").read_bytes())
    assert meta["name"] == "colors" and meta["version"] == "2.1"
    assert meta["inputs"][0]["mean"] == pytest.approx([123.7, 116.3, 103.5])
    assert meta["inputs"][0]["std"] == pytest.approx([58.4, 57.1, 57.4])
    assert meta["files"]["labels.txt"] == b"red\ngreen\nblue\n"
    assert "per-channel mean/std: MediaPipe Tasks refuses" in capsys.readouterr().out


def test_grayscale_and_bgr(tmp_path: Path, capsys) -> None:
    gray = write_result(tmp_path / "g", channels=1, class_names=NAMES)
    assert _ship(gray, "--to", tmp_path / "app") == 0
    assert tm.read((tmp_path / "app" / "tiny_int8.tflite").read_bytes())["inputs"][0]["color_space"] == "GRAYSCALE"
    bgr = write_result(tmp_path / "b", color="bgr", class_names=NAMES)
    assert _ship(bgr, "--to", tmp_path / "app2") == 2
    assert "BGR" in capsys.readouterr().err


def test_second_model_does_not_clobber_the_first(tmp_path: Path, capsys) -> None:
    app = tmp_path / "app"
    first = write_result(tmp_path / "a", class_names=NAMES, seed=0)
    second = write_result(tmp_path / "b", class_names=["x", "y"], classes=2, seed=1, stem="other_fp32")
    assert _ship(first, "--to", app) == 0 and _ship(second, "--to", app) == 0
    manifest = json.loads((app / MANIFEST).read_text())
    assert sorted(manifest["models"]) == ["other_fp32", "tiny_int8"]
    assert (app / "tiny_int8.labels.txt").read_text() == "cat\ndog\nbird\n"
    assert (app / "other_fp32.labels.txt").read_text() == "x\ny\n"
    kept = (app / "tiny_int8.tflite").read_bytes()
    # a different model under the same file name is refused, and the first stays as it was
    clash = write_result(tmp_path / "c", class_names=NAMES, seed=7)
    capsys.readouterr()
    assert _ship(clash, "--to", app) == 2
    assert "already holds a different model" in capsys.readouterr().err
    assert (app / "tiny_int8.tflite").read_bytes() == kept
    assert _ship(clash, "--to", app, "--name", "tiny_v2") == 0 and (app / "tiny_v2.tflite").exists()
    assert _ship(clash, "--to", app, "--replace") == 0 and (app / "tiny_int8.tflite").read_bytes() != kept
    assert main(["ship", "--check", str(app)]) == 0


_KILL_DURING_WRITE = """
import os, signal, sys
from pathlib import Path
import edgeport.ship.bundle as ship
real = os.replace
def killed(src, dst):
    if str(dst).endswith(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)  # as if the machine died between write and rename
    real(src, dst)
ship.os.replace = killed
from edgeport.cli import main
main(["ship", sys.argv[1], "--to", sys.argv[2], "--replace"])
"""


def test_killed_ship_leaves_no_half_written_asset(tmp_path: Path) -> None:
    app = tmp_path / "app"
    first = write_result(tmp_path / "a", class_names=NAMES, seed=0)
    assert _ship(first, "--to", app) == 0
    before = {p.name: p.read_bytes() for p in app.iterdir()}
    other = write_result(tmp_path / "b", class_names=NAMES, seed=5)
    proc = subprocess.run([sys.executable, "-c", _KILL_DURING_WRITE, str(other), str(app), ".tflite"],
                          capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert proc.returncode == -9
    # the old model is intact and still matches its manifest; only a hidden temp file may remain
    assert {p.name: p.read_bytes() for p in app.iterdir() if not p.name.startswith(".")} == before
    assert main(["ship", "--check", str(app)]) == 0
    assert _ship(first, "--to", app) == 0  # the next run clears the dead run's temp file
    assert not [p for p in app.iterdir() if p.name.startswith(".")]


def test_check_reports_every_drift(result: Path, tmp_path: Path, capsys) -> None:
    app = tmp_path / "app"
    assert _ship(result, "--to", app) == 0
    second = write_result(tmp_path / "b", class_names=["x", "y"], classes=2, seed=1, stem="other_fp32")
    assert _ship(second, "--to", app) == 0
    capsys.readouterr()
    assert main(["ship", "--check", str(app)]) == 0
    # a build step that strips metadata, an edited label file, and a stray model
    (app / "tiny_int8.tflite").write_bytes((result / "tiny_int8.tflite").read_bytes())
    (app / "other_fp32.labels.txt").write_text("x\ny\nz\n")
    (app / "stale.tflite").write_bytes(tiny_tflite(seed=9))
    capsys.readouterr()
    assert main(["ship", "--check", str(app)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("tiny_int8:") and "sha256 differs" in line for line in lines)
    assert any(line.startswith("tiny_int8:") and "no TFLite metadata" in line for line in lines)
    assert any("other_fp32.labels.txt sha256 differs" in line for line in lines)
    assert any("other_fp32.labels.txt has 3 labels" in line for line in lines)
    assert any(line.startswith("stale.tflite: not in") for line in lines)
    (app / "other_fp32.tflite").unlink()
    assert main(["ship", "--check", str(app)]) == 1
    assert "other_fp32: other_fp32.tflite is missing" in capsys.readouterr().out


def test_bad_inputs_are_one_line_exit_2(result: Path, tmp_path: Path, capsys) -> None:
    cases = [
        ["ship", str(tmp_path / "nope"), "--to", str(tmp_path / "app")],
        ["ship", str(result)],
        ["ship", "--check", str(tmp_path)],
        ["ship", str(result), "--to", str(tmp_path / "app"), "--mean", "127.5"],
        ["ship", str(result), "--to", str(tmp_path / "app"), "--mean", "a", "--std", "1"],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], argv
    (result / "tiny_int8.tflite").write_bytes(tiny_tflite(seed=4))  # no longer what the report validated
    assert main(["ship", str(result), "--to", str(tmp_path / "app")]) == 2
    assert "does not match its report" in capsys.readouterr().err


def test_builtin_digits_carry_class_names() -> None:
    from edgeport.types import TensorSpec

    ds = cal.load_data("builtin:digits-val", [TensorSpec("x", (1, 1, 32, 32))], max_samples=4)
    assert ds.class_names == tuple(str(i) for i in range(10))



def test_unwritable_folder_is_exit_2(result: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import edgeport.ship.bundle as ship_mod

    def denied(src: str, dst: str) -> None:  # what a read-only asset folder does (root ignores chmod)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(ship_mod.os, "replace", denied)
    assert _ship(result, "--to", tmp_path / "app") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and "Permission denied" in err[0]
    assert not list((tmp_path / "app").iterdir())  # the temp file is gone too
