"""Geodesic paths: great circles in closed form, exact ends, constant function within a class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import canonicalize
import paths
from funcspace.evaluation import evaluate
from funcspace.models import MLP
from tests.zoo import entry, example_input


def test_slerp_follows_the_great_circle_in_closed_form():
    u = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)  # 90 and 180 deg
    for t in (0.0, 0.25, 0.5, 1.0):
        w = paths.slerp(u, v, t)
        expected = torch.tensor([math.cos(t * math.pi / 2), math.sin(t * math.pi / 2), 0.0])
        assert torch.allclose(w[0], expected.double(), atol=1e-12)
        assert float(w[1].norm()) == pytest.approx(1.0)
        angle = math.acos(max(-1.0, min(1.0, float(w[1] @ u[1]))))
        assert angle == pytest.approx(t * math.pi, abs=1e-9)
    close = u[:1] + 1e-9 * torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    mid = paths.slerp(u[:1], close / close.norm(), 0.5)
    assert torch.allclose(mid.norm(dim=1), torch.ones(1, dtype=torch.float64))
    assert torch.equal(paths.slerp(u, v, 1.0)[0], v[0])


def data(d: int = 6, n: int = 48):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


@pytest.mark.parametrize("align", ["weights", "cosine", None])
def test_the_ends_compute_the_two_input_functions(align):
    a, b = MLP(6, [10, 10], 3, seed=0).double(), MLP(6, [10, 10], 3, seed=1).double()
    x, y = data()
    path = paths.geodesic(a, b, x, align=align)
    with torch.no_grad():
        assert torch.allclose(path.at(0.0)(x), a(x), atol=1e-10)
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-10)
    prof = paths.profile(path, (x, y), n=5)
    own = evaluate([a, b], (x, y))
    np.testing.assert_allclose(prof.values["loss"][[0, -1]], own.loss, rtol=1e-9)
    assert prof.kind == "geodesic" and np.isfinite(prof.values["loss"]).all()


def test_the_geodesic_within_one_symmetry_class_keeps_the_function():
    a = MLP(6, [10, 10], 3, seed=0).double()
    x, _ = data()
    twin = canonicalize.random_transform(a, x, seed=4)
    path = paths.geodesic(a, twin, x)
    with torch.no_grad():
        reference = a(x)
        for t in (0.25, 0.5, 0.75):
            assert torch.allclose(path.at(t)(x), reference, atol=1e-9)


def test_a_batchnorm_network_from_the_zoo():
    zoo = entry("vgg11_bn")
    a, b = zoo.build(0), zoo.build(1)
    x = example_input(zoo, seed=0)
    y = torch.randint(0, 5, (len(x),), generator=torch.Generator().manual_seed(0))
    path = paths.geodesic(a, b, x)
    with torch.no_grad():
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-9)
    found = paths.barrier(path, (x, y), "loss", resolution=1 / 16)
    assert found.kind == "geodesic" and found.batchnorm == "recalibrate"
    assert found.ends[0] == pytest.approx(evaluate(a, (x, y)).loss[0], rel=1e-9)


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(6, 4, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.rnn(x.unsqueeze(1))[0].mean(1))


def test_a_model_canonicalize_refuses_gets_a_clear_error():
    x, _ = data()
    with pytest.raises(
        paths.PathError, match="geodesic: .*has no supported symmetry.*supported layers are"
    ):
        paths.geodesic(WithLSTM().double(), WithLSTM().double(), x)
    with pytest.raises(paths.PathError, match="align must be"):
        paths.geodesic(MLP(6, [4], 3).double(), MLP(6, [4], 3).double(), x, align="hungarian")


def test_the_bent_path_joins_its_segments_and_ends_at_the_two_functions():
    x, y = data()
    a, b = MLP(6, [10], 3, seed=0).double(), MLP(6, [10], 3, seed=1).double()
    path = paths.bent(a, b, (x, y), x, epochs=3)
    with torch.no_grad():
        assert torch.allclose(path.at(0.0)(x), a(x), atol=1e-9)
        assert torch.allclose(path.at(1.0)(x), b(x), atol=1e-9)
        assert torch.allclose(path.at(0.5)(x), path.bend(x), atol=1e-9)
    joint = path.first.params([1.0]), path.second.params([0.0])
    for name in joint[0]:
        assert torch.allclose(joint[0][name], joint[1][name], atol=1e-10), name
    prof = paths.profile(path, (x, y), n=9)
    own = evaluate([a, b], (x, y))
    np.testing.assert_allclose(prof.values["loss"][[0, -1]], own.loss, rtol=1e-9)
    assert path.kind == "bent" and path.record.epochs <= 3


def test_the_bent_path_between_two_minima_of_a_convex_problem_has_no_barrier():
    """Logistic regression: every geodesic is a straight line (no sphere to bend around), the
    loss is convex along each segment, and the bend is trained below the ends."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 5, generator=g, dtype=torch.float64)
    y = (x @ torch.randn(5, generator=g, dtype=torch.float64) > 0).long()
    from funcspace.training import train

    def logistic() -> nn.Module:
        return nn.Sequential(nn.Linear(5, 2)).double()

    ends = [
        train(logistic(), (x, y), "sgd", seed=s, epochs=30, progress=False).model for s in (0, 1)
    ]
    path = paths.bent(ends[0], ends[1], (x, y), x, epochs=20)
    found = paths.barrier(path, (x, y), "loss", resolution=1 / 32)
    assert found.height == pytest.approx(0.0, abs=1e-9)
