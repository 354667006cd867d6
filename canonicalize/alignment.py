"""The result of matching one network to another: the aligned model and the group element."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .spec import SymmetrySpec


@dataclass(frozen=True)
class Alignment:
    """What :func:`~canonicalize.match` found.

    Attributes
    ----------
    model : nn.Module
        The aligned copy of the model: the same function, units moved to match the reference.
    permutations : dict[int, Tensor]
        For every permutation group of ``spec``: aligned unit ``i`` is the model's unit
        ``permutations[g][i]``.
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

    def flip(self, scale: int, signs: Tensor) -> None:
        self.signs[scale] = self.signs[scale] * signs.to(torch.float64).cpu()

    def copy_from(self, other: Element) -> None:
        self.permutations = {k: v.clone() for k, v in other.permutations.items()}
        self.signs = {k: v.clone() for k, v in other.signs.items()}
