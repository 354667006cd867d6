"""Group actions on a model's state: permute units, rescale units, fold redundant biases.

Every function works on a ``dict[str, Tensor]`` state (the ``state_dict`` convention) and a
:class:`SymmetrySpec`, and leaves the model's function unchanged. Arithmetic is done in the
state's dtype; callers pass float64 states (see :func:`to_float64`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .errors import SymmetryError
from .spec import Site, SymmetrySpec

State = dict[str, Tensor]


def to_float64(model: nn.Module) -> State:
    """A float64 copy of the model's state (integer buffers kept as they are)."""
    return {
        k: (v.detach().to(torch.float64).clone() if v.is_floating_point() else v.detach().clone())
        for k, v in model.state_dict().items()
    }


def rebuild(model: nn.Module, state: State) -> nn.Module:
    """A copy of ``model`` holding ``state``, cast back to each tensor's original dtype."""
    new = copy.deepcopy(model)
    original = model.state_dict()
    new.load_state_dict({k: v.to(dtype=original[k].dtype) for k, v in state.items()})
    return new


def unit_index(perm: Tensor, block: int) -> Tensor:
    """Expand a permutation of units to a permutation of their ``block``-long runs of entries."""
    if block == 1:
        return perm
    offsets = torch.arange(block, device=perm.device)
    return (perm[:, None] * block + offsets[None, :]).reshape(-1)


def unit_matrix(tensor: Tensor, dim: int, block: int = 1) -> Tensor:
    """View ``tensor`` as (units, everything else), units along ``dim`` in runs of ``block``."""
    moved = tensor.movedim(dim, 0)
    units = moved.shape[0] // block
    return moved.reshape(units, -1)


def site_rows(state: State, spec: SymmetrySpec, sites: tuple[int, ...] | list[int]) -> Tensor:
    """Each unit's incoming vector: the rows of the given sites, flattened and concatenated."""
    parts = [unit_matrix(state[row], 0) for i in sites for row in spec.sites[i].rows]
    return torch.cat(parts, dim=1)


def permute_group(state: State, spec: SymmetrySpec, group: int, perm: Tensor) -> None:
    """Reorder the units of a group in place: new unit ``i`` is old unit ``perm[i]``."""
    perm = perm.to(torch.long)
    for axis in spec.groups[group].axes:
        tensor = state[axis.tensor]
        index = unit_index(perm.to(tensor.device), axis.block)
        state[axis.tensor] = tensor.index_select(axis.dim, index)


def _along(factor: Tensor, tensor: Tensor, dim: int, block: int = 1) -> Tensor:
    factor = factor.repeat_interleave(block) if block > 1 else factor
    shape = [1] * tensor.ndim
    shape[dim] = -1
    return factor.to(dtype=tensor.dtype, device=tensor.device).reshape(shape)


def scale_units(state: State, spec: SymmetrySpec, scale: int, factor: Tensor) -> None:
    """Multiply the units of a scale class by ``factor`` (one non-zero value per unit), in place.

    The rows of every site of the class are multiplied; every consumer compensates: Linear and
    Conv columns are divided by the factor (or by its sign, behind a sign activation); a
    BatchNorm absorbs it into its running statistics, with
    ``running_var -> c^2 (running_var + eps) - eps`` so that eval mode is exact.

    Raises
    ------
    SymmetryError
        If a factor is zero.
    """
    if (factor == 0).any():
        raise SymmetryError("scale factors must be non-zero")
    cls = spec.scale_class(scale)
    signs = torch.where(factor < 0, -1.0, 1.0).to(factor.dtype)
    for i in cls.sites:
        for row in spec.sites[i].rows:
            state[row] = state[row] * _along(factor, state[row], 0)
    for column in cls.columns:
        part = factor if column.kind == "full" else signs
        tensor = state[column.tensor]
        state[column.tensor] = tensor / _along(part, tensor, 1, column.block)
    for absorb in cls.absorbs:
        part = factor if absorb.kind == "full" else signs
        bn = spec.batchnorms[absorb.batchnorm]
        if bn.tracked:
            mean, var = f"{bn.name}.running_mean", f"{bn.name}.running_var"
            state[mean] = state[mean] * _along(part, state[mean], 0)
            # var + eps stays positive, so eval mode stays exact even where an intermediate
            # step makes var itself negative; check_variances judges the final state
            state[var] = _along(part, state[var], 0) ** 2 * (state[var] + bn.eps) - bn.eps
        if bn.affine:
            weight = f"{bn.name}.weight"
            state[weight] = state[weight] * _along(torch.sign(part), state[weight], 0)


def check_variances(state: State, spec: SymmetrySpec) -> None:
    """Refuse a state whose BatchNorm running variances went negative (outside the group).

    Scales compose exactly (``var + eps`` is multiplied by ``c^2``), so only the final state
    matters: a negative variance means the requested representative needs a scale so small
    that the BatchNorm's ``eps`` cannot be kept.
    """
    for bn in spec.batchnorms.values():
        if bn.tracked and (state[f"{bn.name}.running_var"] < 0).any():
            raise SymmetryError(
                f"BatchNorm '{bn.name}': the transformation needs a running variance below "
                f"zero (units whose incoming norm is large against sqrt(running_var + eps) "
                f"with eps={bn.eps}); this representative is outside the symmetry group"
            )


def fold_biases(state: State, spec: SymmetrySpec) -> None:
    """Move each bias that directly precedes a BatchNorm into its running mean, in place."""
    for fold in spec.bias_folds:
        bn = spec.batchnorms[fold.batchnorm]
        if bn.tracked:
            mean = f"{bn.name}.running_mean"
            state[mean] = state[mean] - state[fold.bias]
        state[fold.bias] = torch.zeros_like(state[fold.bias])


def available(site: Site, processed: set[int]) -> bool:
    """Whether a site's incoming columns are in canonical order (its input group processed)."""
    return site.input_group is None or site.input_group in processed


def schedule(spec: SymmetrySpec) -> list[tuple[str, int, tuple[int, ...]]]:
    """The order in which canonicalization fixes each class and group, from the input on.

    Returns a list of steps: ``("scale", class, sites)`` normalizes a scale class using the
    rows of ``sites`` (those of its sites whose inputs are already canonical: for a residual
    stream, the layers that open it); ``("order", group, (site,))`` sorts a group by the rows of
    its first site.
    """
    processed: set[int] = set()
    normalized: set[int] = set()
    steps: list[tuple[str, int, tuple[int, ...]]] = []
    for i, site in enumerate(spec.sites):
        if site.scale is not None and site.scale not in normalized:
            cls = spec.scale_class(site.scale)
            usable = tuple(j for j in cls.sites if available(spec.sites[j], processed))
            if i not in usable:
                raise SymmetryError(
                    f"internal: layer '{site.name}' opens a scale class but reads its own units"
                )
            steps.append(("scale", site.scale, usable))
            normalized.add(site.scale)
        if site.group is not None and site.group not in processed:
            steps.append(("order", site.group, (i,)))
            processed.add(site.group)
    return steps
