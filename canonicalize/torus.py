"""Toroidal coordinates: a network as a point of a product of spheres, and geodesic distances."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import geoopt
import torch
from torch import Tensor, nn

from .align import Method, align
from .canonical import Output, _check_output_mode, canonicalize_state
from .discover import symmetries
from .errors import SymmetryError
from .spec import SymmetrySpec
from .transform import State, check_variances, rebuild, schedule, to_float64, unit_matrix
from .validate import check_input


@dataclass(frozen=True)
class SphereBlock:
    """Where one block of spheres lives in the model's state.

    ``parts`` lists (tensor name, entries per unit) in the order they are concatenated; the
    block holds ``units`` spheres of dimension ``sum(entries)`` (or one sphere holding all
    entries, for the output layer).
    """

    name: str
    radius: float
    units: int
    parts: tuple[tuple[str, int], ...]


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
        out: dict[str, geoopt.manifolds.Manifold] = {n: geoopt.Sphere() for n in self.spheres}
        out.update({n: geoopt.Euclidean() for n in self.free})
        return out

    def state(self) -> State:
        """The float64 state dict this point stands for."""
        state = {**self.free, **self.buffers}
        for block in self.blocks:
            coords = self.spheres[block.name] * block.radius
            coords = coords.reshape(block.units, -1)
            start = 0
            shapes = dict(self.spec.state_shapes)
            for tensor, width in block.parts:
                state[tensor] = coords[:, start : start + width].reshape(shapes[tensor]).clone()
                start += width
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


def _point(state: State, spec: SymmetrySpec, output: Output, template, x) -> TorusPoint:
    blocks = []
    covered: set[str] = set()
    shapes = dict(spec.state_shapes)
    for step, k, sites in schedule(spec):
        if step == "scale" and spec.scale_class(k).magnitude:
            parts = tuple(
                (row, math.prod(shapes[row][1:])) for i in sites for row in spec.sites[i].rows
            )
            blocks.append(
                SphereBlock(spec.sites[sites[0]].name, 1.0, spec.scale_class(k).size, parts)
            )
    if output == "normalize":
        cls = spec.scale_class(spec.output_scale)  # type: ignore[arg-type]
        parts = tuple(
            (row, math.prod(shapes[row])) for i in cls.sites for row in spec.sites[i].rows
        )
        blocks.append(SphereBlock("output", math.sqrt(spec.output_units), 1, parts))
    spheres = {}
    for block in blocks:
        if block.name == "output":
            flat = torch.cat([state[t].reshape(-1) for t, _ in block.parts])[None, :]
        else:
            flat = torch.cat([unit_matrix(state[t], 0) for t, _ in block.parts], dim=1)
        spheres[block.name] = flat / block.radius
        covered.update(t for t, _ in block.parts)
    parameters = {name for name, _ in template.named_parameters()}
    free = {k: v for k, v in state.items() if k in parameters and k not in covered}
    buffers = {k: v for k, v in state.items() if k not in parameters}
    return TorusPoint(spheres, free, buffers, tuple(blocks), spec, copy.deepcopy(template), x)


def to_torus(model: nn.Module, example_input: Tensor, output: Output = "normalize") -> TorusPoint:
    """The model's symmetry class as a point of a product of spheres.

    Built from :func:`canonical_form` (computed in float64): see :class:`TorusPoint` for the
    coordinates. ``TorusPoint.to_model()`` maps back.

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
    spec = symmetries(model, example_input)
    x = check_input(model, example_input)
    state = to_float64(model)
    canonicalize_state(state, spec, output)
    check_variances(state, spec)
    return _point(state, spec, output, model, x)


def _angle(u: Tensor, v: Tensor) -> Tensor:
    """Great-circle angle between rows, stable near zero: 2 asin(|u - v| / 2) on unit vectors."""
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return 2 * torch.asin(((u - v).norm(dim=-1) / 2).clamp(max=1.0))


def geodesic_distance(a: TorusPoint, b: TorusPoint, method: Method = "cosine") -> float:
    """Distance between the symmetry classes of two networks on the torus.

    ``b`` is aligned to ``a`` first (``method`` as in :func:`align`), then the great-circle
    angles of every sphere are combined: ``sqrt(sum (radius * angle)^2 + |free_a - free_b|^2)``.
    Zero for two members of one class.

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
    aligned = align(model_b, model_a, a.example_input.double(), method=method)
    state_b = to_float64(aligned)
    output = "normalize" if any(bl.name == "output" for bl in a.blocks) else "preserve"
    point_b = _point(state_b, b.spec, output, b.template, b.example_input)
    total = torch.zeros((), dtype=torch.float64)
    for block in a.blocks:
        angles = _angle(a.spheres[block.name], point_b.spheres[block.name])
        total += ((block.radius * angles) ** 2).sum()
    for name, value in a.free.items():
        total += ((value - point_b.free[name]) ** 2).sum()
    return float(total.sqrt())
