"""The symmetry group of a binary network with fixed layers, and alignment inside it.

canonicalize discovers the group of the graph: it reads every Linear/Conv weight as a
parameter, so the units that feed a committee's vote get a sign reversal (their column of the
vote flips with them) and the vote's own output unit one more (with the readout's weights). A
fixed layer (:func:`binary.fixed_weights`) is no parameter: an element of the binary group
must leave it as it is. :func:`restrict` keeps exactly those elements of canonicalize's spec:

- a scale class keeps its sign reversal only if no tensor it touches (rows of its sites,
  consumer columns) is fixed, and its positive scales only if no fixed tensor takes the factor
  itself (rows, ``"full"`` columns; a ``"sign"`` column behind a sign activation does not);
- a permutation group moves the slices of every tensor along its axis: along a fixed tensor
  those slices must all be equal (the vote's +1 columns are), so that the permutation leaves it
  as it is. Fixed weights that differ from unit to unit would leave only the permutations
  among equal slices, a group canonicalize's spec cannot express: refused.

:func:`match_state` is canonicalize's alignment (:func:`canonicalize.match`, methods
``"cosine"`` and ``"weights"``) run on the restricted spec, so that hidden units feeding the
vote are matched on their signed cosine and only permuted.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

import canonicalize
from canonicalize.spec import ScaleClass, SymmetrySpec
from canonicalize.transform import State, rows_of, to_float64, unit_matrix

from .errors import BinaryError


def _touched(spec: SymmetrySpec, cls: ScaleClass) -> tuple[set[str], set[str]]:
    """The tensors a class's factor reaches: ``(by the factor itself, by its sign only)``."""
    rows = {row for i in cls.sites for row in spec.sites[i].rows}
    full = rows | {c.tensor for c in cls.columns if c.kind == "full"}
    signed = {c.tensor for c in cls.columns if c.kind != "full"}
    return full, full | signed


def restrict(spec: SymmetrySpec, state: State, fixed: tuple[str, ...]) -> SymmetrySpec:
    """``spec`` without the elements that change a fixed tensor (see the module docstring).

    Raises
    ------
    BinaryError
        For a fixed tensor whose slices differ along a permutation group's axis.
    """
    if not fixed:
        return spec
    frozen = set(fixed)
    scales, notes = [], list(spec.notes)
    kept_output = spec.output_scale
    for cls in spec.scales:
        by_factor, by_sign = _touched(spec, cls)
        magnitude = cls.magnitude and not by_factor & frozen
        sign = cls.sign and not by_sign & frozen
        if cls.sign and not sign:
            names = ", ".join(spec.sites[i].label for i in cls.sites)
            reached = ", ".join(sorted(by_sign & frozen))
            notes.append(
                f"the units of [{names}] keep their sign: reversing one would change the fixed "
                f"weights {reached}"
            )
        if cls.index == spec.output_scale and not magnitude:
            kept_output = None
        scales.append(replace(cls, magnitude=magnitude, sign=sign))
    for group in spec.groups:
        for axis in group.axes:
            if axis.tensor not in frozen:
                continue
            tensor = rows_of(state[axis.tensor], axis.row_slice)
            units = unit_matrix(tensor, axis.dim, axis.block, axis.index)
            if not bool((units == units[:1]).all()):
                names = ", ".join(spec.sites[i].label for i in group.sites) or "a block group"
                raise BinaryError(
                    f"the fixed weights '{axis.tensor}' differ from unit to unit of the "
                    f"layer(s) [{names}], so permuting those units would change them; binary "
                    "functions handle fixed layers whose weights are equal across the units "
                    "they read or write (a committee's vote). Make that layer trainable "
                    f"(weight.requires_grad_(True)) if its weights are parameters"
                )
    return replace(spec, scales=tuple(scales), output_scale=kept_output, notes=tuple(notes))


def same_group(a: SymmetrySpec, b: SymmetrySpec) -> bool:
    """Whether two specs have groups and classes of the same sizes and kinds (canonicalize's
    test for two models of one architecture whose graphs were traced apart)."""
    return [g.size for g in a.groups] == [g.size for g in b.groups] and [
        (s.size, s.magnitude, s.sign) for s in a.scales
    ] == [(s.size, s.magnitude, s.sign) for s in b.scales]


def match_state(
    model: nn.Module,
    reference: nn.Module,
    example_input: torch.Tensor,
    spec: SymmetrySpec,
    method: str,
) -> State:
    """``model``'s float64 state moved by the element of ``spec``'s group that matches it to
    ``reference`` (:func:`canonicalize.match` with ``"cosine"`` or ``"weights"``, in the
    restricted group)."""
    with torch.no_grad():
        result = canonicalize.match(model, reference, example_input, method, spec=spec)
    return to_float64(result.model)
