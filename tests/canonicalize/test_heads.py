"""The continuous groups of attention heads: canonical factors, alignment, the two views.

Random small transformers (``tests.strategies.transformers``: architectures from a fixed
covering set, each traced once, random weights per example) and random group elements,
including random invertible maps per head. The hand-written element (``move`` then ``mix``)
permutes the residual stream, whole heads, the features inside heads and the feed-forward
units, maps every head by random invertible ``A`` and ``B`` and shifts its key and value biases,
directly on the state dict from the mathematics, without canonicalize: a group that
canonicalize divides out too narrowly fails these tests.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import canonicalize as C
from canonicalize.heads import _directions, balanced_factors
from canonicalize.verify import eval_outputs, relative_difference
from tests.canonicalize.test_properties import assert_same_normalized, assert_same_state
from tests.canonicalize.test_transformers import TOKENS, _model, move
from tests.strategies import HandAttention, TinyTransformer, group_seeds, transformers

# --- a group element of the heads, written by hand ---------------------------------------------


def _invertible(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random well-conditioned invertible matrix (singular values in [1/2, 2])."""
    q1, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    s = torch.exp((2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1) * math.log(2))
    return q1 @ torch.diag(s) @ q2


def mix(model: TinyTransformer, generator: torch.Generator) -> TinyTransformer:
    """A copy with every head mapped: ``W_Q -> A W_Q``, ``W_K -> A^-T W_K``, ``W_V -> B W_V``,
    ``W_O,h -> W_O,h B^-1`` (biases with their rows), its key bias shifted (softmax over the
    keys ignores it) and its value bias shifted with the output bias compensating (the rows of
    the attention sum to one)."""
    moved = copy.deepcopy(model)
    state = moved.state_dict()
    d = model.head.in_features
    for b, block in enumerate(model.blocks):
        p = f"blocks.{b}.attn."
        hand = isinstance(block.attn, HandAttention)
        count = block.attn.heads if hand else block.attn.mha.num_heads
        width = d // count
        if hand:
            weight = {r: f"{p}{r}.weight" for r in "qkv"}
            bias = {r: f"{p}{r}.bias" for r in "qkv"}
            rows = {r: slice(0, d) for r in "qkv"}
            out = f"{p}o"
        else:
            weight = dict.fromkeys("qkv", f"{p}mha.in_proj_weight")
            bias = dict.fromkeys("qkv", f"{p}mha.in_proj_bias")
            rows = {r: slice(i * d, (i + 1) * d) for i, r in enumerate("qkv")}
            out = f"{p}mha.out_proj"
        has_bias = bias["q"] in state
        for h in range(count):
            part = {
                r: slice(rows[r].start + h * width, rows[r].start + (h + 1) * width) for r in rows
            }
            a, b_map = _invertible(width, generator), _invertible(width, generator)
            for r, matrix in (("q", a), ("k", torch.linalg.inv(a).T), ("v", b_map)):
                state[weight[r]][part[r]] = matrix @ state[weight[r]][part[r]]
                if has_bias:
                    state[bias[r]][part[r]] = matrix @ state[bias[r]][part[r]]
            columns = slice(h * width, (h + 1) * width)
            o = state[f"{out}.weight"]
            o[:, columns] = o[:, columns] @ torch.linalg.inv(b_map)
            if has_bias:
                state[bias["k"]][part["k"]] += torch.randn(
                    width, generator=generator, dtype=torch.float64
                )
                shift = torch.randn(width, generator=generator, dtype=torch.float64)
                state[bias["v"]][part["v"]] += shift
                state[f"{out}.bias"] -= o[:, columns] @ shift
    return moved


def _same_function(a: nn.Module, b: nn.Module, x: torch.Tensor, tol: float = 1e-9) -> bool:
    return relative_difference(eval_outputs(a, x), eval_outputs(b, x)) < tol


# --- properties ----------------------------------------------------------------------------------


@given(transformers(), group_seeds)
def test_group_element_keeps_function_and_canonical_form(case, seed):
    """Stream, heads, MLP units, scales, signs and random invertible maps per head: function
    unchanged, canonical form of the moved copy equal, canonical form idempotent."""
    model, x, spec = case.model, case.x, case.spec
    moved = C.random_transform(model, x, seed=seed, spec=spec)
    assert _same_function(model, moved, x)
    canon = C.canonical_form(model, x, spec=spec)
    assert _same_function(model, canon, x)
    assert_same_state(canon, C.canonical_form(moved, x, spec=spec))
    assert_same_state(canon, C.canonical_form(canon, x, spec=spec), tol=1e-9)


@given(transformers(), group_seeds)
def test_hand_written_element_keeps_canonical_form(case, seed):
    """Permutations and invertible maps per head written from the mathematics."""
    generator = torch.Generator().manual_seed(seed)
    moved = mix(move(case.model, generator), generator)
    assert _same_function(case.model, moved, case.x)
    assert_same_state(
        C.canonical_form(case.model, case.x, spec=case.spec),
        C.canonical_form(moved, case.x, spec=case.spec),
    )


@pytest.mark.parametrize("method", ["cosine", "weights", "activations"])
@given(case=transformers(), seed=group_seeds)
def test_alignment_recovers_a_hidden_element_exactly(method, case, seed):
    """Hidden stream, head and unit permutations and invertible maps per head: the aligned
    model is the reference, and the returned element reproduces it."""
    generator = torch.Generator().manual_seed(seed)
    moved = mix(move(case.model, generator), generator)
    result = C.match(moved, case.model, case.x, method=method, spec=case.spec)
    assert_same_state(result.model, case.model, tol=1e-9)
    assert result.distance_after < 1e-9 * max(1.0, result.distance_before)
    assert_same_state(result.apply(moved), result.model, tol=1e-12)


@given(transformers(), group_seeds)
def test_torus_round_trip_and_zero_distance_within_a_class(case, seed):
    point = C.to_torus(case.model, case.x, output="preserve", spec=case.spec)
    assert _same_function(case.model, point.to_model(), case.x)
    moved = C.random_transform(case.model, case.x, seed=seed, spec=case.spec)
    other = C.to_torus(moved, case.x, output="preserve", spec=case.spec)
    assert C.geodesic_distance(point, other) < 1e-6


@given(transformers(), group_seeds)
def test_permutation_view_is_the_narrower_group(case, seed):
    """``heads="permutations"``: its own elements (no map per head) leave its canonical form
    and are recovered by alignment."""
    model, x, spec = case.model, case.x, case.spec
    moved = C.random_transform(model, x, seed=seed, heads="permutations", spec=spec)
    canon = C.canonical_form(model, x, heads="permutations", spec=spec)
    assert_same_state(canon, C.canonical_form(moved, x, heads="permutations", spec=spec))
    result = C.match(moved, model, x, heads="permutations", spec=spec)
    assert not result.maps
    assert_same_normalized(result.model, model, result.spec)


@functools.cache
def _float32(heads: int) -> tuple[TinyTransformer, C.SymmetrySpec]:
    model = _model(d=4, heads=heads).float()
    return model, C.symmetries(model, TOKENS)


@given(st.sampled_from((1, 2, 4)), group_seeds)
def test_float32_transformers_agree_to_float32_rounding(heads, seed):
    """Float64 inside: the canonical forms of float32 copies (random maps per head of
    condition number up to e^2) agree to float32 rounding."""
    model, spec = _float32(heads)
    moved = C.random_transform(model, TOKENS, seed=seed, spec=spec)
    assert_same_state(
        C.canonical_form(model, TOKENS, spec=spec),
        C.canonical_form(moved, TOKENS, spec=spec),
        tol=2e-5,
    )
    assert math.isfinite(float(eval_outputs(moved, TOKENS).abs().max()))


# --- exact small cases ---------------------------------------------------------------------------


def _swap_heads(model: TinyTransformer, order: tuple[int, ...]) -> TinyTransformer:
    moved = copy.deepcopy(model)
    state = moved.state_dict()
    width = model.blocks[0].attn.q.out_features // len(order)
    index = torch.cat([torch.arange(h * width, (h + 1) * width) for h in order])
    for name in "qkv":
        for part in ("weight", "bias"):
            key = f"blocks.0.attn.{name}.{part}"
            state[key].copy_(state[key][index].clone())
    key = "blocks.0.attn.o.weight"
    state[key].copy_(state[key][:, index].clone())
    return moved


def test_two_heads_brute_force_over_head_orders_and_maps():
    """Both head orders, each with several invertible maps per head: one canonical form, whose
    heads are in the order of their content's projection on the fixed direction."""
    model = _model(d=4, heads=2)
    canon = C.canonical_form(model, TOKENS)
    for order in itertools.permutations(range(2)):
        for seed in range(4):
            moved = mix(_swap_heads(model, order), torch.Generator().manual_seed(seed))
            assert _same_function(model, moved, TOKENS)
            assert_same_state(canon, C.canonical_form(moved, TOKENS))
    # the order chosen is the order of the key among both orders of the canonical heads
    spec = C.symmetries(canon, TOKENS)
    from canonicalize.canonical import key_direction
    from canonicalize.heads import head_rows
    from canonicalize.transform import to_float64

    keys = head_rows(to_float64(canon), spec, spec.attentions[0])
    projections = keys @ key_direction(keys.shape[1])
    assert projections[0] <= projections[1]


def test_hand_computed_factors_of_one_head():
    """One head, no biases: W_Q = diag(2, 1), W_K = diag(3, 1) (stream in canonical order
    already) make M_QK = diag(6, 1): the canonical rows are +-sqrt(6) e_1 and +-1 e_2, the
    sign making the projection on the fixed direction positive, and keep the product."""
    q = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    k = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    a, b = balanced_factors(q, k)
    direction = _directions(2, 1)[:, 0]
    signs = [1.0 if direction[i] > 0 else -1.0 for i in range(2)]
    expected = torch.diag(torch.tensor([math.sqrt(6.0) * signs[0], signs[1]], dtype=a.dtype))
    assert torch.allclose(a, expected, atol=1e-12)
    assert torch.allclose(b, expected, atol=1e-12)
    assert torch.allclose(a.T @ b, q.T @ k, atol=1e-12)


def test_equal_singular_values_are_one_cluster():
    """M = I: every A gives factors (A, A^-T); one basis is chosen for all of them."""
    generator = torch.Generator().manual_seed(0)
    first = None
    for _ in range(5):
        a = _invertible(3, generator)
        left, right = balanced_factors(a, torch.linalg.inv(a).T)
        assert torch.allclose(left.T @ right, torch.eye(3, dtype=torch.float64), atol=1e-12)
        first = left if first is None else first
        assert torch.allclose(left, first, atol=1e-10)


def test_rank_deficient_product_has_zero_rows():
    generator = torch.Generator().manual_seed(1)
    left = torch.randn(3, 5, generator=generator, dtype=torch.float64)
    right = torch.outer(torch.randn(3, generator=generator, dtype=torch.float64), torch.ones(4))
    right = right.to(torch.float64)
    a, b = balanced_factors(left, right)
    assert torch.allclose(a.T @ b, left.T @ right, atol=1e-12)
    assert a[1:].abs().max() == 0 and b[1:].abs().max() == 0
    # the same product from other factors: the same representative
    mixing = _invertible(3, generator)
    a2, b2 = balanced_factors(mixing @ left, torch.linalg.solve(mixing.T, right))
    assert torch.allclose(a2, a, atol=1e-10) and torch.allclose(b2, b, atol=1e-10)


def test_key_bias_is_zero_and_value_bias_folded_in_canonical_form():
    model = _model(d=4, heads=2)
    spec = C.symmetries(model, TOKENS)
    (attention,) = spec.attentions
    assert attention.query_key and attention.value_output
    assert attention.key_bias and attention.value_bias
    canon = C.canonical_form(model, TOKENS)
    assert canon.blocks[0].attn.k.bias.abs().max() == 0
    assert canon.blocks[0].attn.v.bias.abs().max() == 0
    assert not torch.allclose(canon.blocks[0].attn.o.bias, model.blocks[0].attn.o.bias)
    # the permutation view moves no bias
    narrow = C.canonical_form(model, TOKENS, heads="permutations")
    assert narrow.blocks[0].attn.k.bias.abs().max() > 0


class _NoOutputBias(nn.Module):
    """Value bias, output projection without bias: the fold is not available."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = HandAttention(4, 2, True, False, False).double()
        self.attn.o = nn.Linear(4, 4, bias=False).double()
        self.norm = nn.LayerNorm(4).double()

    def forward(self, x):
        return self.norm(x + self.attn(x))


def test_value_bias_without_output_bias_is_noted():
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    spec = C.symmetries(_NoOutputBias(), x)
    (attention,) = spec.attentions
    assert attention.key_bias and not attention.value_bias and attention.value_output
    assert any("value bias" in n and "has no bias" in n for n in spec.notes)
    model = _NoOutputBias().eval()
    moved = C.random_transform(model, x, seed=0)
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))


class _Unusual(nn.Module):
    """Queries through tanh, scores soft-maxed over the queries, a GELU on the attention's
    output: none of the heads' continuous parts holds."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = HandAttention(4, 2, True, False, False).double()

    def forward(self, x):
        B, T, D = x.shape
        a = self.attn
        q = torch.tanh(a.q(x)).view(B, T, 2, 2).transpose(1, 2)
        k = a.k(x).view(B, T, 2, 2).transpose(1, 2)
        v = a.v(x).view(B, T, 2, 2).transpose(1, 2)
        y = (q @ k.transpose(-2, -1)).softmax(-2) @ v
        return x + a.o(nn.functional.gelu(y.transpose(1, 2).reshape(B, T, D)))


def test_what_does_not_hold_is_noted_with_the_reason():
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    spec = C.symmetries(_Unusual(), x)
    (attention,) = spec.attentions
    assert not (attention.query_key or attention.value_output or attention.key_bias)
    # written in the model's own forward: the attention is named by its graph node
    notes = [n for n in spec.notes if f"attention '{attention.name}'" in n]
    assert attention.name == "matmul_1"
    assert any("query-key product" in n and "lies between" in n for n in notes)
    assert any("value-output product" in n for n in notes)
    assert any("key bias" in n for n in notes)
    model = _Unusual().eval()
    moved = C.random_transform(model, x, seed=1)
    assert _same_function(model, moved, x)
    assert_same_state(C.canonical_form(model, x), C.canonical_form(moved, x))


def test_permutation_view_is_not_invariant_to_maps_per_head():
    model = _model(d=4, heads=2)
    moved = mix(model, torch.Generator().manual_seed(3))
    full = [C.canonical_form(m, TOKENS) for m in (model, moved)]
    narrow = [C.canonical_form(m, TOKENS, heads="permutations") for m in (model, moved)]
    assert_same_state(*full)
    with pytest.raises(AssertionError):
        assert_same_state(*narrow)
    spec = C.symmetries(model, TOKENS)
    view = C.random_transform(model, TOKENS, seed=0, heads="permutations", spec=spec)
    assert_same_state(C.canonical_form(view, TOKENS, heads="permutations"), narrow[0], tol=1e-7)


def test_spec_keyword_is_checked_against_the_model():
    spec = C.symmetries(_model(d=4, heads=2), TOKENS)
    other = _model(d=8, heads=2)
    for call in (
        lambda: C.canonical_form(other, TOKENS, spec=spec),
        lambda: C.match(other, other, TOKENS, spec=spec),
        lambda: C.random_transform(other, TOKENS, spec=spec),
        lambda: C.to_torus(other, TOKENS, spec=spec),
    ):
        with pytest.raises(C.SymmetryError, match="another architecture"):
            call()
    with pytest.raises(C.SymmetryError, match="must be a SymmetrySpec"):
        C.canonical_form(other, TOKENS, spec="spec")
    with pytest.raises(C.SymmetryError, match="heads must be 'full'"):
        C.align(other, other, TOKENS, heads="blocks")


def test_alignment_reports_its_maps_and_keeps_the_function():
    model = _model(d=4, heads=2)
    moved = mix(model, torch.Generator().manual_seed(5))
    result = C.match(moved, model, TOKENS)
    assert len(result.maps) == 2 and result.maps[0].query.shape == (2, 2)
    data = result.to_dict()
    assert len(data["maps"]) == 2 and isinstance(data["maps"][0]["query"], list)
    assert_same_state(result.model, model, tol=1e-9)
    other = _model(d=4, heads=2, vocab=7)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    # another network: the element still keeps its own function when applied to it
    assert _same_function(other, result.apply(other), TOKENS, tol=1e-8)


def test_torus_of_a_transformer_has_no_sphere_for_value_features():
    model = _model(d=4, heads=2)
    full = C.to_torus(model, TOKENS, output="preserve")
    narrow = C.to_torus(model, TOKENS, output="preserve", heads="permutations")
    assert not any("attn.v" in name for name in full.spheres)
    assert any("attn.v" in name for name in narrow.spheres)
    assert "blocks.0.attn.q.weight" in full.free


class _RawScoresRead(nn.Module):
    """Scores read before the softmax too (summed into the output), or capped by tanh before
    it: a constant per query would show, so the key bias stays."""

    def __init__(self, capped: bool) -> None:
        super().__init__()
        self.attn = HandAttention(4, 2, True, False, False).double()
        self.capped = capped

    def forward(self, x):
        B, T, D = x.shape
        a = self.attn
        q = a.q(x).view(B, T, 2, 2).transpose(1, 2)
        k = a.k(x).view(B, T, 2, 2).transpose(1, 2)
        v = a.v(x).view(B, T, 2, 2).transpose(1, 2)
        s = q @ k.transpose(-2, -1)
        if self.capped:
            s = torch.tanh(s)
        y = a.o((s.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D))
        return x + y if self.capped else x + y + s.sum((1, 2, 3))[:, None, None]


@pytest.mark.parametrize("capped", [False, True])
def test_key_bias_stays_where_raw_scores_are_read(capped):
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    model = _RawScoresRead(capped).eval()
    spec = C.symmetries(model, x)
    (attention,) = spec.attentions
    assert attention.query_key and attention.value_output and not attention.key_bias
    assert any("key bias's constant per query" in n for n in spec.notes)
    moved = C.random_transform(model, x, seed=2, spec=spec)
    assert _same_function(model, moved, x)
    assert_same_state(C.canonical_form(model, x, spec=spec), C.canonical_form(moved, x, spec=spec))
