#!/usr/bin/env python
"""Fit the host profile's simulator to timings of this machine; calibrate and check the device profiles.

Why: the roofline has a handful of parameters (MACs per cycle per precision, per-output cost, op-class
and thread factors, bandwidths, overheads) that no single model pins down. The host fit itself lives in
edgeport.latency.host_fit (what `edgeport profiles fit-host` and first use run: the shipped fit set of
plain CNNs, depthwise-separable CNNs, MLPs and attention blocks, fp32 and full int8, at 1 and 2
threads); this script adds the held-out check on other sizes (target: ±20% for at least 80%), rebuilds
the shipped fit set (`--export-fit-set`), and with `--write` stores this machine's fit as host.toml's
documented fallback (and the CPU keys of coral-usb.toml: its host is this machine).
`--calibrate` fits each device profile's few free values to the published bench_* figures it cites;
`--devices` prints every profile's simulated vs published figures (validation b).

    python scripts/fit_host_profile.py --cache /tmp/edgeport-fit [--write] [--calibrate] [--devices] [--json F]
    python scripts/fit_host_profile.py --cache /tmp/edgeport-fit --export-fit-set
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgeport.latency.host_fit import FREE, HostFit, fit_host, measure
from edgeport.latency.host_machine import INT8_DOT_GAIN
from edgeport.latency.simulator import (
    fit_params,
    published_figures,
    resolve_params,
    simulate_params,
    simulate_published,
)
from edgeport.profiles import load_profile, profiles_dir
from edgeport.tflite.reader import inspect_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported (lazily, by the builders)
QUANTS = ("fp32", "int8")


class Spec(NamedTuple):
    """One architecture at one size; `family` picks the builder, kwargs its size."""

    name: str
    family: str
    kwargs: dict[str, Any]


# Fitting set and held-out set use the same four families at different sizes, so the held-out error
# measures how the fitted parameters generalise across model size and shape, not memorisation.
FIT_SET: tuple[Spec, ...] = (
    Spec("cnn_64_w16", "cnn", {"res": 64, "width": 16, "depth": 4}),
    Spec("cnn_128_w32", "cnn", {"res": 128, "width": 32, "depth": 6}),
    Spec("dscnn_v1_a050_128", "mobilenet_v1", {"res": 128, "alpha": 0.5}),
    Spec("dscnn_v2_a050_160", "mobilenet_v2", {"res": 160, "alpha": 0.5}),
    Spec("mlp_256x512x2", "mlp", {"inputs": 256, "hidden": 512, "depth": 2}),
    Spec("mlp_1024x2048x3", "mlp", {"inputs": 1024, "hidden": 2048, "depth": 3}),
    Spec("attn_s64_d64", "attention", {"seq": 64, "dim": 64, "heads": 4, "ffn": 128}),
    Spec("attn_s128_d128", "attention", {"seq": 128, "dim": 128, "heads": 4, "ffn": 256}),
    # Added 2026-11-29 on an AMX host: a narrow CNN, a small attention block, an MLP whose int8 weights
    # (2 MB) sit at a typical L2 size, and full-width depthwise nets whose activations outgrow L2, so the
    # fit sees the channel-tile, per-subgraph and cache steps that the first eight did not pin down.
    Spec("cnn_96_w16", "cnn", {"res": 96, "width": 16, "depth": 4}),
    Spec("dscnn_v1_a100_192", "mobilenet_v1", {"res": 192, "alpha": 1.0}),
    Spec("dscnn_v2_a075_192", "mobilenet_v2", {"res": 192, "alpha": 0.75}),
    Spec("attn_s32_d64", "attention", {"seq": 32, "dim": 64, "heads": 2, "ffn": 128}),
    Spec("mlp_1024x1024x2", "mlp", {"inputs": 1024, "hidden": 1024, "depth": 2}),
)
HELDOUT_SET: tuple[Spec, ...] = (
    Spec("cnn_96_w24", "cnn", {"res": 96, "width": 24, "depth": 5}),
    Spec("cnn_160_w48", "cnn", {"res": 160, "width": 48, "depth": 6}),
    Spec("dscnn_v1_a075_160", "mobilenet_v1", {"res": 160, "alpha": 0.75}),
    Spec("mobilenet_v1", "mobilenet_v1", {"res": 224, "alpha": 1.0}),
    Spec("mobilenet_v2", "mobilenet_v2", {"res": 224, "alpha": 1.0}),
    Spec("mlp_512x1024x3", "mlp", {"inputs": 512, "hidden": 1024, "depth": 3}),
    Spec("mlp_784x256x2", "mlp", {"inputs": 784, "hidden": 256, "depth": 2}),
    Spec("attn_s32_d96", "attention", {"seq": 32, "dim": 96, "heads": 4, "ffn": 192}),
    Spec("attn_s196_d64", "attention", {"seq": 196, "dim": 64, "heads": 2, "ffn": 128}),
)
# Architectures that published device benchmarks use (validation (b)); names match the bench_* keys.
BENCH_SPECS: dict[str, Spec] = {
    "mobilenet_v1": Spec("mobilenet_v1", "mobilenet_v1", {"res": 224, "alpha": 1.0}),
    "mobilenet_v2": Spec("mobilenet_v2", "mobilenet_v2", {"res": 224, "alpha": 1.0}),
    "efficientnet_lite0": Spec("efficientnet_lite0", "efficientnet_lite0", {"res": 224}),
    "resnet50_v1": Spec("resnet50_v1", "resnet50", {"res": 299}),
}

def build_keras(spec: Spec) -> Any:
    """A Keras model with seeded random weights (latency does not depend on trained values) and batch 1."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    k = spec.kwargs
    builders: dict[str, Callable[..., Any]] = {
        "cnn": _cnn, "mlp": _mlp, "attention": _attention, "efficientnet_lite0": _efficientnet_lite0,
    }
    if spec.family in builders:
        return builders[spec.family](**k)
    apps = {"mobilenet_v1": tf.keras.applications.MobileNet, "mobilenet_v2": tf.keras.applications.MobileNetV2,
            "resnet50": tf.keras.applications.ResNet50}  # weights=None: nothing is downloaded
    inp = tf.keras.Input(shape=(k["res"], k["res"], 3), batch_size=1)
    return apps[spec.family](weights=None, input_tensor=inp, **({"alpha": k["alpha"]} if "alpha" in k else {}))


def _cnn(res: int, width: int, depth: int) -> Any:
    import tensorflow as tf

    layers = tf.keras.layers
    x = inp = tf.keras.Input(shape=(res, res, 3), batch_size=1)
    for i in range(depth):
        x = layers.Conv2D(width * (2 ** (i // 2)), 3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        if i % 2 == 1:
            x = layers.MaxPooling2D()(x)
    x = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    return tf.keras.Model(inp, x)


def _mlp(inputs: int, hidden: int, depth: int) -> Any:
    import tensorflow as tf

    x = inp = tf.keras.Input(shape=(inputs,), batch_size=1)
    for _ in range(depth):
        x = tf.keras.layers.Dense(hidden, activation="relu")(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))


def _attention(seq: int, dim: int, heads: int, ffn: int) -> Any:
    """One transformer encoder block: multi-head self-attention + FFN, post-LayerNorm."""
    import tensorflow as tf

    layers = tf.keras.layers
    inp = tf.keras.Input(shape=(seq, dim), batch_size=1)
    att = layers.MultiHeadAttention(num_heads=heads, key_dim=dim // heads)(inp, inp)
    x = layers.LayerNormalization()(inp + att)
    y = layers.Dense(dim)(layers.Dense(ffn, activation="relu")(x))
    return tf.keras.Model(inp, layers.LayerNormalization()(x + y))


def _efficientnet_lite0(res: int = 224) -> Any:
    """EfficientNet-Lite0: EfficientNet-B0's MBConv stages without squeeze-excite, ReLU6, fixed stem/head.

    Layout from https://github.com/tensorflow/tpu/blob/master/models/official/efficientnet/lite/README.md
    (Lite variants drop SE and swish); the stage table is B0's (Tan & Le 2019, Table 1).
    """
    import tensorflow as tf

    layers = tf.keras.layers
    act = lambda x: layers.ReLU(6.0)(layers.BatchNormalization()(x))  # noqa: E731
    inp = tf.keras.Input(shape=(res, res, 3), batch_size=1)
    x = act(layers.Conv2D(32, 3, 2, padding="same", use_bias=False)(inp))
    cin = 32
    # (expand, kernel, stride, out channels, repeats)
    for expand, kernel, stride, cout, repeats in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2),
                                                  (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
                                                  (6, 3, 1, 320, 1)):
        for r in range(repeats):
            s = stride if r == 0 else 1
            y = act(layers.Conv2D(cin * expand, 1, use_bias=False)(x)) if expand != 1 else x
            y = act(layers.DepthwiseConv2D(kernel, s, padding="same", use_bias=False)(y))
            y = layers.BatchNormalization()(layers.Conv2D(cout, 1, use_bias=False)(y))
            x = layers.Add()([x, y]) if s == 1 and cin == cout else y
            cin = cout
    x = act(layers.Conv2D(1280, 1, use_bias=False)(x))
    return tf.keras.Model(inp, layers.Dense(1000)(layers.GlobalAveragePooling2D()(x)))


def convert(model: Any, quant: str, path: Path) -> Path:
    """fp32 or full-int8 TFLite (int8 I/O, random representative data), written atomically."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        shapes = [tuple(int(d) for d in t.shape) for t in model.inputs]

        def rep() -> Iterable[list[np.ndarray]]:
            rng = np.random.default_rng(0)
            for _ in range(8):
                yield [rng.uniform(-1.0, 1.0, s).astype(np.float32) for s in shapes]

        conv.optimizations, conv.representative_dataset = [tf.lite.Optimize.DEFAULT], rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    _atomic_write(path, conv.convert())
    return path


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
    tmp.replace(path)


def build_tflite(spec: Spec, quant: str, cache: Path, *, periodic: bool = False) -> Path:
    """Cached .tflite for (spec, quant); rebuilt only when missing. `periodic`: see periodic_weights."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{spec.name}_{quant}{'_periodic' if periodic else ''}.tflite"
    if not path.is_file():
        model = build_keras(spec)
        if periodic:
            periodic_weights(model)
        convert(model, quant, path)
    return path


def periodic_weights(model: Any, period: int = 1021) -> None:
    """Repeat the first `period` values of each initialised weight tensor through the whole tensor.

    XNNPACK's dense kernels take the same time whatever the weight values, and repeated values keep the
    distribution of Keras' initialiser, yet compress a 42 MB MLP to almost nothing. That is what lets
    the fit set ship inside the package (edgeport/latency/fit_set.tar.xz) instead of being rebuilt with
    TensorFlow, which takes minutes, on every machine.
    """
    model.set_weights([np.resize(w.ravel()[:period], w.shape) if w.size > period else w for w in model.get_weights()])


def export_fit_set(cache: Path, archive: Path) -> None:
    """Build FIT_SET (fp32 + int8, periodic weights) and pack it with a manifest, reproducibly."""
    import io
    import tarfile

    models = []
    for spec in FIT_SET:
        for quant in QUANTS:
            path = build_tflite(spec, quant, cache, periodic=True)
            models.append({"name": spec.name, "family": spec.family, "quant": quant, "kwargs": spec.kwargs,
                           "file": f"{spec.name}_{quant}.tflite", "src": path})
    manifest = {"models": [{k: v for k, v in m.items() if k != "src"} for m in models],
                "built_by": "scripts/fit_host_profile.py --export-fit-set"}
    tmp = archive.with_name(archive.name + ".part")
    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: same bytes every build
            tar.addfile(info, io.BytesIO(data))

        add("manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
        for m in models:
            add(m["file"], Path(m["src"]).read_bytes())
    tmp.replace(archive)



@dataclass
class Heldout:
    """One held-out (model, quant, threads) timing and its simulated value under a host fit."""

    name: str
    quant: str
    threads: int
    info: dict[str, Any]
    measured_ms: float
    predicted_ms: float = math.nan

    @property
    def error(self) -> float:
        return self.predicted_ms / self.measured_ms - 1.0


def time_heldout(specs: Iterable[Spec], cache: Path, threads: Iterable[int]) -> list[Heldout]:
    """Build, inspect and time models the fit never saw, with the statistic the fit uses (host_fit.measure)."""
    models = [(spec, quant, build_tflite(spec, quant, cache)) for spec in specs for quant in QUANTS]
    counts = sorted(set(threads))
    measured = measure([str(path) for _s, _q, path in models], counts)
    return [Heldout(spec.name, quant, n, inspect_model(path), measured[f"{path}@{n}"])
            for spec, quant, path in models for n in counts]


def predict(samples: list[Heldout], params: dict[str, float], cores: int) -> None:
    for s in samples:
        s.predicted_ms = simulate_params(s.info, params, threads=s.threads, cores=cores).p50_ms


def table(samples: list[Heldout], title: str, tol: float) -> tuple[list[str], float]:
    """Printable measured-vs-simulated rows and the share within ±tol."""
    inside = sum(abs(s.error) <= tol for s in samples)
    share = inside / len(samples) if samples else 0.0
    return [title, f"  {'model':<22} {'quant':<5} {'thr':>3} {'measured':>9} {'simulated':>9} {'error':>7}"] + [
        f"  {s.name:<22} {s.quant:<5} {s.threads:>3} {s.measured_ms:9.3f} {s.predicted_ms:9.3f} {s.error * 100:+6.1f}%"
        + ("" if abs(s.error) <= tol else f"  <-- outside ±{tol * 100:.0f}%") for s in samples
    ] + [f"  within ±{tol * 100:.0f}%: {inside}/{len(samples)} = {share * 100:.0f}%"], share


def set_simulator_keys(path: Path, values: dict[str, tuple[float, str]]) -> None:
    """Set `key = value  # comment` lines in the [simulator] table (added at its end if new), atomically."""
    lines = path.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip().startswith("[simulator]"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    pending = dict(values)
    for i in range(start + 1, end):
        m = re.match(r"^\s*([A-Za-z0-9_]+)\s*=", lines[i])
        if m and m.group(1) in pending:
            value, comment = pending.pop(m.group(1))
            lines[i] = f"{m.group(1)} = {_fmt(value)}  # {comment}"
    lines[end:end] = [f"{k} = {_fmt(v)}  # {c}" for k, (v, c) in pending.items()]
    _atomic_write(path, "\n".join(lines) + "\n")


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"



# What `--calibrate` fits per device profile: (keys it moves, bench_* keys it fits them to; None = all).
# Figures not listed are held out. Order matters: the Dev Board copies the Edge TPU values of coral-usb.
DEVICE_FITS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "raspberry-pi-4": (("cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8"), None),
    "pixel-7": (("cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8"), None),
    "coral-usb": (("tpu_eff_conv", "tpu_op_overhead_us"), ("bench_mobilenet_v1_int8_ms", "bench_mobilenet_v2_int8_ms")),
    "coral-dev-board": (("cpu_macs_per_cycle_int8",), ("bench_cpu_mobilenet_v1_int8_ms", "bench_cpu_mobilenet_v2_int8_ms")),
}
COPIED = {"coral-dev-board": ("coral-usb", ("tpu_eff_conv", "tpu_op_overhead_us"))}  # same Edge TPU chip
# ARM CPU profiles have no per-op data, so the host fit's structure carries over: per-output cycles scale
# with vector width (host lanes / device lanes), the class and thread factors carry over as they are.
ARM_PROFILES = ("raspberry-pi-4", "pixel-7", "raspberry-pi-5")
TRANSFER_SCALED = ("cpu_output_cycles_fp32", "cpu_output_cycles_int8")
TRANSFER_AS_IS = ("cpu_eff_fc", "cpu_eff_builtin", "cpu_thread_eff")
# Pi 5: no published figure, so its rates are the Pi 4 fit scaled by Raspberry Pi's own speed-up claim.
DERIVED = {"raspberry-pi-5": ("raspberry-pi-4", ("cpu_macs_per_cycle_fp32", "cpu_macs_per_cycle_int8"))}


def calibrate_devices(cache: Path, *, write: bool, log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """Fit each device's few free values to its published figures (log least squares), then copy/derive."""
    today = dt.date.today().isoformat()
    out: dict[str, dict[str, float]] = {}
    host = load_profile("host").simulator
    for name in ARM_PROFILES:
        ratio = host["cpu_simd_lanes"] / load_profile(name).simulator["cpu_simd_lanes"]
        moved = {k: (host[k] * ratio, f"transferred: host.toml fit {host[k]:.4g} x {ratio:g} (host/device SIMD lanes), {today}")
                 for k in TRANSFER_SCALED}
        moved.update({k: (host[k], f"transferred as is from the host.toml fit (no per-op data from this device), {today}")
                      for k in TRANSFER_AS_IS})
        log(f"  {name}: " + ", ".join(f"{k} = {v:.4g}" for k, (v, _c) in moved.items()) + " (from host.toml)")
        if write:
            set_simulator_keys(profiles_dir() / f"{name}.toml", moved)
    for name, (free, fit_on) in DEVICE_FITS.items():
        prof = load_profile(name)
        figures = [f for f in published_figures(prof.simulator) if fit_on is None or f[0] in fit_on]
        tpu = prof.runtime.delegate == "edgetpu"
        base = resolve_params(prof.simulator, edgetpu=tpu, name=name)
        if name in COPIED:
            base.update({k: load_profile(COPIED[name][0]).simulator[k] for k in COPIED[name][1]})
        cases = [(inspect_model(build_tflite(BENCH_SPECS[model], quant, cache)), prof.runtime.threads, ms, tpu and not cpu)
                 for _key, model, quant, ms, cpu in figures]
        fitted = {k: v for k, v in fit_params(cases, base, free, cores=prof.hardware.cores).items() if k in free}
        out[name] = fitted
        keys = ", ".join(f[0] for f in figures)
        log(f"  {name}: " + ", ".join(f"{k} = {v:.4g}" for k, v in fitted.items()) + f" (fitted to {keys})")
        if write:
            comment = f"fitted by scripts/fit_host_profile.py --calibrate to {keys}, {today}"
            values = {k: (v, comment) for k, v in fitted.items()}
            if name in COPIED:
                values.update({k: (base[k], f"copied from {COPIED[name][0]}.toml (same Edge TPU chip), where it was fitted")
                               for k in COPIED[name][1]})
            set_simulator_keys(profiles_dir() / f"{name}.toml", values)
    for name, (src, keys) in DERIVED.items():
        prof, source = load_profile(name), load_profile(src)
        factor = prof.simulator["cpu_speedup_vs_pi4"] * source.simulator["cpu_ghz"] / prof.simulator["cpu_ghz"]
        # The vendor's speed-up is for general code; int8 GEMMs also gain the dot-product instructions the
        # source CPU lacks (Cortex-A76 SDOT against the A72's SMLAL).
        dot = INT8_DOT_GAIN[prof.hardware.int8_dot or "none"] / INT8_DOT_GAIN[source.hardware.int8_dot or "none"]
        scale = {k: factor * (dot if k.endswith("int8") else 1.0) for k in keys}
        out[name] = {k: out[src][k] * scale[k] for k in keys}
        if write:
            set_simulator_keys(profiles_dir() / f"{name}.toml", {k: (v, f"derived: {src} fit {out[src][k]:.4g} x "
                               f"cpu_speedup_vs_pi4 x clock ratio{' x int8 dot-product gain' if scale[k] != factor else ''}"
                               f" = x{scale[k]:.3f}; estimate, not validated ({today})") for k, v in out[name].items()})
    return out


def validate_devices(cache: Path, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every shipped profile's bench_* figures against the simulator: rows for the report and the test."""
    rows = []
    for path in sorted(profiles_dir().glob("*.toml")):
        prof = load_profile(path.stem)
        for key, model, quant, ms, _cpu in published_figures(prof.simulator):
            info = inspect_model(build_tflite(BENCH_SPECS[model], quant, cache))
            pred = simulate_published(prof, key, info)
            rows.append({"profile": prof.name, "key": key, "published_ms": ms, "simulated_ms": round(pred, 3),
                         "error": round(pred / ms - 1.0, 4)})
            log(f"  {prof.name:<17} {key:<36} published {ms:8.2f}  simulated {pred:8.2f}  {(pred / ms - 1) * 100:+6.1f}%")
    return rows



def fit_and_check(cache: Path, threads: int, log: Callable[[str], None] = print) -> tuple[HostFit, list[Heldout]]:
    """The package's host fit (the same one `edgeport profiles fit-host` runs), then the held-out set."""
    fitted = fit_host(threads, store=False, log=log)
    log(f"timing {len(HELDOUT_SET)} held-out architectures x {QUANTS} at 1 and {fitted.threads} thread(s)")
    held = time_heldout(HELDOUT_SET, cache, sorted({1, fitted.threads}))
    predict(held, fitted.params, int(fitted.machine["cores"]))
    return fitted, held


HOST_NOTES = (
    "[simulator]  # FALLBACK roofline parameters (see the top of this file), fitted by scripts/fit_host_profile.py --write",
)


def write_host(fit: HostFit, shares: dict[int, float], held: int) -> None:
    """Replace host.toml's fallback [simulator] table with this machine's fit, and copy the CPU keys into
    coral-usb.toml (whose CPU side is the machine the accelerator is plugged into)."""
    today = dt.date.today().isoformat()
    cpu = f"{fit.machine['cpu_model']}, int8 {fit.machine['int8_dot']}"
    src = f"fitted by scripts/fit_host_profile.py on {cpu}, {today}"
    p = fit.params
    values = {
        "cpu_ghz": (p["cpu_ghz"], f"measured: /proc/cpuinfo 'cpu MHz' (nominal; turbo is folded into the fitted rates), {today}"),
        "cache_mb": (p["cache_mb"], f"measured: last-level cache size in /sys/devices/system/cpu/cpu0/cache, {today}"),
        "cpu_channel_tile": (p["cpu_channel_tile"], f"measured: fp32 lanes per vector from the ISA flags, {today}"),
        "cpu_simd_lanes": (p["cpu_simd_lanes"], f"measured: as cpu_channel_tile; scales the per-output cost to other CPUs, {today}"),
        "cpu_eff_depthwise": (1.0, "fixed: the fitted per-output cost explains depthwise convs; a free class factor was unidentified"),
        **{k: (p[k], src) for k in FREE},
        **{f"heldout_within_20pct_{n}thr": (round(v, 3), f"share of the {held} held-out timings at {n} thread(s) within ±20% ({src})")
           for n, v in shares.items()},
    }
    path = profiles_dir() / "host.toml"
    text = path.read_text()
    lines = [*HOST_NOTES] + [f"{k} = {_fmt(v)}  # {c}" for k, (v, c) in values.items()]
    _atomic_write(path, text[: text.index("[simulator]")] + "\n".join(lines) + "\n")
    set_simulator_keys(profiles_dir() / "coral-usb.toml", {k: (v, f"host CPU fallback = this machine; {c}")
                                                          for k, (v, c) in values.items() if not k.startswith("heldout")})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "edgeport-fit-models")
    ap.add_argument("--threads", type=int, default=2, help="thread count fitted besides 1 (capped at the cores)")
    ap.add_argument("--write", action="store_true", help="write fitted values into device_profiles/*.toml")
    ap.add_argument("--calibrate", action="store_true", help="fit the device profiles to their bench_* figures")
    ap.add_argument("--devices", action="store_true", help="print every profile against its bench_* figures")
    ap.add_argument("--skip-host", action="store_true", help="no host timing/fit (with --calibrate/--devices)")
    ap.add_argument("--json", type=Path, help="write the numbers as JSON")
    ap.add_argument("--export-fit-set", action="store_true",
                    help="rebuild edgeport/latency/fit_set.tar.xz, the models `edgeport profiles fit-host` times")
    args = ap.parse_args(argv)
    result: dict[str, Any] = {}
    if args.export_fit_set:
        from edgeport.latency.host_fit import FIT_SET_ARCHIVE

        export_fit_set(args.cache, FIT_SET_ARCHIVE)
        print(f"wrote {FIT_SET_ARCHIVE} ({FIT_SET_ARCHIVE.stat().st_size} bytes)")
        return 0
    if not args.skip_host:
        fitted, held = fit_and_check(args.cache, args.threads)
        lines, shares = [f"host fit on {fitted.machine['cpu_model']} (int8 {fitted.machine['int8_dot']}) in {fitted.seconds:.0f} s, "
                         f"{fitted.within():.0%} of the fit set within ±20%"], {}
        for n in sorted({s.threads for s in held}):
            held_lines, shares[n] = table([s for s in held if s.threads == n], f"held-out, {n} thread(s) (validation a):", 0.20)
            lines += held_lines
        print("\n".join(lines) + "\nfitted parameters:\n" + "\n".join(f"  {k:<26} {fitted.params[k]:.4g}" for k in ("cpu_ghz", *FREE)))
        row = lambda s: {"model": s.name, "quant": s.quant, "threads": s.threads, "measured_ms": s.measured_ms,  # noqa: E731
                         "simulated_ms": s.predicted_ms, "error": s.error}
        result["host"] = {**fitted.summary(cached=False), "params": fitted.params, "heldout_share_within_20pct": shares,
                          "fit": [vars(s) for s in fitted.samples], "heldout": [row(s) for s in held]}
        if args.write:
            write_host(fitted, shares, len(held) // max(len(shares), 1))
    if args.calibrate:
        print("device calibration:")
        result["calibration"] = calibrate_devices(args.cache, write=args.write)
    if args.devices:
        print("published device figures (validation b):")
        result["devices"] = validate_devices(args.cache)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
