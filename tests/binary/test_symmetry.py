"""Symmetries of binary networks: group elements, canonical form, alignment, bad input."""

import copy

import pytest
import torch
from hypothesis import assume, given
from torch import nn

import binary.symmetry as S
from binary import committee, export, fixed_weights
from binary.errors import BinaryError
from canonicalize import Sign
from tests.strategies import binary_mlps, binary_models, group_seeds


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
    with pytest.raises(BinaryError, match="no trainable Linear or Conv"):
        S.binary_weights(nn.Sequential(nn.BatchNorm1d(3), Sign()))
    frozen = copy.deepcopy(net).requires_grad_(False)
    with pytest.raises(BinaryError, match=r"no trainable .*'0\.weight', .* are fixed"):
        S.binary_weights(frozen)
    with pytest.raises(BinaryError, match="example_input"):
        S.infer_example_input(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_models_are_left_untouched():
    net, x = wide(bias=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    S.canonical_form(net, x)
    S.align(shuffled(net, 1), net, x)
    S.random_transform(net, x, seed=2)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------ fixed layers (committees)


def fixed_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    return {name: state[name].clone() for name in fixed_weights(model)}


def same_fixed(a: nn.Module, b: nn.Module) -> bool:
    fa, fb = fixed_state(a), fixed_state(b)
    marked = all(not p.requires_grad for n, p in b.named_parameters() if n in fb)
    return marked and fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


def a_committee(
    seed: int = 1, output: str = "sum", units: int = 5
) -> tuple[nn.Module, torch.Tensor]:
    plain = export(committee(15, units, output=output, seed=seed)).double()
    return plain, torch.randn(
        32, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )


def permuted_units(plain: nn.Module, seed: int) -> nn.Module:
    """The committee with its hidden units permuted (rows of the first layer; the vote's
    columns are all +1): a group element by hand, no flips."""
    moved = copy.deepcopy(plain)
    perm = torch.randperm(plain[1].out_features, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        moved[1].weight.copy_(plain[1].weight[perm])
    return moved


@pytest.mark.parametrize("output", ["sum", "majority"])
def test_a_committee_s_hidden_units_only_permute(output):
    """A reversal of a hidden unit would flip its weight in the fixed vote: not in the group."""
    plain, x = a_committee(output=output)
    spec = S.symmetries(plain, x)
    assert [g.size for g in spec.groups] == [5, 1]
    assert not any(cls.sign for cls in spec.scales)
    assert any("keep their sign" in note for note in spec.notes)
    rows = sorted(map(tuple, plain[1].weight.tolist()))
    for seed in range(6):
        moved = S.random_transform(plain, x, seed=seed)
        assert same_fixed(plain, moved) and torch.equal(moved(x), plain(x))
        assert sorted(map(tuple, moved[1].weight.tolist())) == rows  # permuted, none reversed
    canon = S.canonical_form(plain, x)
    assert same_fixed(plain, canon)
    assert same_state(canon, S.canonical_form(permuted_units(plain, 3), x))


@pytest.mark.parametrize("method", ["cosine", "weights"])
@pytest.mark.parametrize("output", ["sum", "majority"])
def test_align_recovers_a_permuted_committee_and_never_changes_fixed_weights(output, method):
    plain, x = a_committee(output=output)
    with torch.no_grad():
        plain[1].weight[1] = -plain[1].weight[0]  # a mirror pair: |cosine| cannot tell them apart
    for seed in range(3):
        moved = permuted_units(plain, seed)
        assert same_state(S.align(moved, plain, x, method, exact=False), plain)
        assert same_state(S.align(moved, plain, x, method), plain)
    for seed in range(2, 6):
        other = export(committee(15, 5, output=output, seed=seed)).double()
        aligned = S.align(other, plain, x, method)
        assert same_fixed(plain, aligned) and torch.equal(aligned(x), other(x))


@given(binary_models(), group_seeds)
def test_group_elements_of_exported_models_keep_their_fixed_layers(case, seed):
    assume(case.family in ("perceptron", "committee"))  # the families with fixed layers
    plain = export(case.model)
    moved = S.random_transform(plain, case.x, seed=seed)
    assert same_fixed(plain, moved) and torch.equal(moved(case.x), plain(case.x))
    assert same_fixed(plain, S.canonical_form(moved, case.x))
    assert same_fixed(plain, S.align(moved, plain, case.x))


def test_fixed_weights_that_differ_across_permuted_units_are_refused():
    net, x = wide()
    net[4].weight.requires_grad_(False)  # a fixed readout whose columns differ
    with pytest.raises(BinaryError, match=r"fixed weights '4\.weight' differ from unit to unit"):
        S.symmetries(net, x)
    with torch.no_grad():
        net[4].weight.fill_(1.0)  # equal columns: the units before it permute, never flip
    spec = S.symmetries(net, x)
    assert [s.size for s in spec.scales if s.sign] == [15]


def test_fixed_layers_are_part_of_the_architecture():
    plain, x = a_committee()
    other = export(committee(15, 5, seed=2)).double()
    unmarked = copy.deepcopy(other)
    unmarked[3].weight.requires_grad_(True)
    with pytest.raises(BinaryError, match=r"different fixed layers.*\['3\.weight', '4\.weight'\]"):
        S.align(unmarked, plain, x)
    swapped = copy.deepcopy(other)
    with torch.no_grad():
        swapped[4].weight.neg_()
    with pytest.raises(BinaryError, match=r"fixed weights '4\.weight' differ"):
        S.align(swapped, plain, x)
