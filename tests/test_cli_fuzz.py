"""Property-based fuzz of the CLI error contract over every command (hypothesis).

Arguments are drawn from pools of meaningful values (good files, small corrupt files, near-miss
names and numbers) mixed with free text, so the properties are tried on combinations nobody wrote
down. For every run:
- the exit code is 0, 1, 2 or 3;
- exit 2 prints at most 2 lines on stderr;
- no traceback without --debug (stderr is captured at the file-descriptor level, so a C/C++
  library printing directly would be caught as well);
- nothing partial is left in the output directory: no temp/work files ever, and no files at all
  when the run failed.

Bounded in count (max_examples per command) and derandomized, so CI sees the same examples every
run. A real conversion takes tens of seconds, so `convert` argv that could load a working model
always carry one bad value drawn from POISON; success paths are the slow end-to-end tests' job.
`compress` (tiny model, --no-latency) and `bench`/`inspect` (a one-op TFLite) may succeed.
"""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from edgeport.cli import main
from edgeport.modes import NAMES as QUANT_CHOICES

from fixture_models import TinyCNN, seeded, write_tiny_tflite

HUGE = "1x3x100000x100000"
_counter = itertools.count()
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _corrupt_files(d: Path) -> None:
    model = seeded(TinyCNN())
    torch.jit.save(torch.jit.trace(model, torch.randn(1, 3, 16, 16)), d / "good.ts")
    torch.save(model.state_dict(), d / "sd.pt")
    ts = (d / "good.ts").read_bytes()
    (d / "truncated.ts").write_bytes(ts[: len(ts) // 2])
    (d / "empty.pt").write_bytes(b"")
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(256))
    with zipfile.ZipFile(d / "text.zip.pt", "w") as zf:
        zf.writestr("notes.txt", "not a model")
    with zipfile.ZipFile(d / "notexport.pt2", "w") as zf:
        zf.writestr("archive/data.txt", "not a torch.export program")
    torch.onnx.export(model, torch.randn(1, 3, 16, 16), str(d / "good.onnx"), dynamo=False, input_names=["x"])
    onnx_bytes = (d / "good.onnx").read_bytes()
    (d / "truncated.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 3])
    (d / "garbage.onnx").write_bytes(b"\x08\x07pytorch" + b"\xff" * 64)
    x = np.random.default_rng(1).standard_normal((40, 3, 16, 16)).astype(np.float32)
    np.savez(d / "good.npz", x=x, y=np.arange(40) % 5)
    np.savez(d / "y50.npz", x=x, y=np.full(40, 50))
    np.savez(d / "yfloat.npz", x=x, y=np.linspace(0, 1, 40))
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.savez(d / "nan.npz", x=nan)
    np.save(d / "flat.npy", x.reshape(40, -1))
    npz = (d / "good.npz").read_bytes()
    (d / "truncated.npz").write_bytes(npz[: len(npz) // 2])
    (d / "random.npz").write_bytes(np.random.default_rng(2).bytes(128))
    (d / "emptydir").mkdir()
    write_tiny_tflite(d / "tiny.tflite", signature=True)
    tfl = (d / "tiny.tflite").read_bytes()
    (d / "truncated.tflite").write_bytes(tfl[: len(tfl) // 2])
    (d / "random.tflite").write_bytes(np.random.default_rng(3).bytes(200))
    (d / "recipe.toml").write_text('[[pass]]\nkind = "cluster"\nclusters = 16\n')
    (d / "typo_recipe.toml").write_text('[[pass]]\nkind = "prun"\n')
    (d / "broken_recipe.toml").write_text('[[pass]\nkind = "cluster"\n')
    (d / "bad_profile.toml").write_text('description = "x"\n[runtime\nthreads = 2\n')
    (d / "binary_profile.toml").write_bytes(b"\xff\xfe\x00garbage")


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz_inputs")
    _corrupt_files(d)
    return d


def P(name: str) -> str:
    """A pool file, resolved inside the test (strategies are built before the fixture exists)."""
    return "@pool/" + name


MISSING = "/nonexistent/file.bin"
CHECKPOINTS = [P("good.ts"), P("sd.pt"), P("truncated.ts"), P("empty.pt"), P("random.pt"), P("text.zip.pt"),
               P("notexport.pt2"), P("good.onnx"), P("truncated.onnx"), P("garbage.onnx"), P("emptydir"), MISSING]
WORKING = {P("good.ts"), P("sd.pt"), P("good.onnx")}
DATA = st.sampled_from([P("good.npz"), P("y50.npz"), P("yfloat.npz"), P("nan.npz"), P("flat.npy"), P("truncated.npz"),
                        P("random.npz"), P("emptydir"), P("random.pt"), MISSING, "builtin:digits", "builtin:nope", ""])
TFLITES = [P("tiny.tflite"), P("truncated.tflite"), P("random.tflite"), P("empty.pt"), P("good.onnx"), P("emptydir"), MISSING]
PROFILES = st.sampled_from(["host", "raspberry-pi-4", "coral-usb", "pixel-8", "", P("bad_profile.toml"),
                            P("binary_profile.toml"), P("recipe.toml"), MISSING])
TEXT = st.text(max_size=10)


def mostly(values: list[str]) -> st.SearchStrategy[str]:
    """One of the values, and free text one time in ten: enough to hit the parser's edges without
    letting it refuse nearly every example before the deeper checks run."""
    return st.integers(0, 9).flatmap(lambda i: TEXT if i == 0 else st.sampled_from(values))


INTS = mostly([*map(str, range(-3, 5)), "", "1.5", "1e3", "nan", "99999999999", "0x10", " 2 "])
SHAPES = mostly(["1x3x16x16", "x=1x3x16x16", "1x3x0x16", "1x3x16", "z=1x3x8x8", "=", "1,3,16,16", "-1x3x16x16", HUGE,
                 "1x" * 9 + "1", "1x3x16x16x"])
TARGETS = st.integers(0, 9).flatmap(
    lambda i: TEXT.filter(lambda t: not t.lower().startswith(("ssh", "adb"))) if i == 0  # never dial a real host
    else st.sampled_from(["local", "sim", "adb://", "ssh://", "ssh://a b", "ftp://x", "", "adb://-rf"]))
CLASSES = mostly(["fixture_models:TinyCNN", "fixture_models:Nope", "nosuchmodule_xyz:Net", "noclass", "os:getcwd", "os:path", ":"])
KWARGS = mostly(['{"classes": 2}', '{"channels": 4}', "[1]", "{", '{"bogus": 1}', "null", "{}"])
PREPROCESS = mostly(["resize=16", "mean=0.5,0.5,0.5", "mean", "color=cmyk", "resize=-1", "layout=NHWC", "std=0,0,0"])
FLAG = st.just(None)

CONVERT_OPTS = {"--calib": DATA, "--val": DATA, "--quant": st.sampled_from([*QUANT_CHOICES, "int4", ""]),
                "--input-shape": SHAPES, "--model-class": CLASSES, "--model-kwargs": KWARGS, "--runs": INTS,
                "--opset": INTS, "--preprocess": PREPROCESS, "--target": TARGETS, "--diagnose": FLAG,
                "--trust-pickle": FLAG, "--json": FLAG}
# Each is refused whatever else is on the command line; appended last, so it wins over an earlier
# value of the same option (store) or joins the list (append).
POISON = [("--runs", "0"), ("--opset", "3"), ("--profile", "pixel-8"), ("--quant", "int4"), ("--calib", P("y50.npz")),
          ("--val", P("nan.npz")), ("--input-shape", "1x3x0x16"), ("--target", "ftp://x"), ("--preprocess", "mean"),
          ("--calib", P("truncated.npz")), ("--input-shape", HUGE)]
COMPRESS_OPTS = {"--val": DATA, "--model-class": CLASSES, "--model-kwargs": KWARGS, "--input-shape": SHAPES,
                 "--latency-runs": INTS, "--max-samples": INTS, "--teacher": st.sampled_from(CHECKPOINTS),
                 "--student": CLASSES, "--trust-pickle": FLAG, "--json": FLAG}
BENCH_OPTS = {"--profile": PROFILES, "--runs": INTS, "--timeout": st.one_of(INTS, st.sampled_from(["inf", "-1", "0.001"])),
              "--target": TARGETS, "--benchmark-binary": st.sampled_from([MISSING, P("tiny.tflite"), ""]), "--json": FLAG}
INSPECT_OPTS = {"--profile": PROFILES, "--json": FLAG}


def _options(table: dict[str, st.SearchStrategy]) -> st.SearchStrategy[list[str]]:
    flags = st.lists(st.sampled_from(sorted(table)), unique=True, max_size=5)

    def values(chosen: list[str]) -> st.SearchStrategy[list[str]]:
        parts = [table[f].map(lambda v, f=f: [f] if v is None else [f, v]) for f in chosen]
        return st.tuples(*parts).map(lambda groups: [a for g in groups for a in g]) if parts else st.just([])

    return flags.flatmap(values)


def _run(argv: list[str], pool: Path, capfd, out: Path | None) -> None:
    args = [str(pool / a.removeprefix("@pool/")) if a.startswith("@pool/") else a for a in argv]
    code = main(args)
    cap = capfd.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    shown = f"argv={args}\nstderr={cap.err}"
    # shown by --hypothesis-show-statistics: which exit codes and refusals the examples reached
    event(f"exit {code}: {lines[0][17:60] if lines else ''}")
    assert code in (0, 1, 2, 3), shown
    if code == 2:
        assert 1 <= len(lines) <= 2, shown
    assert "Traceback" not in cap.err + cap.out, shown
    if out is not None and out.exists():
        left = [p for p in out.rglob("*")]
        partial = [p for p in left if p.name.startswith(".") or p.suffix in (".tmp", ".part")]
        assert not partial, f"{shown}\npartial files: {partial}"
        assert code in (0, 1) or not left, f"{shown}\nleft behind by a failed run: {left}"


def _out_dir(pool: Path) -> Path:
    return pool.parent / f"fuzz_out_{next(_counter)}"


@settings(FUZZ, max_examples=60)
@given(ckpt=st.sampled_from(CHECKPOINTS), profile=PROFILES, opts=_options(CONVERT_OPTS), poison=st.sampled_from(POISON))
def test_convert_contract(pool, capfd, monkeypatch, ckpt, profile, opts, poison):
    monkeypatch.chdir(Path(__file__).parent)
    out = _out_dir(pool)
    argv = ["convert", ckpt, "--profile", profile, *opts, "--output", str(out)]
    if ckpt in WORKING:
        argv += list(poison)
    _run(argv, pool, capfd, out)


@settings(FUZZ, max_examples=25)
@given(ckpt=st.sampled_from(CHECKPOINTS), recipe=st.sampled_from([P("recipe.toml"), P("typo_recipe.toml"),
                                                                   P("broken_recipe.toml"), P("empty.pt"), MISSING]),
       data=DATA, opts=_options(COMPRESS_OPTS), as_file=st.booleans())
def test_compress_contract(pool, capfd, monkeypatch, ckpt, recipe, data, opts, as_file):
    monkeypatch.chdir(Path(__file__).parent)
    out = _out_dir(pool)
    target = out / "small.ts" if as_file else out
    _run(["compress", ckpt, "--recipe", recipe, "--data", data, *opts, "--no-latency", "--output", str(target)], pool, capfd, out)


@settings(FUZZ, max_examples=30)
@given(model=st.sampled_from(TFLITES), opts=_options(BENCH_OPTS))
def test_bench_contract(pool, capfd, model, opts):
    _run(["bench", model, *opts], pool, capfd, None)


@settings(FUZZ, max_examples=20)
@given(model=st.sampled_from(TFLITES), opts=_options(INSPECT_OPTS))
def test_inspect_contract(pool, capfd, model, opts):
    _run(["inspect", model, *opts], pool, capfd, None)


@settings(FUZZ, max_examples=20)
@given(action=st.one_of(st.sampled_from(["list", "show", ""]), TEXT),
       name=st.one_of(st.none(), PROFILES, TEXT), json_flag=st.booleans())
def test_profiles_contract(pool, capfd, action, name, json_flag):
    argv = ["profiles", action, *([] if name is None else [name]), *(["--json"] if json_flag else [])]
    _run(argv, pool, capfd, None)


@settings(FUZZ, max_examples=40)
@given(tokens=st.lists(st.one_of(st.sampled_from(["convert", "bench", "inspect", "compress", "profiles", "--runs", "--opset",
                                                  "--profile", "--input-shape", "--target", "--help", "-h", "--", "-",
                                                  "--json", "--output", "--nope", "show", "list", MISSING]), TEXT),
                       max_size=6))
def test_any_token_sequence_keeps_the_contract(pool, capfd, tokens):
    # free-form argv (no file in it exists, so nothing converts): whatever argparse makes of it,
    # the answer is an exit code and at most two lines
    _run(tokens, pool, capfd, None)
