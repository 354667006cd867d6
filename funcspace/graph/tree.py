"""The disconnectivity tree of the map of minima: leaves at the minima's levels, groups joined at
their minimax barriers (the single-linkage merges of the minimum spanning tree), as plain data
and as a scipy linkage matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .analysis import _best, _kinds, _kruskal
from .minima import GraphError, MinimaGraph

__all__ = ["Disconnectivity", "Merge", "disconnectivity"]


@dataclass(frozen=True)
class Merge:
    """Two clusters joining at a level (scipy's ids: leaves ``0..N-1``, the k-th merge
    ``N + k``)."""

    level: float
    a: int
    b: int
    size: int


@dataclass(frozen=True, eq=False)
class Disconnectivity:
    """A disconnectivity tree: leaves at the minima's levels, joins at the minimax barriers.

    Attributes
    ----------
    names : tuple of str
        The leaves (ids ``0..N-1``), in graph order.
    leaves : numpy.ndarray (N,)
        Each leaf's level (its node attribute, e.g. the train error; 0 without one).
    merges : tuple of Merge
        The single-linkage merges of the minimum spanning tree, lowest first; fewer than
        ``N - 1`` when some minima are joined by no chain of measured paths.
    attribute : str
        The edge attribute of the join levels.
    leaf : str or None
        The node attribute of the leaf levels.
    kinds : tuple of str or None
        The path kinds read (None: all).
    """

    names: tuple[str, ...]
    leaves: np.ndarray
    merges: tuple[Merge, ...]
    attribute: str
    leaf: str | None
    kinds: tuple[str, ...] | None

    @property
    def roots(self) -> int:
        """How many trees the forest has (1 when every minimum is joined to every other)."""
        return len(self.names) - len(self.merges)

    def linkage(self, top: float | None = None) -> np.ndarray:
        """The merges as a scipy linkage matrix (``scipy.cluster.hierarchy`` conventions).

        Parameters
        ----------
        top : float, optional
            The level at which separate trees are joined, when there are several (at least
            the highest merge); required then.

        Returns
        -------
        numpy.ndarray (N - 1, 4)
            Rows ``[id_a, id_b, level, size]``.

        Raises
        ------
        GraphError
            For a forest without ``top``, or a ``top`` below its highest merge.
        """
        rows = [[m.a, m.b, m.level, m.size] for m in self.merges]
        if self.roots > 1:
            highest = max((m.level for m in self.merges), default=0.0)
            if top is None or not top >= highest or not np.isfinite(top):
                raise GraphError(
                    f"the tree is a forest of {self.roots} trees (no chain of measured paths "
                    f"joins them); give top= (a finite level >= {highest:.4g}) to join them there"
                )
            n = len(self.names)
            merged = {x for m in self.merges for x in (m.a, m.b)}
            open_ = [i for i in range(n + len(self.merges)) if i not in merged]
            sizes = {i: 1 for i in range(n)} | {n + k: m.size for k, m in enumerate(self.merges)}
            current, size = open_[0], sizes[open_[0]]
            for other in open_[1:]:
                size += sizes[other]
                rows.append([current, other, float(top), size])
                current = n + len(rows) - 1
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON."""
        return {
            "names": list(self.names),
            "leaves": self.leaves.tolist(),
            "merges": [[m.level, m.a, m.b, m.size] for m in self.merges],
            "attribute": self.attribute,
            "leaf": self.leaf,
            "kinds": None if self.kinds is None else list(self.kinds),
        }

    def __repr__(self) -> str:
        return (
            f"Disconnectivity({len(self.names)} minima, {len(self.merges)} joins of "
            f"{self.attribute}, {self.roots} tree{'' if self.roots == 1 else 's'})"
        )


def disconnectivity(
    graph: MinimaGraph,
    *,
    attribute: str = "error_peak",
    leaf: str | None = "train_error",
    kind: str | Sequence[str] | None = None,
) -> Disconnectivity:
    """The disconnectivity tree of ``graph``: single-linkage merges of its minimax tree.

    Leaves sit at each minimum's ``leaf`` attribute; two groups join at the minimax barrier
    between them. Joins must be levels comparable with the leaves, so the default reads the
    peaks (the highest error on each path, never below its ends); heights above the chord
    (``"error_barrier"``) go with ``leaf=None`` (leaves at 0).

    Parameters
    ----------
    graph : MinimaGraph
    attribute : str
        The edge attribute of the join levels (default ``"error_peak"``).
    leaf : str or None
        The node attribute of the leaf levels (``"train_error"`` or ``"test_error"``), or
        None for leaves at 0.
    kind : str or list of str, optional
        The path kinds to read (default all).

    Returns
    -------
    Disconnectivity

    Raises
    ------
    GraphError
        For an unknown attribute or kind, a minimum without a leaf level, or a join below the
        level of a leaf it joins (levels of different kinds: peaks with errors, or heights
        with ``leaf=None``).

    Examples
    --------
    >>> from funcspace.graph import MinimaGraph
    >>> g = MinimaGraph()
    >>> for name, err in [("a", 0.0), ("b", 0.02), ("c", 0.01)]:
    ...     g.add_minimum(name, train_error=err)
    >>> g.add_path("a", "b", "bent", error_peak=0.05)
    >>> g.add_path("b", "c", "bent", error_peak=0.3)
    >>> tree = disconnectivity(g)
    >>> tree.linkage().tolist()
    [[0.0, 1.0, 0.05, 2.0], [2.0, 3.0, 0.3, 3.0]]
    """
    if leaf not in (None, "train_error", "test_error"):
        raise GraphError(f"leaf must be 'train_error', 'test_error' or None; got {leaf!r}")
    names, w, _ = _best(graph, attribute, kind)
    leaves = np.zeros(len(names))
    if leaf is not None:
        missing = [n for n in names if graph._graph.nodes[n][leaf] is None]
        if missing:
            raise GraphError(
                f"minima {missing[:5]} have no {leaf}; add it, or pass leaf=None (leaves at 0)"
            )
        leaves = np.array([graph._graph.nodes[n][leaf] for n in names], dtype=np.float64)
    _, _, raw = _kruskal(w)
    n = len(names)
    tops = list(leaves) + [0.0] * len(raw)
    members: list[list[int]] = [[i] for i in range(n)]
    for k, (level, a, b, _) in enumerate(raw):
        members.append(members[a] + members[b])
        tops[n + k] = max(tops[a], tops[b])
        if level < tops[n + k]:
            low = max(members[n + k], key=lambda i: leaves[i])
            raise GraphError(
                f"a join at {attribute} {level:.4g} lies below minimum {names[low]!r}'s "
                f"{leaf or 'level'} {leaves[low]:.4g}: the joins and leaves are levels of "
                "different kinds. Use peaks (attribute='error_peak') with errors as leaves, "
                "or heights above the chord with leaf=None"
            )
    return Disconnectivity(
        names=tuple(names),
        leaves=leaves,
        merges=tuple(Merge(lv, a, b, s) for lv, a, b, s in raw),
        attribute=attribute,
        leaf=leaf,
        kinds=_kinds(graph, kind),
    )
