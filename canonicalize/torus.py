"""Toroidal coordinates: a network as a point of a product of spheres, and geodesic distances."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .align import Method, align
from .canonical import Output, _check_output_mode, canonicalize_state
from .errors import SymmetryError
from .heads import HeadsView, spec_for
from .spec import SymmetrySpec
from .transform import State, check_variances, rebuild, schedule, to_float64, unit_matrix
from .validate import check_input

if TYPE_CHECKING:
    import geoopt


@dataclass(frozen=True)
class SphereBlock:
    """Where one block of spheres lives in the model's state.

    ``parts`` lists (tensor name, entries per unit, rows) in the order they are concatenated;
    ``rows`` are the tensor's rows that hold the block's units (``None``: all, in order). The
    block holds ``units`` spheres of dimension ``sum(entries)`` (or, when ``output`` is true,
    one sphere holding every entry of the output layer).
    """

    name: str
    radius: float
    units: int
    parts: tuple[tuple[str, int, tuple[int, ...] | None], ...]
    output: bool = False


@dataclass(frozen=True, eq=False)
class TorusPoint:
    """A network in toroidal coordinates (Pittorino et al. 2022).

    Coordinates:

    - ``spheres[name]``: a ``(units, d)`` float64 tensor whose rows lie on the unit sphere. One
      row per hidden unit with a free positive scale: its incoming weights and bias (a ReLU
      unit), its pre-BatchNorm weights (a unit feeding a BatchNorm), or its BatchNorm affine
      pair (gamma, beta) feeding a ReLU; a residual stream's sphere is the layer that opens it.
      With ``output="normalize"`` the whole output layer is one more sphere (``(1, d)``) of
      radius ``sqrt(number of outputs)``, stored divided by its radius.
    - ``free``: every other parameter (output layer with ``output="preserve"``, tanh units,
      later writers into a residual stream), Euclidean.
    - ``buffers``: BatchNorm running statistics, carried along but not coordinates.

    Attention heads (``heads="full"``, the default of :func:`to_torus`): once each head's
    invertible maps are divided out, its query and key rows are the balanced factors
    ``S^1/2 U^T``, ``S^1/2 V^T`` of its query-key product, its value rows and output columns
    those of its value-output product (``canonicalize.heads``): Euclidean (``free``)
    coordinates, with the key bias zero and the value bias folded into the output bias. A
    head's coordinates fix its products up to the sign (and, for equal singular values, the
    rotation) of each singular pair, which alignment chooses; no sphere belongs to a head (its
    value features are no units with a scale of their own). With ``heads="permutations"`` the
    value features are units whose incoming rows lie on spheres, as for any linear layer.

    ``manifolds()`` gives the geoopt manifold of each coordinate block, so paths and
    Riemannian optimizers can work on the point directly.
    """

    spheres: dict[str, Tensor]
    free: dict[str, Tensor]
    buffers: dict[str, Tensor]
    blocks: tuple[SphereBlock, ...]
    spec: SymmetrySpec = field(repr=False)
    template: nn.Module = field(repr=False)
    example_input: Tensor = field(repr=False)

    @property
    def radii(self) -> dict[str, float]:
        """Radius of each sphere block."""
        return {b.name: b.radius for b in self.blocks}

    def manifolds(self) -> dict[str, geoopt.manifolds.Manifold]:
        """geoopt's manifold for each coordinate block (Sphere or Euclidean)."""
        import geoopt  # imported on first use: it loads scipy.optimize (~0.6 s)

        out: dict[str, geoopt.manifolds.Manifold] = {n: geoopt.Sphere() for n in self.spheres}
        out.update({n: geoopt.Euclidean() for n in self.free})
        return out

    def state(self) -> State:
        """The float64 state dict this point stands for."""
        return {**self.unpack(self.spheres, self.free), **self.buffers}

    def unpack(self, spheres: dict[str, Tensor], free: dict[str, Tensor]) -> State:
        """The parameters that coordinates of this point's shape stand for.

        ``spheres`` and ``free`` have the keys and trailing shapes of :attr:`spheres` and
        :attr:`free`, with any leading axes in common (``(k, units, d)`` for ``k`` points at
        once); every returned parameter gets the same leading axes. Differentiable: a curve
        trained in toroidal coordinates back-propagates through it. Buffers are not included.
        """
        lead = _leading(spheres, free, self)
        state = dict(free)
        shapes = dict(self.spec.state_shapes)
        for block in self.blocks:
            coords = spheres[block.name] * block.radius
            start = 0
            for tensor, width, rows in block.parts:
                shape = shapes[tensor]
                count = shape[0] if rows is None else len(rows)
                if block.output:
                    values = coords[..., 0, start : start + count * width]
                    start += count * width
                else:
                    values = coords[..., start : start + width]
                    start += width
                values = values.reshape(*lead, count, *shape[1:])
                if rows is None:
                    state[tensor] = values
                else:
                    base = state.get(tensor)
                    if base is None:
                        base = values.new_zeros(*lead, *shape)
                    else:
                        base = base.clone()
                    index = torch.as_tensor(rows, dtype=torch.long, device=values.device)
                    base[(Ellipsis, index) + (slice(None),) * (len(shape) - 1)] = values
                    state[tensor] = base
        return state

    def to_model(self) -> nn.Module:
        """The network at this point, as a new model of the original architecture and dtype."""
        return rebuild(self.template, self.state())

    def distance(self, other: TorusPoint, method: Method = "cosine") -> float:
        """Geodesic distance to another point's symmetry class (see :func:`geodesic_distance`)."""
        return geodesic_distance(self, other, method=method)

    def __repr__(self) -> str:
        n_spheres = sum(t.shape[0] for t in self.spheres.values())
        n_free = sum(t.numel() for t in self.free.values())
        return f"TorusPoint({n_spheres} spheres in {len(self.spheres)} blocks, {n_free} free)"


def _leading(spheres: dict[str, Tensor], free: dict[str, Tensor], point: TorusPoint) -> tuple:
    """The leading axes of coordinates shaped like ``point``'s (the same on every block)."""
    shapes = set()
    for given, own in ((spheres, point.spheres), (free, point.free)):
        if set(given) != set(own):
            raise SymmetryError(
                f"coordinates must have the blocks {sorted(own)}, got {sorted(given)}"
            )
        for name, value in given.items():
            trailing = own[name].ndim
            if value.ndim < trailing or value.shape[value.ndim - trailing :] != own[name].shape:
                raise SymmetryError(
                    f"coordinate {name!r} must end with shape {tuple(own[name].shape)}, got "
                    f"{tuple(value.shape)}"
                )
            shapes.add(tuple(value.shape[: value.ndim - trailing]))
    if len(shapes) > 1:
        raise SymmetryError(f"coordinates have different leading axes: {sorted(shapes)}")
    return shapes.pop() if shapes else ()


def _point(state: State, spec: SymmetrySpec, output: Output, template, x) -> TorusPoint:
    blocks = []
    shapes = dict(spec.state_shapes)
    for step, k, sites in schedule(spec):
        if step == "scale" and spec.scale_class(k).magnitude:
            parts = tuple(
                (row, math.prod(shapes[row][1:]), spec.sites[i].index)
                for i in sites
                for row in spec.sites[i].rows
            )
            blocks.append(
                SphereBlock(spec.sites[sites[0]].label, 1.0, spec.scale_class(k).size, parts)
            )
    if output == "normalize":
        cls = spec.scale_class(spec.output_scale)  # type: ignore[arg-type]
        parts = tuple(
            (row, math.prod(shapes[row][1:]), spec.sites[i].index)
            for i in cls.sites
            for row in spec.sites[i].rows
        )
        name = "output" if all(b.name != "output" for b in blocks) else "<output>"
        blocks.append(SphereBlock(name, math.sqrt(spec.output_units), 1, parts, output=True))
    spheres = {}
    covered: dict[str, torch.Tensor] = {}
    for block in blocks:
        pieces = [unit_matrix(state[t], 0, 1, rows) for t, _, rows in block.parts]
        if block.output:
            flat = torch.cat([p.reshape(-1) for p in pieces])[None, :]
        else:
            flat = torch.cat(pieces, dim=1)
        spheres[block.name] = flat / block.radius
        for tensor, _, rows in block.parts:
            mask = covered.setdefault(tensor, torch.zeros(shapes[tensor][0], dtype=torch.bool))
            mask[slice(None) if rows is None else torch.as_tensor(rows, dtype=torch.long)] = True
    parameters = {name for name, _ in template.named_parameters()}
    free = {}
    for k, v in state.items():
        if k not in parameters:
            continue
        mask = covered.get(k)
        if mask is None:
            free[k] = v
        elif not bool(mask.all()):
            # rows outside every sphere stay free; the sphere rows are kept in the spheres
            free[k] = torch.where(_rows(mask, v), torch.zeros_like(v), v)
    buffers = {k: v for k, v in state.items() if k not in parameters}
    return TorusPoint(spheres, free, buffers, tuple(blocks), spec, copy.deepcopy(template), x)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.ndim - 1))).expand_as(like)


def to_torus(
    model: nn.Module,
    example_input: Tensor,
    output: Output = "normalize",
    *,
    reorder: bool = True,
    heads: HeadsView = "full",
    spec: SymmetrySpec | None = None,
) -> TorusPoint:
    """The model's symmetry class as a point of a product of spheres.

    Built from :func:`canonical_form` (computed in float64): see :class:`TorusPoint` for the
    coordinates. ``TorusPoint.to_model()`` maps back. ``reorder=False`` keeps the model's own
    order and signs of its units (and the basis of its attention heads) and removes only the
    scales: the coordinates of a model already aligned to another one's canonical form
    (geodesic paths need both ends in one order). ``heads`` and ``spec`` as in
    :func:`canonical_form`; the point keeps the spec, so :func:`geodesic_distance` aligns in
    the same group.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> point = to_torus(net, torch.randn(8, 3))
    >>> {name: tuple(t.shape) for name, t in point.spheres.items()}
    {'0': (4, 4), 'output': (1, 10)}
    """
    _check_output_mode(output)
    spec = spec_for(model, example_input, spec, heads)
    x = check_input(model, example_input)
    state = to_float64(model)
    canonicalize_state(state, spec, output, order=reorder, signs=reorder)
    check_variances(state, spec)
    return _point(state, spec, output, model, x)


def _angle(u: Tensor, v: Tensor) -> Tensor:
    """Great-circle angle between rows, stable near zero: 2 asin(|u - v| / 2) on unit vectors."""
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return 2 * torch.asin(((u - v).norm(dim=-1) / 2).clamp(max=1.0))


def geodesic_distance(a: TorusPoint, b: TorusPoint, method: Method = "cosine") -> float:
    """Distance between the symmetry classes of two networks on the torus.

    ``b`` is aligned to ``a`` first (``method`` as in :func:`align`, in the group of ``a``'s
    spec: with ``heads="full"`` each head of ``b`` is expressed in the basis of ``a``'s head,
    both in canonical factors), then the great-circle angles of every sphere are combined:
    ``sqrt(sum (radius * angle)^2 + |free_a - free_b|^2)``. Zero for two members of one class.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from canonicalize import random_transform
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    >>> x = torch.randn(8, 3, dtype=torch.float64)
    >>> twin = random_transform(net, x, seed=3)
    >>> geodesic_distance(to_torus(net, x), to_torus(twin, x)) < 1e-6
    True
    """
    if not isinstance(a, TorusPoint) or not isinstance(b, TorusPoint):
        raise SymmetryError("geodesic_distance takes two TorusPoint (see to_torus)")
    if a.spec.state_shapes != b.spec.state_shapes or [bl.parts for bl in a.blocks] != [
        bl.parts for bl in b.blocks
    ]:
        raise SymmetryError("the two points come from different architectures or output modes")
    model_a = rebuild(copy.deepcopy(a.template).double(), a.state())
    model_b = rebuild(copy.deepcopy(b.template).double(), b.state())
    x = a.example_input
    aligned = align(
        model_b,
        model_a,
        x.double() if x.is_floating_point() else x,
        method=method,
        spec=a.spec,
    )
    state_b = to_float64(aligned)
    output = "normalize" if any(bl.output for bl in a.blocks) else "preserve"
    point_b = _point(state_b, b.spec, output, b.template, b.example_input)
    total = torch.zeros((), dtype=torch.float64)
    for block in a.blocks:
        angles = _angle(a.spheres[block.name], point_b.spheres[block.name])
        total += ((block.radius * angles) ** 2).sum()
    for name, value in a.free.items():
        total += ((value - point_b.free[name]) ** 2).sum()
    return float(total.sqrt())
