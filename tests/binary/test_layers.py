"""Binary layers: the sign convention, straight-through gradients on tiny exact cases, latent
weights that stay latent and clipped, and canonicalize's reading of the sign activation."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call, vmap

import canonicalize
from binary import (
    BinaryConv2d,
    BinaryError,
    BinaryLinear,
    BinarySign,
    LatentWeight,
    SumUnits,
    TwoClassReadout,
    binarize,
    binary_mlp,
    clip_latent_,
    export,
)
from binary.layers import _CLIP_HOOK
from tests.strategies import binary_models

# ------------------------------------------------------------------------ sign convention


def test_binarize_gives_plus_one_at_zero_and_keeps_nan():
    x = torch.tensor([-3.0, -1e-30, -0.0, 0.0, 1e-30, 2.0, math.nan])
    out = binarize(x)
    assert out[:6].tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert math.isnan(out[6])  # a diverged network stays visible


def test_sign_activation_is_canonicalize_sign_with_the_same_convention():
    act = BinarySign()
    assert isinstance(act, canonicalize.Sign)
    z = torch.tensor([-2.0, -0.0, 0.0, 0.5])
    assert act(z).tolist() == [-1.0, 1.0, 1.0, 1.0]
    assert canonicalize.Sign()(z).tolist() == [-1.0, 0.0, 0.0, 1.0]  # torch.sign differs at 0 only
    weight = torch.tensor([[0.0, -0.0, -0.5]])
    layer = BinaryLinear(3, 1)
    with torch.no_grad():
        layer.weight.copy_(weight)
    assert layer.binary_weight.tolist() == [[1.0, 1.0, -1.0]]  # the same rule for weights


@pytest.mark.parametrize("window", [0.0, -1.0, math.inf, math.nan, True, "1"])
def test_bad_window_is_refused(window):
    with pytest.raises(BinaryError, match="window"):
        BinarySign(window)


# ------------------------------------------------------------- straight-through gradients


def test_linear_straight_through_gradient_exact():
    layer = BinaryLinear(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.2, 0.0], [-0.7, 0.3, -0.1]]))
    x = torch.tensor([[1.0, 2.0, -1.0]], dtype=torch.float64, requires_grad=True)
    out = layer(x)
    assert out.tolist() == [[-2.0, 2.0]]  # x @ [[1, -1, 1], [-1, 1, -1]].T
    g = torch.tensor([[1.0, -3.0]], dtype=torch.float64)
    out.backward(g)
    # weights: identity through the sign, so dL/dW = g^T x; inputs: g @ W_b
    assert layer.weight.grad.tolist() == [[1.0, 2.0, -1.0], [-3.0, -6.0, 3.0]]
    assert x.grad.tolist() == [[4.0, -4.0, 4.0]]


@pytest.mark.parametrize(
    "window, expected",
    [
        (1.0, [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]),  # hardtanh: 1 where |z| <= 1, edges included
        (2.0, [0.5, 0.5, 0.5, 0.5, 0.5, 0.0]),  # d/dz hardtanh(z / 2)
    ],
)
def test_sign_straight_through_gradient_exact(window, expected):
    z = torch.tensor([-2.0, -1.0, -0.0, 0.5, 1.0, 2.5], requires_grad=True)
    out = BinarySign(window)(z)
    assert out.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    out.sum().backward()
    assert z.grad.tolist() == expected


def test_tiny_network_gradient_exact():
    """x -> BinaryLinear(2, 2) -> BinarySign -> SumUnits -> TwoClassReadout, by hand."""
    net = nn.Sequential(BinaryLinear(2, 2), BinarySign(), SumUnits(2), TwoClassReadout()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.1, 0.4], [-0.3, 0.2]]))
    x = torch.tensor([[0.5, 0.25], [2.0, -1.0]], dtype=torch.float64)
    logits = net(x)
    # pre-activations: [[0.75, -0.25], [1.0, -3.0]]; signs [[1, -1], [1, -1]]: sum 0
    assert logits.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    logits[:, 1].sum().backward()  # d(sum of class-1 logits)/d(sign outputs) = 1 each
    # only |z| <= 1 passes: example 0 both units, example 1 unit 0 only
    assert net[0].weight.grad.tolist() == [[2.5, -0.75], [0.5, 0.25]]


def test_conv_straight_through_gradient_is_the_binary_weight_gradient():
    gen = torch.Generator().manual_seed(0)
    conv = BinaryConv2d(2, 3, 3, padding=1, groups=1).double()
    x = torch.randn(2, 2, 5, 5, generator=gen, dtype=torch.float64)
    g = torch.randn(2, 3, 5, 5, generator=gen, dtype=torch.float64)
    conv(x).backward(g)
    w_b = conv.binary_weight.clone().requires_grad_(True)
    F.conv2d(x, w_b, padding=1).backward(g)
    assert torch.equal(conv.weight.grad, w_b.grad)
    assert torch.equal(conv(x), F.conv2d(x, w_b.detach(), padding=1))


# ----------------------------------------------------------------------- latent weights


def test_latent_weights_keep_their_class_through_copies_and_moves():
    model = binary_mlp(4, (3,), 2, seed=0)
    for moved in (copy.deepcopy(model), model.double(), copy.deepcopy(model).to("meta")):
        assert type(moved[1].weight) is LatentWeight
        assert type(moved[-1].weight) is LatentWeight
    assert type(model.state_dict()["1.weight"]) is torch.Tensor  # plain data when saved


@pytest.mark.parametrize(
    "make", [lambda p: torch.optim.SGD(p, lr=1.0, momentum=0.9), lambda p: torch.optim.Adam(p)]
)
def test_every_optimizer_step_clips_latent_weights(make):
    layer = BinaryLinear(2, 1)
    bn = nn.BatchNorm1d(1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.99995, -0.5]]))
        bn.weight.fill_(0.99995)
    optimizer = make([*layer.parameters(), *bn.parameters()])
    for _ in range(3):
        layer.weight.grad = torch.tensor([[-5.0, 0.1]])
        bn.weight.grad = torch.tensor([-5.0])
        bn.bias.grad = torch.tensor([0.0])
        optimizer.step()
    w = layer.weight.detach()
    assert float(w[0, 0]) == 1.0
    assert -1.0 <= float(w[0, 1]) < -0.5
    assert float(bn.weight.detach()[0]) > 1.0  # other parameters are never clipped


def test_clip_latent_and_clip_method():
    model = binary_mlp(3, (2,), 2, seed=0)
    with torch.no_grad():
        model[1].weight.mul_(10)
        model[-1].weight.fill_(-4)
    assert clip_latent_(model) is model
    assert float(model[1].weight.detach().abs().max()) == 1.0
    assert model[-1].weight.unique().tolist() == [-1.0]
    layer = BinaryConv2d(1, 1, 1)
    with torch.no_grad():
        layer.weight.fill_(2.5)
    assert layer.clip_() is layer and float(layer.weight.detach()) == 1.0
    assert _CLIP_HOOK is not None  # registered once, at import


def test_reset_parameters_draws_fair_signs_in_the_clip_range():
    layer = BinaryLinear(200, 50)
    layer.reset_parameters(generator=torch.Generator().manual_seed(3))
    w = layer.weight.detach()
    assert float(w.abs().max()) <= 1.0 and 0.4 < float((w > 0).double().mean()) < 0.6


def test_fixed_layers_compute_their_plain_form():
    x = torch.tensor([[1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])
    assert SumUnits(3)(x).tolist() == [[-1.0], [1.0]]
    assert TwoClassReadout()(torch.tensor([[2.5]])).tolist() == [[-2.5, 2.5]]
    with pytest.raises(BinaryError, match="units"):
        SumUnits(0)


# -------------------------------------------------------------------- batched evaluation


@given(binary_models(), st.integers(1, 4))
def test_vmap_over_stacked_latent_weights_equals_a_loop(case, k):
    """The evaluation engine runs binary models with vmap(functional_call): the custom
    autograd functions must batch, and give what one call per point gives (up to the
    summation order of real-valued first-layer products, float64)."""
    model, x = case.model, case.x
    gen = torch.Generator().manual_seed(k)
    params = {
        n: torch.rand((k, *p.shape), generator=gen, dtype=p.dtype) * 2 - 1
        for n, p in model.named_parameters()
    }
    buffers = dict(model.named_buffers())
    batched = vmap(lambda p: functional_call(model, (p, buffers), (x,)))(params)
    for i in range(k):
        point = {n: p[i] for n, p in params.items()}
        expected = functional_call(model, (point, buffers), (x,))
        torch.testing.assert_close(batched[i], expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- discovery


def test_discovery_finds_permutations_and_signs_of_a_binary_mlp():
    model = binary_mlp(5, (4, 3), 2, batchnorm=False, seed=0)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(0))
    spec = canonicalize.symmetries(export(model), x)
    assert [g.size for g in spec.groups] == [4, 3]
    hidden = [(s.size, s.sign) for s in spec.scales if s.group is not None]
    assert hidden == [(4, True), (3, True)]  # each hidden unit can flip its sign
