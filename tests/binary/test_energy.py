"""Local energy of binary networks: exact small cases, nesting, determinism, bad input."""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from torch import nn

from binary import committee, energy, export, fixed_weights
from binary.energy import local_energy
from binary.errors import BinaryError
from canonicalize import Sign
from funcspace.energy import LocalEnergy
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Settings, evaluate
from tests.binary.test_symmetry import wide
from tests.strategies import binary_mlps


def perceptron(weights, seed=0, n=60):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(len(weights), 1, bias=False), Sign()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([weights], dtype=torch.float64))
    x = torch.randn(n, len(weights), generator=g, dtype=torch.float64)
    return net, x


@given(binary_mlps())
def test_no_flip_is_the_models_own_error(case):
    y = torch.randint(0, 2, (len(case.x),), generator=torch.Generator().manual_seed(0))
    out = case.model(case.x)
    metric = "sign_error" if out.shape[1] == 1 else "error"
    y = y * 2.0 - 1 if metric == "sign_error" else y
    curve = local_energy(case.model, (case.x, y), fractions=(0.0, 0.5), samples=3)
    own = float(evaluate(case.model, (case.x, y), metric)[metric][0])
    assert curve.base[metric] == own
    assert curve.perturbed[metric][0].tolist() == [own] * 3 and curve.mean[metric][0] == 0.0
    assert curve.flips[0] == 0


def test_single_flips_of_a_perceptron_exactly():
    """N = 3 and p = 1/3: every draw flips one weight; each value is one of the three errors of
    a single flip, computed by hand."""
    net, x = perceptron([1.0, -1.0, 1.0])
    teacher = torch.sign(x @ torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    data = (x, teacher)
    singles = []
    for i in range(3):
        other = copy.deepcopy(net)
        with torch.no_grad():
            other[0].weight[0, i] *= -1
        singles.append(float((other(x).flatten() != teacher).double().mean()))
    base = float((net(x).flatten() != teacher).double().mean())
    curve = local_energy(net, data, fractions=(0.0, 1 / 3, 1.0), samples=50, seed=1)
    assert curve.flips.tolist() == [0, 1, 3] and curve.total == 3
    assert curve.base == {"sign_error": base}
    assert set(curve.perturbed["sign_error"][1].tolist()) == set(singles)  # 50 draws hit all 3
    # all weights flipped: every prediction flips
    assert curve.perturbed["sign_error"][2].tolist() == [1.0 - base] * 50
    assert curve.mean["sign_error"][2] == pytest.approx(1.0 - 2 * base)


def test_draws_are_nested_seeded_and_batched_like_single_networks():
    net, x = wide(bias=True)
    data = (x, net(x).argmax(1))
    fractions = (0.0, 0.05, 0.1, 0.3)
    one = local_energy(net, data, fractions, samples=16, seed=3)
    assert isinstance(one, LocalEnergy) and one.kind == "flip"
    again = local_energy(net, data, fractions, samples=16, seed=3)
    assert np.array_equal(one.perturbed["error"], again.perturbed["error"])
    other = local_energy(net, data, fractions, samples=16, seed=4)
    assert not np.array_equal(one.perturbed["error"], other.perturbed["error"])
    assert one.mean["error"][0] == 0 and one.mean["error"][-1] > one.mean["error"][1]
    assert np.allclose(one.std["error"], one.perturbed["error"].std(axis=1))
    assert json.loads(json.dumps(one.to_dict()))["total"] == one.total


@pytest.mark.parametrize("output", ["sum", "majority"])
def test_a_committee_flips_only_its_trainable_weights(output, monkeypatch):
    """The vote and the readout are fixed: no draw flips them, and N counts the first layer."""
    model = export(committee(15, 5, output=output, seed=1))
    x = torch.randn(40, 15, generator=torch.Generator().manual_seed(0))
    seen = []
    wrapped = energy.from_params
    monkeypatch.setattr(energy, "from_params", lambda m, p: seen.append(p) or wrapped(m, p))
    curve = local_energy(model, (x, model(x).argmax(1)), (0.0, 0.2, 1.0), samples=16)
    assert curve.total == 75 and curve.flips.tolist() == [0, 15, 75]
    assert seen
    fixed = {n: model.state_dict()[n] for n in fixed_weights(model)}
    for block in seen:
        for name, value in fixed.items():
            assert bool((block[name] == value).all())
    # every weight of the first layer flipped: every hidden unit and so the vote reversed
    assert curve.perturbed["error"][2].tolist() == [1.0] * 16


def test_settings_and_batchnorm():
    net = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), Sign(), nn.Linear(4, 3)).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in (net[0], net[3]):
            m.weight.copy_(torch.randint(0, 2, m.weight.shape, generator=g) * 2.0 - 1)
    net.eval()
    x = torch.randn(40, 5, dtype=torch.float64, generator=g)
    curve = local_energy(
        net,
        (x, net(x).argmax(1)),
        (0.0, 0.2),
        samples=5,
        settings=Settings(metrics=("error", "loss")),
    )
    assert set(curve.mean) == {"error", "loss"} and curve.base["error"] == 0.0
    assert curve.flips.tolist() == [0, round(0.2 * 32)]


def test_bad_input():
    net, x = perceptron([1.0, 1.0, -1.0])
    data = (x, torch.ones(len(x), dtype=torch.float64))
    with pytest.raises(BinaryError, match="fraction"):
        local_energy(net, data, fractions=(0.0, 1.5))
    with pytest.raises(BinaryError, match="fraction"):
        local_energy(net, data, fractions=())
    with pytest.raises(BinaryError, match="samples"):
        local_energy(net, data, samples=0)
    with pytest.raises(BinaryError, match="settings"):
        local_energy(net, data, settings="error")
    with torch.no_grad():
        net[0].weight[0, 1] = 0.7
    with pytest.raises(BinaryError, match=r"'0\.weight' \(\w+\) is not binary"):
        local_energy(net, data)


def test_the_binary_curve_is_a_local_energy_that_saves_loads_and_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from funcspace.plots import plot_local_energy

    net, x = wide(bias=True)
    curve = local_energy(net, (x, net(x).argmax(1)), (0.0, 0.1, 0.5), samples=4, seed=2)
    assert (curve.kind, curve.parameters) == ("flip", "weights")
    curve.save(tmp_path / "flip")
    back = LocalEnergy.load(tmp_path / "flip")
    assert back.kind == "flip" and back.total == curve.total
    assert np.array_equal(back.flips, curve.flips) and np.array_equal(back.sigmas, curve.sigmas)
    assert np.array_equal(back.perturbed["error"], curve.perturbed["error"])
    fig = plot_local_energy({"binary": curve})
    assert fig.axes[0].get_xlabel() == "fraction of flipped weights p"
    real = dataclasses.replace(curve, kind="multiplicative", flips=None, total=None)
    with pytest.raises(FuncspaceError, match="plot them separately"):
        plot_local_energy({"binary": curve, "real": real})
