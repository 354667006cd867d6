"""Property tests over random architectures and random group elements."""

import torch
from hypothesis import given

import canonicalize as C
from canonicalize.align import normalized
from canonicalize.transform import to_float64
from canonicalize.verify import eval_outputs, relative_difference
from tests.strategies import group_seeds, models


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module, tol: float = 1e-7) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if sa[key].is_floating_point():
            scale = max(1.0, float(sa[key].abs().max()))
            assert (sa[key] - sb[key]).abs().max() <= tol * scale, key
        else:
            assert torch.equal(sa[key], sb[key]), key


def assert_same_normalized(
    a: torch.nn.Module, b: torch.nn.Module, spec: C.SymmetrySpec, tol: float = 1e-7
) -> None:
    """Equal in normalized coordinates (every free scale removed, biases before BatchNorm
    folded), computed in float64 from one spec: what ``normalize`` compares, without tracing."""
    sa, sb = normalized(to_float64(a), spec), normalized(to_float64(b), spec)
    for key in sa:
        if sa[key].is_floating_point():
            scale = max(1.0, float(sa[key].abs().max()))
            assert (sa[key] - sb[key]).abs().max() <= tol * scale, key


@given(models(), group_seeds)
def test_group_element_keeps_function(case, seed):
    moved = C.random_transform(case.model, case.x, seed=seed)
    assert relative_difference(eval_outputs(case.model, case.x), eval_outputs(moved, case.x)) < 1e-9


@given(models(), group_seeds)
def test_canonical_form_is_invariant(case, seed):
    moved = C.random_transform(case.model, case.x, seed=seed)
    assert_same_state(C.canonical_form(case.model, case.x), C.canonical_form(moved, case.x))


@given(models())
def test_canonical_form_is_idempotent_and_keeps_outputs(case):
    canon = C.canonical_form(case.model, case.x)
    before = eval_outputs(case.model, case.x)
    assert relative_difference(before, eval_outputs(canon, case.x)) < 1e-9
    assert_same_state(canon, C.canonical_form(canon, case.x), tol=1e-9)


@given(models(), group_seeds)
def test_canonical_form_is_invariant_in_float32(case, seed):
    """Float64 inside: float32 models' canonical forms agree to float32 rounding."""
    model, x = case.model.float(), case.x.float()
    moved = C.random_transform(model, x, seed=seed)
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x), tol=2e-5)
