"""Alignment of attention heads whose continuous groups are divided out.

Heads are paired by a Hungarian assignment on the similarity of their products (the cosine of
``M_QK = [W_Q | b_Q]^T [W_K | b_K]`` plus that of ``M_VO = W_O,h [W_V | b_V]``): invariant to
each head's invertible maps, so no basis has to be chosen first. Both products are computed
from the factors (``<M_a, M_b> = sum((Q_a Q_b^T) * (K_a K_b^T))``, ``d x d`` matrices only).
When the output projection's own outputs are not matched yet, ``M_VO^T M_VO`` stands for
``M_VO`` (blind to their order and signs).

Once every group is matched, each head of the model is expressed in the basis of the
reference's head at its place (:func:`map_heads`): both heads are brought to canonical factors
(:func:`~canonicalize.heads.balanced_factors`, in the coordinates both now share), the model's
factors are turned by the orthogonal map that best matches the reference's (a Procrustes
problem; the identity for equal products), and the reference's own map from its canonical
factors back to its weights is applied. The key bias and the value bias are translated to the
reference's. For a copy moved by any group element this gives the reference exactly. When the
reference's head has a product of rank below its width, its basis cannot be recovered: the
model's head stays in canonical factors (turned to match).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .heads import (
    HeadMap,
    apply_map,
    balanced_factors,
    query_key,
    shift_value_bias,
    value_bias,
    value_output,
    zero_key_bias,
)
from .spec import Attention, Head, SymmetrySpec
from .transform import State


def _inner(la: Tensor, ra: Tensor, lb: Tensor, rb: Tensor) -> Tensor:
    """``<la^T ra, lb^T rb>`` (Frobenius) from the factors."""
    return ((la @ lb.T) * (ra @ rb.T)).sum()


def _gram_inner(la: Tensor, ra: Tensor, lb: Tensor, rb: Tensor) -> Tensor:
    """``<M_a^T M_a, M_b^T M_b>`` for ``M = r^T l``: blind to orthogonal maps of the rows of
    ``M`` (the order and signs of the output projection's outputs)."""
    cross = la @ lb.T
    return torch.trace(ra @ ra.T @ cross @ rb @ rb.T @ cross.T)


def _cosines(pairs_ref: list, pairs: list, inner) -> Tensor:
    """``[i, j]``: the cosine of the reference's product ``i`` and the model's ``j`` (CPU)."""
    own_ref = [max(float(inner(*p, *p)), 1e-300) ** 0.5 for p in pairs_ref]
    own = [max(float(inner(*p, *p)), 1e-300) ** 0.5 for p in pairs]
    rows = [
        [float(inner(*a, *b)) / (own_ref[i] * own[j]) for j, b in enumerate(pairs)]
        for i, a in enumerate(pairs_ref)
    ]
    return torch.tensor(rows, dtype=torch.float64)


def head_similarity(
    ref: State, state: State, spec: SymmetrySpec, attention: Attention, outputs_matched: bool
) -> Tensor:
    """``[i, j]``: how alike the reference's head ``i`` and the model's head ``j`` are (the
    cosine of their query-key products plus that of their value-output products)."""
    score = _cosines(
        [_query_key(ref, spec, attention, h) for h in attention.heads],
        [_query_key(state, spec, attention, h) for h in attention.heads],
        _inner,
    )
    if all(h.value_scale is not None for h in attention.heads):
        inner = _inner if outputs_matched else _gram_inner
        score += _cosines(
            [value_output(ref, spec, h) for h in attention.heads],
            [value_output(state, spec, h) for h in attention.heads],
            inner,
        )
    return score


def _query_key(state: State, spec: SymmetrySpec, attention: Attention, head: Head):
    """The head's query and key rows, the key bias set to zero where the softmax ignores it."""
    if attention.key_bias:
        state = dict(state)  # the functions of canonicalize.heads replace tensors, never edit
        zero_key_bias(state, spec, head)
    return query_key(state, spec, head)


def _polar(x: Tensor) -> Tensor:
    """The orthogonal matrix nearest to ``x`` (``U V^T`` of its SVD)."""
    u, _, vh = torch.linalg.svd(x)
    return u @ vh


def _to_reference(left: Tensor, right: Tensor, ref_left: Tensor, ref_right: Tensor):
    """The factors ``(left, right)`` expressed in the basis of ``(ref_left, ref_right)``: the
    same product ``left^T right``; equal to the reference's factors for equal products."""
    own_l, own_r = balanced_factors(left, right)
    ref_l, ref_r = balanced_factors(ref_left, ref_right)
    turn = _polar(ref_l @ own_l.T + ref_r @ own_r.T)
    own_l, own_r = turn @ own_l, turn @ own_r
    if bool((ref_l.norm(dim=1) > 0).all()) and bool((ref_r.norm(dim=1) > 0).all()):
        return ref_left @ torch.linalg.pinv(ref_l) @ own_l, ref_right @ torch.linalg.pinv(
            ref_r
        ) @ own_r
    return own_l, own_r


def map_heads(state: State, ref: State, spec: SymmetrySpec) -> tuple[HeadMap, ...]:
    """Express every head of ``state`` in the basis of the reference's head at its place.

    Applied to ``state`` in place; returns the maps (with the biases set), one per head.
    """
    maps: list[HeadMap] = []
    for a, attention in enumerate(spec.attentions):
        if not attention.continuous:
            continue
        for h, head in enumerate(attention.heads):
            fields: dict[str, Tensor | None] = {}
            if attention.query_key:
                q, k = _query_key(state, spec, attention, head)
                rq, rk = _query_key(ref, spec, attention, head)
                qa, ka = _to_reference(q, k, rq, rk)
                fields["query"] = qa @ torch.linalg.pinv(q)
                fields["key"] = ka @ torch.linalg.pinv(k)
            if attention.key_bias:
                fields["key_bias"] = zero_key_bias(dict(ref), spec, head)
            if attention.value_output:
                folded, reference = dict(state), dict(ref)
                if attention.value_bias:
                    shift_value_bias(folded, spec, head, -value_bias(folded, spec, head))
                    shift_value_bias(reference, spec, head, -value_bias(reference, spec, head))
                v, w = value_output(folded, spec, head)
                rv, rw = value_output(reference, spec, head)
                va, wa = _to_reference(v, w, rv, rw)
                fields["value"] = va @ torch.linalg.pinv(v)
                fields["output"] = wa @ torch.linalg.pinv(w)
            if attention.value_bias:
                fields["value_bias"] = value_bias(ref, spec, head)
            head_map = HeadMap(attention=a, head=h, **fields)
            apply_map(state, spec, head_map)
            maps.append(head_map)
    return tuple(maps)
