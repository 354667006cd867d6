"""The continuous groups of attention heads: canonical factors, random maps, the two views.

Per head ``h`` the scores depend on the query and key projections only through the bilinear
form ``M_QK = [W_Q | b_Q]^T [W_K | b_K]`` and the head's output only through
``M_VO = W_O,h [W_V | b_V]``: any invertible ``A`` and ``B`` (``W_Q -> A W_Q``,
``W_K -> A^-T W_K``, ``W_V -> B W_V``, ``W_O,h -> W_O,h B^-1``, biases with their rows) keep
the function. The canonical form replaces each pair of factors by balanced square-root SVD
factors of their product (``balanced_factors``): with ``M = U S V^T``, the left factor
becomes ``S^1/2 U^T`` and the right one ``S^1/2 V^T``, one row per singular pair, largest
first. The rule that fixes what the SVD leaves free:

- the sign of a singular pair (``u, v -> -u, -v``): the projection of ``u`` (the query side,
  or the value side) on a fixed random direction (seeded by its length) is positive;
- equal singular values (a cluster, within ``1e-8`` of the largest): the pairs of a cluster
  of ``k`` may rotate together; their basis is the one in which the projections of ``U_c`` on
  ``k`` fixed random directions form an upper-triangular matrix with a positive diagonal (a QR
  factorization; for ``k = 1`` it is the sign rule above);
- a product of rank ``r`` below the head's width ``d``: singular values below ``1e-10`` of the
  largest count as zero and the last ``d - r`` rows of both factors are zero (the same
  function; when a factor itself had full rank this representative lies outside the orbit of
  invertible maps, as no invertible map makes a full-rank factor rank-deficient).

Both translations that the softmax allows go first: the key bias only adds ``q_i . b_K`` to
every score of query ``i`` (softmax over the keys ignores it), so it is set to zero; the value
bias adds ``W_O,h b_V`` to every output when each row of the attention sums to one, so it is
folded into the output projection's bias. :class:`~canonicalize.spec.Attention` says which
parts hold for an attention (discovery checks each); ``heads="permutations"``
(``with_heads``) is the narrower view where whole heads permute as blocks and only
permutations (and the value features' scales and signs) act inside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from .errors import SymmetryError
from .headspec import bias_of, consumers
from .spec import Attention, Head, ScaleClass, SymmetrySpec
from .transform import State, site_rows, unit_matrix
from .validate import check_spec

HeadsView = Literal["full", "permutations"]
HEADS = ("full", "permutations")

RANK_TOLERANCE = 1e-10
TIE_TOLERANCE = 1e-8
_SEED = 2_000_003


def spec_for(
    model: nn.Module, example_input: Tensor, spec: SymmetrySpec | None, heads: HeadsView
) -> SymmetrySpec:
    """The spec of ``model`` in the requested view: discovered, or ``spec`` checked against
    the model's tensors (a spec discovered once and reused)."""
    check_heads(heads)
    if spec is None:
        from .discover import symmetries

        spec = symmetries(model, example_input)
    else:
        check_spec(spec, model)
    return with_heads(spec, heads)


def check_heads(heads: object) -> None:
    """Refuse an unknown ``heads`` view."""
    if heads not in HEADS:
        raise SymmetryError(
            f"heads must be 'full' (each head's invertible query-key and value-output maps "
            f"divided out) or 'permutations' (whole heads and the features inside them "
            f"permuted only), got {heads!r}"
        )


def with_heads(spec: SymmetrySpec, heads: HeadsView) -> SymmetrySpec:
    """``spec`` in the requested view of its attention heads.

    ``"full"`` keeps every continuous part the spec holds; ``"permutations"`` keeps none of
    them (heads as blocks, the features inside a head permuted, the value features scaled and
    signed) and says so in the notes.
    """
    check_heads(heads)
    if heads == "full" or not any(a.continuous for a in spec.attentions):
        return spec
    narrow = tuple(
        replace(a, query_key=False, value_output=False, key_bias=False, value_bias=False)
        for a in spec.attentions
    )
    notes = spec.notes + tuple(
        f"attention '{a.name}' (heads='permutations'): not divided out: each head's invertible "
        "maps of its query-key and value-output products beyond permutations and the value "
        "features' scales and signs, the key bias's constant per query, the value bias's fold"
        for a in spec.attentions
        if a.continuous
    )
    return replace(spec, attentions=narrow, notes=notes)


# --- the canonical factors of one product ---------------------------------------------------


def _directions(length: int, count: int) -> np.ndarray:
    """``count`` fixed random directions of ``length`` entries (columns), seeded by the length;
    the first ones do not depend on ``count``."""
    generator = torch.Generator().manual_seed(_SEED + length)
    rows = torch.randn(max(count, 1), length, generator=generator, dtype=torch.float64)
    return rows[:count].T.numpy()


def clusters(values: np.ndarray) -> list[slice]:
    """Runs of singular values (sorted, decreasing) within ``TIE_TOLERANCE`` of the largest."""
    if values.size == 0:
        return []
    gaps = np.flatnonzero(values[:-1] - values[1:] > TIE_TOLERANCE * values[0]) + 1
    edges = [0, *gaps.tolist(), values.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def balanced_factors(left: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Canonical balanced factors of the product ``left^T right``.

    Parameters
    ----------
    left, right : Tensor
        ``(d, m)`` and ``(d, n)``: ``d`` rows each (a head's query and key rows, or its value
        rows and the transposed output columns).

    Returns
    -------
    tuple of Tensor
        ``(S^1/2 U^T, S^1/2 V^T)`` padded with zero rows to ``d`` rows, for
        ``left^T right = U S V^T`` with the sign, tie and rank rules of the module docstring:
        their product is ``left^T right``, and they depend on nothing else. Float64, on the
        inputs' device.

    Examples
    --------
    >>> import torch
    >>> q = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> k = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> a, b = balanced_factors(q, k)
    >>> torch.allclose(a.T @ b, q.T @ k), [round(float(x), 6) for x in a.norm(dim=1) ** 2]
    (True, [6.0, 1.0])
    """
    # numpy's LAPACK on these d x d problems costs a tenth of torch's per-call overhead
    a = left.detach().to("cpu", torch.float64).numpy()
    b = right.detach().to("cpu", torch.float64).numpy()
    d, m = a.shape
    n = b.shape[1]
    basis_l, tri_l = np.linalg.qr(a.T)
    basis_r, tri_r = np.linalg.qr(b.T)
    u0, s, v0h = np.linalg.svd(tri_l @ tri_r.T, full_matrices=False)
    u, v = basis_l @ u0, basis_r @ v0h.T
    top = float(s[0]) if s.size else 0.0
    rank = int((s > RANK_TOLERANCE * top).sum()) if top > 0 else 0
    u, v, s = u[:, :rank], v[:, :rank], s[:rank]
    directions = _directions(m, rank)
    for run in clusters(s):
        size = run.stop - run.start
        q, r = np.linalg.qr(u[:, run].T @ directions[:, :size])
        q = q * np.where(np.diagonal(r) < 0, -1.0, 1.0)
        u[:, run] = u[:, run] @ q
        v[:, run] = v[:, run] @ q
    root = np.sqrt(s)
    out_left, out_right = np.zeros((d, m)), np.zeros((d, n))
    out_left[:rank] = root[:, None] * u.T
    out_right[:rank] = root[:, None] * v.T
    return (
        torch.from_numpy(out_left).to(left.device),
        torch.from_numpy(out_right).to(right.device),
    )


# --- a head's rows and columns in a state ---------------------------------------------------


def write_rows(state: State, spec: SymmetrySpec, site: int, matrix: Tensor) -> None:
    """Store ``matrix`` (one row per unit, as ``site_rows`` gives it) as the rows of a site
    (its tensors' dim 0), in place."""
    where = spec.sites[site]
    start = 0
    for name in where.rows:
        tensor = state[name]
        width = math.prod(tensor.shape[1:])
        block = matrix[:, start : start + width].reshape(-1, *tensor.shape[1:])
        start += width
        new = tensor.clone()
        rows = slice(None) if where.index is None else list(where.index)
        new[rows] = block.to(tensor.dtype)
        state[name] = new


def columns(state: State, cls: ScaleClass) -> Tensor:
    """The columns that read a class's units (``(units, rows)``: every reader's rows)."""
    return torch.cat([unit_matrix(state[c.tensor], 1, 1, c.index) for c in cls.columns], dim=1)


def write_columns(state: State, cls: ScaleClass, matrix: Tensor) -> None:
    """Store ``matrix`` (as ``columns`` gives it) as those columns, in place."""
    start = 0
    for column in cls.columns:
        tensor = state[column.tensor]
        count = tensor.shape[0]
        new = tensor.clone()
        index = slice(None) if column.index is None else list(column.index)
        new[:, index] = matrix[:, start : start + count].T.to(tensor.dtype)
        start += count
        state[column.tensor] = new


def _bias_rows(state: State, spec: SymmetrySpec, site: int) -> tuple[str, list[int] | slice]:
    shapes = dict(spec.state_shapes)
    name = bias_of(spec.sites, shapes, site)
    assert name is not None, "internal: a head's bias was expected"
    index = spec.sites[site].index
    return name, slice(None) if index is None else list(index)


def zero_key_bias(state: State, spec: SymmetrySpec, head: Head) -> Tensor:
    """Set the head's key bias to zero (in place); returns what it was."""
    name, rows = _bias_rows(state, spec, head.key)
    old = state[name][rows].clone()
    new = state[name].clone()
    new[rows] = 0.0
    state[name] = new
    return old


def set_key_bias(state: State, spec: SymmetrySpec, head: Head, value: Tensor) -> None:
    """Set the head's key bias (a translation of it: any value keeps the function)."""
    name, rows = _bias_rows(state, spec, head.key)
    new = state[name].clone()
    new[rows] = value.to(new)
    state[name] = new


def shift_value_bias(state: State, spec: SymmetrySpec, head: Head, shift: Tensor) -> None:
    """``b_V -> b_V + t`` and every output bias ``b_O -> b_O - W_O,h t`` (in place)."""
    name, rows = _bias_rows(state, spec, head.value)
    new = state[name].clone()
    new[rows] = new[rows] + shift.to(new)
    state[name] = new
    cls = spec.scale_class(head.value_scale)  # type: ignore[arg-type]
    shapes = dict(spec.state_shapes)
    for column in cls.columns:
        bias = bias_of(spec.sites, shapes, consumers(spec.sites, column.tensor)[0])
        weight = unit_matrix(state[column.tensor], 1, 1, column.index)  # (units, rows)
        state[bias] = state[bias] - weight.T @ shift.to(weight)  # type: ignore[index]


def value_bias(state: State, spec: SymmetrySpec, head: Head) -> Tensor:
    """The head's value bias."""
    name, rows = _bias_rows(state, spec, head.value)
    return state[name][rows].clone()


def query_key(state: State, spec: SymmetrySpec, head: Head) -> tuple[Tensor, Tensor]:
    """The head's query and key rows ``[W_Q | b_Q]``, ``[W_K | b_K]`` (``(d, m)``, ``(d, n)``)."""
    return site_rows(state, spec, (head.query,)), site_rows(state, spec, (head.key,))


def value_output(state: State, spec: SymmetrySpec, head: Head) -> tuple[Tensor, Tensor]:
    """The head's value rows ``[W_V | b_V]`` and its output columns ``W_O,h^T`` (``(d, n)``)."""
    cls = spec.scale_class(head.value_scale)  # type: ignore[arg-type]
    return site_rows(state, spec, (head.value,)), columns(state, cls)


def set_query_key(state: State, spec: SymmetrySpec, head: Head, q: Tensor, k: Tensor) -> None:
    write_rows(state, spec, head.query, q)
    write_rows(state, spec, head.key, k)


def set_value_output(state: State, spec: SymmetrySpec, head: Head, v: Tensor, w: Tensor) -> None:
    write_rows(state, spec, head.value, v)
    write_columns(state, spec.scale_class(head.value_scale), w)  # type: ignore[arg-type]


# --- canonical form ---------------------------------------------------------------------------


def canonical_query_key(state: State, spec: SymmetrySpec, attention: Attention, h: int) -> None:
    """Head ``h``'s key bias set to zero (where it drops out) and its query and key rows
    replaced by the canonical factors of their product, in place."""
    head = attention.heads[h]
    if attention.key_bias:
        zero_key_bias(state, spec, head)
    set_query_key(state, spec, head, *balanced_factors(*query_key(state, spec, head)))


def canonical_value_output(state: State, spec: SymmetrySpec, attention: Attention, h: int) -> None:
    """Head ``h``'s value bias folded into the output bias (where rows sum to one) and its
    value rows and output columns replaced by the canonical factors of their product."""
    head = attention.heads[h]
    if attention.value_bias:
        shift_value_bias(state, spec, head, -value_bias(state, spec, head))
    set_value_output(state, spec, head, *balanced_factors(*value_output(state, spec, head)))


def canonical_heads(state: State, spec: SymmetrySpec) -> None:
    """Every head's continuous parts in canonical form, in place (heads keep their places)."""
    for attention in spec.attentions:
        for h in range(len(attention.heads)):
            if attention.query_key:
                canonical_query_key(state, spec, attention, h)
            if attention.value_output:
                canonical_value_output(state, spec, attention, h)


def head_rows(state: State, spec: SymmetrySpec, attention: Attention) -> Tensor:
    """Each head's content (query, key and value rows, output columns), one row per head: the
    key that orders whole heads once their factors are canonical."""
    out = []
    for head in attention.heads:
        parts = [site_rows(state, spec, (i,)).reshape(-1) for i in (head.query, head.key)]
        parts.append(site_rows(state, spec, (head.value,)).reshape(-1))
        if head.value_scale is not None and spec.scale_class(head.value_scale).columns:
            parts.append(columns(state, spec.scale_class(head.value_scale)).reshape(-1))
        out.append(torch.cat(parts))
    return torch.stack(out)


def attention_of(spec: SymmetrySpec, group: int) -> Attention | None:
    """The attention whose whole heads ``group`` permutes, if its heads have continuous parts."""
    for attention in spec.attentions:
        if attention.blocks == group and attention.continuous:
            return attention
    return None


# --- random elements --------------------------------------------------------------------------


def random_invertible(size: int, generator: torch.Generator, log_scale: float) -> Tensor:
    """``O_1 diag(exp(u)) O_2`` with Haar-random orthogonal ``O_i`` (either determinant) and
    ``u`` uniform in ``[-log_scale, log_scale]``: condition number at most ``exp(2 log_scale)``."""

    def orthogonal() -> Tensor:
        q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
        return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(torch.float64)

    u = (2 * torch.rand(size, generator=generator, dtype=torch.float64) - 1) * log_scale
    return orthogonal() @ torch.diag(torch.exp(u)) @ orthogonal()


def transform_heads(
    state: State,
    spec: SymmetrySpec,
    generator: torch.Generator,
    *,
    log_scale: float,
    invertible: bool,
    translate: bool,
) -> None:
    """Apply random invertible maps per head (and random bias translations), in place."""
    for attention in spec.attentions:
        for head in attention.heads:
            if invertible and attention.query_key:
                q, k = query_key(state, spec, head)
                a = random_invertible(q.shape[0], generator, log_scale).to(q.device)
                set_query_key(state, spec, head, a @ q, torch.linalg.solve(a.T, k))
            if translate and attention.key_bias:
                old = zero_key_bias(state, spec, head)
                shift = torch.randn(old.shape, generator=generator, dtype=torch.float64)
                set_key_bias(state, spec, head, old + shift.to(old.device))
            if invertible and attention.value_output:
                v, w = value_output(state, spec, head)
                b = random_invertible(v.shape[0], generator, log_scale).to(v.device)
                # W_O,h -> W_O,h B^-1: its columns (the rows of w) -> B^-T w
                set_value_output(state, spec, head, b @ v, torch.linalg.solve(b.T, w))
            if translate and attention.value_bias:
                old = value_bias(state, spec, head)
                shift = torch.randn(old.shape, generator=generator, dtype=torch.float64)
                shift_value_bias(state, spec, head, shift.to(old.device))


# --- an element of the heads' continuous groups -----------------------------------------------


@dataclass(frozen=True)
class HeadMap:
    """What alignment did to one head's continuous groups (``apply_map``).

    ``query`` and ``key`` (``d x d``) multiply the head's query and key rows (weights and
    bias), ``value`` its value rows and ``output`` the transposed output columns
    (``W_O,h^T -> output @ W_O,h^T``). ``key_bias``: the key bias is set to zero before the
    maps and to this value after (a translation; ``None``: left alone); ``value_bias``: the
    value bias is folded into the output biases before the maps and set to this value after,
    the output biases compensating. Every map is invertible unless a head's product had rank
    below its width.
    """

    attention: int
    head: int
    query: Tensor | None = None
    key: Tensor | None = None
    key_bias: Tensor | None = None
    value: Tensor | None = None
    output: Tensor | None = None
    value_bias: Tensor | None = None

    def to_dict(self) -> dict:
        """Plain data (JSON-serialisable)."""
        return {
            name: (value.tolist() if isinstance(value, Tensor) else value)
            for name, value in self.__dict__.items()
        }


def apply_map(state: State, spec: SymmetrySpec, head_map: HeadMap) -> None:
    """Apply one :class:`HeadMap` to a float64 state, in place."""
    head = spec.attentions[head_map.attention].heads[head_map.head]

    def to(matrix: Tensor, like: Tensor) -> Tensor:
        return matrix.to(device=like.device, dtype=like.dtype)

    if head_map.key_bias is not None:
        zero_key_bias(state, spec, head)
    if head_map.query is not None and head_map.key is not None:
        q, k = query_key(state, spec, head)
        set_query_key(state, spec, head, to(head_map.query, q) @ q, to(head_map.key, k) @ k)
    if head_map.key_bias is not None:
        set_key_bias(state, spec, head, head_map.key_bias)
    if head_map.value_bias is not None:
        shift_value_bias(state, spec, head, -value_bias(state, spec, head))
    if head_map.value is not None and head_map.output is not None:
        v, w = value_output(state, spec, head)
        set_value_output(state, spec, head, to(head_map.value, v) @ v, to(head_map.output, w) @ w)
    if head_map.value_bias is not None:
        shift_value_bias(state, spec, head, head_map.value_bias)
