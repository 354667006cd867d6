"""Groups of blocks: the permutations of whole blocks of a grouped convolution.

A convolution with ``groups = G`` splits its ``G * a`` input and ``G * b`` output channels
into ``G`` blocks; output block ``g`` reads input block ``g`` only. Inside a block, channels
permute and scale on their own (one :class:`~canonicalize.spec.PermGroup` per block and side,
made by discovery). When the blocks are alike (the input blocks come from one layer's units
and were treated the same way everywhere else, and so were the output blocks), whole blocks
also swap places: input block ``g`` and output block ``g`` move together to position
``pi(g)``. That permutation acts on every axis of the blocks' units in runs of ``a`` (inputs)
or ``b`` (outputs) entries, and carries the grouped convolution's own input columns with its
rows. It is one more :class:`PermGroup` whose ``blocks`` name the groups each block holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .spec import AxisRef, PermGroup

Key = tuple[tuple[str, ...], tuple]


def block_groups(
    grouped: Sequence[dict],
    groups: Sequence[PermGroup],
    group_key: Sequence[Key],
    locate: Callable[[int | None], tuple[int, int] | None],
    state_shapes: dict[str, tuple[int, ...]],
) -> tuple[list[PermGroup], list[tuple[object, str]]]:
    """The groups of blocks of every grouped convolution whose blocks are alike.

    Parameters
    ----------
    grouped : the walk's records, one per grouped convolution: its module path, graph node,
        the perm atoms of each input and output block, and the origin prefixes that mark them.
    groups : the permutation groups found so far (indices ``0 ... len - 1``).
    group_key : for each group, the origins and freedoms that made its units alike.
    locate : perm atom -> (group, unit), ``None`` for a fixed channel.
    state_shapes : name -> shape of every state tensor.

    Returns
    -------
    The new groups (indexed after ``groups``), and for each record whose blocks cannot swap,
    its graph node, its kind (``"convolution"``, ``"heads"``) and the reason.
    """
    found: list[PermGroup] = []
    refused: list[tuple[object, str]] = []
    for record in grouped:
        members, reason = _members(record, groups, group_key, locate)
        axes = None
        if reason is None:
            axes, reason = _axes(members, groups, state_shapes)
        kind = record.get("kind", "convolution")
        if reason is not None:
            refused.append((record["node"], kind, reason))
            continue
        found.append(
            PermGroup(
                index=len(groups) + len(found),
                size=len(members[0]),
                axes=tuple(axes),  # type: ignore[arg-type]
                sites=(),
                nodes=(),
                blocks=tuple(zip(*members, strict=True)),
                kind="heads" if kind == "heads" else "blocks",
            )
        )
    return found, refused


def _strip(key: Key, marker: str) -> Key:
    origins, attached = key
    return tuple(o for o in origins if not o.startswith(marker)), attached


def _members(record, groups, group_key, locate) -> tuple[list[list[int]], str | None]:
    """The groups of each side's blocks (inputs, outputs), or why whole blocks cannot move."""
    members: list[list[int]] = []
    for side, marker in zip(("inputs", "outputs"), record["markers"], strict=True):
        row: list[int] = []
        for atoms in record[side]:
            where = [locate(atom) for atom in atoms]
            owners = {w[0] for w in where if w is not None}
            if any(w is None for w in where):
                return [], f"its {side} cannot be permuted (they are fixed channels)"
            (owner,) = owners if len(owners) == 1 else (None,)
            if owner is None or groups[owner].size != len(atoms):
                return [], f"the channels of an {side[:-1]} block are not a group of their own"
            row.append(owner)
        if len(set(row)) != len(row):
            return [], f"two {side[:-1]} blocks share a group"
        if len({_strip(group_key[g], marker) for g in row}) != 1:
            return [], f"its {side[:-1]} blocks are not alike (made by different layers)"
        members.append(row)
    return members, None


def _axes(members, groups, state_shapes) -> tuple[list[AxisRef] | None, str | None]:
    """The axes of a group of blocks, or why the blocks do not line up along some axis.

    An axis of the member groups that every block has, each block's units consecutive and in
    unit order at a multiple of the block width, becomes one axis of the group of blocks (block
    length: block width times entries per unit). An axis limited to some rows (the grouped
    convolution's input columns of one block) must sit in the rows of the same block's
    outputs, which carry it.
    """
    outputs = members[1]
    rows_of_output: dict[tuple[str, int], tuple[int, ...] | None] = {}
    for g, group in enumerate(outputs):
        for axis in groups[group].axes:
            if axis.dim == 0 and axis.block == 1 and axis.row_slice is None:
                rows_of_output[(axis.tensor, g)] = axis.index
    found: list[AxisRef] = []
    for side in members:
        width = groups[side[0]].size
        per_block: list[dict[tuple, AxisRef]] = []
        for g, group in enumerate(side):
            plain: dict[tuple, AxisRef] = {}
            # a tensor may hold a group twice along one axis (the query and key rows of one
            # packed projection): its occurrences are told apart by their order
            ranked = sorted(
                groups[group].axes,
                key=lambda a: (a.tensor, a.dim, a.block, a.index[0] if a.index else 0),
            )
            for axis in ranked:
                if axis.row_slice is None:
                    key = (axis.tensor, axis.dim, axis.block)
                    rank = sum(1 for k in plain if k[:3] == key)
                    plain[(*key, rank)] = axis
                    continue
                index = rows_of_output.get((axis.tensor, g))
                lo, hi = axis.row_slice
                if index is None or tuple(index) != tuple(range(lo, hi)):
                    return (
                        None,
                        f"the rows that read block {g} of {axis.tensor} do not move with it",
                    )
            per_block.append(plain)
        if any(set(p) != set(per_block[0]) for p in per_block):
            return None, "its blocks do not live on the same tensors"
        for key in per_block[0]:
            tensor, dim, block, _ = key
            positions = []
            for plain in per_block:
                index = plain[key].index
                start = 0 if index is None else index[0]
                if (
                    index is not None and tuple(index) != tuple(range(start, start + width))
                ) or start % width:
                    return None, f"its blocks are not contiguous along {tensor} (dim {dim})"
                positions.append(start // width)
            full = state_shapes[tensor][dim] == len(positions) * width * block
            in_order = positions == list(range(len(positions)))
            found.append(
                AxisRef(tensor, dim, width * block, None if full and in_order else tuple(positions))
            )
    return found, None
