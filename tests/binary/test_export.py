"""Export: a plain model with weights exactly +-1 that computes the binary model's outputs bit
for bit; the binary check and its messages."""

import copy
import io

import pytest
import torch
from hypothesis import given
from torch import nn

import canonicalize
from binary import (
    BinaryError,
    BinaryLinear,
    BinarySign,
    binary_mlp,
    binary_weights,
    check_binary,
    committee,
    export,
    fixed_weights,
    is_binary,
    perceptron,
    symmetries,
)
from tests.strategies import binary_models


@given(binary_models())
def test_export_computes_the_same_outputs_bit_for_bit(case):
    model, x = case.model, case.x
    before = copy.deepcopy(model.state_dict())
    plain = export(model)
    assert torch.equal(plain(x), model(x))
    assert torch.equal(plain(-x), model(-x))
    assert is_binary(plain) and not is_binary(model)
    assert not plain.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    kinds = {type(m) for m in plain.modules()}
    assert not kinds & {BinaryLinear}  # only plain layers and the sign activation remain


def test_export_after_training_mode_batchnorm_statistics():
    model = binary_mlp(6, (5, 5), 3, seed=0).double()
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model.train()
    for _ in range(3):
        model(x)  # running statistics move
    model.eval()
    plain = export(model)
    assert torch.equal(plain(x), model(x))
    assert torch.equal(plain[2].running_mean, model[2].running_mean)


def test_exported_layers_are_plain_with_fixed_readouts():
    model = committee(6, 3, output="majority", seed=2)
    plain = export(model)
    assert [type(m) for m in plain] == [
        nn.Flatten, nn.Linear, BinarySign, nn.Linear, BinarySign, nn.Linear,
    ]  # fmt: skip
    assert torch.equal(plain[1].weight, model[1].binary_weight)
    assert plain[3].weight.tolist() == [[1.0, 1.0, 1.0]]
    assert plain[5].weight.tolist() == [[-1.0], [1.0]]
    assert all(m.bias is None for m in plain if isinstance(m, nn.Linear))
    assert plain[1].weight.dtype == model[1].weight.dtype
    # the vote and the readout are no parameters of the trained model: marked fixed
    assert [p.requires_grad for p in plain.parameters()] == [True, False, False]
    assert fixed_weights(plain) == ("3.weight", "5.weight")


@pytest.mark.parametrize(
    ("make", "trained", "fixed"),
    [
        (lambda: committee(6, 3, seed=0), ("1.weight",), ("3.weight", "4.weight")),
        (lambda: committee(6, 3, tree=True, seed=0), ("2.weight",), ("5.weight", "6.weight")),
        (lambda: perceptron(6, seed=0), ("1.weight",), ("2.weight",)),
        (lambda: binary_mlp(6, (4,), 3, seed=0), ("1.weight", "4.weight"), ()),
    ],
)
def test_the_fixed_marker_is_kept_wherever_the_model_goes(make, trained, fixed):
    plain = export(make())
    assert fixed_weights(plain) == fixed and binary_weights(plain) == trained
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    buffer.seek(0)
    reloaded = export(make())
    reloaded.load_state_dict(plain.state_dict())
    for other in (
        copy.deepcopy(plain),
        plain.double(),
        torch.load(buffer, weights_only=False),
        reloaded,
    ):
        assert fixed_weights(other) == fixed


def test_export_of_a_bare_layer_and_of_a_shared_layer():
    layer = BinaryLinear(4, 2)
    plain = export(layer)
    assert type(plain) is nn.Linear and torch.equal(plain.weight, layer.binary_weight)
    shared = BinaryLinear(3, 3)
    model = nn.Sequential(shared, BinarySign(), shared)
    out = export(model)
    assert out[0] is out[2] and type(out[0]) is nn.Linear
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out(x), model(x))


def test_exported_perceptron_is_read_by_canonicalize():
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    plain = export(perceptron(5, seed=0))
    spec = canonicalize.symmetries(plain, x)
    # to canonicalize the output unit and the readout can flip together, (w, (-1, 1)) ~
    # (-w, (1, -1)); the readout is fixed, so the binary group has no such reversal
    assert [g.size for g in spec.groups] == [1] and spec.scales[0].sign
    assert not any(cls.sign for cls in symmetries(plain, x).scales)


def test_export_refuses_models_without_binary_layers():
    with pytest.raises(BinaryError, match="no binary layer"):
        export(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(BinaryError, match="nn.Module"):
        export("model")


def test_check_binary_names_latent_weights():
    with pytest.raises(BinaryError, match=r"'1.weight' \(BinaryLinear\) holds the latent"):
        check_binary(binary_mlp(3, (2,), 2, seed=0))


def test_check_binary_names_the_weight_that_is_not_plus_minus_one():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), BinarySign(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    with pytest.raises(BinaryError, match=r"a: parameter '2.weight' \(Linear\).*1 of 4.*\(1, 0\)"):
        check_binary(net, "a")
    assert not is_binary(net)
    with torch.no_grad():
        net[2].weight[1, 0] = -1.0
    assert check_binary(net) is net and is_binary(net)


def test_check_binary_accepts_thresholds_and_refuses_other_parameters():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), BinarySign())
    with torch.no_grad():
        net[0].weight.fill_(-1.0)
        net[0].bias.fill_(0.3)
    assert is_binary(net)  # real biases and BatchNorm parameters are thresholds
    with pytest.raises(BinaryError, match=r"'1.weight' belongs to a PReLU"):
        check_binary(nn.Sequential(net[0], nn.PReLU()))
    with pytest.raises(BinaryError, match="no parameters"):
        check_binary(nn.Sequential(BinarySign()))
    with pytest.raises(BinaryError, match="nn.Module"):
        is_binary(torch.ones(2))
