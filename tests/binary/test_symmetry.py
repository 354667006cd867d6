"""Symmetries of binary networks: group elements, canonical form, alignment, bad input."""

import copy

import pytest
import torch
from hypothesis import given
from torch import nn

import binary.symmetry as S
from binary.errors import BinaryError
from canonicalize import Sign
from tests.strategies import binary_mlps, group_seeds


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def is_binary(model: nn.Module) -> bool:
    return all(
        bool((m.weight.abs() == 1).all()) for m in model.modules() if isinstance(m, nn.Linear)
    )


def shuffled(model: nn.Sequential, seed: int) -> nn.Sequential:
    """A hand-made group element for a Linear/Sign chain (no BatchNorm), independent of the
    package: permute and sign-flip the units of every hidden layer."""
    g = torch.Generator().manual_seed(seed)
    new = copy.deepcopy(model)
    linears = [m for m in new if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, consumer in zip(linears, linears[1:], strict=False):
            n = layer.out_features
            perm = torch.randperm(n, generator=g)
            signs = torch.randint(0, 2, (n,), generator=g) * 2.0 - 1
            layer.weight.copy_((signs[:, None] * layer.weight)[perm])
            if layer.bias is not None:
                layer.bias.copy_((signs * layer.bias)[perm])
            consumer.weight.copy_((consumer.weight * signs[None, :].to(consumer.weight))[:, perm])
    return new


def moved(case, seed: int) -> nn.Module:
    if any(isinstance(m, nn.BatchNorm1d) for m in case.model.modules()):
        return S.random_transform(case.model, case.x, seed=seed)
    return shuffled(case.model, seed)


@given(binary_mlps(), group_seeds)
def test_group_elements_keep_outputs_bit_for_bit(case, seed):
    for other in (S.random_transform(case.model, case.x, seed=seed), moved(case, seed)):
        assert torch.equal(other(case.x), case.model(case.x))
        assert is_binary(other)


@given(binary_mlps(), group_seeds)
def test_canonical_form_is_invariant_binary_and_keeps_outputs(case, seed):
    canon = S.canonical_form(case.model, case.x)
    assert same_state(canon, S.canonical_form(moved(case, seed), case.x))
    assert torch.equal(canon(case.x), case.model(case.x))
    assert is_binary(canon)


@given(binary_mlps())
def test_canonical_form_is_idempotent(case):
    canon = S.canonical_form(case.model, case.x)
    assert same_state(canon, S.canonical_form(canon, case.x))


@given(binary_mlps(), group_seeds)
def test_alignment_recovers_the_transformation(case, seed):
    other = moved(case, seed)
    back = S.align(other, case.model, case.x)
    assert same_state(back, case.model)  # Hamming distance 0 to the reference
    assert torch.equal(back(case.x), case.model(case.x))


def wide(seed: int = 0, bias: bool = False) -> tuple[nn.Sequential, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(21, 15, bias=bias), Sign(), nn.Linear(15, 9, bias=bias), Sign(), nn.Linear(9, 3)
    ).double()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randint(0, 2, p.shape, generator=g) * 2.0 - 1)
            if name.endswith("bias"):
                p.mul_(0.5)  # half-integers: no pre-activation is ever 0
    return net, torch.randn(32, 21, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", ["cosine", "weights"])
def test_paper_alignment_alone_recovers_an_untied_network(method):
    """No two units share incoming weights: the paper's cosine matching is exact by itself."""
    net, x = wide()
    back = S.align(shuffled(net, 5), net, x, method, exact=False)
    assert same_state(back, net)


def test_equivalent_tells_classes_apart():
    net, x = wide(bias=True)
    assert S.equivalent(net, shuffled(net, 3), x)
    other = copy.deepcopy(net)
    with torch.no_grad():
        other[2].weight[0, 0] *= -1
    assert not S.equivalent(net, other, x)
    assert not S.equivalent(net, shuffled(other, 3), x)


def test_canonical_form_of_a_small_network_by_hand():
    net = nn.Sequential(nn.Linear(3, 3, bias=False), Sign(), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, -1.0, 1.0]]))
    canon = S.canonical_form(net, torch.randn(5, 3))
    # flipped: rows 0 and 2 (first entry -1) and their outgoing weights; sorted decreasingly
    assert canon[0].weight.tolist() == [[1.0, 1.0, -1.0], [1.0, -1.0, 1.0], [1.0, -1.0, -1.0]]
    assert canon[2].weight.tolist() == [[-1.0, -1.0, -1.0]]


def test_tied_units_are_ordered_by_what_follows():
    """Equal incoming weights: the order is decided downstream, the same for every copy."""
    net = nn.Sequential(nn.Linear(1, 4, bias=False), Sign(), nn.Linear(4, 3, bias=False), Sign())
    net.append(nn.Linear(3, 1, bias=False))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        for i in (2, 4):
            net[i].weight.copy_(torch.randint(0, 2, net[i].weight.shape, generator=g) * 2.0 - 1)
    x = torch.randn(8, 1)
    canon = S.canonical_form(net, x)
    for seed in range(5):
        assert same_state(canon, S.canonical_form(shuffled(net, seed), x))
    with pytest.raises(BinaryError, match="limit=1"):
        S.canonical_form(net, x, limit=1)


def test_batchnorm_units_flip_with_their_statistics_and_gamma():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), Sign(), nn.Linear(2, 1, bias=False))
    net = net.double().eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]))
        net[0].bias.copy_(torch.tensor([0.5, -1.5]))
        net[1].running_mean.copy_(torch.tensor([0.25, -0.75]))
        net[1].running_var.copy_(torch.tensor([2.0, 0.5]))
        net[1].weight.copy_(torch.tensor([-0.5, 2.0]))
        net[1].bias.copy_(torch.tensor([0.3, 0.1]))
        net[3].weight.copy_(torch.tensor([[1.0, -1.0]]))
    x = torch.randn(16, 3, dtype=torch.float64)
    canon = S.canonical_form(net, x)
    assert torch.equal(canon(x), net(x))
    assert canon[0].bias.abs().max() == 0  # folded into the running mean
    assert (canon[0].weight[:, 0] == 1).all() and (canon[1].weight > 0).all()
    assert sorted(canon[1].running_var.tolist()) == [0.5, 2.0]  # never rounded


class PlusSign(Sign):
    """A sign with sign(0) = +1 (the binary package's convention)."""

    def forward(self, x):
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def test_a_sign_subclass_is_a_sign():
    net, x = wide(3)
    net[1], net[3] = PlusSign(), PlusSign()
    spec = S.symmetries(net, x)
    assert [s.size for s in spec.scales if s.sign] == [15, 9]
    assert torch.equal(S.canonical_form(net, x)(x), net(x))


def test_real_valued_weights_are_refused_by_name():
    net, x = wide()
    with torch.no_grad():
        net[2].weight[0, 0] = 0.3
    for call in (
        lambda: S.canonical_form(net, x),
        lambda: S.align(net, wide(1)[0], x),
        lambda: S.random_transform(net, x),
    ):
        with pytest.raises(BinaryError, match=r"'2\.weight' \(\w+\) is not binary.*0\.3"):
            call()


def test_different_architectures_say_what_differs():
    net, x = wide()
    other = nn.Sequential(
        nn.Linear(21, 15, bias=False), Sign(), nn.Linear(15, 7, bias=False), Sign(), nn.Linear(7, 3)
    ).double()
    with torch.no_grad():
        for p in other.parameters():
            p.fill_(1.0)
    with pytest.raises(BinaryError, match=r"'2\.weight' has shape \(9, 15\).*\(7, 15\)"):
        S.align(net, other, x)
    with pytest.raises(BinaryError, match="only in model"):
        S.align(net, nn.Sequential(nn.Linear(21, 3)).double().apply(ones), x)


def ones(m):
    if isinstance(m, nn.Linear):
        with torch.no_grad():
            m.weight.fill_(1.0)


def test_bad_arguments():
    net, x = wide()
    with pytest.raises(BinaryError, match="torch.nn.Module"):
        S.canonical_form("net", x)
    with pytest.raises(BinaryError, match="method"):
        S.align(net, net, x, "activations")
    with pytest.raises(BinaryError, match="limit"):
        S.canonical_form(net, x, limit=0)
    with pytest.raises(BinaryError, match="no parameters"):
        S.binary_weights(nn.Sequential(Sign()))
    with pytest.raises(BinaryError, match="no Linear or Conv"):
        S.binary_weights(nn.Sequential(nn.BatchNorm1d(3), Sign()))
    with pytest.raises(BinaryError, match="example_input"):
        S.infer_example_input(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_models_are_left_untouched():
    net, x = wide(bias=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    S.canonical_form(net, x)
    S.align(shuffled(net, 1), net, x)
    S.random_transform(net, x, seed=2)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
