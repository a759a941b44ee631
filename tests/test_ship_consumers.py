"""Shipped models read by consumers that are not edgeport.

- mediapipe 0.10.21's MetadataDisplayer (its own C++ metadata parser and zip reader) reads the
  metadata back. 0.10.21 needs numpy<2/protobuf<5, so it lives in its own venv, which
  scripts/setup_metadata_reader.sh builds (scripts/test.sh and .ci/run run it; tests never download).
- MediaPipe Tasks' ImageClassifier (mediapipe 1.2.2, in the project venv) classifies the validation
  images of a real edgeport-converted RGB model, taking normalization and labels from the metadata
  alone; its top-1 accuracy must equal the one edgeport reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ship_fixtures import write_result

from edgeport.cli import main

REPO = Path(__file__).resolve().parent.parent
READER = Path(os.environ.get("EDGEPORT_METADATA_READER_VENV", REPO / ".venv-metadata-reader")) / "bin" / "python"

_DISPLAY = """
import json, sys
from mediapipe.tasks.python.metadata import metadata
d = metadata.MetadataDisplayer.with_model_file(sys.argv[1])
files = d.get_packed_associated_file_list()
print(json.dumps({"metadata": json.loads(d.get_metadata_json()), "files": files,
                  "contents": {f: d.get_associated_file_buffer(f).decode() for f in files}}))
"""

_CLASSIFY = """
import json, sys
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision
opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=sys.argv[1]), max_results=1)
out = []
with vision.ImageClassifier.create_from_options(opts) as classifier:
    for path in sys.argv[2:]:
        top = classifier.classify(mp.Image.create_from_file(path)).classifications[0].categories[0]
        out.append([top.index, top.category_name])
print("RESULT " + json.dumps(out))
"""


def _reader() -> Path:
    if not READER.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{READER} is missing: .ci/run must build it with scripts/setup_metadata_reader.sh")
        pytest.skip(f"no metadata reader venv at {READER.parent.parent}: run scripts/setup_metadata_reader.sh "
                    "(scripts/test.sh does)")
    return READER


def display(model: Path) -> dict:
    proc = subprocess.run([str(_reader()), "-c", _DISPLAY, str(model)], capture_output=True, text=True, timeout=300,
                          cwd=model.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_metadata_displayer_reads_shipped_metadata(tmp_path: Path) -> None:
    result = write_result(tmp_path / "out", class_names=["cat", "dog", "bird"])
    assert main(["ship", str(result), "--to", str(tmp_path / "app")]) == 0
    shown = display(tmp_path / "app" / "tiny_int8.tflite")
    sub = shown["metadata"]["subgraph_metadata"][0]
    (inp,) = sub["input_tensor_metadata"]
    (out,) = sub["output_tensor_metadata"]
    assert inp["name"] == "x" and out["name"] == "logits"
    assert inp["content"]["content_properties_type"] == "ImageProperties"
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    norm = inp["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions"
    assert norm["options"]["mean"] == pytest.approx([127.5] * 3) and norm["options"]["std"] == pytest.approx([63.75] * 3)
    assert out["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS",
                                        "description": "class labels, one per line, in output index order"}]
    assert shown["files"] == ["labels.txt"] and shown["contents"]["labels.txt"] == "cat\ndog\nbird\n"
    assert shown["metadata"]["name"] == "tiny" and shown["metadata"]["min_parser_version"] == "1.0.0"


# ---- a real RGB model: train, convert with edgeport, ship, classify with MediaPipe Tasks ----------

CLASSES = ("blue", "green", "red")


def _images(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32x32 RGB noise with a rectangle tinted towards the class colour; weak tints make it imperfect."""
    x = rng.integers(0, 200, (n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 3, n)
    for i in range(n):
        h, w = rng.integers(8, 24, 2)
        top, left = rng.integers(0, 32 - h), rng.integers(0, 32 - w)
        channel = 2 - y[i]  # CLASSES are sorted names: blue -> channel 2, green -> 1, red -> 0
        x[i, top:top + h, left:left + w, channel] += rng.uniform(10, 90)
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def shipped_rgb(tmp_path_factory) -> dict:
    import torch
    from PIL import Image

    from fixture_models import TinyCNN, seeded

    root = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(0)
    for split, n in (("train", 150), ("val", 60)):
        x, y = _images(rng, n)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            (root / split / CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / split / CLASSES[label] / f"{i:03d}.png")
        if split == "train":
            xt = torch.from_numpy((x.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5).float()
            yt = torch.from_numpy(y)
    torch.manual_seed(0)
    model = seeded(TinyCNN(channels=8, classes=3)).train()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    torch.save(model.eval().state_dict(), root / "rgb.pt")
    code = main(["convert", str(root / "rgb.pt"), "--model-class", "fixture_models:TinyCNN", "--model-kwargs",
                 '{"channels": 8, "classes": 3}', "--input-shape", "1x3x32x32", "--profile", "raspberry-pi-4",
                 "--quant", "int8", "--calib", str(root / "train"), "--val", str(root / "val"),
                 "--preprocess", "mean=0.5,0.5,0.5", "--preprocess", "std=0.5,0.5,0.5", "--output", str(root / "out"),
                 "--runs", "3"])
    report = json.loads((root / "out" / "report.json").read_text())
    # Ship also when a budget failed (the tiny model's accuracy is not the point): --force, recorded.
    assert main(["ship", str(root / "out"), "--to", str(root / "app"), *(["--force"] if code == 1 else [])]) == 0
    model = next((root / "app").glob("*.tflite"))
    return {"root": root, "report": report, "model": model}


@pytest.mark.slow
def test_mediapipe_image_classifier_matches_edgeport(shipped_rgb) -> None:
    root, report = shipped_rgb["root"], shipped_rgb["report"]
    files = sorted((root / "val").rglob("*.png"))
    truth = [CLASSES.index(f.parent.name) for f in files]
    proc = subprocess.run([sys.executable, "-c", _CLASSIFY, str(shipped_rgb["model"]), *map(str, files)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert all(name == CLASSES[index] for index, name in got)  # labels came from the metadata
    mp_acc = sum(index == t for (index, _), t in zip(got, truth, strict=True)) / len(files)
    edgeport_acc = report["accuracy"]["tflite"]
    print(f"MediaPipe ImageClassifier top-1 {mp_acc:.4f} vs edgeport {edgeport_acc:.4f} on {len(files)} images")
    assert 0.4 < edgeport_acc < 1.0  # trained, and not trivially perfect, so a mismatch would show
    assert mp_acc == pytest.approx(edgeport_acc, abs=1e-9)


@pytest.mark.slow
def test_metadata_displayer_reads_a_converted_model(shipped_rgb) -> None:
    shown = display(shipped_rgb["model"])
    sub = shown["metadata"]["subgraph_metadata"][0]
    norm = sub["input_tensor_metadata"][0]["process_units"][0]["options"]
    assert norm["mean"] == pytest.approx([127.5] * 3) and norm["std"] == pytest.approx([127.5] * 3)
    assert shown["contents"]["labels.txt"] == "blue\ngreen\nred\n"
    assert [t["name"] for t in sub["output_tensor_metadata"]] == [o["name"] for o in shipped_rgb["report"]["model"]["outputs"]]


@pytest.mark.slow
def test_mediapipe_refuses_per_channel_normalization_as_ship_warns(shipped_rgb, tmp_path: Path, capsys) -> None:
    """Keeps ship's note honest: the day MediaPipe accepts per-channel mean/std, this fails and the note goes."""
    out = shipped_rgb["root"] / "out"
    capsys.readouterr()
    assert main(["ship", str(out), "--to", str(tmp_path), "--mean", "123.7,116.3,103.5", "--std", "58.4,57.1,57.4"]) == 0
    assert "MediaPipe Tasks refuses" in capsys.readouterr().out
    model = next(tmp_path.glob("*.tflite"))
    image = next((shipped_rgb["root"] / "val").rglob("*.png"))
    proc = subprocess.run([sys.executable, "-c", _CLASSIFY, str(model), str(image)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode != 0 and "Per-channel image normalization is not available" in proc.stderr


@pytest.mark.slow
def test_shipped_converted_model_is_bit_identical_on_validation_images(shipped_rgb) -> None:
    from PIL import Image
    from ship_fixtures import run_tflite

    source = (shipped_rgb["root"] / "out" / shipped_rgb["model"].name).read_bytes()
    shipped = shipped_rgb["model"].read_bytes()
    assert shipped != source
    for path in sorted((shipped_rgb["root"] / "val").rglob("*.png"))[:20]:
        x = ((np.asarray(Image.open(path), np.float32)[None] / 255.0 - 0.5) / 0.5).astype(np.float32)
        assert run_tflite(source, x)[0].tobytes() == run_tflite(shipped, x)[0].tobytes()
