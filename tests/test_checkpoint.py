"""Checkpoint loading: every kind, and untrusted pickles are refused without running them."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from edgeport.errors import InputError
from edgeport.export.checkpoint import load_checkpoint, parse_kwargs

from fixture_models import TinyCNN, seeded


class _Evil:
    """Unpickling this runs os.system: the classic malicious checkpoint."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Evil(str(marker))}, path)
    with pytest.raises(InputError, match="--trust-pickle") as err:
        load_checkpoint(path)
    assert "arbitrary code" in str(err.value)
    assert not marker.exists()


def test_raw_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(str(marker))))
    with pytest.raises(InputError):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_module_loads_only_with_trust(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(seeded(TinyCNN()), path)
    with pytest.raises(InputError, match="--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True)
    assert loaded.kind == "pickled_module" and loaded.input_names == ("x",)


def test_state_dict_needs_class_and_matching_weights(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(seeded(TinyCNN()).state_dict(), path)
    with pytest.raises(InputError, match="--model-class"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, "fixture_models:TinyCNN")
    assert loaded.kind == "state_dict"
    with pytest.raises(InputError, match="does not match fixture_models:TinyCNN.*shape mismatch"):
        load_checkpoint(path, "fixture_models:TinyCNN", '{"channels": 4}')
    with pytest.raises(InputError, match="has no attribute"):
        load_checkpoint(path, "fixture_models:Nope")
    with pytest.raises(InputError, match="module:Class"):
        load_checkpoint(path, "fixture_models.TinyCNN")


def test_nested_state_dict_is_found(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": seeded(TinyCNN()).state_dict()}, path)
    assert load_checkpoint(path, "fixture_models:TinyCNN").kind == "state_dict"


def test_torchscript_and_exported_program(tmp_path):
    model = seeded(TinyCNN())
    ex = torch.randn(1, 3, 16, 16)
    torch.jit.save(torch.jit.trace(model, ex), tmp_path / "m.ts")
    ts = load_checkpoint(tmp_path / "m.ts")
    assert ts.kind == "torchscript" and ts.input_names == ("x",)
    torch.export.save(torch.export.export(model, (ex,)), tmp_path / "m.pt2")
    ep = load_checkpoint(tmp_path / "m.pt2")
    assert ep.kind == "exported_program"
    assert ep.example_inputs[0].shape == (1, 3, 16, 16)


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"PK\x03\x04garbage", "could not be read|damaged"),
                                           (b"not a checkpoint at all", "could not be read")])
def test_corrupt_files(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_checkpoint(path)


def test_truncated_torchscript(tmp_path):
    model = seeded(TinyCNN())
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 8, 8)), tmp_path / "m.ts")
    data = (tmp_path / "m.ts").read_bytes()
    (tmp_path / "cut.ts").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|corrupt|damaged|could not"):
        load_checkpoint(tmp_path / "cut.ts")


def test_missing_path_and_kwargs():
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint("/nonexistent/model.pt")
    with pytest.raises(InputError, match="JSON"):
        parse_kwargs("{width: 1}")
    with pytest.raises(InputError, match="JSON object"):
        parse_kwargs("[1]")
