"""The plane through a path's ends and a third point (its bend, a curve's control point, or
one given), measured on a grid, with the path's points projected onto it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Settings
from funcspace.landscape import Slice2D, plane, random_direction
from funcspace.params import Params, flatten, parameters_of, unflatten

from .path import BentPath, Path, PathError, check_path, evenly_spaced
from .profile import _has_batchnorm


@dataclass(frozen=True)
class PathPlane:
    """The plane through a path's ends and a third point, measured, with paths projected.

    Coordinates are in units of ``|b - a|`` along orthogonal directions of equal length
    (distances on the plot are distances in parameter space): ``a`` at ``(0, 0)``, ``b`` at
    ``(1, 0)``, the third point above the x-axis.

    Attributes
    ----------
    slice : Slice2D
        The metric on the grid (``slice.directions``: ``b - a`` and the orthogonal direction).
    t : numpy array (n,)
        Where each path was projected.
    coordinates : dict of label -> numpy array (n, 2)
        Each path's points in the plane (least squares), the measured path first.
    residual : dict of label -> numpy array (n,)
        Each point's distance from the plane, in the same units: how far the drawn line is
        from the path it stands for.
    through : numpy array (2,) or None
        The third point's coordinates (None for a random direction).
    third : {"bend", "midpoint", "given", "random"}
        What the third point is.
    scale : float
        ``|b - a|`` in parameter space (the unit).
    """

    slice: Slice2D
    t: np.ndarray
    coordinates: dict[str, np.ndarray]
    residual: dict[str, np.ndarray]
    through: np.ndarray | None
    third: str
    scale: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (the slice as :meth:`funcspace.landscape.Slice2D.to_dict` gives
        it)."""
        return {
            "slice": self.slice.to_dict(),
            "t": self.t.tolist(),
            "coordinates": {k: v.tolist() for k, v in self.coordinates.items()},
            "residual": {k: v.tolist() for k, v in self.residual.items()},
            "through": None if self.through is None else self.through.tolist(),
            "third": self.third,
            "scale": self.scale,
        }

    def __repr__(self) -> str:
        off = ", ".join(f"{k} {v.max():.3g}" for k, v in self.residual.items())
        return (
            f"PathPlane({', '.join(self.coordinates)} on a {self.slice.x.size}x"
            f"{self.slice.y.size} grid of {', '.join(self.slice.values)}, third point: "
            f"{self.third}; largest distance from the plane: {off})"
        )


def _flat(params: Params, names: list[str], device: torch.device | None = None) -> Tensor:
    """One float64 vector of the named tensors (on ``device``, default the tensors' own)."""
    return flatten({n: params[n].detach().to(device=device, dtype=torch.float64) for n in names})


def _unflat(vector: Tensor, like: Params) -> Params:
    return {n: v.to(like[n]) for n, v in unflatten(vector, like).items()}


def _through(through: Params | nn.Module, like: Params) -> Params:
    if isinstance(through, nn.Module):
        through = parameters_of(through)
    if not isinstance(through, dict):
        raise PathError(
            f"through must be a dict of parameter tensors or an nn.Module, got "
            f"{type(through).__name__}"
        )
    for name, value in like.items():
        got = through.get(name)
        if not isinstance(got, Tensor) or got.shape != value.shape:
            shape = None if not isinstance(got, Tensor) else tuple(got.shape)
            raise PathError(
                f"through must hold the path's parameters; {name!r} is {shape}, the path has "
                f"{tuple(value.shape)} (a geodesic's coordinates are its aligned ends': "
                "take points from path.params)"
            )
    return through


def _labels(paths: list[Path]) -> list[str]:
    labels: list[str] = []
    for p in paths:
        label, k = p.kind, 2
        while label in labels:
            label, k = f"{p.kind} ({k})", k + 1
        labels.append(label)
    return labels


def path_plane(
    path: Path,
    data: Dataset | Pair,
    *,
    through: Params | nn.Module | None = None,
    others: Sequence[Path] = (),
    n: int = 101,
    resolution: tuple[int, int] = (21, 21),
    margin: float = 0.25,
    metric: str = "error",
    settings: Settings | None = None,
    seed: int = 0,
) -> PathPlane:
    """The plane through a path's ends and a third point, measured on a grid, with the path
    (and ``others``) projected onto it.

    The plane is ``a + x (b - a) + y v`` (:func:`funcspace.landscape.plane`, one batched
    evaluation) with ``a``, ``b`` the path's ends in its own coordinates (``path.params``; for
    a geodesic or a bent path the aligned, canonical ends) and ``v`` the third point minus
    ``a``, made orthogonal to ``b - a`` (Gram-Schmidt in parameter space) and as long. The
    third point is ``through`` if given, else the bend of a bent path or the midpoint
    ``t = 1/2`` of another curved path (for a one-bend curve of :func:`paths.curve` in raw
    parameters, a Bezier's midpoint spans the same plane as its control point, and a
    polygonal chain's midpoint is its bend), else (a straight path) a random direction from
    :func:`funcspace.landscape.random_direction` with ``seed``.

    Points ``path.params(t)`` are projected orthogonally onto the plane; ``residual`` says how
    far each lies from it. A path is in the plane only if it is straight, or a polygon through
    the third point: a geodesic in toroidal coordinates, or a bent path made of two of them,
    is curved in parameter space and leaves the plane between its ends and its bend (its
    drawn line is a shadow; the contours under it are not the values along it).

    Parameters
    ----------
    path : Path
    data : Dataset or (inputs, targets)
        Where the metric is measured.
    through : dict of str -> Tensor, or nn.Module, optional
        The third point, in the path's coordinates.
    others : sequence of Path
        More paths drawn on the same plane (of the same architecture; labelled by kind), in
        the same coordinates: beside a geodesic, ``linear(path.at(0), path.at(1))`` runs
        between its aligned ends, ``linear(a, b)`` between the models as given (another
        point of their symmetry classes, far from the plane: its residual says so).
    n : int
        Points per path (evenly spaced ``t``, ends included).
    resolution : (int, int)
        Grid points along ``x`` and ``y``.
    margin : float
        Room around the drawn points, in units of ``|b - a|`` (> 0).
    metric : str
        The metric measured on the grid.
    settings : Settings, optional
        How the grid is measured; its metrics are replaced by ``metric``. Default: the
        training split, with BatchNorm statistics recalibrated at every grid point for a
        network that has BatchNorm (so the grid at ``a`` and ``b`` is not exactly the end
        models' own values, which use their stored statistics; with ``batchnorm="fixed"``
        every point, ``b`` included, would use ``a``'s).
    seed : int
        For the random direction of a straight path without ``through``.

    Returns
    -------
    PathPlane

    Raises
    ------
    PathError
        For ends that coincide, a third point on the line through them, parameters that do
        not fit the path, or bad counts.

    Examples
    --------
    >>> import torch
    >>> from funcspace.models import MLP
    >>> from paths import linear
    >>> a, b = MLP(3, [4], 2, seed=0).double(), MLP(3, [4], 2, seed=1).double()
    >>> data = (torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,)))
    >>> found = path_plane(linear(a, b), data, n=3, resolution=(4, 3))
    >>> found.coordinates["linear"][:, 0].tolist(), found.third
    ([0.0, 0.5, 1.0], 'random')
    """
    check_path(path)
    ts = evenly_spaced(path, n)
    if isinstance(others, Path) or not isinstance(others, Sequence):
        raise PathError(f"others must be a sequence of paths, got {type(others).__name__}")
    drawn = [path, *(check_path(p) for p in others)]
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise PathError(f"margin must be a positive number (units of |b - a|), got {margin!r}")
    if isinstance(metric, bool) or not isinstance(metric, str):
        raise PathError(f"metric must be a metric name, got {metric!r}")
    if settings is not None and not isinstance(settings, Settings):
        raise PathError(f"settings must be a funcspace.evaluation.Settings, got {settings!r}")
    names = list(path.origin)
    shapes = {name: value.shape for name, value in path.origin.items()}
    for p in drawn[1:]:
        if {k: v.shape for k, v in p.origin.items()} != shapes:
            raise PathError(
                f"others: a {p.kind} path has other parameters than the {path.kind} path; all "
                "paths on one plane must share the architecture"
            )
    ends = path.params([0.0, 1.0])
    origin = _flat({k: v[0] for k, v in ends.items()}, names)
    u = _flat({k: v[1] for k, v in ends.items()}, names) - origin
    uu = u @ u
    if not uu > 0:
        raise PathError("the path's ends coincide: there is no plane through them")
    start = path.at(0.0)
    if through is not None:
        third = "given"
        point = _flat(_through(through, path.origin), names, origin.device)
    elif not path.straight:
        third = "bend" if isinstance(path, BentPath) else "midpoint"
        point = _flat({k: v[0] for k, v in path.params([0.5]).items()}, names)
    else:
        third = "random"
        point = origin + _flat(random_direction(start, seed=seed), names, origin.device)
    v = point - origin
    for _ in range(2):  # twice: one pass leaves round-off along u
        v = v - (v @ u) / uu * u
    if not v.norm() > 1e-9 * uu.sqrt():
        raise PathError(
            f"the third point ({third}) lies on the line through the path's ends: there is no "
            "single plane through them; pass another point as through="
        )
    v = v * (uu.sqrt() / v.norm())

    def project(points: Tensor) -> tuple[np.ndarray, np.ndarray]:
        d = points - origin
        xy = torch.stack([d @ u, d @ v], dim=-1) / uu
        off = (d - xy[..., :1] * u - xy[..., 1:] * v).norm(dim=-1) / uu.sqrt()
        return xy.cpu().numpy(), off.cpu().numpy()

    labels = _labels(drawn)
    coordinates, residual = {}, {}
    for label, p in zip(labels, drawn, strict=True):
        xy, off = [], []
        for chunk in np.array_split(ts, max(1, len(ts) // 32)):
            params = p.params(chunk)
            flat = torch.stack(
                [
                    _flat({k: w[i] for k, w in params.items()}, names, origin.device)
                    for i in range(len(chunk))
                ]
            )
            got = project(flat)
            xy.append(got[0])
            off.append(got[1])
        coordinates[label] = np.concatenate(xy)
        residual[label] = np.concatenate(off)
    through_xy = None if third == "random" else project(point[None])[0][0]
    shown = np.concatenate([*coordinates.values(), [[0.0, 0.0], [1.0, 0.0]]])
    if through_xy is not None:
        shown = np.concatenate([shown, through_xy[None]])
    low, high = shown.min(0) - margin, shown.max(0) + margin
    if settings is None:
        mode = "recalibrate" if _has_batchnorm(start) else "fixed"
        settings = Settings(metrics=(metric,), batchnorm=mode)
    else:
        settings = replace(settings, metrics=(metric,))
    like = parameters_of(start)
    directions = [_unflat(u, like), _unflat(v, like)]
    span = ((float(low[0]), float(high[0])), (float(low[1]), float(high[1])))
    try:
        measured = plane(
            start, data, directions, span=span, resolution=resolution, settings=settings
        )
    except PathError:
        raise
    except FuncspaceError as err:
        raise PathError(f"path_plane: {err}") from None
    return PathPlane(
        slice=measured,
        t=ts,
        coordinates=coordinates,
        residual=residual,
        through=through_xy,
        third=third,
        scale=float(uu.sqrt()),
    )
