"""Plots of the map of minima and its disconnectivity tree (matplotlib, imported on first use).

As in :mod:`funcspace.plots`, each function builds a :class:`matplotlib.figure.Figure` without
``pyplot`` (no window, no global state, any backend), or draws into ``ax=`` and returns that
Axes' figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from .analysis import _best
from .mds import Embedding, embedding
from .minima import GraphError, MinimaGraph
from .tree import Disconnectivity

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_disconnectivity", "plot_map"]

_SIZE = (5.0, 4.0)


def _axes(ax: Axes | None, figsize: tuple[float, float] | None) -> tuple[Figure, Axes]:
    try:
        from matplotlib.axes import Axes
        from matplotlib.figure import Figure
    except ImportError as err:
        raise GraphError("plots need matplotlib; install it with `pip install matplotlib`") from err
    if ax is None:
        fig = Figure(figsize=figsize or _SIZE, layout="constrained")
        return fig, fig.add_subplot()
    if figsize is not None:
        raise GraphError("figsize only sizes a new figure; with ax=, size ax's figure")
    if not isinstance(ax, Axes):
        raise GraphError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def plot_map(
    graph: MinimaGraph,
    *,
    attribute: str = "error_barrier",
    kind: str | Sequence[str] | None = None,
    layout: str | Embedding | Mapping[str, Sequence[float]] = "mds",
    distance: str = "geodesic_distance",
    seed: int = 0,
    labels: bool = True,
    cmap: str = "viridis",
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The map of minima: nodes placed by their distances, edges coloured by barrier.

    Each measured pair is one segment coloured by its best (lowest) ``attribute`` over the
    chosen kinds, lowest drawn on top, with a colorbar; pairs without that value are not drawn.

    Parameters
    ----------
    graph : MinimaGraph
    attribute : str
        The edge attribute that colours the edges (default ``"error_barrier"``).
    kind : str or list of str, optional
        The path kinds read (default all).
    layout : "mds", "spring", Embedding or dict of name -> (x, y)
        ``"mds"`` (default): classical MDS of ``distance`` (every pair needs it); ``"spring"``:
        :func:`networkx.spring_layout` of the measured edges (``seed``); or given positions.
    distance : str
        The edge attribute MDS reads (default ``"geodesic_distance"``).
    seed : int
        For the spring layout.
    labels : bool
        Write each node's name beside it.
    cmap : str
        A matplotlib colormap name.
    ax : matplotlib Axes, optional
        Draw there instead of on a new figure.
    figsize : (float, float), optional
        The size of a new figure.

    Returns
    -------
    Figure

    Raises
    ------
    GraphError
        For an unknown layout, attribute or kind, positions missing a node, a pair without a
        distance under ``"mds"``, or no edge with ``attribute`` to colour.
    """
    names, w, _ = _best(graph, attribute, kind)
    positions = _layout(graph, names, layout, distance, kind, seed)
    iu, ju = np.nonzero(np.triu(np.isfinite(w), 1))
    if not len(iu):
        raise GraphError(f"no measured pair has {attribute}: nothing to colour the map by")
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    fig, axes = _axes(ax, figsize)
    values = w[iu, ju]
    order = np.argsort(values)[::-1]  # the lowest barriers drawn last, on top
    segments = np.stack([positions[iu], positions[ju]], axis=1)[order]
    low, high = float(values.min()), float(values.max())
    lines = LineCollection(
        segments, cmap=cmap, norm=Normalize(low, high if high > low else low + 1e-12), lw=2.0
    )
    lines.set_array(values[order])
    axes.add_collection(lines)
    axes.scatter(positions[:, 0], positions[:, 1], s=40, c="white", edgecolors="black", zorder=3)
    if labels:
        for name, (x, y) in zip(names, positions, strict=True):
            axes.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    fig.colorbar(lines, ax=axes, label=attribute)
    axes.autoscale_view()
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xticks([])
    axes.set_yticks([])
    where = layout if isinstance(layout, str) else "given positions"
    axes.set_title(f"map of {len(names)} minima ({where})", fontsize=9)
    return fig


def _layout(
    graph: MinimaGraph,
    names: list[str],
    layout: Any,
    distance: str,
    kind: str | Sequence[str] | None,
    seed: int,
) -> np.ndarray:
    if isinstance(layout, Embedding):
        given = dict(zip(layout.names, layout.coordinates[:, :2].tolist(), strict=True))
    elif isinstance(layout, Mapping):
        given = dict(layout)
    elif layout == "mds":
        e = embedding(graph, attribute=distance, kind=kind)
        given = dict(zip(e.names, e.coordinates.tolist(), strict=True))
    elif layout == "spring":
        spring = nx.spring_layout(graph._graph, seed=seed)
        return np.array([spring[n] for n in names], dtype=np.float64).reshape(len(names), 2)
    else:
        raise GraphError(
            f"layout must be 'mds', 'spring', an Embedding or a dict of positions; got {layout!r}"
        )
    missing = [n for n in names if n not in given]
    if missing:
        raise GraphError(f"the layout has no position for {missing[:5]}")
    out = np.array([given[n] for n in names], dtype=np.float64).reshape(len(names), -1)
    if out.shape[1] != 2 or not np.isfinite(out).all():
        raise GraphError("positions must be finite (x, y) pairs")
    return out


def plot_disconnectivity(
    tree: Disconnectivity,
    *,
    labels: bool = True,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Draw a disconnectivity tree: each minimum a line rising from its level, groups joined by
    a horizontal bar at their minimax barrier.

    Leaves are ordered so that each join has its lower-lying group on the left; separate trees
    (no chain of measured paths between them) stand side by side, unjoined.

    Parameters
    ----------
    tree : Disconnectivity
        From :func:`~funcspace.graph.disconnectivity`.
    labels : bool
        Name the leaves on the x axis.
    ax : matplotlib Axes, optional
        Draw there instead of on a new figure.
    figsize : (float, float), optional
        The size of a new figure.

    Returns
    -------
    Figure

    Raises
    ------
    GraphError
        For something that is not a Disconnectivity.
    """
    if not isinstance(tree, Disconnectivity):
        raise GraphError(
            f"plot_disconnectivity takes a Disconnectivity (funcspace.graph.disconnectivity), "
            f"got {type(tree).__name__}"
        )
    fig, axes = _axes(ax, figsize)
    n = len(tree.names)
    order, x, segments = _tree_drawing(tree)
    from matplotlib.collections import LineCollection

    axes.add_collection(LineCollection(segments, colors="black", linewidths=1.0))
    axes.scatter([x[i] for i in range(n)], tree.leaves, s=12, color="black", zorder=3)
    axes.autoscale_view()
    axes.set_xticks(range(n))
    axes.set_xticklabels([tree.names[i] for i in order] if labels else [], rotation=90)
    axes.set_ylabel(tree.attribute if tree.leaf is None else f"{tree.leaf} / {tree.attribute}")
    axes.set_title(
        f"disconnectivity: {n} minima, {tree.roots} tree{'' if tree.roots == 1 else 's'}",
        fontsize=9,
    )
    return fig


def _tree_drawing(
    tree: Disconnectivity,
) -> tuple[list[int], dict[int, float], list[list[tuple[float, float]]]]:
    """The leaves in drawing order, each cluster's x, and the tree's line segments."""
    n = len(tree.names)
    children = {n + k: (m.a, m.b) for k, m in enumerate(tree.merges)}
    level = {i: float(tree.leaves[i]) for i in range(n)}
    # the lowest leaf level of each cluster (the lower group goes left), then its first leaf
    key = {i: (level[i], i) for i in range(n)}
    for k, m in enumerate(tree.merges):
        level[n + k] = m.level
        key[n + k] = min(key[m.a], key[m.b])
    merged = {c for pair in children.values() for c in pair}
    roots = sorted((c for c in level if c not in merged), key=key.__getitem__)
    order: list[int] = []

    def leaves_of(c: int) -> None:
        stack = [c]
        while stack:
            top = stack.pop()
            if top < n:
                order.append(top)
            else:
                a, b = sorted(children[top], key=key.__getitem__)
                stack += [b, a]

    for r in roots:
        leaves_of(r)
    x = {leaf: float(k) for k, leaf in enumerate(order)}
    segments = []
    for k, m in enumerate(tree.merges):  # merges come lowest first: children are placed
        x[n + k] = (x[m.a] + x[m.b]) / 2
        segments += [[(x[c], level[c]), (x[c], m.level)] for c in (m.a, m.b)]
        segments.append([(x[m.a], m.level), (x[m.b], m.level)])
    lowest = float(tree.leaves.min()) if n else 0.0
    span = max(max(level.values(), default=0.0) - lowest, 1e-12)
    # a short stem above each root
    segments += [[(x[r], level[r]), (x[r], level[r] + 0.05 * span)] for r in roots]
    return order, x, segments
