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
from .headspec import subsumed
from .spec import Site, SymmetrySpec
from .tracing import state_name

State = dict[str, Tensor]


def aliases(model: nn.Module) -> dict[str, str]:
    """Every state name of a tensor that several modules share (tied weights), mapped to the
    first name it has in ``model.state_dict()``, the one the spec uses."""
    first: dict[int, str] = {}
    found: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            found[name] = first[key]
        else:
            first[key] = name
    return found


def to_float64(model: nn.Module) -> State:
    """A float64 copy of the model's state (integer buffers kept as they are), one entry per
    tensor (a tied tensor under the first of its names only)."""
    tied = aliases(model)
    return {
        k: (v.detach().to(torch.float64).clone() if v.is_floating_point() else v.detach().clone())
        for k, v in model.state_dict().items()
        if k not in tied
    }


def rebuild(model: nn.Module, state: State) -> nn.Module:
    """A copy of ``model`` holding ``state``, cast back to each tensor's original dtype (every
    name of a tied tensor gets the value of its first name)."""
    new = copy.deepcopy(model)
    original = model.state_dict()
    full = dict(state)
    for alias, name in aliases(model).items():
        if name in full:
            full[alias] = full[name]
    new.load_state_dict({k: v.to(dtype=original[k].dtype) for k, v in full.items()})
    return new


def unit_index(perm: Tensor, block: int, index: tuple[int, ...] | None = None) -> Tensor:
    """Entries of the units ``perm`` (each ``block`` long) along an axis.

    ``index`` gives the position (in blocks) of each unit along the axis; ``None`` means unit
    ``i`` sits at position ``i``.
    """
    if index is not None:
        perm = torch.as_tensor(index, dtype=torch.long, device=perm.device)[perm]
    if block == 1:
        return perm
    offsets = torch.arange(block, device=perm.device)
    return (perm[:, None] * block + offsets[None, :]).reshape(-1)


def unit_matrix(
    tensor: Tensor, dim: int, block: int = 1, index: tuple[int, ...] | None = None
) -> Tensor:
    """View ``tensor`` as (units, everything else), units along ``dim`` in runs of ``block``.

    With ``index``, only the units at those positions, in that order.
    """
    moved = tensor.movedim(dim, 0)
    if index is not None:
        positions = unit_index(torch.arange(len(index), device=tensor.device), block, index)
        moved = moved.index_select(0, positions)
    units = moved.shape[0] // block
    return moved.reshape(units, -1)


def site_rows(state: State, spec: SymmetrySpec, sites: tuple[int, ...] | list[int]) -> Tensor:
    """Each unit's incoming vector: the rows of the given sites, flattened and concatenated."""
    parts = [
        unit_matrix(state[row], spec.sites[i].dim, 1, spec.sites[i].index)
        for i in sites
        for row in spec.sites[i].rows
    ]
    return torch.cat(parts, dim=1)


def permute_group(state: State, spec: SymmetrySpec, group: int, perm: Tensor) -> None:
    """Reorder the units of a group in place: new unit ``i`` is old unit ``perm[i]``."""
    perm = perm.to(torch.long)
    for axis in spec.groups[group].axes:
        tensor = rows_of(state[axis.tensor], axis.row_slice)
        source = unit_index(perm.to(tensor.device), axis.block, axis.index)
        if axis.index is None:
            moved = tensor.index_select(axis.dim, source)
        else:
            identity = torch.arange(len(perm), device=tensor.device)
            target = unit_index(identity, axis.block, axis.index)
            moved = tensor.index_copy(axis.dim, target, tensor.index_select(axis.dim, source))
        state[axis.tensor] = with_rows(state[axis.tensor], axis.row_slice, moved)


def rows_of(tensor: Tensor, row_slice: tuple[int, int] | None) -> Tensor:
    """The rows ``start:stop`` of ``tensor`` (all of it for ``None``)."""
    return tensor if row_slice is None else tensor[row_slice[0] : row_slice[1]]


def with_rows(tensor: Tensor, row_slice: tuple[int, int] | None, rows: Tensor) -> Tensor:
    """``tensor`` with its rows ``start:stop`` replaced by ``rows`` (a new tensor)."""
    if row_slice is None:
        return rows
    out = tensor.clone()
    out[row_slice[0] : row_slice[1]] = rows
    return out


def _along(
    factor: Tensor, tensor: Tensor, dim: int, block: int = 1, index: tuple[int, ...] | None = None
) -> Tensor:
    """``factor`` (one value per unit) laid along ``tensor``'s axis ``dim``, ones elsewhere."""
    factor = factor.to(dtype=tensor.dtype, device=tensor.device)
    if index is None:
        full = factor.repeat_interleave(block) if block > 1 else factor
    else:
        full = torch.ones(tensor.shape[dim], dtype=tensor.dtype, device=tensor.device)
        positions = unit_index(torch.arange(len(index), device=tensor.device), block, index)
        full[positions] = factor.repeat_interleave(block) if block > 1 else factor
    shape = [1] * tensor.ndim
    shape[dim] = -1
    return full.reshape(shape)


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
        site = spec.sites[i]
        for row in site.rows:
            state[row] = state[row] * _along(factor, state[row], site.dim, 1, site.index)
    for column in cls.columns:
        part = factor if column.kind == "full" else signs
        tensor = rows_of(state[column.tensor], column.row_slice)
        divided = tensor / _along(part, tensor, column.dim, column.block, column.index)
        state[column.tensor] = with_rows(state[column.tensor], column.row_slice, divided)
    for absorb in cls.absorbs:
        part = factor if absorb.kind == "full" else signs
        bn = spec.batchnorms[absorb.batchnorm]
        if bn.tracked:
            mean, var = f"{bn.name}.running_mean", f"{bn.name}.running_var"
            state[mean] = state[mean] * _along(part, state[mean], 0, 1, absorb.index)
            # var + eps stays positive, so eval mode stays exact even where an intermediate
            # step makes var itself negative; check_variances judges the final state
            c = _along(part, state[var], 0, 1, absorb.index)
            state[var] = c**2 * (state[var] + bn.eps) - bn.eps
        if bn.affine:
            weight = f"{bn.name}.weight"
            sign = torch.sign(_along(part, state[weight], 0, 1, absorb.index))
            state[weight] = state[weight] * sign


def check_variances(state: State, spec: SymmetrySpec) -> None:
    """Refuse a state whose BatchNorm running variances went negative (outside the group).

    Scales compose exactly (``var + eps`` is multiplied by ``c^2``), so only the final state
    matters: a negative variance means the requested representative needs a scale so small
    that the BatchNorm's ``eps`` cannot be kept.
    """
    for bn in spec.batchnorms.values():
        if bn.tracked and (state[state_name(bn.name, "running_var")] < 0).any():
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
    """Whether a site's incoming columns are in canonical order (its input groups processed)."""
    return all(group in processed for group in site.input_groups)


def _touching(spec: SymmetrySpec) -> dict[int, set[int]]:
    """For each site, the scale classes other than its own that multiply its rows."""
    by_row: dict[tuple[str, int], list[int]] = {}
    for i, site in enumerate(spec.sites):
        for row in site.rows:
            by_row.setdefault((row, site.dim), []).append(i)
    touching: dict[int, set[int]] = {}
    for cls in spec.scales:
        tensors = [(f"{a.batchnorm}.weight", 0) for a in cls.absorbs]
        tensors += [(c.tensor, c.dim) for c in cls.columns]
        for tensor in tensors:
            for i in by_row.get(tensor, ()):
                if spec.sites[i].scale != cls.index:
                    touching.setdefault(i, set()).add(cls.index)
    return touching


def schedule(spec: SymmetrySpec) -> list[tuple[str, int, tuple[int, ...]]]:
    """The order in which canonicalization fixes each class and group, from the input on.

    Returns a list of steps: ``("scale", class, sites)`` normalizes a scale class using the
    rows of ``sites`` (those of its sites whose inputs are already canonical: for a residual
    stream, the layers that open it); ``("order", group, (site,))`` sorts a group by the rows of
    its first site; a group of blocks gets ``("order", group, ())`` once its members are
    ordered and normalized, before any other layer reads them. Heads whose continuous groups
    are divided out (``spec.attentions``, see :mod:`canonicalize.heads`) get
    ``("query_key", attention, (head,))`` once the query and key rows are canonical in their
    inputs, and ``("value_output", attention, (head,))`` once the value rows are; these steps
    replace the ordering of the head's features and the normalization of its value features.
    """
    touching = _touching(spec)
    replaced_groups, replaced_classes = subsumed(spec)
    processed: set[int] = set()
    normalized: set[int] = set()
    steps: list[tuple[str, int, tuple[int, ...]]] = []
    waiting: dict[int, tuple[set[int], set[int]]] = {}  # group of blocks: members, classes
    for group in spec.groups:
        if group.blocks:
            members = {m for block in group.blocks for m in block}
            classes = {c.index for c in spec.scales if c.group in members}
            waiting[group.index] = (members, classes)
    heads: list[tuple[str, int, int]] = [
        (kind, a, h)
        for a, attention in enumerate(spec.attentions)
        for h in range(len(attention.heads))
        for kind, held in (
            ("query_key", attention.query_key),
            ("value_output", attention.value_output),
        )
        if held
    ]

    readers: dict[str, set[int]] = {}  # tensor -> the classes whose columns lie in it
    for cls in spec.scales:
        for column in cls.columns:
            readers.setdefault(column.tensor, set()).add(cls.index)
    visited = -1  # the sites before this one have had their steps

    def ready(site: int) -> bool:
        # like any layer's rows: canonical once its inputs are ordered and every class that
        # rescales its rows or its columns is normalized (in graph order, as units are)
        others = set().union(*(readers.get(row, set()) for row in spec.sites[site].rows))
        others |= touching.get(site, set())
        return (
            site < visited
            and available(spec.sites[site], processed)
            and others - {spec.sites[site].scale} - replaced_classes <= normalized
        )

    def release_heads() -> None:
        for kind, a, h in list(heads):
            head = spec.attentions[a].heads[h]
            if kind == "query_key" and ready(head.query) and ready(head.key):
                processed.add(head.query_key)
            elif kind == "value_output" and ready(head.value):
                processed.add(head.values)
                if head.value_scale is not None:
                    normalized.add(head.value_scale)
            else:
                continue
            steps.append((kind, a, (h,)))
            heads.remove((kind, a, h))

    def release_blocks() -> None:
        release_heads()
        for index, (members, classes) in list(waiting.items()):
            if members <= processed and classes <= normalized:
                steps.append(("order", index, ()))
                processed.add(index)
                del waiting[index]

    for i, site in enumerate(spec.sites):
        visited = i
        release_blocks()
        if site.scale in replaced_classes:
            pass
        elif site.scale is not None and site.scale not in normalized:
            cls = spec.scale_class(site.scale)
            # a site's rows are canonical once its inputs are, and once every other class that
            # rescales them (a layer feeding a BatchNorm, a unit read by a depthwise row) is
            usable = tuple(
                j
                for j in cls.sites
                if available(spec.sites[j], processed)
                and touching.get(j, set()) - {site.scale} <= normalized
            )
            if i not in usable:
                raise SymmetryError(
                    f"internal: layer '{site.name}' opens a scale class but reads its own units"
                )
            steps.append(("scale", site.scale, usable))
            normalized.add(site.scale)
        if site.group is not None and site.group not in processed | replaced_groups:
            steps.append(("order", site.group, (i,)))
            processed.add(site.group)
    visited = len(spec.sites)
    release_blocks()
    release_blocks()
    if waiting or heads:
        raise SymmetryError(
            "internal: a group of blocks or a head was never canonicalized; please report this"
        )
    return steps


def block_rows(state: State, spec: SymmetrySpec, group: int) -> Tensor:
    """Each block's content: the rows of its member groups' sites, flattened and concatenated."""
    return torch.stack(
        [
            torch.cat([site_rows(state, spec, spec.groups[m].sites).reshape(-1) for m in block])
            for block in spec.groups[group].blocks
        ]
    )
