"""Reference binary models: what they compute (by hand), seeding, structure and bad input."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from binary import (
    BinaryConv2d,
    BinaryError,
    BinaryLinear,
    BinarySign,
    binarize,
    binary_cnn,
    binary_mlp,
    committee,
    perceptron,
)
from tests.strategies import binary_models


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_perceptron_classifies_by_the_sign_of_its_binary_weights():
    model = perceptron(7, seed=3).eval()
    x = torch.randn(50, 7, generator=_gen())
    z = x @ binarize(model[1].weight.detach())[0]
    logits = model(x)
    assert torch.equal(logits, torch.stack([-z, z], dim=1))
    assert torch.equal(logits.argmax(1), (z > 0).long())


@pytest.mark.parametrize("output", ["sum", "majority"])
@pytest.mark.parametrize("tree", [False, True])
def test_committee_is_the_majority_of_its_hidden_signs(tree, output):
    n, k = 15, 5
    model = committee(n, k, tree=tree, output=output, seed=1).eval()
    x = torch.randn(40, n, generator=_gen(1))
    w = binarize(model[2 if tree else 1].weight.detach()).reshape(k, -1)
    if tree:
        hidden = binarize((x.view(40, k, n // k) * w).sum(-1))  # unit j reads block j
    else:
        hidden = binarize(x @ w.T)
    votes = hidden.sum(1)
    score = votes if output == "sum" else binarize(votes)
    assert torch.equal(model(x), torch.stack([-score, score], dim=1))
    assert torch.equal(model(x).argmax(1), (votes > 0).long())


def test_tree_units_read_only_their_block():
    model = committee(12, 3, tree=True, seed=0).eval()
    hidden = nn.Sequential(*model[:4])  # up to the hidden signs
    x = torch.randn(5, 12, generator=_gen())
    y = x.clone()
    y[:, 4:8] = torch.randn(5, 4, generator=_gen(9))  # block 1 only
    a, b = hidden(x).flatten(1), hidden(y).flatten(1)
    assert torch.equal(a[:, [0, 2]], b[:, [0, 2]])
    assert model[2].weight.shape == (3, 4, 1, 1) and model[2].groups == 3


def test_binary_mlp_structure_and_windows():
    model = binary_mlp(10, (6, 4), 3, batchnorm=False, seed=0)
    kinds = [type(m).__name__ for m in model]
    assert kinds == [
        "Flatten", "BinaryLinear", "BinarySign", "BinaryLinear", "BinarySign", "BinaryLinear",
    ]  # fmt: skip
    assert [m.window for m in model if isinstance(m, BinarySign)] == [math.sqrt(10), math.sqrt(6)]
    with_bn = binary_mlp(10, (6, 4), 3, seed=0)
    assert [type(m).__name__ for m in with_bn].count("BatchNorm1d") == 2
    assert all(m.window == 1.0 for m in with_bn if isinstance(m, BinarySign))
    assert all(
        not hasattr(m, "bias") or m.bias is None for m in with_bn if isinstance(m, BinaryLinear)
    )


def test_binary_cnn_outputs_integer_logits_from_binary_activations():
    model = binary_cnn(1, 8, 4, channels=(3, 5), batchnorm=False, seed=0).eval()
    x = torch.randn(6, 1, 8, 8, generator=_gen())
    logits = model(x)
    assert logits.shape == (6, 4) and torch.equal(logits, logits.round())
    features = model[:-1](x)  # the signs the output layer reads
    assert set(features.unique().tolist()) <= {-1.0, 1.0}
    assert [m.out_channels for m in model if isinstance(m, BinaryConv2d)] == [3, 5]


@given(binary_models())
def test_models_are_binary_and_output_two_or_more_logits(case):
    model, x = case.model, case.x
    out = model(x)
    assert out.ndim == 2 and out.shape[0] == len(x) and out.shape[1] >= 2
    for module in model.modules():
        if isinstance(module, (BinaryLinear, BinaryConv2d)):
            assert module.bias is None
            assert float(module.weight.detach().abs().max()) <= 1.0
            assert set(module.binary_weight.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize(
    "build",
    [
        lambda seed: perceptron(9, seed=seed),
        lambda seed: committee(9, 3, tree=True, seed=seed),
        lambda seed: binary_mlp(5, (4, 4), 3, seed=seed),
        lambda seed: binary_cnn(2, 4, 3, channels=(2,), seed=seed),
    ],
)
def test_seed_fixes_the_weights_and_leaves_the_global_rng_alone(build):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = build(5), build(5), build(6)
    assert torch.equal(torch.rand(3), expected)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if k.endswith("weight"))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: perceptron(0), "in_features"),
        (lambda: perceptron(3, seed=-1), "seed"),
        (lambda: committee(9, 2), "odd"),
        (lambda: committee(10, 3, tree=True), "multiple of units"),
        (lambda: committee(9, 3, output="mean"), "output"),
        (lambda: committee(9, 3, tree=1), "tree"),
        (lambda: binary_mlp(4, (), 2), "at least one hidden layer"),
        (lambda: binary_mlp(4, 8, 2), "widths"),
        (lambda: binary_mlp(4, (8, 0), 2), r"widths\[1\]"),
        (lambda: binary_mlp(4, (8,), 1), "n_classes"),
        (lambda: binary_cnn(1, 4, 2, channels=(2, 2, 2)), "too small"),
        (lambda: binary_cnn(1, 8, 2, kernel_size=4), "odd"),
    ],
)
def test_bad_arguments_are_refused_with_the_name(build, match):
    with pytest.raises(BinaryError, match=match):
        build()


@given(st.integers(1, 30), st.sampled_from((1, 3, 5)))
def test_committee_windows_are_sqrt_fan_in(n, units):
    model = committee(n, units, output="majority", seed=0)
    windows = [m.window for m in model if isinstance(m, BinarySign)]
    assert windows == [math.sqrt(n), math.sqrt(units)]
