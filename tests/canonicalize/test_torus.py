"""Toroidal coordinates and geodesic distances: exact small cases and properties."""

import math

import geoopt
import pytest
import torch
from hypothesis import given
from torch import nn

import canonicalize as C
from canonicalize.verify import eval_outputs, relative_difference
from tests.strategies import group_seeds, mlps, models


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


@given(models(), group_seeds)
def test_geodesic_distance_is_zero_within_a_class(case, seed):
    try:
        a = C.to_torus(case.model, case.x, output="normalize")
    except C.SymmetryError:  # output behind tanh or sign: no global output factor
        a = C.to_torus(case.model, case.x, output="preserve")
    output = "normalize" if "output" in a.spheres else "preserve"
    moved = C.random_transform(case.model, case.x, seed=seed)
    b = C.to_torus(moved, case.x, output=output)
    assert C.geodesic_distance(a, b) < 1e-6


@given(mlps())
def test_torus_round_trip_keeps_predictions_and_spheres(case):
    try:
        point = C.to_torus(case.model, case.x)
    except C.SymmetryError:
        # output behind tanh or sign: no global output factor exists (the message says so);
        # such models are covered by the preserve round trip below
        with pytest.raises(C.SymmetryError, match="preserve"):
            C.to_torus(case.model, case.x, output="normalize")
        return
    for name, rows in point.spheres.items():
        assert torch.allclose(rows.norm(dim=1), torch.ones(len(rows), dtype=rows.dtype)), name
        assert isinstance(point.manifolds()[name], geoopt.Sphere)
    back = point.to_model()
    before, after = eval_outputs(case.model, case.x), eval_outputs(back, case.x)
    factor = float((after * before).sum() / (before * before).sum())
    assert factor > 0
    assert relative_difference(before * factor, after) < 1e-9


@given(models())
def test_torus_round_trip_with_output_preserved_keeps_outputs_exactly(case):
    """Every model family (MLP, CNN, residual, BatchNorm, tanh/sign outputs): with
    ``output="preserve"`` the output layer keeps its scale, so the round trip is the same
    function, with no global factor, and every hidden sphere holds unit rows."""
    point = C.to_torus(case.model, case.x, output="preserve")
    assert "output" not in point.spheres
    for name, rows in point.spheres.items():
        assert torch.allclose(rows.norm(dim=1), torch.ones(len(rows), dtype=rows.dtype)), name
    back = point.to_model()
    before, after = eval_outputs(case.model, case.x), eval_outputs(back, case.x)
    assert relative_difference(before, after) < 1e-9


def test_output_sphere_has_radius_sqrt_outputs():
    net, x = _net(0), torch.randn(8, 3, dtype=torch.float64)
    point = C.to_torus(net, x)
    assert point.radii["output"] == pytest.approx(math.sqrt(2))
    last = point.to_model()[2]
    norm = torch.cat([last.weight.flatten(), last.bias]).detach().norm()
    assert float(norm) == pytest.approx(math.sqrt(2))


def test_geodesic_distance_matches_closed_form():
    """One hidden unit: each sphere is a circle/sphere we can measure by hand."""
    x = torch.randn(8, 2, dtype=torch.float64)
    a = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1)).double()
    b = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1)).double()
    with torch.no_grad():
        a[0].weight.copy_(torch.tensor([[3.0, 0.0]]))  # unit vector (1, 0, 0) after normalizing
        a[0].bias.zero_()
        a[2].weight.fill_(2.0)
        a[2].bias.fill_(0.0)
        b[0].weight.copy_(torch.tensor([[0.0, 5.0]]))  # unit vector (0, 1, 0): angle pi/2
        b[0].bias.zero_()
        b[2].weight.fill_(1.0)
        b[2].bias.fill_(1.0)
    distance = C.geodesic_distance(C.to_torus(a, x), C.to_torus(b, x))
    # hidden sphere: radius 1, angle pi/2. Output sphere (radius sqrt(1)): the scale moved out
    # of the hidden unit makes the output rows (2*3, 0) and (1*5, 1): angle atan(1/5).
    expected = math.sqrt((math.pi / 2) ** 2 + math.atan(1 / 5) ** 2)
    assert distance == pytest.approx(expected, rel=1e-12)


def test_distance_is_symmetric_and_positive_between_classes():
    x = torch.randn(16, 3, dtype=torch.float64)
    a, b = C.to_torus(_net(1), x), C.to_torus(_net(2), x)
    assert C.geodesic_distance(a, b) > 0.1
    assert C.geodesic_distance(a, b) == pytest.approx(C.geodesic_distance(b, a), rel=1e-9)
    assert a.distance(b) == pytest.approx(C.geodesic_distance(a, b))


def test_geodesic_distance_is_at_least_the_chord():
    x = torch.randn(16, 3, dtype=torch.float64)
    a, b = C.to_torus(_net(3), x), C.to_torus(_net(4), x)
    aligned = C.align(b.to_model(), a.to_model(), x, method="cosine")
    chord = (
        sum(
            ((p - q) ** 2).sum()
            for p, q in zip(a.to_model().parameters(), aligned.parameters(), strict=True)
        )
        ** 0.5
    )
    assert C.geodesic_distance(a, b) >= float(chord.detach()) - 1e-12


def test_batchnorm_pairs_are_their_own_spheres():
    x = torch.randn(16, 3, dtype=torch.float64)
    net = (
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
        .double()
        .eval()
    )
    point = C.to_torus(net, x)
    assert {n: tuple(t.shape) for n, t in point.spheres.items()} == {
        "0": (4, 4),  # pre-BN weights and (folded, zero) bias
        "1": (4, 2),  # the BN affine pair (gamma, beta)
        "output": (1, 10),
    }
    assert set(point.buffers) >= {"1.running_mean", "1.running_var"}
