"""Results of the landscape functions: 1-D and 2-D slices and a trajectory's PCA plane."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funcspace.params import Params


def _numpy_params(params: Params) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in params.items()}


def _slice_dict(result: Slice1D | Slice2D, *axes: str) -> dict[str, Any]:
    return {
        **{axis: getattr(result, axis).copy() for axis in axes},
        "values": {k: v.copy() for k, v in result.values.items()},
        "directions": [_numpy_params(d) for d in result.directions],
        "meta": dict(result.meta),
    }


def _ranges(values: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} in [{v.min():.4g}, {v.max():.4g}]" for k, v in values.items())


@dataclass(frozen=True, eq=False)
class Slice1D:
    """Metrics along a line ``origin + t * direction``.

    Attributes
    ----------
    coordinates : np.ndarray
        The ``t`` of every point, shape ``(points,)``.
    values : dict[str, np.ndarray]
        Each metric (``"error"``, ``"loss"``, ...) at every point, shape ``(points,)``.
    directions : tuple[dict[str, Tensor]]
        The one direction used (for :func:`~funcspace.landscape.interpolate`: ``b - a``, zero
        outside ``layers``).
    meta : dict
        How the slice was made (kind, split, normalization, seed, ...), plain data.
    """

    coordinates: np.ndarray
    values: dict[str, np.ndarray]
    directions: tuple[Params, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: numpy arrays and the meta data (directions as numpy arrays)."""
        return _slice_dict(self, "coordinates")

    def __repr__(self) -> str:
        return (
            f"Slice1D({len(self.coordinates)} points, t in [{self.coordinates[0]:.4g}, "
            f"{self.coordinates[-1]:.4g}], {_ranges(self.values)})"
        )


@dataclass(frozen=True, eq=False)
class Slice2D:
    """Metrics on a grid ``origin + x * directions[0] + y * directions[1]``.

    Attributes
    ----------
    x, y : np.ndarray
        The grid's coordinates along the two directions, shapes ``(nx,)`` and ``(ny,)``.
    values : dict[str, np.ndarray]
        Each metric on the grid, shape ``(nx, ny)``: ``values[m][i, j]`` is at
        ``(x[i], y[j])`` (numpy's ``"ij"`` indexing; transpose for matplotlib's ``contour``).
    directions : tuple[dict[str, Tensor], dict[str, Tensor]]
        The two directions used.
    meta : dict
        How the slice was made (kind, split, normalization, seed, ...), plain data.
    """

    x: np.ndarray
    y: np.ndarray
    values: dict[str, np.ndarray]
    directions: tuple[Params, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: numpy arrays and the meta data (directions as numpy arrays)."""
        return _slice_dict(self, "x", "y")

    def __repr__(self) -> str:
        return f"Slice2D({len(self.x)}x{len(self.y)} grid, {_ranges(self.values)})"


@dataclass(frozen=True, eq=False)
class TrajectoryPCA:
    """The two principal directions of a trajectory and its coordinates on them.

    Attributes
    ----------
    directions : tuple[dict[str, Tensor], dict[str, Tensor]]
        Orthonormal (over all parameters together) principal directions, largest first.
    coordinates : np.ndarray
        ``(points, 2)``: each trajectory point minus ``center``, projected on the directions.
    explained_variance : np.ndarray
        ``(2,)``: the variance of the trajectory along each direction.
    explained_variance_ratio : np.ndarray
        ``(2,)``: the same as fractions of the trajectory's total variance.
    center : dict[str, Tensor]
        The origin of the coordinates (the last point unless given): put
        :func:`~funcspace.landscape.plane` there.
    """

    directions: tuple[Params, Params]
    coordinates: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    center: Params

    def span(self, margin: float = 0.2) -> tuple[tuple[float, float], tuple[float, float]]:
        """A plane span that covers the trajectory and the center, widened by ``margin``."""
        lows = np.minimum(self.coordinates.min(0), 0.0)
        highs = np.maximum(self.coordinates.max(0), 0.0)
        pad = margin * np.maximum(highs - lows, 1e-12)
        return (
            (float(lows[0] - pad[0]), float(highs[0] + pad[0])),
            (float(lows[1] - pad[1]), float(highs[1] + pad[1])),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (numpy arrays)."""
        return {
            "directions": [_numpy_params(d) for d in self.directions],
            "coordinates": self.coordinates.copy(),
            "explained_variance": self.explained_variance.copy(),
            "explained_variance_ratio": self.explained_variance_ratio.copy(),
            "center": _numpy_params(self.center),
        }

    def __repr__(self) -> str:
        ratio = ", ".join(f"{r:.3f}" for r in self.explained_variance_ratio)
        return f"TrajectoryPCA({len(self.coordinates)} points, explained variance ratio ({ratio}))"
