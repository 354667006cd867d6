"""Random elements of a model's symmetry group: copies that compute the same function."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .errors import SymmetryError
from .heads import HeadsView, spec_for, transform_heads
from .spec import SymmetrySpec
from .transform import State, check_variances, permute_group, rebuild, scale_units, to_float64
from .validate import check_input
from .verify import check_outputs

# the invertible maps of attention heads: singular values within [e^-1, e^1]
_HEAD_LOG_SCALE = 1.0


def _lowest_safe_scale(state: State, spec: SymmetrySpec, scale: int) -> float:
    """Smallest |factor| that keeps every absorbing BatchNorm's mapped variance positive."""
    lowest = 0.0
    for absorb in spec.scale_class(scale).absorbs:
        bn = spec.batchnorms[absorb.batchnorm]
        if bn.tracked and absorb.kind == "full":
            var = state[f"{bn.name}.running_var"]
            lowest = max(lowest, math.sqrt(2 * bn.eps / float((var + bn.eps).min())))
    return lowest


def transform_state(
    state: State,
    spec: SymmetrySpec,
    generator: torch.Generator,
    *,
    log_scale: float = 3.0,
    permute: bool = True,
    scale: bool = True,
    sign: bool = True,
    translate: bool = True,
    invertible: bool = True,
) -> None:
    """Apply one random group element to a float64 state in place (see `random_transform`)."""
    transform_heads(
        state,
        spec,
        generator,
        log_scale=min(log_scale, _HEAD_LOG_SCALE) if scale else 0.0,
        invertible=invertible,
        translate=translate,
    )
    if translate:
        for fold in spec.bias_folds:
            shift = torch.randn(state[fold.bias].shape, generator=generator, dtype=torch.float64)
            state[fold.bias] = state[fold.bias] + shift
            bn = spec.batchnorms[fold.batchnorm]
            if bn.tracked:
                mean = f"{bn.name}.running_mean"
                state[mean] = state[mean] + shift
    for cls in spec.scales:
        factor = torch.ones(cls.size, dtype=torch.float64)
        if scale and cls.magnitude:
            u = torch.rand(cls.size, generator=generator, dtype=torch.float64)
            factor = torch.exp((2 * u - 1) * log_scale)
            factor = factor.clamp_min(_lowest_safe_scale(state, spec, cls.index))
        if sign and cls.sign:
            flips = torch.rand(cls.size, generator=generator, dtype=torch.float64) < 0.5
            factor = torch.where(flips, -factor, factor)
        scale_units(state, spec, cls.index, factor)
    if permute:
        for group in spec.groups:
            permute_group(state, spec, group.index, torch.randperm(group.size, generator=generator))


def random_transform(
    model: nn.Module,
    example_input: Tensor,
    seed: int = 0,
    *,
    log_scale: float = 3.0,
    permute: bool = True,
    scale: bool = True,
    sign: bool = True,
    translate: bool = True,
    invertible: bool = True,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> nn.Module:
    """A copy of ``model`` moved by a random element of its symmetry group.

    Draws, for every group, a uniform random permutation; for every unit with a free scale a
    factor ``exp(u)``, ``u`` uniform in ``[-log_scale, log_scale]``; for every unit with a free
    sign a random sign; and for every bias before a BatchNorm a random shift. For every
    attention head whose continuous groups the spec holds (``heads="full"``, see
    :func:`canonical_form`): a random invertible map of its query-key product and one of its
    value-output product (``O_1 diag(exp(u)) O_2``, ``O_i`` Haar-random orthogonal of either
    determinant, ``u`` uniform in ``[-min(log_scale, 1), min(log_scale, 1)]``: condition number
    at most ``e^2``; orthogonal maps when ``scale=False``), a random shift of its key bias and
    of its value bias (the output bias compensating). The result computes the same function
    (checked on ``example_input``); use it to test that a measurement is invariant, or that two
    networks are the same function in disguise.

    Parameters
    ----------
    model : nn.Module
        The model (left untouched).
    example_input : Tensor
        A batch of inputs, used to trace the model and to check the result.
    seed : int
        Seed of the random element.
    log_scale : float
        Scales are drawn log-uniformly in ``[exp(-log_scale), exp(log_scale)]``.
    permute, scale, sign, translate, invertible : bool
        Which parts of the group to draw (``invertible``: the maps of attention heads).
    heads : {"full", "permutations"}
        The group of attention heads (as in :func:`canonical_form`): ``"permutations"`` draws
        no invertible map and no bias shift of heads.
    spec : SymmetrySpec, optional
        The model's symmetry group, if already discovered; checked against the model.

    Returns
    -------
    nn.Module
        The transformed copy.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> moved = random_transform(net, x, seed=1)
    >>> torch.allclose(moved(x), net(x)), torch.allclose(moved[0].weight, net[0].weight)
    (True, False)
    """
    if log_scale < 0 or not math.isfinite(log_scale):
        raise SymmetryError(f"log_scale must be a finite non-negative number, got {log_scale}")
    spec = spec_for(model, example_input, spec, heads)
    x = check_input(model, example_input)
    state = to_float64(model)
    generator = torch.Generator().manual_seed(int(seed))
    transform_state(
        state,
        spec,
        generator,
        log_scale=log_scale,
        permute=permute,
        scale=scale,
        sign=sign,
        translate=translate,
        invertible=invertible,
    )
    check_variances(state, spec)
    new = rebuild(model, state)
    check_outputs(model, new, x, what="random_transform")
    return new
