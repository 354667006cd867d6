"""The symmetry group of a model, as plain data over its ``state_dict`` names.

A *unit* is one output feature of a Linear layer or one output channel of a Conv layer (and the
matching channel of every BatchNorm, pooling or residual stream it flows into). A *site* is a
layer whose parameters hold one row per unit: the incoming weights and bias of a Linear or Conv
layer, or the affine pair (gamma, beta) of a BatchNorm. Units that must be permuted together
form a :class:`PermGroup`; units that must be rescaled together form a :class:`ScaleClass`
(several sites share one class when they write into one residual stream).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

FactorKind = Literal["full", "sign"]


@dataclass(frozen=True)
class AxisRef:
    """One axis of a state tensor that is indexed by the units of a group.

    ``block`` consecutive entries belong to one unit (``H * W`` columns of a Linear layer that
    reads a flattened ``(C, H, W)`` feature map).
    """

    tensor: str
    dim: int
    block: int = 1


@dataclass(frozen=True)
class Site:
    """A layer whose parameters carry one row per unit.

    Attributes
    ----------
    name : module path of the layer.
    kind : ``"linear"``, ``"conv"`` or ``"batchnorm"``.
    rows : state names whose dim 0 is the unit axis (weight and bias; BatchNorm weight and bias).
    group : index of its :class:`PermGroup`, ``None`` when its units cannot be permuted.
    scale : index of its :class:`ScaleClass`, ``None`` when its rows cannot be rescaled.
    input_group : the group its incoming columns belong to (``None`` for a fixed input, and for
        BatchNorm, whose rows have no columns).
    order : position in the traced graph (topological).
    """

    name: str
    kind: str
    rows: tuple[str, ...]
    group: int | None
    scale: int | None
    input_group: int | None
    order: int


@dataclass(frozen=True)
class PermGroup:
    """Units that share one permutation: every axis listed is permuted the same way.

    ``nodes`` names the traced graph nodes whose channels are these units, each with the scale
    class whose factor it carries (``None`` for none); "activations" alignment reads them.
    """

    index: int
    size: int
    axes: tuple[AxisRef, ...]
    sites: tuple[int, ...]
    nodes: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True)
class Column:
    """Consumer weights on the units of a scale class; divided by the unit's factor.

    ``kind`` says which part of the factor reaches the consumer: ``"full"`` (the factor itself)
    or ``"sign"`` (its sign only, when a sign activation absorbed the magnitude on the way).
    """

    tensor: str
    block: int
    kind: FactorKind


@dataclass(frozen=True)
class Absorb:
    """A BatchNorm that absorbs the factor of its input units into its running statistics."""

    batchnorm: str
    kind: FactorKind


@dataclass(frozen=True)
class ScaleClass:
    """Units rescaled together; ``magnitude``/``sign`` say which factors the model allows.

    A factor ``c`` per unit multiplies the rows of every site of the class, and every consumer
    compensates it (:class:`Column`, :class:`Absorb`), so the model's function is unchanged.
    ``magnitude`` allows ``|c| != 1``, ``sign`` allows ``c < 0``.
    """

    index: int
    size: int
    group: int | None
    magnitude: bool
    sign: bool
    sites: tuple[int, ...]
    columns: tuple[Column, ...]
    absorbs: tuple[Absorb, ...]


@dataclass(frozen=True)
class BatchNormInfo:
    """What the transformations need to know about one BatchNorm layer."""

    name: str
    eps: float
    affine: bool
    tracked: bool


@dataclass(frozen=True)
class BiasFold:
    """A bias directly before a BatchNorm: a translation symmetry, folded into the running mean."""

    bias: str
    batchnorm: str


@dataclass(frozen=True)
class SymmetrySpec:
    """The symmetry group of one model, discovered from its graph by :func:`symmetries`.

    Attributes
    ----------
    groups : the permutation groups (hidden units and residual streams).
    scales : the scale classes that allow a non-trivial factor (magnitude, sign or both).
    sites : every layer with per-unit rows, in graph order.
    batchnorms : the BatchNorm layers, by module path.
    bias_folds : biases made redundant by a following BatchNorm.
    output_scale : the scale class of the output layer when one global positive factor of the
        output is allowed (``output="normalize"``), else ``None``.
    output_units : number of output units (``H_L``).
    state_shapes : name and shape of every state tensor, to compare architectures.
    """

    groups: tuple[PermGroup, ...]
    scales: tuple[ScaleClass, ...]
    sites: tuple[Site, ...]
    batchnorms: dict[str, BatchNormInfo]
    bias_folds: tuple[BiasFold, ...]
    output_scale: int | None
    output_units: int
    state_shapes: tuple[tuple[str, tuple[int, ...]], ...]

    def scale_class(self, index: int) -> ScaleClass:
        """The scale class with the given index."""
        for scale in self.scales:
            if scale.index == index:
                return scale
        raise KeyError(f"no scale class {index}")

    @property
    def dimension(self) -> dict[str, int]:
        """Number of free parameters each kind of symmetry removes."""
        return {
            "permutation_groups": len(self.groups),
            "permuted_units": sum(g.size for g in self.groups),
            "scaled_units": sum(s.size for s in self.scales if s.magnitude),
            "sign_units": sum(s.size for s in self.scales if s.sign),
        }

    def summary(self) -> str:
        """A short human-readable description of the group."""
        lines = [
            f"SymmetrySpec: {len(self.groups)} permutation groups, {len(self.scales)} scale classes"
        ]
        for group in self.groups:
            names = ", ".join(self.sites[i].name for i in group.sites)
            lines.append(f"  group {group.index}: {group.size} units, sites [{names}]")
        for scale in self.scales:
            names = ", ".join(self.sites[i].name for i in scale.sites)
            allowed = [w for w, ok in (("scale", scale.magnitude), ("sign", scale.sign)) if ok]
            lines.append(f"  scale class {scale.index} ({' and '.join(allowed)}): [{names}]")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested plain data (JSON-serialisable)."""
        return asdict(self)
