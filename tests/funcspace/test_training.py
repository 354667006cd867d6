"""Training: determinism, no mutation, stopping, records, and each method doing its job."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from funcspace.data import Dataset
from funcspace.errors import FuncspaceError
from funcspace.models import MLP
from funcspace.optim import (
    METHODS,
    Context,
    Gated,
    ReplicatedSGD,
    error_and_loss,
    method_class,
)
from funcspace.params import parameters_of
from funcspace.training import TrainResult, train

# Small, fast settings for every method (two epochs of each must take well under a second).
FAST = {
    "sgd": {},
    "rsgd": {"replicas": 2},
    "adv": {"adv_epochs": 2},
    "adam": {},
    "sam": {},
    "entropy_sgd": {"L": 2},
}


def _teacher_student(n: int = 160, d: int = 10, classes: int = 3, seed: int = 0):
    """Labels of a random one-hidden-layer teacher on Gaussian inputs (learnable by the student)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    w1, w2 = torch.randn(d, 16, generator=gen), torch.randn(16, classes, generator=gen)
    y = (torch.relu(x @ w1) @ w2).argmax(dim=1)
    return x, y


@pytest.fixture(scope="module")
def pair():
    return _teacher_student()


@pytest.fixture(scope="module")
def dataset():
    x, y = _teacher_student(200)
    return Dataset("teacher_student", (x[:160], y[:160]), (x[160:], y[160:]), 3)


def opts(name: str, **options):
    """The options object of method ``name`` (what train takes instead of keywords)."""
    return method_class(name).Options(**options)


def _model(seed: int = 0, **kwargs) -> nn.Module:
    return MLP(10, [32], 3, seed=seed, **kwargs)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_deterministic_under_seed_whatever_the_global_rng(name, pair):
    model = _model()
    torch.manual_seed(1)
    first = train(model, pair, opts(name, **FAST[name]), seed=3, epochs=2, progress=False)
    torch.manual_seed(12345)
    torch.rand(17)
    second = train(model, pair, opts(name, **FAST[name]), seed=3, epochs=2, progress=False)
    assert _same(first.model, second.model)
    assert first.record.train_loss == second.record.train_loss
    other = train(model, pair, opts(name, **FAST[name]), seed=4, epochs=2, progress=False)
    assert not _same(first.model, other.model)


def test_global_rng_left_as_it_was(pair):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    train(_model(dropout=0.2), pair, "sgd", epochs=2, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_dropout_runs_are_deterministic(pair):
    model = _model(dropout=0.3)
    a = train(model, pair, "sgd", epochs=2, progress=False)
    torch.manual_seed(99)
    b = train(model, pair, "sgd", epochs=2, progress=False)
    assert _same(a.model, b.model)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_input_model_untouched_and_result_in_eval_mode(batchnorm, pair):
    model = _model(batchnorm=batchnorm)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, pair, "sgd", epochs=2, progress=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert result.model is not model and not result.model.training
    assert not _same(result.model, model)
    if batchnorm:  # trained in train mode: the running statistics moved
        assert not torch.equal(
            result.model.state_dict()["layers.2.running_mean"], before["layers.2.running_mean"]
        )


def test_stops_at_zero_error_when_reachable():
    x = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    result = train(MLP(10, [32], 2, seed=0), (x, y), "sgd", lr=0.1, epochs=200, progress=False)
    record = result.record
    assert record.stopped_at_zero_error
    assert record.epochs < 200 and record.train_error[-1] == 0
    assert all(e > 0 for e in record.train_error[:-1])
    assert error_and_loss(result.model, x, y)[0] == 0


def test_epoch_budget_respected(pair):
    no_stop = train(
        _model(), pair, "sgd", lr=0.1, epochs=3, stop_at_zero_error=False, progress=False
    )
    assert no_stop.record.epochs == 3 and not no_stop.record.stopped_at_zero_error
    x, _ = pair
    noise = torch.randint(3, (len(x),), generator=torch.Generator().manual_seed(5))
    hard = train(_model(), (x, noise), "sgd", epochs=4, progress=False)
    assert hard.record.epochs == 4 and not hard.record.stopped_at_zero_error
    untrained = train(_model(), pair, "sgd", epochs=0, progress=False)
    assert untrained.record.epochs == 0 and _same(untrained.model, _model())


def test_divergence_stops_the_run_with_a_warning(pair, caplog):
    with caplog.at_level("WARNING", logger="funcspace.training"):
        record = train(_model(), pair, "sgd", lr=1e8, epochs=20, progress=False).record
    assert record.diverged and record.epochs < 20 and not record.stopped_at_zero_error
    assert "diverged" in caplog.text
    assert not train(_model(), pair, "sgd", epochs=1, progress=False).record.diverged


def test_record_lengths_and_plain_data(pair, dataset):
    with_test = train(
        _model(), dataset, "sgd", epochs=3, stop_at_zero_error=False, progress=False
    ).record
    assert with_test.epochs == 3 == with_test.epoch_budget
    for series in (
        with_test.train_error,
        with_test.train_loss,
        with_test.test_error,
        with_test.test_loss,
    ):
        assert len(series) == 3
    assert with_test.wall_time > 0 and with_test.options["lr"] == 0.02
    json.dumps(with_test.to_dict())
    without = train(_model(), pair, opts("rsgd", replicas=2), epochs=2, progress=False)
    assert without.record.test_error is None and without.record.test_loss is None
    assert len(without.record.details["coupling"]) == without.record.epochs
    assert len(without.record.details["replica_error"]) == without.record.epochs + 1
    assert json.loads(json.dumps(without.to_dict()))["optimizer"] == "rsgd"
    assert "rsgd" in repr(without)


def test_save_init_returns_the_initial_weights(pair):
    model = _model()
    result = train(model, pair, "sgd", epochs=2, save_init=True, progress=False)
    expected = parameters_of(model)
    assert result.init.keys() == expected.keys()
    assert all(torch.equal(result.init[k], expected[k]) for k in expected)
    assert train(model, pair, "sgd", epochs=1, progress=False).init is None


def _context(pair, epochs: int = 3) -> Context:
    x, y = pair
    gen = torch.Generator().manual_seed(0)
    return Context(x, y, 3, epochs, 32, gen, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("coupling", [(0.0, 1.5), Gated(target_error=0.0)])
def test_rsgd_center_is_the_mean_of_free_replicas(coupling, pair):
    options = ReplicatedSGD.resolve({"replicas": 3, "coupling": coupling, "init": "shared"})
    method = ReplicatedSGD(_model(), _context(pair), **options.to_dict())
    method.prepare()
    method.run_epoch(0)
    assert method.history["coupling"] == [0.0]
    center = parameters_of(method.model)
    replicas = [parameters_of(r) for r in method.replicas]
    for name, value in center.items():
        mean = torch.stack([r[name] for r in replicas]).mean(dim=0)
        torch.testing.assert_close(value, mean)
    # each replica saw its own batches, so they moved apart
    assert not torch.equal(replicas[0]["layers.1.weight"], replicas[1]["layers.1.weight"])
    assert method.history["spread"][-1] > 1e-6 > 1e-12 > method.history["spread"][0]


def test_rsgd_default_replicas_start_apart_and_are_pulled_together(pair):
    # The default (independent starts, Balanced coupling grown 1e4-fold) explores apart and
    # ends with the replicas collapsed on one center that fits the data.
    settings = {"epochs": 12, "batch_size": 32, "stop_at_zero_error": False, "progress": False}
    result = train(_model(), pair, "rsgd", seed=3, **settings)
    details = result.record.details
    spread, coupling = details["spread"], details["coupling"]
    assert result.record.options["replicas"] == 3
    assert details["coupling_g0"] == pytest.approx(coupling[0]) and coupling[0] > 0
    assert coupling == sorted(coupling) and coupling[-1] > 10 * coupling[0]
    assert spread[0] > 1e-3  # independent initializations
    assert min(spread[:4]) > 0.5 * spread[0]  # the weak early coupling lets them explore
    assert spread[-1] < 1e-4 * spread[0]  # the grown coupling collapses them on the center
    assert result.record.train_error[-1] < 0.5 * result.record.train_error[0]
    # replica 0 starts at the model's own parameters, the others elsewhere
    options = ReplicatedSGD.resolve({})
    method = ReplicatedSGD(_model(), _context(pair), **options.to_dict())
    first, second = (parameters_of(r) for r in method.replicas[:2])
    assert _same(method.replicas[0], _model())
    assert not torch.equal(first["layers.1.weight"], second["layers.1.weight"])
    again = train(_model(), pair, "rsgd", seed=3, **settings)
    assert _same(result.model, again.model)
    assert again.record.details == details


def test_rsgd_balanced_coupling_needs_replicas_apart(pair):
    with pytest.raises(FuncspaceError, match="init='independent'"):
        train(_model(), pair, opts("rsgd", init="shared"), epochs=1, progress=False)
    with pytest.raises(FuncspaceError, match="init"):
        train(_model(), pair, opts("rsgd", init="random"), epochs=1, progress=False)


def test_rsgd_with_one_free_replica_is_sgd(pair):
    rsgd = train(
        _model(), pair, opts("rsgd", replicas=1, coupling=(0, 1)), epochs=3, progress=False
    )
    sgd = train(_model(), pair, "sgd", lr=0.05, epochs=3, progress=False)
    assert _same(rsgd.model, sgd.model)


def test_rsgd_coupling_pulls_replicas_together(pair):
    settings = {"epochs": 3, "batch_size": 16, "stop_at_zero_error": False, "progress": False}
    free = train(_model(), pair, opts("rsgd", coupling=(0.0, 1.0), replicas=3), **settings)
    tied = train(_model(), pair, opts("rsgd", coupling=(5.0, 1.0), replicas=3), **settings)
    elastic = train(
        _model(), pair, opts("rsgd", coupling=(5.0, 1.0), center="elastic", replicas=3), **settings
    )
    free, tied = free.record.details["spread"][-1], tied.record.details["spread"][-1]
    assert tied < 0.2 * free
    assert elastic.record.train_loss[-1] < elastic.record.train_loss[0]


def test_adv_pretrains_on_random_labels(dataset):
    model = MLP(10, [64], 3, seed=0)
    adv = opts("adv", adv_epochs=40, adv_lr=0.05)
    result = train(model, dataset, adv, epochs=0, save_init=True, progress=False)
    details = result.record.details
    x, y = dataset.train
    init = MLP(10, [64], 3)
    init.load_state_dict(result.init)
    clean = train(model, dataset, "sgd", epochs=40, lr=0.05, progress=False)
    # it fitted the random labels, and that point is no better than chance on the true ones
    assert details["adv_random_label_error"] < 0.35
    assert details["adv_init_train_error"] == error_and_loss(init, x, y)[0] > 0.45
    assert clean.record.train_error[-1] < 0.1
    after = train(
        model, dataset, adv, epochs=30, lr=0.1, progress=False, stop_at_zero_error=False
    ).record
    assert after.train_error[-1] < details["adv_init_train_error"]


@pytest.mark.parametrize(
    "name, options",
    [
        ("sam", {"rho": 0.05, "lr": 0.05}),
        ("sam", {"rho": 0.5, "adaptive": True, "lr": 0.05}),
        ("entropy_sgd", {}),
        ("adam", {"lr": 0.01}),
    ],
)
def test_method_reduces_the_loss(name, options, pair):
    x, y = pair
    model = _model()
    start = error_and_loss(model, x, y)[1]
    record = train(
        model, pair, opts(name, **options), epochs=10, batch_size=16, progress=False
    ).record
    assert record.train_loss[-1] < 0.5 * start


def test_sam_differs_from_its_base_sgd(pair):
    sam = train(_model(), pair, opts("sam", rho=0.2), epochs=2, progress=False)
    sgd = train(_model(), pair, "sgd", epochs=2, progress=False)
    assert not _same(sam.model, sgd.model)


def test_bad_names_and_options_rejected(pair):
    with pytest.raises(FuncspaceError, match="unknown optimizer 'sdg'.*rsgd.*sgd"):
        train(_model(), pair, "sdg")
    with pytest.raises(FuncspaceError, match="'rho'.*options are"):
        train(_model(), pair, "sgd", rho=0.1)
    with pytest.raises(FuncspaceError, match="'gama', 'replica'"):
        train(_model(), pair, "rsgd", replica=3, gama=1)
    with pytest.raises(FuncspaceError, match="rho"):
        train(_model(), pair, "sam", rho=-1.0)
    with pytest.raises(FuncspaceError, match="coupling"):
        train(_model(), pair, "rsgd", coupling="fast")
    with pytest.raises(FuncspaceError, match="schedule"):
        train(_model(), pair, "sgd", schedule="step")
    with pytest.raises(FuncspaceError, match="epochs"):
        train(_model(), pair, epochs=-1)
    with pytest.raises(FuncspaceError, match="batch_size"):
        train(_model(), pair, batch_size=0)
    with pytest.raises(FuncspaceError, match="lr"):
        train(_model(), pair, lr=0.0)
    with pytest.raises(FuncspaceError, match="integer class indices"):
        train(_model(), (pair[0], pair[1].float()))
    with pytest.raises(FuncspaceError, match="nn.Module"):
        train("model", pair)
    with pytest.raises(FuncspaceError, match="replicas"):
        train(_model(), pair, opts("rsgd", replicas=0))


def test_result_type(pair):
    result = train(_model(), pair, "adam", epochs=1, progress=False)
    assert isinstance(result, TrainResult)
    with pytest.raises(AttributeError):
        result.model = None  # frozen


def test_bookkeeping_equals_a_plain_evaluation_of_the_result(pair):
    from funcspace.optim import error_and_loss

    result = train(_model(), pair, "sgd", epochs=3, progress=False)
    error, loss = error_and_loss(result.model, *pair)
    assert result.record.train_error[-1] == pytest.approx(error)
    assert result.record.train_loss[-1] == pytest.approx(loss, rel=1e-6)


def test_a_user_loss_trains_and_is_what_the_record_measures(pair):
    from funcspace.metrics import Metric

    def smoothed(outputs, targets):
        return torch.nn.functional.cross_entropy(
            outputs, targets, reduction="none", label_smoothing=0.1
        )

    loss = Metric("smoothed", smoothed, targets="class")
    result = train(_model(), pair, "sam", loss=loss, epochs=4, progress=False)
    with torch.no_grad():
        expected = float(smoothed(result.model(pair[0]), pair[1]).mean())
    assert result.record.train_loss[-1] == pytest.approx(expected, rel=1e-6)
    assert result.record.train_loss[-1] < result.record.train_loss[0]
    with pytest.raises(FuncspaceError, match="not differentiable"):
        train(_model(), pair, loss="error", epochs=1, progress=False)
    with pytest.raises(FuncspaceError, match="regression training is not supported yet"):
        train(_model(), pair, loss="mse", epochs=1, progress=False)


def test_the_boundary_check_says_what_is_wrong_and_what_to_do(pair):
    from funcspace.models import CNN

    x, y = pair
    with pytest.raises(FuncspaceError, match="integer class indices"):
        train(_model(), (x, y.double()), epochs=1, progress=False)
    with pytest.raises(FuncspaceError, match=r"over \[9, 9\] but the model has 3 outputs"):
        train(_model(), (x, y.clone().fill_(9)), epochs=1, progress=False)
    cnn = CNN(1, 8, channels=(4,), kernel_size=3, hidden=(8,), n_classes=3, seed=0)
    with pytest.raises(FuncspaceError, match="flat vectors.*flat=False"):
        train(cnn, (torch.randn(16, 64), torch.randint(0, 3, (16,))), epochs=1, progress=False)
    with pytest.raises(FuncspaceError, match=r"torch.uint8; convert them to floats"):
        train(_model(), ((x * 10).clamp(0, 255).to(torch.uint8), y), epochs=1, progress=False)
    broken = _model()
    with torch.no_grad():
        next(broken.parameters())[0, 0] = float("nan")
    with pytest.raises(FuncspaceError, match="contains NaN"):
        train(broken, pair, epochs=1, progress=False)


def test_options_objects_are_validated_and_keywords_are_deprecated(pair):
    from funcspace.optim import SAMOptions, SGDOptions

    with pytest.raises(FuncspaceError, match="option rho must be a positive number"):
        SAMOptions(rho=0.0)
    result = train(_model(), pair, SGDOptions(momentum=0.5), lr=0.1, epochs=1, progress=False)
    assert result.record.options["momentum"] == 0.5 and result.record.options["lr"] == 0.1
    with pytest.warns(DeprecationWarning, match=r"momentum=\) is deprecated.*SGDOptions"):
        old = train(_model(), pair, "sgd", momentum=0.5, lr=0.1, epochs=1, progress=False)
    assert old.record.train_loss == result.record.train_loss
    with pytest.raises(FuncspaceError, match="both in SGDOptions and as keywords"):
        train(_model(), pair, SGDOptions(), momentum=0.5, epochs=1, progress=False)
