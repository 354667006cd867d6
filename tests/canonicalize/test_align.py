"""Alignment: exact recovery of hidden permutations, never farther than before, exact optimum."""

import itertools

import pytest
import torch
from hypothesis import given
from torch import nn

import canonicalize as C
from canonicalize.align import normalized
from canonicalize.transform import permute_group, scale_units, to_float64
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state
from tests.strategies import group_seeds, models


def distance(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return float(sum(((sa[k] - sb[k]) ** 2).sum() for k in sa if sa[k].is_floating_point()) ** 0.5)


@pytest.mark.parametrize("method", ["cosine", "weights", "activations"])
@given(case=models(), seed=group_seeds)
def test_match_recovers_any_group_element_and_returns_it(method, case, seed):
    """Permutations, scales over several orders of magnitude, signs and BatchNorm translations
    are undone exactly; the returned element reproduces the aligned model."""
    moved = C.random_transform(case.model, case.x, seed=seed, log_scale=4.0)
    result = C.match(moved, case.model, case.x, method=method)
    spec = result.spec
    assert_same_normalized(result.model, case.model, spec)
    state = to_float64(moved)
    for group, perm in result.permutations.items():
        permute_group(state, spec, group, perm)
    for scale, signs in result.signs.items():
        scale_units(state, spec, scale, signs)
    aligned = result.model.state_dict()
    for key, value in state.items():
        assert torch.allclose(value.to(aligned[key].dtype), aligned[key], atol=1e-12), key
    assert_same_state(result.apply(moved), result.model, tol=1e-12)
    assert result.distance_after < 1e-6
    assert result.converged and result.iterations >= 1
    assert set(result.to_dict()) >= {"permutations", "signs", "distance_before", "converged"}


def test_permuted_copy_is_recovered_exactly_without_normalizing():
    x = torch.randn(8, 3, dtype=torch.float64)
    net = _one_hidden_layer(5, width=6)
    moved = C.random_transform(net, x, seed=2, scale=False, sign=False, translate=False)
    for method in ("cosine", "weights", "activations"):
        assert_same_state(C.align(moved, net, x, method=method), net, tol=1e-12)


def normalized_distance(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    """Distance in the coordinates weight matching compares (variances may leave the group)."""
    spec = C.symmetries(a, x)
    sa, sb = normalized(to_float64(a), spec), normalized(to_float64(b), spec)
    return float(sum(((sa[k] - sb[k]) ** 2).sum() for k in sa if sa[k].is_floating_point()) ** 0.5)


@given(case=models(), other=group_seeds)
def test_weight_matching_never_increases_distance(case, other):
    generator = torch.Generator().manual_seed(other)
    second = C.random_transform(case.model, case.x, seed=other)
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    aligned = C.align(second, case.model, case.x, method="weights")
    before = normalized_distance(second, case.model, case.x)
    assert normalized_distance(aligned, case.model, case.x) <= before * (1 + 1e-12)
    outputs = eval_outputs(second, case.x)
    assert relative_difference(outputs, eval_outputs(aligned, case.x)) < 1e-9


def _one_hidden_layer(seed: int, width: int = 4) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2)).double()


def _permuted(net: nn.Sequential, perm: tuple[int, ...]) -> nn.Sequential:
    out = _one_hidden_layer(0, len(perm))
    index = torch.tensor(perm)
    with torch.no_grad():
        out[0].weight.copy_(net[0].weight[index])
        out[0].bias.copy_(net[0].bias[index])
        out[2].weight.copy_(net[2].weight[:, index])
        out[2].bias.copy_(net[2].bias)
    return out


def test_weight_matching_equals_brute_force_on_4_units():
    x = torch.randn(8, 3, dtype=torch.float64)
    for seed in range(5):
        reference, model = _one_hidden_layer(seed), _one_hidden_layer(100 + seed)
        # the objective lives in normalized coordinates (invariant to the scales)
        unit_ref, unit_model = C.normalize(reference, x), C.normalize(model, x)
        best = min(
            itertools.permutations(range(4)),
            key=lambda p, m=unit_model, r=unit_ref: distance(_permuted(m, p), r),
        )
        aligned = C.align(model, reference, x, method="weights")
        assert_same_state(aligned, _permuted(model, best), tol=1e-12)


def test_cosine_equals_brute_force_on_4_units():
    x = torch.randn(8, 3, dtype=torch.float64)
    for seed in range(5):
        reference, model = _one_hidden_layer(seed), _one_hidden_layer(100 + seed)
        unit_ref, unit_model = C.normalize(reference, x), C.normalize(model, x)

        def cosine_sum(p, unit_model=unit_model, unit_ref=unit_ref):
            rows = _permuted(unit_model, p)
            w = torch.cat([rows[0].weight, rows[0].bias[:, None]], 1)
            v = torch.cat([unit_ref[0].weight, unit_ref[0].bias[:, None]], 1)
            return float((w * v).sum().detach())

        best = max(itertools.permutations(range(4)), key=cosine_sum)
        aligned = C.align(model, reference, x, method="cosine")
        assert_same_state(aligned, _permuted(model, best), tol=1e-12)


def test_canonical_form_is_the_same_for_all_24_orders():
    x = torch.randn(8, 3, dtype=torch.float64)
    net = _one_hidden_layer(7)
    canonical = C.canonical_form(net, x)
    for perm in itertools.permutations(range(4)):
        assert_same_state(C.canonical_form(_permuted(net, perm), x), canonical, tol=1e-12)


def test_activation_matching_uses_data():
    x = torch.randn(64, 3, dtype=torch.float64)
    net = _one_hidden_layer(3, width=6)
    moved = C.random_transform(net, x, seed=5)
    aligned = C.align(moved, net, x[:4], method="activations", data=(x, torch.zeros(64)))
    assert_same_state(C.normalize(aligned, x), C.normalize(net, x), tol=1e-9)


def test_match_reports_iterations_and_convergence_of_weight_matching():
    x = torch.randn(8, 3, dtype=torch.float64)
    a, b = _one_hidden_layer(0, width=6), _one_hidden_layer(1, width=6)
    result = C.match(b, a, x, method="weights", max_iter=1)
    assert result.iterations == 1
    assert result.distance_after <= result.distance_before
    assert "Alignment(method='weights'" in repr(result)
    assert torch.equal(
        C.align(b, a, x, method="weights").state_dict()["0.weight"],
        result.model.state_dict()["0.weight"],
    )


def test_apply_carries_an_alignment_to_another_checkpoint_and_refuses_other_shapes():
    x = torch.randn(8, 3, dtype=torch.float64)
    net, other = _one_hidden_layer(5, width=6), _one_hidden_layer(7, width=6)
    moved = C.random_transform(net, x, seed=3)
    result = C.match(moved, net, x)
    later = C.random_transform(other, x, seed=4, permute=False)  # another checkpoint
    carried = result.apply(later)
    assert relative_difference(eval_outputs(later, x), eval_outputs(carried, x)) < 1e-12
    with pytest.raises(C.SymmetryError, match="apply needs a model of the aligned"):
        result.apply(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double())


@pytest.mark.parametrize("method", ["cosine", "weights", "activations"])
def test_signs_outside_every_permutation_group_are_recovered(method):
    """A LayerNorm over the raw inputs: its output features keep their order (the inputs do not
    permute) but each has a free scale and sign, shared by its gain, bias and the Linear reading
    it. Every method settles those signs (the activations method from the weights: there is no
    group whose activations it could match)."""
    model = nn.Sequential(nn.LayerNorm(5), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x = torch.randn(50, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for seed in range(4):
        moved = C.random_transform(model, x, seed=seed)
        result = C.match(moved, model, x, method=method)
        assert_same_normalized(result.model, model, result.spec)
