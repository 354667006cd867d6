"""Mode-connectivity curves: exact shapes, exact ends on every family, training that lowers the
path's loss, determinism, the loop fallback, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import canonicalize
import paths
from funcspace.evaluation import evaluate
from funcspace.models import MLP
from paths.curve import _coordinates
from tests.zoo import ZOO, entry, example_input


def data(d: int = 6, n: int = 96, classes: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x, (x[:, :classes].argmax(1) + (x[:, -1] > 1).long()) % classes


def mlp(seed: int) -> nn.Module:
    return MLP(6, [12, 12], 3, seed=seed).double()


def test_bezier_and_polychain_coordinates_in_closed_form():
    ts = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    knots = [{("param", "w"): torch.tensor([v], dtype=torch.float64)} for v in (0.0, 1.0, 0.0)]
    bezier = _coordinates(knots, ts, "bezier")[("param", "w")][:, 0]
    torch.testing.assert_close(bezier, 2 * ts * (1 - ts))  # B(t) = 2 t (1 - t) exactly
    chain = _coordinates(knots, ts, "polychain")[("param", "w")][:, 0]
    torch.testing.assert_close(chain, torch.tensor([0.0, 0.5, 1.0, 0.0], dtype=torch.float64))
    # on spheres: the chain runs great circles between the knots (quarter turns here)
    e = torch.eye(3, dtype=torch.float64)
    rows = [{("sphere", "s"): e[i : i + 1]} for i in range(3)]
    on = _coordinates(rows, torch.tensor([0.25, 0.75], dtype=torch.float64), "polychain")
    half = torch.tensor(0.5**0.5, dtype=torch.float64)
    torch.testing.assert_close(on[("sphere", "s")][0, 0], torch.stack([half, half, 0 * half]))
    torch.testing.assert_close(on[("sphere", "s")][1, 0], torch.stack([0 * half, half, half]))
    projected = _coordinates(rows, ts, "bezier")[("sphere", "s")]
    torch.testing.assert_close(projected.norm(dim=-1), torch.ones(4, 1, dtype=torch.float64))


def test_unpack_stacked_coordinates_equals_each_points_state():
    zoo = entry("vgg11_bn")
    x = example_input(zoo, seed=0)
    points = [canonicalize.to_torus(zoo.build(s), x, "preserve") for s in range(3)]
    spheres = {n: torch.stack([p.spheres[n] for p in points]) for n in points[0].spheres}
    free = {n: torch.stack([p.free[n] for p in points]) for n in points[0].free}
    stacked = points[0].unpack(spheres, free)
    for k, p in enumerate(points):
        own = p.state()
        for name, value in stacked.items():
            assert torch.equal(value[k], own[name]), name
    with pytest.raises(canonicalize.SymmetryError, match="must end with shape"):
        points[0].unpack({n: v[..., :-1] for n, v in spheres.items()}, free)


@pytest.mark.parametrize("geometry", ["sphere", "euclidean"])
@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_a_trained_curve_lowers_the_loss_between_its_exact_ends(geometry, kind):
    a, b = mlp(0), mlp(1)
    pair = data()
    path = paths.curve(
        a, b, pair, kind=kind, geometry=geometry, epochs=30, lr=0.01, batch_size=32, progress=False
    )
    x = pair[0]
    with torch.no_grad():
        assert torch.allclose(path.at(0.0)(x), a(x), atol=1e-10)
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-10)
    record = path.record
    assert record.steps == 30 * 3 and record.vectorized and len(record.loss) == 30
    assert record.loss[-1] < 0.8 * record.loss[0]
    grid = np.linspace(0, 1, 33)
    trained = paths.profile(path, pair, t=grid).values["loss"]
    straight = paths.profile(paths.linear(a, b), pair, t=grid).values["loss"]
    np.testing.assert_allclose(trained[[0, -1]], evaluate([a, b], pair).loss, rtol=1e-10)
    assert trained[1:-1].mean() < straight[1:-1].mean()
    assert trained[1:-1].max() < straight[1:-1].max()
    assert path.to_dict()["record"]["points"] == 4 and path.bends == 1


def test_the_same_seed_gives_the_same_curve_and_another_seed_another():
    a, b, pair = mlp(0), mlp(1), data()

    def run(seed):
        return paths.curve(a, b, pair, epochs=2, bends=2, seed=seed, progress=False)

    first, again, other = run(0), run(0), run(1)
    assert first.bends == 2
    for k1, k2 in zip(first.knots, again.knots, strict=True):
        for key in k1:
            assert torch.equal(k1[key], k2[key])
    assert any(not torch.equal(v, other.knots[1][k]) for k, v in first.knots[1].items())


class NoVmap(nn.Module):
    """Data-dependent control flow in forward: vmap cannot run it, a loop can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if bool(h.sum() < 0):  # never true; vmap refuses the data-dependent branch
            raise AssertionError
        return self.fc2(h)


def test_a_model_vmap_cannot_run_trains_in_a_loop():
    torch.manual_seed(0)
    a, b = NoVmap().double(), NoVmap().double()
    x, y = data()
    path = paths.curve(a, b, (x, y), geometry="euclidean", align=None, epochs=2, progress=False)
    assert not path.record.vectorized
    with torch.no_grad():
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-12)


@pytest.mark.parametrize("zoo", ZOO, ids=[z.name for z in ZOO])
def test_curves_have_exact_ends_on_every_family(zoo):
    a, b = zoo.build(0), zoo.build(1)
    x = example_input(zoo, seed=0, batch=8)
    with torch.no_grad():
        classes = a(x).shape[-1]
    y = torch.randint(0, classes, (len(x),), generator=torch.Generator().manual_seed(0))
    path = paths.curve(a, b, (x, y), epochs=1, batch_size=8, points=2, progress=False)
    with torch.no_grad():
        assert torch.allclose(path.at(0.0)(x), a(x), atol=1e-8)
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-8)
        mid = path.at(0.5)
    assert all(torch.isfinite(p).all() for p in mid.parameters())


def test_bad_input_gets_a_clear_error():
    a, b, pair = mlp(0), mlp(1), data()
    cases = [
        ({"kind": "spline"}, "kind must be one of"),
        ({"geometry": "hyperbolic"}, "geometry must be one of"),
        ({"bends": 0}, "bends must be an integer >= 1"),
        ({"points": 0}, "points must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"loss": "error"}, "not differentiable"),
        ({"align": "magic"}, "align must be"),
    ]
    for keywords, message in cases:
        with pytest.raises(paths.PathError, match=message):
            paths.curve(a, b, pair, progress=False, **keywords)
    with pytest.raises(paths.PathError, match="not one architecture"):
        paths.curve(a, MLP(6, [12, 10], 3, seed=1).double(), pair, progress=False)
    with pytest.raises(paths.PathError, match="diverged"):
        paths.curve(a, b, pair, geometry="euclidean", optimizer="sgd", lr=1e30, progress=False)
    with pytest.raises(paths.PathError):
        paths.curve(a, b, (pair[0][:0], pair[1][:0]), progress=False)
