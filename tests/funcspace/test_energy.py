"""Local energy: zero at sigma 0, rising with sigma at a minimizer, seeded, on the torus."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canonicalize import to_torus
from funcspace.energy import LocalEnergy, local_energy, perturb_on_torus
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Settings, evaluate
from funcspace.models import MLP


@pytest.fixture(scope="module")
def trained():
    """A tiny MLP fitted to zero training error on a teacher's labels (~0.3 s)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=gen)
    y = MLP(8, [16], 3, seed=5)(x).argmax(1).detach()
    net = MLP(8, [24, 24], 3, seed=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    assert evaluate(net, (x, y)).error[0] == 0.0
    return net, (x, y)


@pytest.mark.parametrize("kind", ["multiplicative", "geodesic"])
def test_zero_at_sigma_zero_and_rising_with_sigma(trained, kind):
    net, data = trained
    sigmas = (0.0, 1e-7, 0.1, 0.25, 0.5)
    curve = local_energy(net, data, sigmas=sigmas, samples=30, kind=kind)
    assert isinstance(curve, LocalEnergy) and curve.kind == kind
    for metric in ("error", "loss"):
        assert curve.mean[metric][0] == 0.0 and curve.std[metric][0] == 0.0
        assert abs(curve.mean[metric][1]) < 1e-5  # a vanishing perturbation changes nothing
        assert curve.perturbed[metric].shape == (5, 30)
    loss = curve.mean["loss"]
    assert np.all(np.diff(loss[1:]) > 0), loss
    assert np.all(np.diff(curve.mean["error"][1:]) >= 0) and curve.mean["error"][-1] > 0


def test_geodesic_base_keeps_the_error_and_preserve_keeps_the_loss(trained):
    net, data = trained
    original = evaluate(net, data)
    normalized = local_energy(net, data, sigmas=(0.1,), samples=2, kind="geodesic")
    assert normalized.base["error"] == pytest.approx(original.error[0])
    preserved = local_energy(
        net, data, sigmas=(0.1,), samples=2, kind="geodesic", output="preserve"
    )
    assert preserved.base["loss"] == pytest.approx(original.loss[0], rel=1e-4)


@pytest.mark.parametrize("kind", ["multiplicative", "geodesic"])
def test_deterministic_under_seed_and_independent_of_batching(trained, kind):
    net, data = trained
    a = local_energy(net, data, sigmas=(0.1, 0.3), samples=6, kind=kind, seed=3)
    looped = Settings(strategy="loop", batch_size=64)
    b = local_energy(net, data, sigmas=(0.1, 0.3), samples=6, kind=kind, seed=3, settings=looped)
    c = local_energy(net, data, sigmas=(0.1, 0.3), samples=6, kind=kind, seed=4)
    np.testing.assert_array_equal(a.perturbed["error"], b.perturbed["error"])
    np.testing.assert_allclose(a.perturbed["loss"], b.perturbed["loss"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(a.perturbed["loss"], c.perturbed["loss"])
    assert a.to_dict()["perturbed"]["loss"] == a.perturbed["loss"].tolist()


def test_multiplicative_noise_equals_a_manual_perturbation():
    """With one sample and one sigma, the point is w + sigma z * w for z from the seed."""
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (30,))
    curve = local_energy(net, (x, y), sigmas=(0.3,), samples=1, seed=11)
    gen = torch.Generator().manual_seed(11)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            z = torch.randn((1, *p.shape), generator=gen, dtype=p.dtype)[0]
            p.add_(0.3 * z * p)
    expected = evaluate(twin, (x, y))
    assert curve.perturbed["loss"][0, 0] == pytest.approx(expected.loss[0], rel=1e-12)


def test_weights_only_leaves_biases_alone():
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4))
    with torch.no_grad():
        net[0].weight.zero_()  # multiplicative noise cannot move a zero weight
        net[0].bias.copy_(torch.randn(4, generator=g))
    x, y = torch.randn(20, 3, generator=g), torch.randint(0, 4, (20,), generator=g)
    only_weights = local_energy(net, (x, y), sigmas=(0.5,), samples=5, parameters="weights")
    everything = local_energy(net, (x, y), sigmas=(0.5,), samples=5, parameters="all")
    # the base point and the perturbed block go through different (stacked) products, so
    # "unchanged" is equal to float32 rounding, not bit for bit
    assert abs(only_weights.mean["loss"][0]) < 1e-6
    assert abs(everything.mean["loss"][0]) > 1e-3


def test_geodesic_perturbation_stays_on_the_spheres(trained):
    net, (x, _) = trained
    point = to_torus(net, x[:32])
    for sigma in (0.0, 0.05, 0.5, 3.0):
        moved = perturb_on_torus(point, sigma, seed=2)
        for name, rows in moved.spheres.items():
            np.testing.assert_allclose(rows.norm(dim=1).numpy(), 1.0, atol=1e-12)
            angles = torch.acos((rows * point.spheres[name]).sum(1).clamp(-1, 1))
            if sigma == 0.0:
                assert float(angles.max()) < 1e-7
        assert moved.free.keys() == point.free.keys()
    # The rotation angle has root-mean-square sigma (averaged over the 48 hidden units).
    moved = perturb_on_torus(point, 0.1, seed=5)
    angles = torch.cat(
        [
            torch.acos((moved.spheres[n] * point.spheres[n]).sum(1).clamp(-1, 1))
            for n in point.spheres
            if point.spheres[n].shape[0] > 1
        ]
    )
    assert float(angles.pow(2).mean().sqrt()) == pytest.approx(0.1, rel=0.2)
    # The perturbed point is a network again.
    assert moved.to_model()(x[:4]).shape == (4, 3)


def test_errors_name_the_problem(trained):
    net, data = trained
    with pytest.raises(FuncspaceError, match="sigma"):
        local_energy(net, data, sigmas=(-0.1,))
    with pytest.raises(FuncspaceError, match="samples"):
        local_energy(net, data, samples=0)
    with pytest.raises(FuncspaceError, match="kind"):
        local_energy(net, data, kind="flat")
    with pytest.raises(FuncspaceError, match="parameters"):
        local_energy(net, data, parameters="biases")
    with pytest.raises(FuncspaceError, match="TorusPoint"):
        perturb_on_torus(net, 0.1)
