"""Compression passes: structured/unstructured pruning, low-rank, clustering, distillation, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgeport.compress.cluster import cluster_weights, gzip_size, kmeans_1d, state_dict_bytes, unique_values
from edgeport.compress.command import CompressRequest, count_macs, run_compress
from edgeport.compress.deps import channel_groups
from edgeport.compress.distill import distill, kl_to_teacher, predict
from edgeport.compress.lowrank import low_rank, rank_for_energy
from edgeport.compress.prune import prune
from edgeport.compress.recipe import parse_recipe
from edgeport.errors import InputError
from edgeport.zoo.digits_net import DigitsNet, InvertedResidual

from fixture_models import TinyCNN, seeded

torch.set_num_threads(1)


class BranchNet(nn.Module):
    """Two conv branches concatenated, a residual add, and a flatten of a 4x4 map into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Sequential(nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(12, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.tail = nn.Sequential(nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(4 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        s = s + self.mix(torch.cat([self.a(s), self.b(s)], dim=1))
        return self.fc(self.tail(self.dw(s)).flatten(1))


class Awkward(nn.Module):
    """A grouped conv and a reshape with a literal size: the tracer must leave both alone."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c2 = nn.Conv2d(8, 8, 3, stride=4, padding=1)
        self.c3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c3(torch.relu(self.c2(torch.relu(self.g(torch.relu(self.c1(x)))))))
        return self.fc(nn.functional.adaptive_avg_pool2d(y, 2).view(-1, 24))


class Branchy(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.c(x)
        if y.sum() > 0:
            y = -y
        return self.fc(y.mean((2, 3)))


def _init(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images(n: int = 64, shape: tuple[int, ...] = (3, 16, 16), seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32))


def _digits(seed: int = 0) -> DigitsNet:
    torch.manual_seed(seed)
    return _init(DigitsNet(), seed)  # type: ignore[return-value]


# -- structured pruning -------------------------------------------------------------------------------
def test_digitsnet_groups_follow_residuals_and_depthwise() -> None:
    groups = channel_groups(_digits(), (torch.zeros(1, 1, 32, 32),))
    by_producer = {p: g for g in groups for p in g.producers}
    residual = by_producer["features.2.conv.2.0"]  # block 2 output feeds the residual add of block 3
    assert "features.3.conv.2.0" in residual.producers and residual.fixed is None
    assert {"features.3.conv.0.0", "features.4.conv.0.0"} <= set(residual.consumers)
    expand = by_producer["features.2.conv.0.0"]
    assert "features.2.conv.1.0" in expand.passthrough  # the depthwise conv carries these channels
    assert by_producer["features.8.0"].consumers == ["classifier"]
    assert by_producer["classifier"].fixed == "reaches the model output"


def test_pruned_digitsnet_is_consistent_and_exports(tmp_path: Path) -> None:
    model = _digits()
    example = (torch.zeros(1, 1, 32, 32),)
    res = prune(model, example, criterion="magnitude", amount=0.5)
    pruned = res.model
    assert pruned(torch.randn(3, 1, 32, 32)).shape == (3, 10)
    for block in pruned.features:
        if isinstance(block, InvertedResidual):
            convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
            bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
            dw = next(c for c in convs if c.groups > 1)
            assert dw.groups == dw.in_channels == dw.out_channels
            assert all(c.out_channels == b.num_features for c, b in zip(convs, bns, strict=True))
            for first, second in zip(convs, convs[1:], strict=False):
                assert second.in_channels == first.out_channels
            if block.use_residual:
                assert convs[-1].out_channels == convs[0].in_channels
    assert pruned.classifier.in_features == pruned.features[8][0].out_channels == 64
    assert count_macs(pruned, example) < 0.4 * count_macs(model, example)
    onnx_path = tmp_path / "pruned.onnx"
    torch.onnx.export(pruned, example, onnx_path, dynamo=False, input_names=["x"], output_names=["y"])
    import onnxruntime as ort

    x = torch.randn(1, 1, 32, 32)
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, pruned(x).detach().numpy(), atol=1e-4)


def test_pruning_dead_channels_keeps_outputs_exact() -> None:
    """Channels whose BatchNorm output is exactly zero must be the ones removed, through concat,
    residual add, depthwise conv and flatten, with the outputs unchanged."""
    model = _init(BranchNet())
    dead = {"stem.1": [1, 4, 6, 7], "mix.1": [1, 4, 6, 7], "a.1": [0, 2, 5], "b.1": [1, 3, 4],
            "dw.1": [1, 4, 6, 7], "tail.1": [0, 3]}
    for name, idx in dead.items():
        bn = model.get_submodule(name)
        bn.weight.data[idx] = 0
        bn.bias.data[idx] = 0
    x = _images(8)
    res = prune(model, (x[:1],), criterion="magnitude", amount=0.5)
    p = res.model
    assert (p.stem[0].out_channels, p.a[0].out_channels, p.b[0].out_channels) == (4, 3, 3)
    assert p.mix[0].in_channels == 6 and p.dw[0].groups == 4 and p.fc.in_features == 2 * 16
    torch.testing.assert_close(p(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("criterion,extra", [("magnitude", {"norm": 1}), ("entropy", {}), ("entropy", {"statistic": "variance"}),
                                             ("gradient", {}), ("gradient", {"target": "teacher"}),
                                             ("magnitude", {"scope": "global", "round_to": 4})])
def test_each_criterion_prunes_and_runs(criterion: str, extra: dict) -> None:
    model = _init(BranchNet())
    x, y = _images(48), torch.arange(48) % 5
    teacher = _init(BranchNet(), seed=1)
    res = prune(model, (x[:1],), criterion=criterion, amount=0.5, inputs=[x], labels=None if "target" in extra else y,
                teacher=teacher, **extra)
    assert res.model(x).shape == (48, 5)
    assert count_macs(res.model, (x[:1],)) < count_macs(model, (x[:1],))
    if extra.get("round_to"):
        assert all(g["after"] % 4 == 0 or g["after"] == g["before"] for g in res.groups)


def test_unsupported_layers_are_left_alone_with_a_note() -> None:
    model = Awkward().eval()
    x = _images(4)
    res = prune(model, (x[:1],), amount=0.5)
    assert res.model.g.weight.shape == model.g.weight.shape  # grouped conv untouched
    assert res.model.c3.out_channels == 6  # read by a literal-size view: must stay
    assert res.model.c2.out_channels == 4  # plain conv -> conv: pruned
    assert any("grouped conv 'g'" in n for n in res.notes) and any(".view()" in n for n in res.notes)
    assert res.model(x).shape == (4, 3)
    with pytest.raises(InputError, match="cannot prune the output channels of c3"):
        prune(model, (x[:1],), amount=0.5, layers=["c3"])


def test_untraceable_model_is_refused_for_structured_only() -> None:
    model = Branchy().eval()
    x = _images(4, (3, 8, 8))
    with pytest.raises(InputError, match="torch.fx") as err:
        prune(model, (x[:1],), amount=0.5)
    assert err.value.exit_code == 2 and "structured = false" in err.value.one_line()
    res = prune(model, (x[:1],), amount=0.5, structured=False)
    assert res.model(x).shape == (4, 2)


def test_unstructured_sparsity_is_reported_honestly() -> None:
    model = _init(BranchNet())
    x = _images(16)
    res = prune(model, (x[:1],), criterion="magnitude", amount=0.6, structured=False, inputs=[x])
    assert all(abs(s - 0.6) < 0.02 for s in res.sparsity.values())
    assert any("TFLite" in n and "latency" in n for n in res.notes)
    assert count_macs(res.model, (x[:1],)) == count_macs(model, (x[:1],))  # dense kernels: same MACs
    # Fine-tuning must not regrow pruned weights.
    out = distill(res.model, model, [x], None, epochs=2, lr=1e-2, masks=res.masks)
    params = dict(out.model.named_parameters())
    for name, mask in res.masks.items():
        assert float(params[name].detach()[mask == 0].abs().max()) == 0.0


# -- low rank -----------------------------------------------------------------------------------------
def test_lowrank_reconstructs_low_rank_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(1), nn.Linear(16 * 36, 32), nn.Linear(32, 2))
    with torch.no_grad():  # exact rank 3 and rank 4 weights
        model[0].weight.copy_((torch.randn(16, 3) @ torch.randn(3, 8 * 9)).reshape(16, 8, 3, 3))
        model[3].weight.copy_(torch.randn(32, 4) @ torch.randn(4, 16 * 36))
    res = low_rank(model, energy=0.999999)
    ranks = {x["layer"]: x["rank"] for x in res.layers}
    assert ranks["0"] == 3 and ranks["3"] == 4 and ranks["4"] is None  # full rank 2: no saving
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(res.model(x), model(x), atol=1e-3, rtol=1e-3)
    assert sum(p.numel() for p in res.model.parameters()) < sum(p.numel() for p in model.parameters())


def test_lowrank_energy_bound_and_budget() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    u, _, vh = torch.linalg.svd(torch.randn(48, 64), full_matrices=False)
    with torch.no_grad():  # a decaying spectrum, as trained layers have
        lin.weight.copy_(u @ torch.diag(0.8 ** torch.arange(48.0)) @ vh)
    w = lin.weight.detach().double()
    s = torch.linalg.svdvals(w)
    r = rank_for_energy(s, 0.9)
    assert float(s[:r].pow(2).sum() / s.pow(2).sum()) >= 0.9 > float(s[: r - 1].pow(2).sum() / s.pow(2).sum())
    res = low_rank(nn.Sequential(lin), energy=0.9)
    first, second = res.model[0]
    err = (second.weight @ first.weight - lin.weight).detach().norm() / lin.weight.detach().norm()
    assert float(err) <= (1 - 0.9) ** 0.5 + 1e-4
    model = _digits()
    budget = low_rank(model, param_budget=0.5)
    assert budget.summary()["params_after"] <= 0.5 * sum(x["params_before"] for x in budget.layers)
    depthwise = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
    assert depthwise and not depthwise & {x["layer"] for x in budget.layers}  # depthwise convs are skipped
    assert budget.model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


# -- clustering ---------------------------------------------------------------------------------------
def test_clustering_limits_unique_values_and_compresses() -> None:
    model = _init(BranchNet())
    res = cluster_weights(model, clusters=8)
    assert all(n <= 8 for n in unique_values(res.model).values())
    assert all(x["unique_after"] <= 8 < x["unique_before"] for x in res.layers)
    assert gzip_size(state_dict_bytes(res.model)) < 0.6 * gzip_size(state_dict_bytes(model))
    again = cluster_weights(model, clusters=8)  # deterministic init: same weights every run
    assert all(torch.equal(a, b) for a, b in zip(res.model.state_dict().values(), again.model.state_dict().values(), strict=True))
    centroids, assign = kmeans_1d(torch.tensor([0.0, 0.0, 1.0, 5.0]), 8)
    assert centroids.tolist() == [0.0, 1.0, 5.0] and assign.tolist() == [0, 0, 1, 2]


# -- distillation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_distillation_moves_student_toward_teacher(mode: str) -> None:
    teacher = seeded(TinyCNN())
    torch.manual_seed(1)
    student = seeded(TinyCNN(channels=4), seed=1)
    x = _images(64, (3, 16, 16))
    before = kl_to_teacher(student, teacher, [x])
    agree_before = float((predict(student, [x]).argmax(1) == predict(teacher, [x]).argmax(1)).float().mean())
    res = distill(student, teacher, [x], None, mode=mode, temperature=2.0, alpha=0.8, epochs=15, lr=5e-3, batch_size=16)
    agree_after = float((predict(res.model, [x]).argmax(1) == predict(teacher, [x]).argmax(1)).float().mean())
    if mode == "soft":
        assert res.kl_after < 0.5 * res.kl_before and kl_to_teacher(res.model, teacher, [x]) < before
    else:  # hard targets sharpen the student, so its KL to a soft teacher may grow; its argmax must follow
        assert agree_after > agree_before and agree_after >= 0.9
    assert res.hard_target == "teacher"  # unlabeled data: the teacher's argmax stands in for labels
    with pytest.raises(InputError, match="no labels"):
        distill(student, teacher, [x], None, hard_target="labels", epochs=1)


# -- recipes ------------------------------------------------------------------------------------------
def test_recipe_defaults_and_errors() -> None:
    recipe = parse_recipe('[[pass]]\nkind = "prune"\namount = 0.5\n[[pass]]\nkind = "distill"\nepochs = 2\n')
    assert recipe.passes[0].params["criterion"] == "magnitude" and recipe.passes[0].params["structured"] is True
    assert recipe.passes[1].params["temperature"] == 4.0 and recipe.passes[1].params["epochs"] == 2
    cases = {
        '[[pass]]\nkind = "prune"\nammount = 0.5\n': "unknown key 'ammount' — did you mean 'amount'?",
        '[[pass]]\nkind = "prune"\namount = 1.5\n': "amount = 1.5 is not allowed — use a fraction 0 <= amount < 1",
        '[[pass]]\nkind = "prune"\ncriterion = "l1"\n': "criterion = \"l1\" is not allowed — use one of: 'magnitude'",
        '[[pass]]\nkind = "prun"\n': "did you mean 'prune'?",
        '[[pass]]\nkind = "distill"\nepochs = 2.5\n': "epochs = 2.5 is not allowed",
        '[[pass]]\nkind = "prune"; amount = 0.5\n': "TOML has no ';' separator",
        '[[pass]]\nkind = "cluster"\n[[pass]]\nkind = "distill"\n': "make cluster the last pass",
        '[[pass]]\nkind = "prune"\nstructured = false\n[[pass]]\nkind = "lowrank"\n': "rebuilds the layers",
        '[[pass]]\nkind = "prune"\nstructured = false\ncriterion = "entropy"\n': "needs structured = true",
        'seed = 1\n': "has no passes",
        'sed = 1\n[[pass]]\nkind = "cluster"\n': "did you mean 'seed'?",
    }
    for text, expected in cases.items():
        with pytest.raises(InputError) as err:
            parse_recipe(text, "r.toml")
        line = err.value.one_line()
        assert expected in line and "\n" not in line, (text, line)


# -- command ------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> dict[str, Path]:
    model = seeded(TinyCNN())
    torch.save(model.state_dict(), tmp_path / "tiny.pt")
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 32, 32)), tmp_path / "tiny.ts")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[pass]]\nkind = "prune"\ncriterion = "gradient"\namount = 0.5\n'
                      '[[pass]]\nkind = "distill"\nepochs = 2\nlr = 1e-3\n')
    return {"dir": tmp_path, "sd": tmp_path / "tiny.pt", "ts": tmp_path / "tiny.ts", "data": tmp_path / "data.npz", "recipe": recipe}


def test_compress_writes_torchscript_and_report(tiny_checkpoint: dict[str, Path]) -> None:
    d = tiny_checkpoint
    res = run_compress(CompressRequest(d["sd"], d["recipe"], str(d["data"]), d["dir"] / "out", model_class="fixture_models:TinyCNN",
                                       latency=False))
    assert res.model_path.name == "tiny_compressed.ts" and res.report_path.name == "compress_report.json"
    report = json.loads(res.report_path.read_text())
    first, second = report["passes"]
    assert first["metrics"]["macs"] < report["original"]["macs"] and first["metrics"]["params"] < report["original"]["params"]
    assert second["details"]["kl_to_teacher_after"] <= second["details"]["kl_to_teacher_before"]
    assert report["original"]["accuracy"] == 1.0 and report["final"]["tflite"] is None
    assert any("held out" in n for n in report["notes"])
    loaded = torch.jit.load(str(res.model_path))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), res.model(x))
    assert not [p for p in res.model_path.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_compress_refuses_structural_passes_on_torchscript(tiny_checkpoint: dict[str, Path]) -> None:
    d = tiny_checkpoint
    with pytest.raises(InputError, match="TorchScript") as err:
        run_compress(CompressRequest(d["ts"], d["recipe"], str(d["data"]), d["dir"] / "out", latency=False))
    assert err.value.exit_code == 2
    assert not (d["dir"] / "out" / "tiny_compressed.ts").exists()


def test_compress_distills_and_clusters_torchscript(tiny_checkpoint: dict[str, Path]) -> None:
    d = tiny_checkpoint
    recipe = parse_recipe('[[pass]]\nkind = "distill"\nepochs = 1\n[[pass]]\nkind = "cluster"\nclusters = 8\n')
    res = run_compress(CompressRequest(d["ts"], recipe, str(d["data"]), d["dir"] / "ts_out.ts", latency=False))
    assert res.report["final"]["macs"] == res.report["original"]["macs"] > 0  # counted without hooks
    assert max(unique_values(torch.jit.load(str(res.model_path))).values()) <= 8


@pytest.mark.slow
def test_compress_then_convert_end_to_end(tiny_checkpoint: dict[str, Path]) -> None:
    import edgeport
    from edgeport.compress import compress

    d = tiny_checkpoint
    d["recipe"].write_text('[[pass]]\nkind = "prune"\namount = 0.5\n')
    res = compress(d["sd"], d["recipe"], str(d["data"]), d["dir"] / "small.ts", model_class="fixture_models:TinyCNN",
                   latency_runs=20)
    step = res.report["passes"][0]["metrics"]["tflite"]
    assert step["host_p50_ms"] > 0 and step["int8_size_bytes"] > 0, step
    assert res.report["original"]["tflite"]["int8_size_bytes"] > step["int8_size_bytes"]
    report = edgeport.convert(res.model_path, "host", calib=str(d["data"]), quant="int8",
                              input_shapes=("x=1x3x32x32",), output=d["dir"] / "conv", runs=5)
    assert report.data["artifact"]["size_bytes"] > 0 and report.data["accuracy"]["top1_agreement"] is not None
