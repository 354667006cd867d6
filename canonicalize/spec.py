"""The symmetry group of a model, as plain data over its ``state_dict`` names.

A *unit* is one output feature of a Linear layer or one output channel of a Conv layer (and the
matching channel of every BatchNorm, pooling or residual stream it flows into). A *site* is a
layer whose parameters hold one row per unit: the incoming weights and bias of a Linear or Conv
layer, or the affine pair (gamma, beta) of a BatchNorm. Units that must be permuted together
form a :class:`PermGroup`; units that must be rescaled together form a :class:`ScaleClass`
(several sites share one class when they write into one residual stream).

Channel axes are sequences of segments: a concatenation puts several groups side by side, a
channel slice or a zero-padding of channels (the option-A shortcut) places a group inside a
wider axis. So every reference to an axis carries ``index``: the position of each of the
group's units along that axis (``None`` when the units fill the axis in order).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

FactorKind = Literal["full", "sign"]


@dataclass(frozen=True)
class AxisRef:
    """One axis of a state tensor that is indexed by the units of a group.

    ``block`` consecutive entries belong to one unit (``H * W`` columns of a Linear layer that
    reads a flattened ``(C, H, W)`` feature map); ``index`` gives the position (in blocks) of
    each unit of the group along ``dim``, ``None`` for ``0, 1, ..., size - 1``.
    ``row_slice`` ``(start, stop)`` limits the axis to those rows (dim 0) of the tensor: the
    input channels of one block of a grouped convolution, which only that block's rows read.
    """

    tensor: str
    dim: int
    block: int = 1
    index: tuple[int, ...] | None = None
    row_slice: tuple[int, int] | None = None


@dataclass(frozen=True)
class Site:
    """A layer whose parameters carry one row per unit.

    A layer whose rows belong to several groups (a convolution writing into a stream that is
    partly zero-padded, a BatchNorm over a concatenation) is split into one site per group.

    Attributes
    ----------
    name
        Module path of the layer.
    kind
        ``"linear"``, ``"conv"``, ``"depthwise"`` (a convolution acting per channel) or
        ``"batchnorm"``.
    rows
        State names whose dim 0 is the unit axis (weight and bias; BatchNorm weight and bias).
    group
        Index of its :class:`PermGroup`, ``None`` when its units cannot be permuted.
    scale
        Index of its :class:`ScaleClass`, ``None`` when its rows cannot be rescaled.
    input_groups
        The groups its incoming columns belong to (empty for a fixed input, and for
        per-channel layers, whose rows have no columns of other units).
    order
        Position in the traced graph (topological).
    index
        The row of each unit (in the group's unit order), ``None`` for all rows in order.
    label
        A name unique among the sites (the module path, with the group when split).
    dim
        The axis of the tensors in ``rows`` that holds the units: 0 for the rows of a layer,
        1 for the columns of an embedding, the last axis of a parameter table.
    """

    name: str
    kind: str
    rows: tuple[str, ...]
    group: int | None
    scale: int | None
    input_groups: tuple[int, ...]
    order: int
    index: tuple[int, ...] | None = None
    label: str = ""
    dim: int = 0


@dataclass(frozen=True)
class PermGroup:
    """Units that share one permutation: every axis listed is permuted the same way.

    ``nodes`` names the traced graph nodes whose channels hold these units, each with the scale
    class whose factor it carries (``None`` for none) and the channel of each unit (``None``
    for all channels in order); "activations" alignment reads them.

    ``node_axes`` gives the axis of each node that holds the channels (empty: axis 1 for
    every node).

    A *group of blocks* (non-empty ``blocks``: the whole blocks of a grouped convolution, the
    heads of an attention, :mod:`canonicalize.blocks`) has one unit per block; ``blocks[i]``
    names the groups whose units block ``i`` holds (its input and output channels; a head's
    query-key and value features), and its axes run in blocks of those groups' sizes. It has
    no sites of its own: it is ordered by the rows of its members' sites, after they are
    canonical. ``kind`` says what the blocks are (``"heads"``, ``"blocks"`` of a convolution).
    """

    index: int
    size: int
    axes: tuple[AxisRef, ...]
    sites: tuple[int, ...]
    nodes: tuple[tuple[str, int | None, tuple[int, ...] | None], ...]
    blocks: tuple[tuple[int, ...], ...] = ()
    node_axes: tuple[int, ...] = ()
    kind: str = ""


@dataclass(frozen=True)
class Column:
    """Consumer weights on the units of a scale class; divided by the unit's factor.

    ``kind`` says which part of the factor reaches the consumer: ``"full"`` (the factor itself)
    or ``"sign"`` (its sign only, when a sign activation absorbed the magnitude on the way).
    ``dim`` is the axis of the consumer's input channels (1; 0 for a depthwise convolution,
    whose rows each read one channel); ``index`` the position of each unit along it;
    ``row_slice`` the rows that read these units (see :class:`AxisRef`), ``None`` for all.
    """

    tensor: str
    block: int
    kind: FactorKind
    index: tuple[int, ...] | None = None
    dim: int = 1
    row_slice: tuple[int, int] | None = None


@dataclass(frozen=True)
class Absorb:
    """A BatchNorm that absorbs the factor of its input units into its running statistics.

    ``index`` is the channel of each unit in the BatchNorm (``None`` for all, in order).
    """

    batchnorm: str
    kind: FactorKind
    index: tuple[int, ...] | None = None


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
class Head:
    """One head of an attention: where its query, key and value rows live in the spec.

    Attributes
    ----------
    query, key, value
        The sites holding the head's rows of the query, key and value projections (weights
        and bias, in the unit order of the head's groups: query row ``i`` meets key row ``i``).
    query_key
        The group of the head's query-key features.
    values
        The group of the head's value features.
    value_scale
        The scale class of the value features, whose columns are the output projection's
        columns that read the head (``W_O,h``); ``None`` when it has none.
    """

    query: int
    key: int
    value: int
    query_key: int
    values: int
    value_scale: int | None


@dataclass(frozen=True)
class Attention:
    """An attention's heads and which continuous parts of their group are divided out.

    Per head ``h`` the scores depend on the query and key projections only through the
    product ``[W_Q | b_Q]^T [W_K | b_K]`` and the output through ``W_O,h [W_V | b_V]``: any
    invertible ``A`` (``W_Q -> A W_Q``, ``W_K -> A^-T W_K``) and ``B`` (``W_V -> B W_V``,
    ``W_O,h -> W_O,h B^-1``) keep the function (see :mod:`canonicalize.heads`).

    Attributes
    ----------
    name
        Module path of the attention (the graph node's name when it has none).
    heads
        Its heads, in order.
    blocks
        The group of whole heads (``None``: one head, or heads held in place).
    query_key
        Whether each head's invertible maps of its query-key product are divided out.
    value_output
        Whether each head's invertible maps of its value-output product are divided out.
    key_bias
        Whether the key bias is divided out (set to zero): the scores are soft-maxed over the
        keys, so the constant ``q_i . b_K`` per query drops out.
    value_bias
        Whether the value bias is folded into the output projection's bias (rows of the
        attention sum to one, so ``b_V`` adds ``W_O,h b_V`` to every output).
    """

    name: str
    heads: tuple[Head, ...]
    blocks: int | None
    query_key: bool
    value_output: bool
    key_bias: bool
    value_bias: bool

    @property
    def continuous(self) -> bool:
        """Whether any continuous part of the heads' group is divided out."""
        return self.query_key or self.value_output or self.key_bias or self.value_bias


@dataclass(frozen=True)
class SymmetrySpec:
    """The symmetry group of one model, discovered from its graph by :func:`symmetries`.

    Attributes
    ----------
    groups
        The permutation groups (hidden units and residual streams).
    scales
        The scale classes that allow a non-trivial factor (magnitude, sign or both).
    sites
        Every layer with per-unit rows, in graph order.
    batchnorms
        The BatchNorm layers, by module path.
    bias_folds
        Biases made redundant by a following BatchNorm.
    output_scale
        The scale class of the output layer when one global positive factor of the
        output is allowed (``output="normalize"``), else ``None``.
    output_units
        Number of output units (``H_L``).
    state_shapes
        Name and shape of every state tensor, to compare architectures.
    notes
        What the graph fixed that a wider group would have allowed, and why (a unit pinned
        by a softmax, a gate whose second factor is held fixed, ...), and what is not divided
        out.
    attentions
        Every attention, with the continuous groups of its heads
        (:class:`~canonicalize.spec.Attention`).
    """

    groups: tuple[PermGroup, ...]
    scales: tuple[ScaleClass, ...]
    sites: tuple[Site, ...]
    batchnorms: dict[str, BatchNormInfo]
    bias_folds: tuple[BiasFold, ...]
    output_scale: int | None
    output_units: int
    state_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    notes: tuple[str, ...] = ()
    attentions: tuple[Attention, ...] = ()

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
            "permuted_units": sum(g.size for g in self.groups if not g.blocks),
            "permuted_blocks": sum(g.size for g in self.groups if g.blocks),
            "scaled_units": sum(s.size for s in self.scales if s.magnitude),
            "sign_units": sum(s.size for s in self.scales if s.sign),
        }

    def summary(self) -> str:
        """A readable description of the group: groups, scale classes, folds, and what was fixed."""
        dims = self.dimension
        lines = [
            f"SymmetrySpec: {len(self.groups)} permutation groups "
            f"({dims['permuted_units']} units), {dims['scaled_units']} units with a free scale, "
            f"{dims['sign_units']} with a free sign"
        ]
        for group in self.groups:
            if group.blocks:
                held = "; ".join(
                    f"block {i}: groups {', '.join(map(str, b))}"
                    for i, b in enumerate(group.blocks)
                )
                what = group.kind or "blocks"
                lines.append(f"  group {group.index}: {group.size} whole {what} ({held})")
                continue
            names = ", ".join(self.sites[i].label for i in group.sites)
            lines.append(f"  group {group.index}: {group.size} units; rows of [{names}]")
            readers = sorted({a.tensor.rsplit(".", 1)[0] for a in group.axes if a.dim == 1})
            if readers:
                lines.append(f"    read by [{', '.join(readers)}]")
            for cls in self.scales:
                if cls.group != group.index:
                    continue
                allowed = [w for w, ok in (("scale", cls.magnitude), ("sign", cls.sign)) if ok]
                kind = " and ".join(allowed) if allowed else "fixed"
                sites = ", ".join(self.sites[i].label for i in cls.sites)
                lines.append(f"    scale class {cls.index} ({kind}): [{sites}]")
        if self.output_scale is not None:
            lines.append("  output: one global positive factor (output='normalize' allowed)")
        else:
            lines.append("  output: fixed (output='normalize' not available)")
        for fold in self.bias_folds:
            lines.append(f"  bias {fold.bias} folds into {fold.batchnorm}.running_mean")
        for attention in self.attentions:
            parts = [
                what
                for what, held in (
                    ("query-key maps", attention.query_key),
                    ("value-output maps", attention.value_output),
                    ("key bias", attention.key_bias),
                    ("value bias folded", attention.value_bias),
                )
                if held
            ]
            lines.append(
                f"  attention '{attention.name}': {len(attention.heads)} heads; continuous "
                f"parts divided out: {', '.join(parts) or 'none'}"
            )
        for note in self.notes:
            lines.append(f"  fixed: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested plain data (JSON-serialisable)."""
        return asdict(self)
