"""Results of the landscape functions: 1-D and 2-D slices and a trajectory's PCA plane."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from funcspace._store import Stored, check_summary, pack, summary, unpack
from funcspace.errors import FuncspaceError
from funcspace.params import Params


def _array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _slice_dict(result: Slice1D | Slice2D, *axes: str) -> dict[str, Any]:
    return {
        **{axis: getattr(result, axis).tolist() for axis in axes},
        "values": {k: v.tolist() for k, v in result.values.items()},
        "directions": [summary(d) for d in result.directions],
        "meta": dict(result.meta),
    }


def _slice_fields(
    data: dict[str, Any], directions: Sequence[Params] | None, *axes: str
) -> dict[str, Any]:
    stored = data["directions"]
    if directions is None:
        directions = ()
    elif len(directions) != len(stored):
        raise FuncspaceError(
            f"{len(directions)} directions given; the slice was made with {len(stored)}"
        )
    else:
        for i, (given, entry) in enumerate(zip(directions, stored, strict=True)):
            check_summary(given, entry, f"directions[{i}]")
    return {
        **{axis: _array(data[axis]) for axis in axes},
        "values": {k: _array(v) for k, v in data["values"].items()},
        "directions": tuple(directions),
        "meta": dict(data["meta"]),
    }


def _pack_all(name: str, params: Sequence[Params]) -> dict[str, Tensor]:
    return {k: t for i, d in enumerate(params) for k, t in pack(f"{name}/{i}", d).items()}


def _unpack_all(name: str, count: int, tensors: dict[str, Tensor]) -> tuple[Params, ...]:
    return tuple(unpack(f"{name}/{i}", tensors) for i in range(count))


def _ranges(values: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} in [{v.min():.4g}, {v.max():.4g}]" for k, v in values.items())


class _Slice(Stored):
    """The storage of both slices: :meth:`to_dict` in JSON, the directions in safetensors."""

    def _tensors(self) -> dict[str, Tensor]:
        return _pack_all("directions", self.directions)  # type: ignore[attr-defined]

    @classmethod
    def _restore(cls, data: dict[str, Any], tensors: dict[str, Tensor]) -> Any:
        return cls.from_dict(  # type: ignore[attr-defined]
            data, _unpack_all("directions", len(data["directions"]), tensors)
        )


@dataclass(frozen=True, eq=False)
class Slice1D(_Slice):
    """Metrics along a line ``origin + t * direction``.

    :meth:`save` stores :meth:`to_dict` as JSON and the direction as safetensors.

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
        """Plain data for JSON: ``coordinates``, ``values`` (lists) and ``meta``; the directions
        only summarized (each tensor's ``{"shape", "dtype"}`` by name): :meth:`save` stores
        them."""
        return _slice_dict(self, "coordinates")

    @classmethod
    def from_dict(cls, data: dict[str, Any], directions: Sequence[Params] | None = None) -> Slice1D:
        """A slice from :meth:`to_dict`'s output.

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output (arrays come back as float64).
        directions : sequence of dict[str, Tensor], optional
            The directions, which ``to_dict`` only summarizes; checked against the summary.
            None: a slice without them (``directions == ()``), enough to plot.

        Returns
        -------
        Slice1D

        Raises
        ------
        FuncspaceError
            For directions whose number, names, shapes or dtypes differ from the summary.
        """
        return cls(**_slice_fields(data, directions, "coordinates"))

    def __repr__(self) -> str:
        return (
            f"Slice1D({len(self.coordinates)} points, t in [{self.coordinates[0]:.4g}, "
            f"{self.coordinates[-1]:.4g}], {_ranges(self.values)})"
        )


@dataclass(frozen=True, eq=False)
class Slice2D(_Slice):
    """Metrics on a grid ``origin + x * directions[0] + y * directions[1]``.

    :meth:`save` stores :meth:`to_dict` as JSON and the directions as safetensors.

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
        """Plain data for JSON: ``x``, ``y``, ``values`` (nested lists) and ``meta``; the
        directions only summarized (each tensor's ``{"shape", "dtype"}`` by name): :meth:`save`
        stores them."""
        return _slice_dict(self, "x", "y")

    @classmethod
    def from_dict(cls, data: dict[str, Any], directions: Sequence[Params] | None = None) -> Slice2D:
        """A slice from :meth:`to_dict`'s output.

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output (arrays come back as float64).
        directions : sequence of two dict[str, Tensor], optional
            The directions, which ``to_dict`` only summarizes; checked against the summary.
            None: a slice without them (``directions == ()``), enough to plot.

        Returns
        -------
        Slice2D

        Raises
        ------
        FuncspaceError
            For directions whose number, names, shapes or dtypes differ from the summary.
        """
        return cls(**_slice_fields(data, directions, "x", "y"))

    def __repr__(self) -> str:
        return f"Slice2D({len(self.x)}x{len(self.y)} grid, {_ranges(self.values)})"


@dataclass(frozen=True, eq=False)
class TrajectoryPCA(Stored):
    """The two principal directions of a trajectory and its coordinates on them.

    :meth:`save` stores :meth:`to_dict` as JSON, the directions and the center as safetensors.

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
        """Plain data for JSON: the arrays as lists; ``directions`` and ``center`` only
        summarized (each tensor's ``{"shape", "dtype"}`` by name): :meth:`save` stores them."""
        return {
            "directions": [summary(d) for d in self.directions],
            "coordinates": self.coordinates.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "center": summary(self.center),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, directions: Sequence[Params], center: Params
    ) -> TrajectoryPCA:
        """The PCA from :meth:`to_dict`'s output and the tensors it only summarizes.

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output (arrays come back as float64).
        directions : two dict[str, Tensor]
        center : dict[str, Tensor]
            Checked against the summaries.

        Returns
        -------
        TrajectoryPCA

        Raises
        ------
        FuncspaceError
            For tensors whose number, names, shapes or dtypes differ from the summaries.
        """
        if len(directions) != 2 or len(data["directions"]) != 2:
            raise FuncspaceError(f"a TrajectoryPCA has two directions, got {len(directions)}")
        for i, (given, entry) in enumerate(zip(directions, data["directions"], strict=True)):
            check_summary(given, entry, f"directions[{i}]")
        check_summary(center, data["center"], "center")
        return cls(
            directions=(directions[0], directions[1]),
            coordinates=_array(data["coordinates"]).reshape(-1, 2),
            explained_variance=_array(data["explained_variance"]),
            explained_variance_ratio=_array(data["explained_variance_ratio"]),
            center=center,
        )

    def _tensors(self) -> dict[str, Tensor]:
        return {**_pack_all("directions", self.directions), **pack("center", self.center)}

    @classmethod
    def _restore(cls, data: dict[str, Any], tensors: dict[str, Tensor]) -> TrajectoryPCA:
        directions = _unpack_all("directions", 2, tensors)
        return cls.from_dict(data, directions=directions, center=unpack("center", tensors))

    def __repr__(self) -> str:
        ratio = ", ".join(f"{r:.3f}" for r in self.explained_variance_ratio)
        return f"TrajectoryPCA({len(self.coordinates)} points, explained variance ratio ({ratio}))"
