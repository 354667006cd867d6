"""What the map of minima says: weight matrices, minimax barriers and components.

The minimax barrier between two minima is the lowest possible highest barrier over chains of
measured edges. It is read off a minimum spanning tree of the per-pair best values (the
highest edge on the tree path between the two); the same tree, merged bottom-up (single
linkage), is the disconnectivity tree (``funcspace.graph.tree``). :func:`minimax_matrix` and
:func:`spanning_tree` do this for a plain symmetric matrix (``inf`` = no edge); the graph
functions build that matrix from a :class:`MinimaGraph` with :func:`pair_matrix`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from .minima import EDGE_NUMBERS, GraphError, MinimaGraph

__all__ = [
    "Minimax",
    "components",
    "minimax",
    "minimax_matrix",
    "pair_matrix",
    "spanning_tree",
]


# --------------------------------------------------------------------------- matrices


def minimax_matrix(weights: Any) -> np.ndarray:
    """The minimax value between every two nodes of a weighted complete graph.

    ``M[i, j]`` is the lowest, over chains ``i = k0, k1, ..., km = j``, of the highest weight
    ``weights[k_l, k_l+1]`` on the chain: the highest edge on the minimum spanning tree's path
    from ``i`` to ``j``.

    Parameters
    ----------
    weights : (N, N) array_like
        Symmetric; ``inf`` where there is no edge; the diagonal is ignored; no NaN, no
        ``-inf``.

    Returns
    -------
    numpy.ndarray (N, N), float64
        Symmetric, 0 on the diagonal, ``inf`` between nodes no chain joins.

    Raises
    ------
    GraphError
        For a matrix that is not square, not symmetric, or holds NaN or ``-inf``.

    Examples
    --------
    >>> w = [[0, 0.5, 0.9], [0.5, 0, 0.2], [0.9, 0.2, 0]]
    >>> minimax_matrix(w)[0, 2]   # 0 -> 1 -> 2 never climbs above 0.5
    np.float64(0.5)
    """
    return _kruskal(check_weights("weights", weights))[1]


def spanning_tree(weights: Any) -> list[tuple[int, int, float]]:
    """A minimum spanning tree (a forest where no chain joins some nodes) of ``weights``.

    Parameters
    ----------
    weights : (N, N) array_like
        As for :func:`minimax_matrix`.

    Returns
    -------
    list of (i, j, weight)
        ``i < j``, in increasing weight (ties by ``(i, j)``); ``N - 1`` edges when connected.
    """
    return _kruskal(check_weights("weights", weights))[0]


def check_weights(name: str, weights: Any, error: type[Exception] = GraphError) -> np.ndarray:
    """A symmetric float64 matrix without NaN or ``-inf`` (``+inf``: no edge); a copy."""
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise error(f"{name} must be an (N, N) array of numbers: {e}") from e
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise error(f"{name} must be a square (N, N) matrix, got shape {w.shape}")
    off = ~np.eye(len(w), dtype=bool)
    if np.isnan(w[off]).any():
        i, j = np.argwhere(np.isnan(w) & off)[0]
        raise error(
            f"{name}[{i}, {j}] is NaN; a missing pair is inf (no edge), never NaN, and a NaN "
            "measurement must be fixed or left out"
        )
    if (w[off] == -np.inf).any():
        i, j = np.argwhere((w == -np.inf) & off)[0]
        raise error(f"{name}[{i}, {j}] is -inf; weights must be numbers or +inf (no edge)")
    bad = (w != w.T) & off
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise error(
            f"{name} is not symmetric: [{i}, {j}] = {float(w[i, j])!r} but [{j}, {i}] = "
            f"{float(w[j, i])!r}; "
            "give one value per pair (e.g. np.minimum(m, m.T))"
        )
    np.fill_diagonal(w, 0.0)
    return w


def _kruskal(
    w: np.ndarray,
) -> tuple[list[tuple[int, int, float]], np.ndarray, list[tuple[float, int, int, int]]]:
    """Tree edges, minimax matrix and scipy-style merges ``(level, id_a, id_b, size)``."""
    n = len(w)
    iu, ju = np.triu_indices(n, 1)
    values = w[iu, ju]
    order = np.argsort(values, kind="stable")
    root = list(range(n))
    members = {i: [i] for i in range(n)}
    ids = list(range(n))  # the scipy cluster id of each root
    out = np.full((n, n), np.inf)
    np.fill_diagonal(out, 0.0)
    tree: list[tuple[int, int, float]] = []
    merges: list[tuple[float, int, int, int]] = []

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    for k in order:
        level = float(values[k])
        if level == np.inf or len(tree) == n - 1:
            break
        i, j = int(iu[k]), int(ju[k])
        ri, rj = find(i), find(j)
        if ri == rj:
            continue
        a, b = members[ri], members[rj]
        out[np.ix_(a, b)] = level
        out[np.ix_(b, a)] = level
        tree.append((i, j, level))
        merges.append((level, *sorted((ids[ri], ids[rj])), len(a) + len(b)))
        big, small = (ri, rj) if len(a) >= len(b) else (rj, ri)
        root[small] = big
        members[big] = members[big] + members.pop(small)
        ids[big] = n + len(merges) - 1
    return tree, out, merges


def _kinds(graph: MinimaGraph, kind: str | Sequence[str] | None) -> tuple[str, ...] | None:
    if kind is None:
        return None
    chosen = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [k for k in chosen if k not in graph.kinds]
    if not chosen or unknown:
        raise GraphError(
            f"the graph has no path kind {unknown[0] if unknown else '(none given)'!r}; it has "
            f"{', '.join(map(repr, graph.kinds)) or 'no paths'}"
        )
    return chosen


def _best(
    graph: MinimaGraph, attribute: str, kind: str | Sequence[str] | None
) -> tuple[list[str], np.ndarray, dict[tuple[int, int], str]]:
    if not isinstance(graph, MinimaGraph):
        raise GraphError(f"expected a MinimaGraph, got {type(graph).__name__}")
    if attribute not in EDGE_NUMBERS:
        raise GraphError(
            f"unknown edge attribute {attribute!r}; choose one of {', '.join(EDGE_NUMBERS)}"
        )
    kinds = _kinds(graph, kind)
    names = graph.names
    index = {name: k for k, name in enumerate(names)}
    w = np.full((len(names), len(names)), np.inf)
    np.fill_diagonal(w, 0.0)
    which: dict[tuple[int, int], str] = {}
    for u, v, k, d in graph._graph.edges(keys=True, data=True):
        value = d[attribute]
        if value is None or (kinds is not None and k not in kinds):
            continue
        i, j = sorted((index[u], index[v]))
        if value < w[i, j]:
            w[i, j] = w[j, i] = value
            which[i, j] = k
    return names, w, which


def pair_matrix(
    graph: MinimaGraph, attribute: str = "error_barrier", *, kind: str | Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Each pair's best (lowest) value of an edge attribute over the chosen path kinds.

    Parameters
    ----------
    graph : MinimaGraph
    attribute : str
        A numeric edge attribute (``"error_barrier"``, ``"error_peak"``, ``"geodesic_distance"``,
        ...).
    kind : str or list of str, optional
        The path kinds to read (default all).

    Returns
    -------
    (names, matrix)
        The node names in graph order and an (N, N) symmetric matrix: ``inf`` for pairs with
        no such value, 0 on the diagonal. Ready for :func:`minimax_matrix` and for
        :func:`funcspace.study.select`'s bounds.

    Raises
    ------
    GraphError
        For an unknown attribute or kind.
    """
    names, w, _ = _best(graph, attribute, kind)
    return names, w


# --------------------------------------------------------------------------- minimax


@dataclass(frozen=True, eq=False)
class Minimax:
    """The minimax barrier between every two minima, and the tree it is read from.

    Attributes
    ----------
    names : tuple of str
        The nodes, in graph order (the matrix's rows).
    values : numpy.ndarray (N, N)
        ``values[i, j]``: the lowest highest barrier over chains of measured edges between
        ``names[i]`` and ``names[j]``; ``inf`` where no chain joins them, 0 on the diagonal.
    tree : tuple of (a, b, value, kind)
        The minimum spanning tree (forest) of the per-pair best values, lowest first, with the
        kind of path that gave each edge.
    attribute : str
        The edge attribute read.
    kinds : tuple of str or None
        The path kinds read (None: all).
    """

    names: tuple[str, ...]
    values: np.ndarray
    tree: tuple[tuple[str, str, float, str], ...]
    attribute: str
    kinds: tuple[str, ...] | None

    def between(self, a: str, b: str) -> float:
        """The minimax barrier between ``a`` and ``b``."""
        return float(self.values[self._index(a), self._index(b)])

    def chain(self, a: str, b: str) -> list[str]:
        """The chain of minima from ``a`` to ``b`` along the tree (whose highest edge is the
        minimax barrier).

        Raises
        ------
        GraphError
            For an unknown name, or two minima no chain of measured edges joins.
        """
        tree = nx.Graph()
        tree.add_nodes_from(self.names)
        tree.add_edges_from((u, v) for u, v, _, _ in self.tree)
        try:
            return nx.shortest_path(tree, self.names[self._index(a)], self.names[self._index(b)])
        except nx.NetworkXNoPath as e:
            raise GraphError(f"no chain of measured paths joins {a!r} and {b!r}") from e

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise GraphError(f"no minimum named {name!r}; the names are {self.names}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (``inf`` stays ``inf``: JSON writes ``Infinity``)."""
        return {
            "names": list(self.names),
            "values": self.values.tolist(),
            "tree": [list(e) for e in self.tree],
            "attribute": self.attribute,
            "kinds": None if self.kinds is None else list(self.kinds),
        }

    def __repr__(self) -> str:
        finite = self.values[np.isfinite(self.values)]
        return (
            f"Minimax({len(self.names)} minima, {self.attribute}, tree of {len(self.tree)} "
            f"edges, highest finite value {finite.max() if finite.size else 0:.4g})"
        )


def minimax(
    graph: MinimaGraph,
    *,
    attribute: str = "error_barrier",
    kind: str | Sequence[str] | None = None,
) -> Minimax:
    """The minimax barrier between every two minima of ``graph``.

    Each pair's value is its best (lowest) ``attribute`` over the chosen path kinds; the
    minimax barrier between two minima is the lowest, over chains of measured pairs, of the
    highest value on the chain.

    Parameters
    ----------
    graph : MinimaGraph
    attribute : str
        A numeric edge attribute (default ``"error_barrier"``).
    kind : str or list of str, optional
        The path kinds to read (default all).

    Returns
    -------
    Minimax

    Raises
    ------
    GraphError
        For an unknown attribute or kind.

    Examples
    --------
    >>> from funcspace.graph import MinimaGraph
    >>> g = MinimaGraph()
    >>> for name in "abc":
    ...     g.add_minimum(name)
    >>> g.add_path("a", "b", "linear", error_barrier=0.3)
    >>> g.add_path("b", "c", "linear", error_barrier=0.1)
    >>> g.add_path("a", "c", "linear", error_barrier=0.5)
    >>> g.add_path("a", "c", "bent", error_barrier=0.2)
    >>> m = minimax(g)
    >>> m.between("a", "b"), m.chain("a", "b")
    (0.2, ['a', 'c', 'b'])
    """
    names, w, which = _best(graph, attribute, kind)
    tree, values, _ = _kruskal(w)
    return Minimax(
        names=tuple(names),
        values=values,
        tree=tuple((names[i], names[j], v, which[i, j]) for i, j, v in tree),
        attribute=attribute,
        kinds=_kinds(graph, kind),
    )


def components(
    graph: MinimaGraph,
    threshold: float,
    *,
    attribute: str = "error_barrier",
    kind: str | Sequence[str] | None = None,
) -> list[list[str]]:
    """The groups of minima joined by chains of paths whose value is at most ``threshold``.

    Parameters
    ----------
    graph : MinimaGraph
    threshold : float
        An edge joins its ends when its best value is ``<= threshold``.
    attribute, kind
        As for :func:`minimax`.

    Returns
    -------
    list of list of str
        Each component's names in graph order; the largest component first (ties: in the
        order of their first member).

    Raises
    ------
    GraphError
        For a NaN threshold, an unknown attribute or kind.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise GraphError(f"threshold must be a number, got {threshold!r}")
    if np.isnan(threshold):
        raise GraphError("threshold is NaN")
    names, w, _ = _best(graph, attribute, kind)
    low = nx.Graph()
    low.add_nodes_from(range(len(names)))
    low.add_edges_from(zip(*np.nonzero(np.triu(w <= threshold, 1)), strict=True))
    groups = [sorted(int(i) for i in c) for c in nx.connected_components(low)]
    groups.sort(key=lambda c: (-len(c), c[0]))
    return [[names[i] for i in c] for c in groups]
