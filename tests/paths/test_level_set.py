"""Level sets (Tahir & Katz) and penalized minimizers: every point stays on the level, the
regularizer decreases (up to the multiplier times the band), exact ends on problems with closed
forms (a circle's nearest point, its l1 corner, ridge regression), the two methods agree on a
convex problem, and bad input is refused with what to do."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paths
from funcspace.data import from_tensors
from funcspace.models import MLP
from paths.level_set import LevelSet, level_set
from paths.penalized import Penalized, penalized


@pytest.fixture(scope="module")
def classification():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    data = from_tensors(x, y, test_fraction=0.25)
    model = MLP(5, [16], 2, seed=0).double()
    params = list(model.parameters())
    for _ in range(300):  # full-batch gradient descent to a low training loss
        grads = torch.autograd.grad(F.cross_entropy(model(data.train[0]), data.train[1]), params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                p -= 0.5 * g
    return model.eval(), data


@pytest.fixture(scope="module")
def walk(classification):
    model, data = classification
    return level_set(model, data, steps=25, save_every=10)


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """``model`` in float64 with its parameters drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / 2)
    return model


def circle(start=(5.0, 4.0)):
    """``mse = ((w1 - 3)^2 + (w2 - 4)^2) / 2``: its level set at 2 is the circle of radius 2."""
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([start], dtype=torch.float64))
    return model, (torch.eye(2, dtype=torch.float64), torch.tensor([3.0, 4.0]).double())


def test_level_set_points_stay_within_tolerance_of_the_level(walk, classification):
    model, data = classification
    assert isinstance(walk, LevelSet) and len(walk.step) == 26 and walk.stopped == "steps"
    assert np.all(np.abs(walk.drift) <= walk.tolerance * walk.level)
    assert walk.drift == pytest.approx(walk.train_loss - walk.level)
    # the level is the model's own loss, and the recorded losses are the networks' (eval mode)
    x, y = data.train
    with torch.no_grad():
        assert walk.level == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-12)
        end = float(F.cross_entropy(walk.model(x), y))
        norm = sum(float((p**2).sum()) for p in walk.model.parameters())
    assert end == pytest.approx(walk.train_loss[-1], rel=1e-12)
    assert norm == pytest.approx(walk.regularizer[-1], rel=1e-12)
    assert set(walk.points) == {0, 10, 20, 25}
    last = walk.model.get_parameter("layers.1.weight").detach()
    assert torch.equal(walk.points[25]["layers.1.weight"], last)


def test_the_regularizer_decreases_along_the_level_set(walk):
    # the merit R - mu (L - level) falls; R itself up to |mu| times the band on either side
    slack = 2 * np.abs(walk.multiplier).max() * walk.tolerance * walk.level
    assert np.all(np.diff(walk.regularizer) <= slack)
    merit = walk.regularizer - walk.multiplier * walk.drift
    assert np.all(np.diff(merit) <= 1e-12 * merit[0])
    assert walk.regularizer[-1] < 0.8 * walk.regularizer[0]  # a clear decrease in 25 steps
    assert np.all(np.diff(walk.arc_length) > 0) and walk.step_size[0] == 0
    assert walk.test_loss is not None and walk.test_error is not None
    assert walk.train_error is not None and len(walk.test_loss) == len(walk.step)
    assert walk.evaluations >= 2 * 25 and np.all(walk.corrections <= 8)


def test_the_walk_ends_at_the_circles_nearest_point_from_a_start_off_the_level():
    model, data = circle(start=(5.5, 4.0))  # loss 3.125, corrected onto the level 2 first
    walk = level_set(model, data, loss="mse", level=2.0, steps=100, tolerance=1e-10)
    assert walk.corrections[0] > 0 and abs(walk.drift[0]) <= 2e-10
    assert walk.stopped == "stationary" and walk.converged
    w = walk.model.weight.detach()[0]
    assert torch.allclose(w, torch.tensor([1.8, 2.4], dtype=torch.float64), atol=1e-9)
    assert walk.regularizer[-1] == pytest.approx(9.0, rel=1e-9)
    assert walk.projected_gradient[-1] <= 1e-10 * 6


def test_the_l1_walk_ends_at_the_circles_l1_corner():
    model, data = circle()
    walk = level_set(
        model, data, regularizer="l1", loss="mse", level=2.0, steps=100, tolerance=1e-10
    )
    # min |w1| + |w2| on the circle about (3, 4), radius 2: the centre minus 2 (1, 1) / sqrt 2
    assert walk.regularizer[-1] == pytest.approx(7 - 2 * math.sqrt(2), rel=1e-9)
    assert np.all(np.abs(walk.drift) <= walk.tolerance * walk.level)
    assert walk.regularizer_name == "l1" and walk.test_loss is None and walk.train_error is None


def ridge(x, y, lam):
    n, d = x.shape
    return torch.linalg.solve(x.T @ x / n + lam * torch.eye(d, dtype=x.dtype), x.T @ y / n)


def test_penalized_gives_ridge_regression_and_the_least_squares_minimum_at_lambda_zero():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    y = y + 0.3 * torch.randn(30, generator=g, dtype=torch.float64)
    model = seeded(nn.Linear(4, 1, bias=False), 0)
    lambdas = [0.0, 0.01, 0.1, 1.0]
    result = penalized(model, (x, y), loss="mse", lambdas=lambdas, tolerance=1e-8)
    assert isinstance(result, Penalized) and result.converged.all()
    for lam, net in zip(lambdas, result.models, strict=True):
        assert torch.allclose(net.weight.detach()[0], ridge(x, y, lam), atol=1e-8)
    least = torch.linalg.lstsq(x, y.unsqueeze(1)).solution[:, 0]
    assert result.train_loss[0] == pytest.approx(float(((x @ least - y) ** 2).mean()), rel=1e-9)
    assert np.all(np.diff(result.regularizer) < 0) and np.all(np.diff(result.train_loss) > 0)


def test_the_level_sets_end_is_the_penalized_minimizer_at_its_loss():
    # overparameterized regression: the level set at L(w_lambda) is an ellipsoidal cylinder
    # whose point of least norm is the ridge solution w_lambda
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64)
    y = torch.randn(3, generator=g, dtype=torch.float64)
    lam = 0.5  # a level not far below the loss's scale: a level set of moderate curvature
    target = penalized(seeded(nn.Linear(6, 1, bias=False), 0), (x, y), loss="mse", lambdas=[lam])
    w = ridge(x, y, lam)
    assert torch.allclose(target.models[0].weight.detach()[0], w, atol=1e-8)
    level = float(((x @ w - y) ** 2).mean())
    null = torch.linalg.svd(x).Vh[3:]  # the null space of x: the loss does not see it
    start = ridge(x, y, 2 * lam) + null.T @ torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(start.unsqueeze(0))
    walk = level_set(model, (x, y), loss="mse", level=level, steps=300, tolerance=1e-10)
    assert walk.stopped == "stationary"
    assert torch.allclose(walk.model.weight.detach()[0], w, atol=1e-8)
    assert np.all(np.abs(walk.drift) <= 1e-10 * level)
    assert -1 / walk.multiplier[-1] == pytest.approx(lam, rel=1e-6)  # the penalty it stops at


def test_penalized_on_a_classifier_trades_loss_for_norm(classification):
    model, data = classification
    logistic = seeded(nn.Linear(5, 2), 0)
    result = penalized(logistic, data, lambdas=[1e-3, 1e-2, 1e-1], steps=200)
    assert result.converged.all()  # convex and smooth: L-BFGS reaches its tolerance
    assert np.all(np.diff(result.regularizer) < 0) and np.all(np.diff(result.train_loss) > 0)
    assert result.test_loss is not None and result.train_error is not None
    info = json.loads(json.dumps(result.to_dict()))
    assert info["lambdas"] == [1e-3, 1e-2, 1e-1] and "models" not in info
    assert "3/3 converged" in repr(result)


def test_the_input_model_is_left_as_it_was_and_batchnorm_keeps_its_running_statistics():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model = seeded(model, 3)
    with torch.no_grad():
        model[1].running_mean.normal_(generator=g)
        model[1].running_var.uniform_(0.5, 2.0, generator=g)
    model.train()
    before = copy.deepcopy(model.state_dict())
    walk = level_set(model, (x, y), steps=5)
    penalized(model, (x, y), lambdas=[0.1], steps=5)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        model.eval()
        assert walk.level == pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-12)
    end = walk.model.state_dict()
    assert torch.equal(end["1.running_mean"], before["1.running_mean"])
    assert not walk.model.training
    with torch.no_grad():  # the end's loss is the network's own, with those statistics
        assert float(F.cross_entropy(walk.model(x), y)) == pytest.approx(walk.train_loss[-1])


def test_batches_custom_regularizers_and_single_precision_give_the_same_kind_of_walk():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] - x[:, 2] > 0).long()
    model = MLP(5, [8], 2, seed=1).double()
    whole = level_set(model, (x, y), steps=8)
    batched = level_set(model, (x, y), steps=8, batch_size=13)
    assert batched.regularizer == pytest.approx(whole.regularizer, rel=1e-10)

    def weights(params):  # only the weight matrices
        return sum((p**2).sum() for name, p in params.items() if name.endswith("weight"))

    custom = level_set(model, (x, y), regularizer=weights, steps=8)
    assert custom.regularizer_name == "weights" and custom.regularizer[-1] < custom.regularizer[0]
    single = level_set(copy.deepcopy(model).float(), (x.float(), y), steps=8)
    assert np.all(np.abs(single.drift) <= single.tolerance * single.level)
    assert single.regularizer[-1] < single.regularizer[0]
    assert "steps" in repr(single) and json.dumps(single.to_dict())


def test_bad_input_is_refused_with_what_to_do():
    model, data = circle()
    x, y = data
    cases = [
        (dict(regularizer="l3"), "unknown regularizer 'l3'; choose one of l2, l1"),
        (dict(regularizer=3), "regularizer must be"),
        (dict(regularizer=lambda p: p["weight"]), r"scalar tensor .* returned shape \(1, 2\)"),
        (dict(regularizer=lambda p: torch.ones(())), "not depending on the moving parameters"),
        (dict(level=0.0), "level must be a finite number > 0"),
        (dict(level=float("nan")), "level must be a finite number > 0"),
        (dict(level=True), "level must be"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(tolerance=1.0), r"tolerance must be a finite number in \(0, 1\)"),
        (dict(step_size=-1.0), "step_size must be"),
        (dict(batch_size=0), "batch_size must be"),
        (dict(save_every=0), "save_every must be"),
        (dict(progress="yes"), "progress must be"),
        (dict(loss="error"), "not differentiable"),
    ]
    for options, message in cases:
        with pytest.raises(paths.PathError, match=message):
            level_set(model, data, **{"loss": "mse", **options})
    with pytest.raises(paths.PathError, match="empty"):
        level_set(model, (x[:0], y[:0]), loss="mse")
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.weight[0, 0] = float("nan")
    with pytest.raises(paths.PathError, match="NaN or inf"):
        level_set(broken, data, loss="mse")
    exact, _ = circle(start=(3.0, 4.0))  # at the minimum: loss 0 leaves no level to hold
    with pytest.raises(paths.PathError, match="pass a level > 0"):
        level_set(exact, data, loss="mse")
    # an overdetermined least-squares loss never goes below its minimum: unreachable level
    g = torch.Generator().manual_seed(5)
    xs, ys = torch.randn(30, 2, generator=g).double(), torch.randn(30, generator=g).double()
    with pytest.raises(paths.PathError, match="could not bring the start"):
        level_set(seeded(nn.Linear(2, 1, bias=False), 0), (xs, ys), loss="mse", level=1e-3)
    for lambdas in ([], [-1.0], [float("inf")], "abc", [[0.1, 0.2]]):
        with pytest.raises(paths.PathError, match="lambdas must be"):
            penalized(model, data, loss="mse", lambdas=lambdas)
    with pytest.raises(paths.PathError, match="tolerance must be"):
        penalized(model, data, loss="mse", tolerance=0.0)
