"""Metrics are an open set: built-ins against exact values, user metrics and losses end to end
(every strategy, the Hessian against the exact matrix), settings that validate, round-trip and
are recorded, deprecated keywords that still work, and non-finite networks refused."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from funcspace import FuncspaceError, landscape
from funcspace.energy import local_energy
from funcspace.evaluation import Evaluation, Evaluator, Settings, evaluate, evaluate_affine
from funcspace.hessian import HessianOperator
from funcspace.metrics import BUILT_IN, ERROR, LOSS, MSE, SIGN_ERROR, Metric, as_loss, as_metric
from funcspace.params import stack

STRATEGIES = ("loop", "vmap", "stacked")


def mlp(inputs: int = 4, outputs: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(inputs, 6), nn.Tanh(), nn.Linear(6, outputs)).double()


def classification(n: int = 24) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def test_built_ins_give_exact_values_on_a_tiny_case():
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    assert ERROR.values(out, y).tolist() == [0.0, 1.0, 1.0]  # a tie goes to the first index
    expected = [np.log(1 + np.exp(-2.0)), np.log(1 + np.exp(1.0)), np.log(2.0)]
    np.testing.assert_allclose(LOSS.values(out, y).numpy(), expected, rtol=1e-15)
    assert float(LOSS(out, y)) == pytest.approx(np.mean(expected), rel=1e-15)
    target = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    assert MSE.values(out, target).tolist() == [0.5, 0.5, 2.0]
    single = torch.tensor([[0.5], [-2.0], [0.0]], dtype=torch.float64)
    assert SIGN_ERROR.values(single, torch.tensor([1.0, 1.0, -1.0])).tolist() == [0.0, 1.0, 1.0]
    assert sorted(BUILT_IN) == ["error", "loss", "mse", "sign_error"]
    assert not ERROR.differentiable and LOSS.differentiable


def margin(outputs: Tensor, targets: Tensor) -> Tensor:
    """A user metric: how far the true logit is below the best other one (0 when correct)."""
    true = outputs.gather(1, targets[:, None])[:, 0]
    others = outputs.scatter(1, targets[:, None], float("-inf")).max(1).values
    return torch.relu(others - true)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_user_metric_runs_end_to_end_on_every_strategy(strategy):
    x, y = classification()
    nets = [mlp(seed=s) for s in range(5)]
    user = Metric("margin", margin, targets="class")
    result = evaluate(nets, (x, y), metrics=("error", user), strategy=strategy, chunk=2)
    with torch.no_grad():
        expected = [float(margin(net(x), y).mean()) for net in nets]
        errors = [float((net(x).argmax(1) != y).double().mean()) for net in nets]
    np.testing.assert_allclose(result["margin"], expected, rtol=1e-12)
    np.testing.assert_allclose(result.error, errors)
    assert result.settings.metric_names == ("error", "margin")
    # a named function is a metric too, and one stacked pass gives the same values
    again = evaluate(stack(nets), (x, y), metrics=margin, strategy=strategy)
    np.testing.assert_allclose(again["margin"], expected, rtol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mse_on_regression_targets_equals_a_manual_loop(strategy):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    nets = [mlp(outputs=2, seed=s) for s in range(3)]
    result = evaluate(nets, (x, y), metrics="mse", strategy=strategy, batch_size=7)
    with torch.no_grad():
        expected = [float(((net(x) - y) ** 2).mean()) for net in nets]
    np.testing.assert_allclose(result["mse"], expected, rtol=1e-12)
    with pytest.raises(FuncspaceError, match="integer class indices.*mse"):
        evaluate(nets, (x, y))  # error and loss need class indices, and say what to do


def test_sign_error_of_a_one_output_network():
    x, _ = classification()
    net = mlp(outputs=1)
    with torch.no_grad():
        y = torch.sign(net(x)[:, 0])
    y[:5] = -y[:5]  # five wrong labels
    result = evaluate(net, (x, y), metrics="sign_error")
    assert result["sign_error"][0] == pytest.approx(5 / len(y))
    with pytest.raises(FuncspaceError, match=r"\+-1 labels"):
        evaluate(net, (x, y * 2), metrics="sign_error")
    with pytest.raises(FuncspaceError, match="one output per example"):
        evaluate(mlp(outputs=3), (x, y), metrics="sign_error")


def test_bad_metrics_are_refused_with_a_clear_message():
    x, y = classification()
    with pytest.raises(FuncspaceError, match="unknown metric 'accuracy'"):
        evaluate(mlp(), (x, y), metrics="accuracy")
    with pytest.raises(FuncspaceError, match="needs a name"):
        evaluate(mlp(), (x, y), metrics=lambda out, t: out[:, 0])
    with pytest.raises(FuncspaceError, match="different kinds of targets"):
        Settings(metrics=("error", "mse"))
    with pytest.raises(FuncspaceError, match="share a name"):
        Settings(metrics=("loss", LOSS))
    wrong = Metric("wrong", lambda out, t: out.sum())
    with pytest.raises(FuncspaceError, match="one value per example"):
        evaluate(mlp(), (x, y.double()), metrics=wrong)
    with pytest.raises(FuncspaceError, match="not differentiable"):
        as_loss("error")
    assert as_metric(LOSS) is LOSS and as_loss(None) is LOSS


def test_hessian_of_mse_equals_the_exact_matrix():
    """For a linear model and the mean squared error the Hessian is (2/N) [X 1]^T [X 1]."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.randn(12, generator=g, dtype=torch.float64)
    model = nn.Linear(3, 1).double()
    design = torch.cat([x, torch.ones(12, 1, dtype=torch.float64)], dim=1)
    exact = 2.0 / 12 * design.T @ design
    for loss in ("mse", MSE):
        dense = HessianOperator(model, (x, y), loss=loss).dense()
        torch.testing.assert_close(dense, exact, rtol=1e-12, atol=1e-12)


def test_hessian_of_a_user_loss_equals_autograd_on_the_flat_parameters():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 2, generator=g, dtype=torch.float64)
    y = torch.randn(10, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    quartic = Metric("quartic", lambda out, t: (out[:, 0] - t) ** 4)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def total(v: Tensor) -> Tensor:
        parts, at = {}, 0
        for n, s in zip(names, shapes, strict=True):
            parts[n] = v[at : at + s.numel()].reshape(s)
            at += s.numel()
        out = torch.func.functional_call(model, parts, (x,))
        return quartic(out, y)

    exact = torch.autograd.functional.hessian(total, flat)
    dense = HessianOperator(model, (x, y), loss=quartic, batch_size=4).dense()
    torch.testing.assert_close(dense, exact, rtol=1e-10, atol=1e-10)
    # the Hessian functions cast float32 inputs to the model's dtype and check class targets
    with pytest.raises(FuncspaceError, match="integer class indices"):
        HessianOperator(model, (x, y), loss="loss")
    HessianOperator(model, (x.float(), y), loss="mse").dense()
    with pytest.raises(FuncspaceError, match="targets range over"):
        HessianOperator(mlp(), (classification()[0], torch.full((24,), 7))).dense()


def test_settings_validate_round_trip_and_are_recorded():
    with pytest.raises(FuncspaceError, match="unknown split .validation.; choose one of"):
        Settings(split="validation")
    with pytest.raises(FuncspaceError, match="batch_size must be a positive integer"):
        Settings(batch_size=0)
    user = Metric("margin", margin, targets="class")
    settings = Settings(metrics=("loss", user), split="test", batch_size=8, chunk=2)
    stored = json.loads(json.dumps(settings.to_dict()))
    back = Settings.from_dict(stored, metrics=[user])
    assert back.to_dict() == settings.to_dict() and back.metrics[1] is user
    with pytest.raises(FuncspaceError, match="unknown metric 'margin'"):
        Settings.from_dict(stored)
    x, y = classification()
    recal = Settings(batchnorm="recalibrate", recalibration_data=(x, y))
    assert recal.to_dict()["recalibration_data"] == {"n_inputs": 24}
    with pytest.raises(FuncspaceError, match="pass them as recalibration_data"):
        Settings.from_dict(recal.to_dict())
    assert "split='test'" in repr(settings)

    evaluator = Evaluator(mlp(), dataclasses.replace(settings, split="train"))
    result = evaluator.evaluate([mlp(seed=1), mlp(seed=2)], (x, y))
    assert result.split == "train" and set(result.values) == {"loss", "margin"}
    restored = Evaluation.from_dict(json.loads(json.dumps(result.to_dict())), metrics=[user])
    assert restored.to_dict() == result.to_dict()
    np.testing.assert_array_equal(restored["margin"], result["margin"])
    # one call may use other settings without changing the evaluator's
    other = evaluator.evaluate(mlp(seed=1), (x, y), Settings(metrics="error"))
    assert set(other.values) == {"error"} and evaluator.settings.metric_names == ("loss", "margin")
    with pytest.raises(FuncspaceError, match="settings must be a funcspace.evaluation.Settings"):
        Evaluator(mlp(), {"split": "test"})


def test_deprecated_evaluation_keywords_warn_and_give_the_same_result():
    x, y = classification()
    net = mlp()
    new = landscape.line(net, (x, y), points=3, settings=Settings(metrics="loss", chunk=2))
    with pytest.warns(DeprecationWarning, match=r"line\(\.\.\., metrics=, chunk=\)"):
        old = landscape.line(net, (x, y), points=3, metrics="loss", chunk=2)
    np.testing.assert_array_equal(new.values["loss"], old.values["loss"])
    assert new.meta["settings"]["metrics"] == ["loss"]
    with pytest.warns(DeprecationWarning, match="local_energy"):
        curve = local_energy(net, (x, y), sigmas=(0.1,), samples=2, metrics="loss")
    assert set(curve.mean) == {"loss"}
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['colour'\\]"):
        landscape.plane(net, (x, y), colour="red")
    with pytest.raises(FuncspaceError, match="not both"):
        landscape.line(net, (x, y), settings=Settings(), split="test")


def test_networks_with_non_finite_weights_are_refused_everywhere():
    x, y = classification()
    broken = mlp()
    with torch.no_grad():
        broken[0].weight[0, 0] = float("nan")
    with pytest.raises(FuncspaceError, match="'0.weight' contains NaN"):
        evaluate(broken, (x, y))
    with pytest.raises(FuncspaceError, match="models\\[1\\]: parameter '0.weight'"):
        evaluate([mlp(), broken], (x, y))
    with pytest.raises(FuncspaceError, match="contains NaN"):
        local_energy(broken, (x, y), sigmas=(0.1,), samples=2)
    with pytest.raises(FuncspaceError, match="contains NaN"):
        landscape.plane(broken, (x, y), resolution=(2, 2))
    params = dict(mlp().named_parameters())
    step = {n: torch.full_like(p, float("inf")) for n, p in params.items()}
    with pytest.raises(FuncspaceError, match="directions\\[0\\]"):
        evaluate_affine(mlp(), params, [step], torch.zeros(1, 1, dtype=torch.float64), (x, y))
    huge = mlp()
    with torch.no_grad():
        huge[2].weight.mul_(1e308)
    with pytest.raises(FuncspaceError, match="not finite"):
        evaluate(huge, (x, y))


def test_every_measuring_function_explains_a_cnn_given_flat_inputs():
    """The same mistake gets the same clear message from evaluate, planes, local energy and
    the Hessian functions (not a raw 'Expected 3D or 4D input to conv2d')."""
    from funcspace.flatness import hessian_eigenvalues
    from funcspace.models import CNN

    cnn = CNN(1, 8, channels=(4,), kernel_size=3, hidden=(8,), n_classes=3, seed=0).double()
    flat = (torch.randn(12, 64, dtype=torch.float64), torch.randint(0, 3, (12,)))
    calls = {
        "evaluate": lambda: evaluate(cnn, flat),
        "plane": lambda: landscape.plane(cnn, flat, resolution=(2, 2)),
        "local_energy": lambda: local_energy(cnn, flat, sigmas=(0.1,), samples=2),
        "hessian": lambda: hessian_eigenvalues(cnn, flat),
    }
    for call in calls.values():
        with pytest.raises(FuncspaceError, match="flat vectors.*flat=False"):
            call()
