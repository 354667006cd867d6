"""The result of matching one network to another: the aligned model and the group element."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .errors import SymmetryError
from .heads import HeadMap, apply_map
from .spec import SymmetrySpec
from .transform import permute_group, rebuild, scale_units, to_float64


@dataclass(frozen=True)
class Alignment:
    """What :func:`~canonicalize.match` found.

    Attributes
    ----------
    model : nn.Module
        The aligned copy of the model: the same function, units moved to match the reference.
    permutations : dict[int, Tensor]
        For every permutation group of ``spec``: aligned unit ``i`` is the model's unit
        ``permutations[g][i]``. A group of whole blocks (a grouped convolution's) acts first:
        aligned block ``i`` is the model's block ``permutations[g][i]``; the permutations of
        the groups inside the blocks then act at the blocks' new places.
    signs : dict[int, Tensor]
        For every scale class with a free sign: the sign (+-1, float64) applied to aligned unit
        ``i`` of that class, after the permutation.
    method : str
        The matching method.
    distance_before, distance_after : float
        Euclidean distance to the reference in normalized coordinates (every free scale removed,
        biases before a BatchNorm folded: the coordinates weight matching compares), before and
        after alignment.
    iterations : int
        Passes of coordinate descent (``"weights"``); 1 for the single-pass methods.
    converged : bool
        Whether the last pass changed nothing (always true for the single-pass methods).
    spec : SymmetrySpec
        The symmetry group the element belongs to.
    maps : tuple of HeadMap
        For every attention head whose continuous groups the spec divides out
        (``heads="full"``): the invertible maps (and bias translations) that express the
        model's head in the basis of the reference's head at its place, applied after the
        permutations and signs.
    """

    model: nn.Module
    permutations: dict[int, Tensor]
    signs: dict[int, Tensor]
    method: str
    distance_before: float
    distance_after: float
    iterations: int
    converged: bool
    spec: SymmetrySpec = field(repr=False)
    maps: tuple[HeadMap, ...] = ()

    def apply(self, model: nn.Module) -> nn.Module:
        """This group element applied to another model of the same architecture.

        Moves ``model``'s units as the alignment moved its own model (groups of whole blocks
        first, then every other group, then the sign flips, then the maps of attention heads),
        so one alignment carries over to every checkpoint of a training run. For the aligned
        model's own input it reproduces ``self.model``. It keeps ``model``'s function only if
        ``model`` has the same symmetry group (same graph); the caller vouches for that (and,
        for a head whose product had rank below its width, the head's maps are not invertible
        and keep only the aligned model's function). Tensors the traced forward pass does not
        use (a spare head) are left as they are.

        Raises
        ------
        SymmetryError
            If ``model``'s tensors differ in name or shape from this alignment's models.
        """
        state = to_float64(model)
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        differ = [(k, s) for k, s in self.spec.state_shapes if shapes.get(k) != tuple(s)]
        if differ:
            raise SymmetryError(
                "apply needs a model of the aligned architecture; these tensors are missing "
                f"or have another shape there: {differ[:4]}"
            )
        ordered = sorted(self.spec.groups, key=lambda g: not g.blocks)
        for group in ordered:
            permute_group(state, self.spec, group.index, self.permutations[group.index])
        for k, signs in self.signs.items():
            scale_units(state, self.spec, k, signs)
        for head_map in self.maps:
            apply_map(state, self.spec, head_map)
        return rebuild(model, state)

    @property
    def moved_units(self) -> int:
        """How many units the permutations moved (over all groups)."""
        return sum(int((p != torch.arange(len(p))).sum()) for p in self.permutations.values())

    @property
    def flipped_units(self) -> int:
        """How many units changed sign."""
        return sum(int((s < 0).sum()) for s in self.signs.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable): the group element and the evidence, not the model."""
        return {
            "method": self.method,
            "permutations": {str(g): p.tolist() for g, p in self.permutations.items()},
            "signs": {str(k): s.tolist() for k, s in self.signs.items()},
            "distance_before": self.distance_before,
            "distance_after": self.distance_after,
            "iterations": self.iterations,
            "converged": self.converged,
            "maps": [m.to_dict() for m in self.maps],
        }

    def __repr__(self) -> str:
        return (
            f"Alignment(method={self.method!r}, distance {self.distance_before:.4g} -> "
            f"{self.distance_after:.4g}, {self.moved_units} units moved, {self.flipped_units} "
            f"flipped, iterations={self.iterations}, converged={self.converged})"
        )


class Element:
    """The group element that alignment builds up step by step (mutable, internal)."""

    def __init__(self, spec: SymmetrySpec) -> None:
        self.spec = spec
        self.permutations = {g.index: torch.arange(g.size) for g in spec.groups}
        self.signs = {
            c.index: torch.ones(c.size, dtype=torch.float64) for c in spec.scales if c.sign
        }
        self.iterations = 1
        self.converged = True

    def permute(self, group: int, perm: Tensor) -> None:
        perm = perm.to(torch.long).cpu()
        self.permutations[group] = self.permutations[group][perm]
        for cls in self.spec.scales:
            if cls.group == group and cls.index in self.signs:
                self.signs[cls.index] = self.signs[cls.index][perm]
        blocks = self.spec.groups[group].blocks
        if blocks:
            # whole blocks moved: what each member group did inside its block moves with it
            for side in range(len(blocks[0])):
                members = [block[side] for block in blocks]
                classes = [
                    [c.index for c in self.spec.scales if c.group == m and c.index in self.signs]
                    for m in members
                ]
                perms = [self.permutations[m] for m in members]
                signs = [[self.signs[k] for k in ks] for ks in classes]
                for i, m in enumerate(members):
                    self.permutations[m] = perms[int(perm[i])]
                    for k, s in zip(classes[i], signs[int(perm[i])], strict=True):
                        self.signs[k] = s

    def flip(self, scale: int, signs: Tensor) -> None:
        self.signs[scale] = self.signs[scale] * signs.to(torch.float64).cpu()

    def copy_from(self, other: Element) -> None:
        self.permutations = {k: v.clone() for k, v in other.permutations.items()}
        self.signs = {k: v.clone() for k, v in other.signs.items()}
