"""Canonical form: the unique representative of a model's symmetry class."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from .errors import SymmetryError
from .heads import (
    HeadsView,
    attention_of,
    canonical_query_key,
    canonical_value_output,
    head_rows,
    spec_for,
)
from .spec import SymmetrySpec
from .transform import (
    State,
    block_rows,
    check_variances,
    fold_biases,
    permute_group,
    rebuild,
    scale_units,
    schedule,
    site_rows,
    to_float64,
)
from .validate import check_input
from .verify import check_outputs

Output = Literal["preserve", "normalize"]

_KEY_SEED = 1_000_003


def key_direction(length: int, device: torch.device | str = "cpu") -> Tensor:
    """The fixed random direction (float64, seeded by its length) that orders and signs units."""
    generator = torch.Generator().manual_seed(_KEY_SEED + length)
    return torch.randn(length, generator=generator, dtype=torch.float64).to(device)


def canonicalize_state(
    state: State,
    spec: SymmetrySpec,
    output: Output = "preserve",
    *,
    order: bool = True,
    signs: bool = True,
) -> float:
    """Bring a float64 state to canonical form in place; returns the output's global factor.

    Layer by layer from the input (see :func:`~canonicalize.transform.schedule`): each scale
    class gets unit norm (when its magnitude is free) and the sign that makes the projection of
    its incoming vector on a fixed random direction positive (when its sign is free); then its
    group is sorted by that projection. Heads whose continuous groups the spec divides out get
    canonical factors (:mod:`canonicalize.heads`) and are sorted as whole heads by their
    content. ``order=False`` and ``signs=False`` skip sorting and the sign choice (plain
    normalization); with ``order=False`` heads also keep their continuous coordinates.
    """
    fold_biases(state, spec)
    for step, index, sites in schedule(spec):
        if step in ("query_key", "value_output"):
            if order:
                canonical = canonical_query_key if step == "query_key" else canonical_value_output
                canonical(state, spec, spec.attentions[index], sites[0])
            continue
        if step == "order" and not order:
            continue
        blocks = step == "order" and bool(spec.groups[index].blocks)
        attention = attention_of(spec, index) if blocks else None
        if attention is not None:
            rows = head_rows(state, spec, attention)
        elif blocks:
            rows = block_rows(state, spec, index)
        else:
            rows = site_rows(state, spec, sites)
        direction = key_direction(rows.shape[1], rows.device)
        if step == "order":
            permute_group(state, spec, index, torch.argsort(rows @ direction, stable=True))
            continue
        cls = spec.scale_class(index)
        factor = torch.ones(rows.shape[0], dtype=rows.dtype, device=rows.device)
        if cls.magnitude:
            norms = rows.norm(dim=1)
            factor = torch.where(norms > 0, 1.0 / norms.clamp_min(1e-300), factor)
        if cls.sign and signs:
            factor = factor * torch.where(rows @ direction < 0, -1.0, 1.0).to(rows.dtype)
        if cls.magnitude or (cls.sign and signs):
            scale_units(state, spec, index, factor)
    if output == "preserve":
        return 1.0
    if spec.output_scale is None:
        raise SymmetryError(
            "output='normalize' needs an output layer whose scale can be changed without "
            "changing the predicted class: a Linear or Conv layer reaching the output through "
            "ReLU, pooling or residual additions only; this model's output is not of that kind. "
            "Use output='preserve'."
        )
    cls = spec.scale_class(spec.output_scale)
    total = site_rows(state, spec, cls.sites).norm()
    if total == 0:
        raise SymmetryError("the output layer is all zeros; it cannot be normalized")
    factor = math.sqrt(spec.output_units) / float(total)
    scale_units(
        state, spec, spec.output_scale, torch.full((cls.size,), factor, dtype=torch.float64)
    )
    return factor


def _check_output_mode(output: str) -> None:
    if output not in ("preserve", "normalize"):
        raise SymmetryError(f"output must be 'preserve' or 'normalize', got {output!r}")


def canonical_form(
    model: nn.Module,
    example_input: Tensor,
    output: Output = "preserve",
    *,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> nn.Module:
    """The unique representative of the model's symmetry class, as a new model.

    Conventions (applied layer by layer from the input, in float64, cast back at the end):

    - every hidden unit with a free positive scale (followed by ReLU, LeakyReLU, pooling, or a
      BatchNorm) gets incoming weights and bias of norm 1, the scale pushed into its consumers;
      a BatchNorm affine pair (gamma, beta) feeding a ReLU is its own unit vector;
    - every unit with a free sign (tanh, sign activation, or feeding a BatchNorm) is flipped so
      that the projection of its incoming vector on a fixed random direction is positive;
    - a bias directly before a BatchNorm is moved into its running mean (set to zero);
    - the units of every group are sorted by that projection (a residual stream by the layer
      that opens it);
    - ``output="preserve"`` leaves the output layer as it is, so outputs are equal;
      ``output="normalize"`` puts the whole output layer (weights and bias) at norm
      ``sqrt(number of outputs)``, which scales the logits by one positive factor and keeps
      the predicted classes (the toroidal coordinates of Pittorino et al. 2022).

    Between two layers with no activation only the permutation and scale part of the full
    linear symmetry is removed. BatchNorm is exact in eval mode (running statistics); in train
    mode the maps are exact up to ``eps``. Units whose incoming vector is exactly zero keep
    their scale (their outgoing weights are not canonical). A model whose output goes through
    a softmax or log-softmax (or tanh, or any map that is not positively homogeneous) has no
    global output factor: ``output="normalize"`` is refused and ``"preserve"`` is the only
    mode. Continuous symmetries outside permutations, scales, signs and the translation of a
    bias before a BatchNorm are not removed (the general linear group between two linear
    layers, bias exchanges between the summands of a residual addition, the logit shift under
    a softmax); where the graph holds a unit fixed that a wider group would move (the second
    factor of a product of two scaled tensors, the blocks of a grouped convolution that are not
    alike), the spec's ``notes`` say so. Whole blocks of a grouped convolution are sorted after
    the units inside them, by their contents.

    Transformers (see ``canonicalize.attention``, ``canonicalize.heads`` and
    ``canonicalize.tokens``): the residual stream is one group, ordered by the layer that opens
    it (the embedding's columns, or the first layer writing into it); through LayerNorm it
    keeps only its permutation, through RMSNorm also a sign per feature (chosen as for a tanh
    unit; every RMSNorm gain flips with it). A LayerNorm's or RMSNorm's gain (and bias) that
    only linear layers read has a free scale: it is normalized and pushed into the readers'
    columns. With ``heads="full"`` each head's invertible maps are divided out where the graph
    allows them (``spec.attentions`` says which): the key bias is set to zero (softmax over the
    keys ignores it), the value bias is folded into the output projection's bias (rows of the
    attention sum to one), the query and key rows become the balanced square-root SVD factors
    of their product ``[W_Q | b_Q]^T [W_K | b_K]``, the value rows and the output columns those
    of ``W_O,h [W_V | b_V]`` (a deterministic sign per singular pair, ties and rank deficiency
    as in ``canonicalize.heads``), and whole heads are sorted by these factors. With
    ``heads="permutations"`` heads are sorted as whole blocks after the features inside them:
    the query-key features of a head together (by the query rows), the value features by
    their rows (normalized, signed). Not divided out (and noted in the spec): what the graph
    does not allow of the heads' maps (the note says why); translations along the all-ones
    vector of what only LayerNorms read; a global sign of a LayerNorm stream; rotations of an
    RMSNorm stream (``O(d)``) or of a LayerNorm stream fixing the all-ones vector, with untied
    embeddings; per-column scales of embeddings and position tables where their stream allows
    scales.

    Parameters
    ----------
    model : nn.Module
        The model (left untouched).
    example_input : Tensor
        A batch of inputs, used to trace the model and to check the result.
    output : {"preserve", "normalize"}
        Whether to keep the outputs or normalize the output layer.
    heads : {"full", "permutations"}
        Which group of the attention heads to divide out: ``"full"`` (default) each head's
        invertible query-key and value-output maps and bias translations where they hold;
        ``"permutations"`` whole heads as blocks and permutations inside them only (the
        narrower group of the published re-basin methods, for comparison).
    spec : SymmetrySpec, optional
        The model's symmetry group, if already discovered (:func:`symmetries`); checked
        against the model's tensors. Saves tracing the model again. ``heads`` narrows it
        (``"permutations"``), never widens it.

    Returns
    -------
    nn.Module
        A new model in canonical form, checked against the input model on ``example_input``.

    Raises
    ------
    SymmetryError
        For unsupported models (see :func:`symmetries`) or if the check fails.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> canon = canonical_form(net, torch.randn(8, 3))
    >>> torch.allclose(canon[0].weight.norm(dim=1) ** 2 + canon[0].bias ** 2, torch.ones(4))
    True
    """
    return _canonical_model(
        model, example_input, output, reorder=True, what="canonical_form", heads=heads, spec=spec
    )


def normalize(
    model: nn.Module,
    example_input: Tensor,
    output: Output = "preserve",
    *,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> nn.Module:
    """Remove positive scales only: every unit with a free scale gets an incoming vector of norm 1.

    The paper's normalization (Pittorino et al. 2022, layer by layer from the input): neither
    the order of units nor their signs change, so a normalized model can still be aligned to
    another one. ``output``, ``heads`` and ``spec`` as in :func:`canonical_form`; attention
    heads keep their continuous coordinates (with ``heads="full"`` their value features are
    part of each head's invertible maps, not units with a scale of their own).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> unit = normalize(net, torch.randn(8, 3), output="normalize")
    >>> round(float(torch.cat([unit[2].weight.flatten(), unit[2].bias]).detach().norm() ** 2), 4)
    2.0
    """
    return _canonical_model(
        model, example_input, output, reorder=False, what="normalize", heads=heads, spec=spec
    )


def _canonical_model(
    model: nn.Module,
    example_input: Tensor,
    output: Output,
    reorder: bool,
    what: str,
    heads: HeadsView,
    spec: SymmetrySpec | None,
) -> nn.Module:
    _check_output_mode(output)
    spec = spec_for(model, example_input, spec, heads)
    x = check_input(model, example_input)
    state = to_float64(model)
    factor = canonicalize_state(state, spec, output, order=reorder, signs=reorder)
    check_variances(state, spec)
    new = rebuild(model, state)
    check_outputs(model, new, x, factor=factor, what=what)
    return new
