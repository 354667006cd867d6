"""Straight paths and their profiles: exact ends, batched equals looped, every BatchNorm mode,
models from the zoo (not our classes), and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import paths
from funcspace.evaluation import evaluate
from funcspace.models import MLP
from tests.zoo import entry, example_input


def data(n: int = 40, d: int = 6, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=g)


def mlp(seed: int, batchnorm: bool = False) -> nn.Module:
    net = MLP(6, [12, 12], 3, batchnorm=batchnorm, seed=seed).double()
    if batchnorm:  # distinct, non-trivial running statistics at each end
        g = torch.Generator().manual_seed(100 + seed)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g, dtype=torch.float64))
                m.running_var.copy_(
                    torch.rand(m.num_features, generator=g, dtype=torch.float64) + 0.5
                )
    return net.eval()


def test_a_linear_path_has_exactly_its_ends():
    a, b = mlp(0), mlp(1)
    path = paths.linear(a, b)
    ends = path.params([0.0, 1.0])
    for name, p in a.named_parameters():
        assert torch.equal(ends[name][0], p.detach())
        assert torch.equal(ends[name][1], dict(b.named_parameters())[name].detach())
    x, _ = data()
    with torch.no_grad():
        assert torch.equal(path.at(0.0)(x), a(x)) and torch.allclose(path.at(1.0)(x), b(x))
    assert path.kind == "linear" and len(path.moving) == 6 and "Path(linear" in repr(path)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_profile_ends_are_the_end_models_own_values(batchnorm):
    a, b = mlp(0, batchnorm), mlp(1, batchnorm)
    pair = data()
    modes = ("recalibrate", "interpolate") if batchnorm else (None,)
    for mode in modes:
        prof = paths.profile(paths.linear(a, b), pair, n=7, batchnorm=mode)
        own = evaluate([a, b], pair)
        np.testing.assert_allclose(prof.values["loss"][[0, -1]], own.loss, rtol=1e-12)
        np.testing.assert_allclose(prof.values["error"][[0, -1]], own.error)
        assert prof.batchnorm == (mode or "none")


def test_profile_equals_a_loop_over_the_points_in_every_mode():
    a, b = mlp(0, True), mlp(1, True)
    pair = data()
    path = paths.linear(a, b)
    ts = [0.0, 0.3, 0.5, 0.9, 1.0]
    interpolated = paths.profile(path, pair, t=ts, batchnorm="interpolate")
    recalibrated = paths.profile(path, pair, t=ts)  # the default for BatchNorm networks
    for i, t in enumerate(ts):
        point = path.at(t)
        assert interpolated.values["loss"][i] == pytest.approx(evaluate(point, pair).loss[0])
        if 0 < t < 1:
            honest = evaluate(point, pair, batchnorm="recalibrate").loss[0]
            assert recalibrated.values["loss"][i] == pytest.approx(honest, rel=1e-10)
    assert recalibrated.batchnorm == "recalibrate"
    assert recalibrated.settings.batchnorm == "recalibrate"


def test_two_copies_of_one_model_have_a_flat_profile():
    a = mlp(3)
    prof = paths.profile(paths.linear(a, mlp(3)), data(), n=9)
    assert np.ptp(prof.values["loss"]) == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(prof.values["error"]) == 0.0


def test_a_layerwise_path_moves_only_its_layers():
    a, b = mlp(0), mlp(1)
    path = paths.layerwise(a, b, "layers.3")
    assert path.moving == ("layers.3.weight", "layers.3.bias")
    along = path.params(np.linspace(0, 1, 5))
    for name, p in a.named_parameters():
        if not name.startswith("layers.3."):
            assert all(torch.equal(row, p.detach()) for row in along[name])
    hybrid = path.at(1.0)
    with torch.no_grad():
        assert torch.equal(hybrid.layers[3].weight, b.layers[3].weight)
        assert torch.equal(hybrid.layers[1].weight, a.layers[1].weight)
    prof = paths.profile(path, data(), n=3)
    assert prof.values["loss"][-1] == pytest.approx(evaluate(hybrid, data()).loss[0], rel=1e-12)


@pytest.mark.parametrize("name", ["vgg11_bn", "resnext_block", "densenet_block"])
def test_paths_work_on_models_written_in_other_styles(name):
    zoo = entry(name)
    a, b = zoo.build(0), zoo.build(1)
    x = example_input(zoo, seed=0)
    pair = (x, torch.randint(0, 5, (len(x),), generator=torch.Generator().manual_seed(0)))
    prof = paths.profile(paths.linear(a, b), pair, n=5)
    own = evaluate([a, b], pair)
    np.testing.assert_allclose(prof.values["loss"][[0, -1]], own.loss, rtol=1e-10)
    assert np.isfinite(prof.values["loss"]).all()
    assert set(prof.to_dict()) >= {"t", "values", "batchnorm", "settings"}


def test_bad_input_gets_a_clear_error():
    a = mlp(0)
    with pytest.raises(paths.PathError, match="not one architecture.*'layers.1.weight'"):
        paths.linear(a, MLP(6, [10, 12], 3, seed=1).double())
    with pytest.raises(paths.PathError, match=r"t must lie in \[0, 1\]"):
        paths.linear(a, mlp(1)).params([0.5, 1.2])
    with pytest.raises(paths.PathError, match="neither a parameter nor a module"):
        paths.layerwise(a, mlp(1), ["layers.9"])
    broken = mlp(1)
    with torch.no_grad():
        broken.layers[1].weight[0, 0] = float("nan")
    with pytest.raises(paths.PathError, match="contains NaN"):
        paths.linear(a, broken)
    with pytest.raises(paths.PathError, match="batchnorm='recalibrate'"):
        paths.profile(paths.linear(mlp(0, True), mlp(1, True)), data(), batchnorm="fixed")
    with pytest.raises(paths.PathError, match="n must be an integer >= 2"):
        paths.profile(paths.linear(a, mlp(1)), data(), n=1)
    with pytest.raises(paths.PathError, match="settings must be"):
        paths.profile(paths.linear(a, mlp(1)), data(), settings={"split": "test"})


def test_a_paths_function_length_is_at_least_the_disagreement_of_its_ends():
    from funcspace.similarity import disagreement

    a, b = mlp(0), mlp(1)
    x, y = data()
    for path in (paths.linear(a, b), paths.geodesic(a, b, x)):
        result = paths.length(path, (x, y), n=17)
        assert result.function >= disagreement(path.at(0.0), path.at(1.0), x) - 1e-12
        assert len(result.steps) == 16 and result.euclidean > 0
    same = paths.length(paths.linear(a, mlp(0)), (x, y), n=5)
    assert same.function == 0.0 and same.euclidean == 0.0
    straight = paths.length(paths.linear(a, b), (x, y), n=9).euclidean
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    step = sum(float(((p - q).detach() ** 2).sum()) for p, q in pairs)
    assert straight == pytest.approx(step**0.5, rel=1e-9)
    with pytest.raises(paths.PathError, match="n must be an integer >= 2"):
        paths.length(paths.linear(a, b), (x, y), n=1)
