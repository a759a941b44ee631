"""Real sweeps: the local pool and a real local Ray cluster give the same verdicts and artifacts; a
crashed convert or a lost Ray worker costs only its cell; re-runs skip finished cells; Ctrl-C keeps them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from interruptible import default_sigint

from edgeport.cli import main
from edgeport.sweep.driver import run_sweep

from fixture_models import TinyCNN, image_data, seeded
from ray_cluster import local_cluster

pytestmark = pytest.mark.slow

PLAN = """
profiles = ["host"]
modes = {modes}
[sweep]
runs = 2
timeout_s = 600
[[models]]
checkpoint = "tiny.ts"
calib = "calib.npz"
[[models]]
name = "narrow"
checkpoint = "narrow.ts"
calib = "calib.npz"
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    example = torch.randn(1, 3, 16, 16)
    torch.jit.save(torch.jit.trace(seeded(TinyCNN()), example), d / "tiny.ts")
    torch.jit.save(torch.jit.trace(seeded(TinyCNN(channels=4, classes=3), seed=1), example), d / "narrow.ts")
    np.savez(d / "calib.npz", x=image_data(40, (3, 16, 16)))
    (d / "plan.toml").write_text(PLAN.format(modes='["fp32", "fp16", "int8"]'))
    return d / "plan.toml"


@pytest.fixture(scope="module")
def local_run(plan) -> dict:
    out = plan.parent / "local"
    result = run_sweep(plan, output=out, workers=2)
    return {"out": out, "data": result.data, "exit_code": result.exit_code}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_id(data: dict) -> dict[str, dict]:
    return {c["id"]: c for c in data["cells"]}


def _convert_child(cell_id: str) -> psutil.Process | None:
    """The throwaway convert process of one cell (its scratch folder carries the cell id)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "edgeport.sweep.cell" in cmd and any("/edgeport-cell-" in a and f"-{cell_id}-" in a for a in cmd):
            return p
    return None


def _kill_when_running(cell_id: str, kill, seen: list) -> threading.Thread:
    def watch() -> None:
        deadline = time.time() + 600
        while time.time() < deadline:
            child = _convert_child(cell_id)
            if child is not None:
                time.sleep(1.0)  # mid-convert, not at start-up
                seen.append(kill(child))
                return
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_local_sweep_writes_every_cell_and_one_table(local_run, plan):
    out, data = local_run["out"], local_run["data"]
    assert len(data["cells"]) == 6 and {c["status"] for c in data["cells"]} <= {"passed", "failed"}, data["counts"]
    for cell in data["cells"]:
        d = out / "cells" / cell["id"]
        report = json.loads((d / "report.json").read_text())
        art = d / cell["summary"]["artifact"]
        assert art.name == f"{cell['model']}_{cell['mode']}.tflite"
        assert _sha(art) == report["artifact"]["sha256"] == cell["summary"]["sha256"]
        assert report["quantization"]["mode"] == cell["mode"] and report["verdict"]["passed"] == (cell["status"] == "passed")
        assert (out / cell["report_link"]).resolve() == (d / "report.html").resolve()
    saved = json.loads((out / "results.json").read_text())
    assert [c["id"] for c in saved["cells"]] == [c["id"] for c in data["cells"]]
    html = (out / "results.html").read_text()
    assert html.count("<tr>") == 7 and "href='cells/narrow__host__int8/report.html'" in html
    assert (out / "results.md").read_text().count("\n| ") == 7
    assert local_run["exit_code"] == (0 if all(c["status"] == "passed" for c in data["cells"]) else 1)


def test_rerun_skips_unchanged_cells(local_run, plan, capsys):
    out = local_run["out"]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.tflite")}
    code = main(["sweep", str(plan), "-o", str(out), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == local_run["exit_code"]
    assert all(c.get("resumed") for c in data["cells"]) and "6 resumed" in data["counts"]
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.tflite")}, "nothing was rebuilt"


def test_ray_matches_local_and_a_lost_worker_costs_only_its_cell(local_run, plan):
    victim = "tiny__host__int8"
    out = plan.parent / "ray"
    seen: list = []

    def kill_ray_worker(child: psutil.Process) -> str:
        worker = child.parent()  # the Ray worker process executing this cell's task
        name = " ".join(worker.cmdline())
        worker.kill()
        return name

    with local_cluster(num_cpus=2) as address:
        watcher = _kill_when_running(victim, kill_ray_worker, seen)
        first = run_sweep(plan, output=out, ray=address)
        watcher.join(timeout=5)
        assert seen and seen[0].startswith("ray::"), seen
        cells = _by_id(first.data)
        assert cells[victim]["status"] == "crashed" and "Ray task failed" in cells[victim]["reason"], cells[victim]
        assert not (out / "cells" / victim / "report.json").exists()
        assert first.exit_code == 3
        assert _convert_child(victim) is None, "the lost worker's convert process did not outlive it"
        local = _by_id(local_run["data"])
        for cid, cell in cells.items():
            if cid != victim:
                assert cell["status"] == local[cid]["status"], cid
                assert cell["summary"]["sha256"] == local[cid]["summary"]["sha256"], cid
                assert _sha(out / "cells" / cid / cell["summary"]["artifact"]) == local[cid]["summary"]["sha256"]

        again = run_sweep(plan, output=out, ray=address)  # resume: only the lost cell runs
    leftovers = list(Path(tempfile.gettempdir()).glob(f"edgeport-cell-*-{victim}-*"))
    assert not leftovers, "the next cell removed the lost worker's scratch folder"
    cells = _by_id(again.data)
    assert [cid for cid, c in cells.items() if not c.get("resumed")] == [victim]
    assert {cid: (c["status"], c["summary"]["sha256"]) for cid, c in cells.items()} == \
        {cid: (c["status"], c["summary"]["sha256"]) for cid, c in local.items()}, "Ray and the local pool agree on all 6 cells"
    assert cells[victim]["host"] and again.exit_code == local_run["exit_code"]


def test_segfault_costs_its_cell_and_ctrl_c_keeps_finished_cells(plan):
    """One slot, three cells in order: the first finishes, the second's converter gets SIGSEGV, Ctrl-C
    arrives during the third."""
    d = plan.parent
    # One model only; cells go to a shared_dir (as Ray workers on a shared file system would write them).
    text = PLAN.format(modes='["fp32", "fp16", "int8"]').split("[[models]]\nname")[0]
    (d / "plan3.toml").write_text(text.replace("[sweep]\n", '[sweep]\nshared_dir = "shared3"\n'))
    out = d / "interrupted"
    shared = d / "shared3" / "cells"
    env = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeport", "sweep", str(d / "plan3.toml"), "-o", str(out), "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=default_sigint)
    seen: list = []
    segv = _kill_when_running("tiny__host__fp16", lambda c: c.send_signal(signal.SIGSEGV), seen)
    segv.join(timeout=600)
    deadline = time.time() + 600
    while _convert_child("tiny__host__int8") is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "sweep interrupted" in err and "Traceback" not in err
    cells = _by_id(json.loads((out / "results.json").read_text()))
    assert cells["tiny__host__fp32"]["status"] in ("passed", "failed")
    assert (shared / "tiny__host__fp32" / "cell.json").is_file() and (shared / "tiny__host__fp32" / "tiny_fp32.tflite").is_file()
    assert (out / cells["tiny__host__fp32"]["report_link"]).resolve() == (shared / "tiny__host__fp32" / "report.html").resolve()
    assert cells["tiny__host__fp16"]["status"] == "crashed" and "SIGSEGV" in cells["tiny__host__fp16"]["reason"]
    assert cells["tiny__host__int8"]["status"] == "not run"
    assert not (shared / "tiny__host__int8").exists()
    assert not [p for p in shared.iterdir() if p.name.startswith(".")], "no staging folders left"
    assert not (out / "cells").exists(), "with a shared_dir the cells live there only"
    assert "SIGSEGV" in (out / "results.html").read_text()


CONST_PLAN = """
profiles = ["host"]
modes = ["fp32"]
input_shapes = ["1x64"]       # a default for both models
[sweep]
runs = 2
timeout_s = 600
[[models]]
name = "vad8k"
checkpoint = "vad.ts"
const = { sr = 8000, crop = [4, 60] }
exporter = "onnx2tf"
[[models]]
name = "vad16k"
checkpoint = "vad_sd.pt"
model_class = "fixture_models:TinyVad"
const = ["sr=16000"]
exporter = "litert-torch"
"""


def test_plan_with_per_model_const_and_exporter_runs_end_to_end(tmp_path, monkeypatch):
    """A VAD-shaped model whose forward takes `sr: int` can only be swept with `const`; each model's
    `exporter` decides the path its cell converts through."""
    from fixture_models import TinyVad

    model = seeded(TinyVad())
    torch.jit.save(torch.jit.script(model), tmp_path / "vad.ts")
    torch.save(model.state_dict(), tmp_path / "vad_sd.pt")
    (tmp_path / "plan.toml").write_text(CONST_PLAN)
    tests_dir = str(Path(__file__).parent)  # the cells import fixture_models for --model-class
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p))
    result = run_sweep(tmp_path / "plan.toml", output=tmp_path / "out", workers=2)
    cells = _by_id(result.data)
    assert result.exit_code == 0, {k: (c["status"], c.get("reason")) for k, c in cells.items()}
    want = {"vad8k__host__fp32": ("onnx2tf", 8000), "vad16k__host__fp32": ("litert-torch", 16000)}
    for cell_id, (backend, sr) in want.items():
        report = json.loads((tmp_path / "out" / "cells" / cell_id / "report.json").read_text())
        assert report["export"]["backend"] == backend, cell_id
        bound = {b["name"]: b["value"] for b in report["model"]["constants"]}
        assert bound["sr"] == sr and report["float_conversion"]["matches"], report["model"]["constants"]
    crop = json.loads((tmp_path / "out" / "cells" / "vad8k__host__fp32" / "report.json").read_text())["model"]["constants"]
    assert {"name": "crop", "type": "List[int]", "value": [4, 60], "source": "--const"} in crop
