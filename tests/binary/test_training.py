"""Training binary networks: through funcspace.train with every flatness method (latent weights
clipped, errors of the binarized network, deterministic), with the clipped perceptron rule, and
on the teacher-student task with a binary teacher."""

import pytest
import torch

from binary import (
    RULE,
    BinaryError,
    BinaryLinear,
    binarize,
    binary_mlp,
    committee,
    export,
    perceptron,
    train_perceptron_rule,
)
from funcspace.data import load, teacher_network
from funcspace.errors import FuncspaceError
from funcspace.optim import (
    AdamOptions,
    AdversarialOptions,
    ReplicatedSGDOptions,
    SGDOptions,
    error_and_loss,
)
from funcspace.training import train


def _error(model, data, split="train"):
    x, y = data.split(split)
    return error_and_loss(export(model), x, y)[0]


@pytest.fixture(scope="module")
def binary_teacher_task():
    """A binary perceptron teacher labels 40 Gaussian inputs in 51 dimensions (30 to train)."""
    return load(
        "teacher_student",
        input_dim=51,
        hidden=(),
        n_classes=2,
        weights="binary",
        n_samples=40,
        test_fraction=0.25,
        seed=3,
    )


# --------------------------------------------------------------------- the binary teacher


def test_binary_teacher_is_a_binary_perceptron():
    teacher = teacher_network(9, (), 2, weights="binary", seed=4)
    assert teacher[0].weight.shape == (1, 9)
    assert set(teacher[0].weight.unique().tolist()) == {-1.0, 1.0}
    assert teacher[1].weight.tolist() == [[-1.0], [1.0]]
    data = load("teacher_student", input_dim=9, hidden=(), weights="binary", n_classes=2, seed=4)
    x, y = data.train
    assert torch.equal(y, (x.double() @ teacher[0].weight[0].double() > 0).long())
    assert data.meta["weights"] == "binary"


def test_binary_teacher_with_sign_hidden_units():
    options = {"input_dim": 8, "hidden": (3,), "activation": "sign", "weights": "binary"}
    data = load("teacher_student", n_classes=2, n_samples=200, seed=1, **options)
    teacher = teacher_network(8, (3,), 2, activation="sign", weights="binary", seed=1).double()
    x, y = data.train
    assert torch.equal(teacher(x.double()).argmax(1), y)
    assert min(data.meta["class_counts"]) > 20


# ------------------------------------------------------------------------ funcspace.train


def test_perceptron_learns_a_binary_teacher_to_zero_training_error(binary_teacher_task):
    result = train(
        perceptron(51, seed=0),
        binary_teacher_task,
        SGDOptions(lr=0.1),
        epochs=100,
        batch_size=10,
        seed=0,
        progress=False,
    )
    record = result.record
    assert record.stopped_at_zero_error and record.train_error[-1] == 0.0
    assert _error(result.model, binary_teacher_task) == 0.0  # the binarized network's error
    assert record.test_error[-1] == _error(result.model, binary_teacher_task, "test")
    assert float(result.model[1].weight.detach().abs().max()) <= 1.0


@pytest.mark.parametrize(
    "optimizer",
    [
        SGDOptions(lr=0.1),
        ReplicatedSGDOptions(lr=0.1, replicas=2),
        AdversarialOptions(lr=0.1, adv_epochs=2),
        AdamOptions(lr=0.01),
    ],
    ids=["sgd", "rsgd", "adv", "adam"],
)
def test_every_method_trains_the_binarized_network_with_clipped_latent_weights(optimizer):
    data = load("digits", subset=150, seed=0)
    model = binary_mlp(64, (16, 16), 10, seed=0)
    untrained = _error(model, data)
    result = train(model, data, optimizer, epochs=4, batch_size=16, seed=1, progress=False)
    record = result.record
    assert record.epochs == 4
    assert record.train_error[-1] < min(0.8, untrained - 0.1)  # learns (chance: 0.9)
    assert record.train_error[-1] == _error(result.model, data)
    assert record.test_error[-1] == _error(result.model, data, "test")
    for module in result.model.modules():
        if isinstance(module, BinaryLinear):
            assert float(module.weight.detach().abs().max()) <= 1.0
    assert not torch.equal(model[1].weight, result.model[1].weight)  # trained a copy


def test_training_is_deterministic_under_a_seed():
    data = load("digits", subset=80, seed=0)

    def run(seed):
        model = binary_mlp(64, (12,), 10, batchnorm=True, seed=0)
        return train(model, data, "sgd", lr=0.1, epochs=2, batch_size=16, seed=seed, progress=False)

    a, b, c = run(5), run(5), run(6)
    assert a.record.train_error == b.record.train_error
    assert a.record.train_loss == b.record.train_loss
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------ the classical rule


def test_rule_trains_the_perceptron_to_zero_error(binary_teacher_task):
    model = perceptron(51, seed=1)
    result = train_perceptron_rule(model, binary_teacher_task, epochs=100, lr=0.1, seed=0)
    record = result.record
    assert record.optimizer == RULE and record.batch_size == 1
    assert record.stopped_at_zero_error and _error(result.model, binary_teacher_task) == 0.0
    assert record.test_error[-1] == _error(result.model, binary_teacher_task, "test")
    assert len(record.details["updates"]) == record.epochs and record.details["updates"][0] > 0
    assert float(result.model[1].weight.detach().abs().max()) <= 1.0
    assert not torch.equal(model[1].weight, result.model[1].weight)  # a copy was trained


@pytest.mark.parametrize("tree", [False, True])
def test_rule_trains_committee_machines_to_zero_error(tree):
    teacher = committee(99, 3, tree=tree, seed=7).eval()
    x = torch.randn(40, 99, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = teacher(x).argmax(1)
    result = train_perceptron_rule(committee(99, 3, tree=tree, seed=0), (x, y), epochs=200)
    assert result.record.stopped_at_zero_error
    plain = export(result.model)
    assert torch.equal(plain(x).argmax(1), y)


def test_rule_is_deterministic_and_its_seed_matters(binary_teacher_task):
    def run(seed):
        return train_perceptron_rule(perceptron(51, seed=1), binary_teacher_task, seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.model[1].weight, b.model[1].weight)
    assert a.record.details == b.record.details
    assert a.record.details != c.record.details


def test_rule_hidden_states_move_by_the_clipped_update():
    model = perceptron(3, seed=0)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[0.95, -0.2, 0.1]]))
    x = torch.tensor([[1.0, 2.0, -1.0]])  # z = 1 - 2 - 1 = -2: class 0, the label is 1
    result = train_perceptron_rule(model, (x, torch.tensor([1])), epochs=1, lr=0.5)
    # h + 0.5 * x, clipped: [1.45 -> 1, 0.8, -0.4]; now z = 1 + 2 + 1 = 4 > 0
    torch.testing.assert_close(result.model[1].weight.detach(), torch.tensor([[1.0, 0.8, -0.4]]))
    assert binarize(result.model[1].weight.detach()).tolist() == [[1.0, 1.0, -1.0]]
    assert result.record.train_error == (0.0,) and result.record.details["updates"] == [1]


def test_rule_refuses_other_models_and_labels():
    x = torch.randn(10, 6)
    with pytest.raises(BinaryError, match="perceptron or committee machine"):
        train_perceptron_rule(binary_mlp(6, (3,), 2, seed=0), (x, torch.zeros(10).long()))
    with pytest.raises(FuncspaceError, match="2 outputs"):
        train_perceptron_rule(perceptron(6, seed=0), (x, torch.arange(10) % 3))
    with pytest.raises(BinaryError, match="lr"):
        train_perceptron_rule(perceptron(6, seed=0), (x, torch.zeros(10).long()), lr=0.0)
    with pytest.raises(BinaryError, match="epochs"):
        train_perceptron_rule(perceptron(6, seed=0), (x, torch.zeros(10).long()), epochs=-1)
