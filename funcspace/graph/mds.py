"""A map of the minima in two (or a few) dimensions from their distances: classical MDS, with
how much of the distances it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import _best, check_weights
from .minima import GraphError, MinimaGraph

__all__ = ["Embedding", "classical_mds", "embedding"]


@dataclass(frozen=True, eq=False)
class Embedding:
    """Points in a few dimensions whose distances approximate given ones (classical MDS).

    Attributes
    ----------
    names : tuple of str
        The points (rows of ``coordinates``).
    coordinates : numpy.ndarray (N, dimensions)
        Centred, axes in decreasing variance; each axis's sign makes its largest entry
        positive.
    eigenvalues : numpy.ndarray (N,)
        Of the doubly centred squared distances, descending; negative ones mean the distances
        are not Euclidean.
    explained : float
        The kept positive eigenvalues' share of all positive ones (1: nothing lost).
    stress : float
        Kruskal's stress-1: ``sqrt(sum (d - d_hat)^2 / sum d^2)`` over pairs (0: exact).
    """

    names: tuple[str, ...]
    coordinates: np.ndarray
    eigenvalues: np.ndarray
    explained: float
    stress: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "names": list(self.names),
            "coordinates": self.coordinates.tolist(),
            "eigenvalues": self.eigenvalues.tolist(),
            "explained": self.explained,
            "stress": self.stress,
        }

    def __repr__(self) -> str:
        return (
            f"Embedding({len(self.names)} points in {self.coordinates.shape[1]} dimensions, "
            f"explained {self.explained:.3g}, stress {self.stress:.3g})"
        )


def classical_mds(
    distances: Any, *, dimensions: int = 2, names: Sequence[str] | None = None
) -> Embedding:
    """Classical (Torgerson) multidimensional scaling of a distance matrix.

    Parameters
    ----------
    distances : (N, N) array_like
        Symmetric, finite, non-negative (the diagonal is ignored).
    dimensions : int
        The embedding's dimension (default 2).
    names : list of str, optional
        The points' names (default ``"0", "1", ...``).

    Returns
    -------
    Embedding

    Raises
    ------
    GraphError
        For a matrix that is not square, symmetric, finite and non-negative, or names of the
        wrong length.

    Examples
    --------
    >>> e = classical_mds([[0, 3, 5], [3, 0, 4], [5, 4, 0]])   # a 3-4-5 right triangle
    >>> float(round(e.stress, 12)), float(round(e.explained, 12))
    (0.0, 1.0)
    """
    d = check_weights("distances", distances)
    if not np.isfinite(d).all() or (d < 0).any():
        i, j = np.argwhere(~np.isfinite(d) | (d < 0))[0]
        raise GraphError(
            f"distances[{i}, {j}] is {d[i, j]}; distances must be finite and >= 0 (every pair "
            "measured)"
        )
    if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
        raise GraphError(f"dimensions must be a positive integer, got {dimensions!r}")
    if dimensions < 1:
        raise GraphError(f"dimensions must be a positive integer, got {dimensions!r}")
    n = len(d)
    labels = tuple(str(k) for k in range(n)) if names is None else tuple(names)
    if len(labels) != n:
        raise GraphError(f"{len(labels)} names for {n} points")
    centre = np.eye(n) - 1.0 / n
    b = -0.5 * centre @ (d**2) @ centre
    values, vectors = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    # eigenvalues within round-off of 0 are 0: their vectors may hold the constant one
    noise = n * np.finfo(np.float64).eps * max(float(np.abs(values).max(initial=0.0)), 1e-300)
    kept = np.where(values[:dimensions] > noise, values[:dimensions], 0.0)
    coords = np.zeros((n, dimensions))
    k = min(dimensions, n)
    coords[:, :k] = vectors[:, :k] * np.sqrt(kept[:k])
    for axis in range(k):  # a deterministic sign: the largest entry positive
        if coords[np.argmax(np.abs(coords[:, axis])), axis] < 0:
            coords[:, axis] *= -1
    positive = values[values > 0].sum()
    explained = float(kept.sum() / positive) if positive > 0 else 1.0
    fitted = np.sqrt(((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1))
    iu = np.triu_indices(n, 1)
    scale = (d[iu] ** 2).sum()
    stress = float(np.sqrt(((d[iu] - fitted[iu]) ** 2).sum() / scale)) if scale > 0 else 0.0
    return Embedding(labels, coords, values, explained, stress)


def embedding(
    graph: MinimaGraph,
    *,
    attribute: str = "geodesic_distance",
    kind: str | Sequence[str] | None = None,
    dimensions: int = 2,
) -> Embedding:
    """A 2-D (or ``dimensions``-D) map of the minima from their distances (classical MDS).

    Parameters
    ----------
    graph : MinimaGraph
    attribute : str
        The distance read (default ``"geodesic_distance"``; or ``"function_distance"``); each
        pair's smallest over the chosen kinds.
    kind : str or list of str, optional
        The path kinds to read (default all).
    dimensions : int
        Default 2.

    Returns
    -------
    Embedding

    Raises
    ------
    GraphError
        For a pair without that distance (MDS needs every pair), an unknown attribute or kind.
    """
    names, w, _ = _best(graph, attribute, kind)
    missing = np.argwhere(np.triu(~np.isfinite(w), 1))
    if len(missing):
        i, j = missing[0]
        raise GraphError(
            f"{len(missing)} pairs have no {attribute} (first {names[i]!r}-{names[j]!r}); MDS "
            "needs the distance of every pair: measure them, or use a spring layout"
        )
    return classical_mds(w, dimensions=dimensions, names=names)
