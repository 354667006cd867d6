"""The trained bend of the binary single-bend path: trainable (export's inverse) bit for bit,
fixed layers kept by every step, clear errors for other architectures, and bends
trained to zero error on a binary teacher-student task with a barrier no higher than random
Hamming paths'.

Measured on the tasks of ``TASKS`` (ends and the error barrier of 8 random Hamming paths
between them as in the ``solved`` fixture; bends by ``train_bend`` with the default scale 0.2,
SGD lr 0.02, batch 10, ``hamming_bent`` seeds 0-3; the test checks seed 0):

==========  ====  ===============  ===========================  =============  ==========
task        H     random barrier   bent barriers (seeds 0-3)    bend epochs    d(mid, bend)
==========  ====  ===============  ===========================  =============  ==========
perceptron  29    0.051 +- 0.011   0.05 0.05 0.10 0.04          11 12 7 14     16-26
committee   71    0.100 +- 0.016   0.07 0.08 0.05 0.05          18 39 67 23    6-22
mlp         623   0.269 +- 0.045   0.15 0.15 0.20 0.18          32 40 26 31    39-56
==========  ====  ===============  ===========================  =============  ==========

A bend lowers the barrier of committees and MLPs; perceptrons gain nothing (their bent
barriers are within, once above, the random orders' spread). A BatchNorm MLP (the same task
with ``batchnorm=True``) gave 0.21 on average against 0.25 +- 0.09, too noisy to assert."""

import copy
import functools

import pytest
import torch
from torch import nn

from binary import (
    BinaryError,
    BinaryLinear,
    HammingBentPath,
    binary_cnn,
    binary_mlp,
    committee,
    export,
    hamming_barriers,
    hamming_bent,
    hamming_midpoint,
    is_binary,
    perceptron,
    random_transform,
    train_bend,
    train_perceptron_rule,
    trainable,
)
from binary.barriers import _resolution
from binary.bend import DEFAULT_SCALE
from canonicalize import Sign
from funcspace.data import load
from funcspace.optim import AdversarialOptions, ReplicatedSGDOptions, SGDOptions, error_and_loss
from funcspace.training import TrainResult, train
from paths import barrier
from tests.binary.test_hamming import binary_vector


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _with_statistics(model: nn.Module, seed: int) -> nn.Module:
    """A copy whose BatchNorm parameters and statistics are random (not the defaults)."""
    g = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(7)
    return model


ARCHITECTURES = {
    "binary_mlp": (lambda s: binary_mlp(12, (8, 6), 3, seed=s), (12,)),
    "committee": (lambda s: committee(15, 3, seed=s), (15,)),
    "tree_majority": (lambda s: committee(15, 5, tree=True, output="majority", seed=s), (15,)),
    "perceptron": (lambda s: perceptron(9, seed=s), (9,)),
    "binary_cnn": (lambda s: binary_cnn(1, 8, 4, channels=(3, 4), seed=s), (1, 8, 8)),
}


# ---------------------------------------------------------------- trainable: export's inverse


@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_trainable_round_trip_is_bit_exact(kind):
    make, shape = ARCHITECTURES[kind]
    plain = export(_with_statistics(make(1), seed=2))
    template = make(0)
    kept_plain, kept_template = copy.deepcopy(plain), copy.deepcopy(template)
    model = trainable(plain, template)
    assert _state_equal(export(model), plain)
    x = torch.randn(20, *shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(export(model)(x), plain(x))
    assert torch.equal(model.eval()(x), plain(x))  # the training model computes it too
    latent = [m.weight for m in model.modules() if isinstance(m, BinaryLinear)]
    assert all(bool((w.detach().abs() == DEFAULT_SCALE).all()) for w in latent)
    assert type(model[-1]) is type(template[-1])  # a training model, not a plain one
    assert _state_equal(plain, kept_plain) and _state_equal(template, kept_template)


def test_trainable_latent_magnitude_and_dtype():
    plain = export(committee(9, 3, seed=1))
    model = trainable(plain.double(), committee(9, 3, seed=0), scale=1.0)
    assert model[1].weight.dtype == torch.float32  # the template's
    assert model[1].weight.detach().abs().unique().tolist() == [1.0]
    assert torch.equal(export(model)[1].weight, plain[1].weight.float())
    for scale in (0.0, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(BinaryError, match="scale must be"):
            trainable(plain, committee(9, 3), scale=scale)


def test_trainable_takes_every_group_element_of_a_committee():
    """No group element changes the fixed vote (units are permuted, never reversed), so every
    transformed copy is a committee the template can be."""
    plain = export(committee(15, 5, seed=1))
    x = torch.randn(32, 15, generator=torch.Generator().manual_seed(0))
    for seed in range(4):
        moved = random_transform(plain, x, seed=seed)
        model = trainable(moved, committee(15, 5, seed=0))
        assert _state_equal(export(model), moved)
        assert torch.equal(export(model)(x), plain(x))


def test_trainable_refuses_what_the_template_cannot_be():
    template = committee(15, 3, seed=0)
    with pytest.raises(BinaryError, match=r"'1\.weight' has shape \(5, 15\) in plain and \(3,"):
        trainable(export(committee(15, 5, seed=1)), template)
    with pytest.raises(BinaryError, match="tensors only in plain"):
        trainable(export(binary_mlp(15, (3,), 2, seed=1)), template)
    zero_at_zero = export(committee(15, 3, seed=1))
    zero_at_zero[2] = Sign()  # torch.sign: 0 at 0, not this package's convention
    with pytest.raises(BinaryError, match="layer '2' is BinarySign in export.* and Sign in plain"):
        trainable(zero_at_zero, template)
    wrong_eps = export(binary_mlp(6, (4,), 2, seed=1))
    wrong_eps[2].eps = 1e-3
    with pytest.raises(BinaryError, match=r"layer '2' is BatchNorm1d\(4, eps=1e-05"):
        trainable(wrong_eps, binary_mlp(6, (4,), 2))
    real = export(committee(15, 3, seed=1))
    with torch.no_grad():
        real[1].weight[0, 0] = 0.3
    with pytest.raises(BinaryError, match=r"plain: parameter '1\.weight' .* is not binary"):
        trainable(real, template)
    with pytest.raises(BinaryError, match="template must be a binary training model"):
        trainable(export(committee(15, 3, seed=1)), export(template))
    tree = export(committee(15, 3, tree=True, seed=1))
    with torch.no_grad():
        tree[5].weight[0, 1] = -1.0  # a vote the tree's SumUnits does not cast
    with pytest.raises(BinaryError, match=r"plain's '5\.weight' is \[1.0, -1.0, 1.0\].*cannot"):
        trainable(tree, committee(15, 3, tree=True))
    odd = export(committee(15, 3, seed=1))
    with torch.no_grad():
        odd[4].weight[0, 0] = 1.0  # the readout's (-1, +1) is (+1, +1)
    with pytest.raises(BinaryError, match=r"'4\.weight' is \[1.0, 1.0\].*cannot represent"):
        trainable(odd, template)


# ------------------------------------------------- the trained bend on a binary teacher task


def _teacher_task(input_dim: int, n_samples: int):
    return load(
        "teacher_student",
        input_dim=input_dim,
        hidden=(),
        n_classes=2,
        weights="binary",
        n_samples=n_samples,
        test_fraction=0.0,
        seed=3,
    )


def _sgd_ends(make, data):
    out = []
    for seed in (0, 1):
        result = train(make(seed), data, SGDOptions(lr=0.1), epochs=100, batch_size=10, seed=seed)
        assert result.record.stopped_at_zero_error
        out.append(result.model)
    return out


def _rule_ends(make, data):
    out = []
    for seed in (0, 1):
        result = train_perceptron_rule(make(seed), data, epochs=100, seed=seed)
        assert result.record.stopped_at_zero_error
        out.append(result.model)
    return out


def _check_leg(leg, start: nn.Module) -> None:
    """Every point +-1, one flip per step, from ``start`` to the leg's aligned end exactly
    (real parameters, BatchNorm's, move linearly between the ends' values)."""
    params = leg.params(torch.arange(leg.length + 1) / max(leg.length, 1))
    points = binary_vector(params, leg.names)
    assert bool((points.abs() == 1).all())
    assert (points[1:] != points[:-1]).sum(dim=1).tolist() == [1] * leg.length
    first, last = start.state_dict(), leg.aligned.state_dict()
    for name in params:
        assert torch.equal(params[name][0], first[name])
        assert torch.equal(params[name][-1], last[name])


# (make, input_dim, n_samples, how the ends are trained)
TASKS = {
    "perceptron": (lambda s: perceptron(201, seed=s), 201, 100, _rule_ends),
    "committee": (lambda s: committee(101, 3, seed=s), 101, 100, _sgd_ends),
    "mlp": (lambda s: binary_mlp(101, (15,), 2, batchnorm=False, seed=s), 101, 60, _sgd_ends),
}


@pytest.fixture(scope="module", params=list(TASKS))
def solved(request):
    """Two binary networks trained to zero error on one teacher-student task, the task, and
    the barrier of random Hamming paths between them."""
    make, input_dim, n_samples, ends = TASKS[request.param]
    data = _teacher_task(input_dim, n_samples)
    trained_a, trained_b = ends(make, data)
    a, b = export(trained_a), export(trained_b)
    random = hamming_barriers(a, b, data, orders=8, seed=0)
    return request.param, data, trained_a, a, b, random


def test_trained_bend_reaches_zero_error_and_lowers_the_barrier(solved):
    kind, data, template, a, b, random = solved
    x, y = data.train
    train = functools.partial(train_bend, template=template, data=data, batch_size=10)
    path = hamming_bent(a, None, b, data=data, train=train, example_input=x)
    assert isinstance(path, HammingBentPath)
    # the bend: trained to zero training error from the midpoint, a plain binary network
    assert path.record.stopped_at_zero_error and path.record.train_error[-1] == 0.0
    assert is_binary(path.bend) and error_and_loss(path.bend, x, y)[0] == 0.0
    mid = hamming_midpoint(a, b, example_input=x)
    assert error_and_loss(mid, x, y)[0] > 0  # there was something to train
    # both legs are binary geodesics: +-1 points, one flip per step, the right ends
    for leg, start in ((path.first, a), (path.second, path.first.aligned)):
        _check_leg(leg, start)
    assert path.length == path.first.length + path.second.length
    assert torch.equal(path.at(1.0)(x), b(x))
    # its barrier against the random Hamming paths' between the same ends (measured: see the
    # module docstring); perceptrons gain nothing from a bend: within the random orders' spread
    grid = _resolution(2 * max(path.first.length, path.second.length))  # every flip a point
    bent = barrier(path, data, resolution=grid)
    if kind == "perceptron":
        assert bent.height <= random.heights.max()
    else:
        assert bent.height < random.mean


# ------------------------------------------------------------------ train_bend's contract


@pytest.fixture(scope="module")
def tiny():
    data = _teacher_task(21, 30)
    return data, export(committee(21, 3, seed=1)), committee(21, 3, seed=0)


def test_train_bend_returns_the_exported_bend_and_leaves_its_inputs_alone(tiny):
    data, mid, template = tiny
    kept_mid, kept_template = copy.deepcopy(mid), copy.deepcopy(template)
    result = train_bend(mid, template, data, lr=0.1, batch_size=10, seed=0)
    assert isinstance(result, TrainResult) and is_binary(result.model)
    assert result.record.stopped_at_zero_error
    x, y = data.train
    assert error_and_loss(result.model, x, y)[0] == 0.0
    assert _state_equal(mid, kept_mid) and _state_equal(template, kept_template)
    again = train_bend(mid, template, data, lr=0.1, batch_size=10, seed=0)
    assert _state_equal(again.model, result.model)  # deterministic under its seed
    short = train_bend(mid, template, data, epochs=1, seed=0)  # the budget runs out first
    assert not short.record.stopped_at_zero_error and is_binary(short.model)


def test_train_bend_methods(tiny):
    data, mid, template = tiny
    shared = ReplicatedSGDOptions(lr=0.1, replicas=2, init="shared", init_noise=0.1)
    result = train_bend(mid, template, data, optimizer=shared, epochs=3, batch_size=10)
    assert result.record.optimizer == "rsgd" and is_binary(result.model)
    for adv in ("adv", AdversarialOptions()):
        with pytest.raises(BinaryError, match="'adv' pre-trains on random labels"):
            train_bend(mid, template, data, optimizer=adv)


def test_hamming_bent_keeps_the_record_of_a_train_result(tiny):
    data, mid, template = tiny
    a, b = export(committee(21, 3, seed=2)), export(committee(21, 3, seed=3))
    x = data.train[0]
    train = functools.partial(train_bend, template=template, data=data, epochs=2)
    path = hamming_bent(a, None, b, data=data, train=train, align=False)
    assert path.record is not None and path.record.epochs <= 2
    plain = hamming_bent(a, None, b, data=data, train=lambda m: m, align=False)
    assert plain.record is None
    # aligned: b's hidden units are only permuted (the vote is fixed), so the midpoint is a
    # committee with the ends' vote and readout, and the template trains it
    aligned = hamming_bent(a, None, b, data=data, train=train, example_input=x)
    assert aligned.record is not None and is_binary(aligned.bend)
    kept = a.state_dict()
    for name in ("3.weight", "4.weight"):
        assert torch.equal(aligned.bend.state_dict()[name], kept[name])
    assert not aligned.bend[3].weight.requires_grad
