"""Paths between two networks: the object, and the straight (linear, layer-wise) ones.

A :class:`Path` holds its two ends (left untouched), its kind, and the parameters at any ``t``
in ``[0, 1]`` at once (stacked, one leading axis), so every measurement along it goes through
the batched engine. Straight paths are affine in ``t``: ``theta(t) = theta_a + t (theta_b -
theta_a)``, which the engine uses to compute the first layer once per batch, not once per point.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace._validate import check_module
from funcspace.errors import FuncspaceError
from funcspace.params import Params, buffers_of, difference

#: Path kinds built so far.
KINDS = ("linear", "layerwise", "geodesic", "bent", "curve")


class PathError(FuncspaceError):
    """Bad input to a paths function: the message says what, where, and what to do."""


@dataclass(frozen=True, eq=False)
class Path:
    """A path from ``start`` (``t = 0``) to ``end`` (``t = 1``) through parameter space.

    Attributes
    ----------
    start, end : nn.Module
        The two networks (one architecture), never modified.
    kind : {"linear", "layerwise", "geodesic"}
    origin : dict of str -> Tensor
        The parameters at ``t = 0``.
    direction : dict of str -> Tensor
        For a straight path, ``theta(t) = origin + t * direction``: ``end - start`` on the
        moving parameters, zero on the others (the engine then reuses the first layer's
        products along the path). For a geodesic, the difference of its end parameters (the
        path itself is curved: :meth:`params`).
    layers : tuple of str or None
        The parameters or modules that move (``None``: all).
    """

    @property
    def straight(self) -> bool:
        """Whether the parameters are affine in ``t`` (linear and layer-wise paths)."""
        return self.kind in ("linear", "layerwise")

    def buffers(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The BatchNorm statistics at every ``t``, stacked: the ends' interpolated linearly
        (for a layer-wise path only in the BatchNorm layers that move)."""
        ts = check_times(t)
        a, b = self._end_buffers()
        moving = {n.rsplit(".", 1)[0] for n in self.moving}
        out = {}
        for name, value in a.items():
            stacked = value.unsqueeze(0).expand(len(ts), *value.shape).clone()
            module = name.rsplit(".", 1)[0]
            if value.is_floating_point() and (self.kind != "layerwise" or module in moving):
                w = torch.as_tensor(ts, dtype=value.dtype, device=value.device)
                w = w.reshape(-1, *([1] * value.ndim))
                stacked = (1 - w) * value.unsqueeze(0) + w * b[name].to(value).unsqueeze(0)
            out[name] = stacked
        return out

    def _end_buffers(self) -> tuple[Params, Params]:
        return buffers_of(self.start), buffers_of(self.end)

    start: nn.Module
    end: nn.Module
    kind: str
    origin: Params
    direction: Params
    layers: tuple[str, ...] | None = None

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        ts = check_times(t)
        like = next(iter(self.origin.values()))
        ts = torch.as_tensor(ts, dtype=like.dtype, device=like.device)
        return {
            name: value.unsqueeze(0) + _along(ts, value) * self.direction[name].unsqueeze(0)
            for name, value in self.origin.items()
        }

    def at(self, t: float) -> nn.Module:
        """A new network at ``t`` (eval mode).

        Its BatchNorm statistics are the linear interpolation of the ends' (for a layer-wise
        path, only in the BatchNorm layers that move); recalibrate them, or measure with
        :func:`paths.profile`, for honest values between the ends.
        """
        (t,) = check_times([t])
        model = copy.deepcopy(self.start)
        state = dict(model.state_dict())
        state.update({n: v[0] for n, v in self.params([t]).items()})
        state.update({n: v[0] for n, v in self.buffers([t]).items()})
        original = model.state_dict()
        model.load_state_dict({n: v.to(dtype=original[n].dtype) for n, v in state.items()})
        return model.eval()

    @property
    def moving(self) -> tuple[str, ...]:
        """The parameters that change along the path."""
        return tuple(n for n, d in self.direction.items() if bool(d.any()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the kind, the layers that move, and how far the ends are apart."""
        squared = sum(float((d.double() ** 2).sum()) for d in self.direction.values())
        return {
            "kind": self.kind,
            "layers": None if self.layers is None else list(self.layers),
            "moving": list(self.moving),
            "euclidean_length": squared**0.5,
        }

    def __repr__(self) -> str:
        info = self.to_dict()
        return (
            f"Path({self.kind}, {type(self.start).__name__}, {len(info['moving'])} moving "
            f"tensors, |b - a| = {info['euclidean_length']:.4g})"
        )


def _along(ts: Tensor, like: Tensor) -> Tensor:
    return ts.reshape(-1, *([1] * like.ndim))


def check_times(t: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """Values of ``t`` as a 1-D float64 array in [0, 1]; anything else is refused."""
    values = np.asarray(t.detach().cpu() if isinstance(t, Tensor) else t, dtype=np.float64)
    values = np.atleast_1d(values)
    if values.ndim != 1 or values.size == 0:
        raise PathError(f"t must be a non-empty 1-D sequence of numbers, got shape {values.shape}")
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise PathError(
            f"t must lie in [0, 1] (a path runs from its start at 0 to its end at 1); got values "
            f"in [{values.min()}, {values.max()}]"
        )
    return values


def check_path(path: object) -> Path:
    """A :class:`Path`, or a clear error."""
    if not isinstance(path, Path):
        raise PathError(f"path must be a paths.Path, got {type(path).__name__}")
    return path


def evenly_spaced(path: object, n: object) -> np.ndarray:
    """``n`` evenly spaced ``t`` on a path, ends included; a non-path or ``n < 2`` is refused."""
    check_path(path)
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise PathError(f"n must be an integer >= 2, got {n!r}")
    return np.linspace(0.0, 1.0, n)


def _ends(
    a: object, b: object, layers: str | Sequence[str] | None = None
) -> tuple[nn.Module, nn.Module, Params, Params]:
    """The checked ends, ``a``'s parameters and the straight step (the core's one
    implementation, :func:`funcspace.params.difference`)."""
    try:
        a = check_module("a", a, parameters=True, finite=True)
        b = check_module("b", b, parameters=True, finite=True)
        origin, step = difference(a, b, layers)
    except FuncspaceError as err:
        raise PathError(str(err)) from None
    return a, b, origin, step


def linear(a: nn.Module, b: nn.Module) -> Path:
    """The straight path ``(1 - t) a + t b`` between two networks of one architecture.

    From an initialization to a solution as well as between two minimizers. BatchNorm
    statistics are not parameters: :func:`paths.profile` says how it treats them.

    Raises
    ------
    PathError
        For two architectures, or a model with NaN or inf parameters.

    Examples
    --------
    >>> from torch import nn
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> path = linear(a, b)
    >>> mid = path.params([0.5])["weight"][0]
    >>> bool(torch.allclose(mid, (a.weight + b.weight) / 2))
    True
    """
    a, b, origin, step = _ends(a, b)
    return Path(a, b, "linear", origin, step)


def layerwise(a: nn.Module, b: nn.Module, layers: str | Sequence[str]) -> Path:
    """The straight path on the named layers only: every other parameter stays at ``a``.

    ``layers`` names modules (``"features.0"`` moves its weight and bias) or parameters; a
    name that matches nothing is refused, listing the parameters. Its end is ``a`` with those
    layers taken from ``b`` (a hybrid network, as Vlaar & Frankle 2022 study).

    Raises
    ------
    PathError
        For two architectures, non-finite parameters, or a layer name that matches nothing.

    Examples
    --------
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> b = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> layerwise(a, b, "2").moving
    ('2.weight', '2.bias')
    """
    a, b, origin, step = _ends(a, b, layers)
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    return Path(a, b, "layerwise", origin, step, names)


@dataclass(frozen=True, eq=False)
class GeodesicPath(Path):
    """A geodesic in toroidal coordinates: great circles on every sphere, straight elsewhere.

    ``start_point`` and ``end_point`` are the ends as :class:`canonicalize.TorusPoint` (the end
    aligned to the start, in the start's order and signs).
    """

    start_point: Any = None
    end_point: Any = None

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        ts = check_times(t)
        names = list(self.origin)
        rows: dict[str, list[Tensor]] = {n: [] for n in names}
        for value in ts:
            state = self._point(float(value)).state()
            for name in names:
                rows[name].append(state[name].to(self.origin[name]))
        return {name: torch.stack(rows[name]) for name in names}

    def _point(self, t: float):
        a, b = self.start_point, self.end_point
        spheres = {name: slerp(a.spheres[name], b.spheres[name], t) for name in a.spheres}
        free = {name: (1 - t) * v + t * b.free[name] for name, v in a.free.items()}
        return replace(a, spheres=spheres, free=free)

    def _end_buffers(self) -> tuple[Params, Params]:
        return dict(self.start_point.buffers), dict(self.end_point.buffers)


def slerp(u: Tensor, v: Tensor, t: float | Tensor) -> Tensor:
    """The great-circle point at fraction ``t`` from each row of ``u`` to the same row of ``v``
    (unit rows). Stable for nearly equal rows (the chord, renormalized) and for opposite ones
    (a fixed direction orthogonal to ``u``: every great circle joins them). ``t`` is a number
    or a tensor that broadcasts against ``u[..., :1]`` (one fraction per leading index); the
    result is differentiable in ``u`` and ``v`` away from opposite rows."""
    u = u / u.norm(dim=-1, keepdim=True)
    v = v / v.norm(dim=-1, keepdim=True)
    t = torch.as_tensor(t, dtype=u.dtype, device=u.device)
    theta = 2 * torch.asin(((u - v).norm(dim=-1, keepdim=True) / 2).clamp(max=1.0))
    near = theta < 1e-6
    opposite = theta > math.pi - 1e-6
    towards = v - (u * v).sum(-1, keepdim=True) * u  # the tangent direction at u
    if bool(opposite.any()):
        basis = torch.zeros_like(u)
        basis[..., 0] = 1.0
        other = basis - (u * basis).sum(-1, keepdim=True) * u
        flat = other.norm(dim=-1, keepdim=True) < 1e-6
        basis2 = torch.zeros_like(u)
        basis2[..., 1 % u.shape[-1]] = 1.0
        other = torch.where(flat, basis2 - (u * basis2).sum(-1, keepdim=True) * u, other)
        towards = torch.where(opposite, other, towards)
    towards = towards / towards.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    rotated = torch.cos(t * theta) * u + torch.sin(t * theta) * towards
    chord = (1 - t) * u + t * v
    chord = chord / chord.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    out = torch.where(near, chord, rotated)
    # the ends exactly (not through cos/sin round-off); opposite rows keep their fixed circle
    out = torch.where((t == 0) & ~opposite, u, out)
    return torch.where((t == 1) & ~opposite, v, out)


def geodesic(
    a: nn.Module,
    b: nn.Module,
    example_input: Tensor,
    align: str | None = "weights",
    *,
    output: str = "preserve",
    canonical: bool = True,
) -> GeodesicPath:
    """The geodesic between the symmetry classes of ``a`` and ``b`` on the product of spheres.

    ``a`` is brought to its canonical form, ``b`` is aligned to it (``align``: a method of
    :func:`canonicalize.align`, or None to keep ``b``'s units as they are), both are mapped to
    toroidal coordinates, and the path moves every sphere's rows along their great circles at
    the same fraction ``t`` and every other coordinate (free parameters, BatchNorm statistics)
    linearly. Its ends compute ``a``'s and ``b``'s functions exactly (their parameters are the
    canonical ones, not ``a``'s and ``b``'s own). ``output="preserve"`` keeps the output layer
    Euclidean, so the ends' losses are the models' own; ``"normalize"`` puts it on its sphere
    too (the toroids paper), which keeps the predictions but rescales the logits.

    ``canonical=False`` keeps ``a``'s own order and signs (only its scales are removed): to
    continue another path from its end without a jump in parameters.

    Raises
    ------
    PathError
        For two architectures, non-finite parameters, or a model canonicalize refuses (the
        message says which layer and why).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    >>> b = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    >>> x = torch.randn(16, 3, dtype=torch.float64)
    >>> path = geodesic(a, b, x)
    >>> bool(torch.allclose(path.at(0.0)(x), a(x))), bool(torch.allclose(path.at(1.0)(x), b(x)))
    (True, True)
    """
    import canonicalize

    a, b, pa, _ = _ends(a, b)
    if align not in (None, "weights", "cosine", "activations"):
        raise PathError(f"align must be 'weights', 'cosine', 'activations' or None, got {align!r}")
    try:
        start = canonicalize.to_torus(a, example_input, output, reorder=canonical)
        reference = start.to_model()
        moved = b if align is None else canonicalize.align(b, reference, example_input, align)
        end = canonicalize.to_torus(moved, example_input, output, reorder=False)
    except canonicalize.SymmetryError as err:
        raise PathError(f"geodesic: {err}") from err
    names = list(pa)
    ends = [start.state(), end.state()]
    origin = {n: ends[0][n].to(pa[n]) for n in names}
    direction = {n: ends[1][n].to(pa[n]) - origin[n] for n in names}
    return GeodesicPath(
        start=a,
        end=b,
        kind="geodesic",
        origin=origin,
        direction=direction,
        start_point=start,
        end_point=end,
    )


@dataclass(frozen=True, eq=False)
class BentPath(Path):
    """Two geodesics joined at a bend: ``t`` in [0, 1/2] runs the first, [1/2, 1] the second.

    ``first`` goes from the start to the bend, ``second`` from the bend to the end, continuing
    in the first's coordinates (no jump at ``t = 1/2``). ``bend`` is the trained midpoint and
    ``record`` its training record.
    """

    first: Any = None
    second: Any = None
    bend: Any = None
    record: Any = None

    def _split(self, t) -> list[tuple[Any, float]]:
        return [
            (self.first, 2 * v) if v <= 0.5 else (self.second, 2 * v - 1) for v in check_times(t)
        ]

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        rows = [segment.params([s]) for segment, s in self._split(t)]
        return {name: torch.cat([r[name] for r in rows]) for name in self.origin}

    def buffers(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The BatchNorm statistics at every ``t`` (each segment's, interpolated)."""
        rows = [segment.buffers([s]) for segment, s in self._split(t)]
        return {name: torch.cat([r[name] for r in rows]) for name in rows[0]}

    def _end_buffers(self) -> tuple[Params, Params]:
        return self.first._end_buffers()[0], self.second._end_buffers()[1]


def bent(
    a: nn.Module,
    b: nn.Module,
    data: Any,
    example_input: Tensor,
    *,
    align: str | None = "weights",
    optimizer: Any = "sgd",
    epochs: int = 100,
    seed: int = 0,
    output: str = "preserve",
) -> BentPath:
    """The toroids paper's single-bend path: the aligned geodesic midpoint, trained to zero
    training error, joined to both ends by geodesics.

    The midpoint of :func:`geodesic` ``(a, b)`` is trained with :func:`funcspace.train`
    (``optimizer``, ``epochs``, ``seed``; it stops at zero training error); the path runs the
    geodesic from ``a`` to the trained bend, then from the bend to ``b`` in the same
    coordinates.

    Raises
    ------
    PathError
        As :func:`geodesic`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> x = torch.randn(64, 3, dtype=torch.float64)
    >>> y = (x[:, 0] > 0).long()
    >>> a = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    >>> b = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    >>> path = bent(a, b, (x, y), x, epochs=5)
    >>> bool(torch.allclose(path.at(1.0)(x), b(x))), path.kind
    (True, 'bent')
    """
    from funcspace.training import train

    whole = geodesic(a, b, example_input, align, output=output)
    result = train(whole.at(0.5), data, optimizer, epochs=epochs, seed=seed, progress=False)
    first = geodesic(a, result.model, example_input, align, output=output)
    second = geodesic(first.at(1.0), b, example_input, align, output=output, canonical=False)
    end = second.params([1.0])
    direction = {n: end[n][0] - v for n, v in first.origin.items()}
    return BentPath(
        start=first.start,
        end=b,
        kind="bent",
        origin=first.origin,
        direction=direction,
        first=first,
        second=second,
        bend=result.model,
        record=result.record,
    )
