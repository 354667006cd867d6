"""The map of minima recorded in a study store: :func:`graph_from_store`, the one reader that the
runner's result, the report and the command line all use.

A store holds nodes (a minimizer's training record), edges (one measured path between two of
them) and metrics measured afterwards (:class:`~funcspace.study.store.Metric`): a metric of one
node is a flatness measure of that minimum, a metric of a pair (``geodesic_distance``,
``function_distance``) belongs to every path measured between the two.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from funcspace.graph import GraphError, MinimaGraph

from .store import Edge, Metric, Node, StudyStore

__all__ = ["graph_from_store"]

log = logging.getLogger(__name__)

# What MinimaGraph.add_minimum / add_path accept, read from their signatures so that a new
# keyword there is picked up here.
_MINIMUM_KEYWORDS = tuple(
    name
    for name, p in inspect.signature(MinimaGraph.add_minimum).parameters.items()
    if p.kind is p.KEYWORD_ONLY
)
_PATH_KEYWORDS = tuple(
    name
    for name, p in inspect.signature(MinimaGraph.add_path).parameters.items()
    if p.kind is p.KEYWORD_ONLY
)
_MAPPINGS = ("hyperparameters", "flatness", "found")
_DISTANCES = ("length", "geodesic_distance", "function_distance")


def graph_from_store(
    store: StudyStore,
    *,
    names: Sequence[str] | None = None,
    kinds: Collection[str] | None = None,
    keep: Callable[[Edge], bool] | None = None,
) -> MinimaGraph:
    """The map of minima recorded in a store: its nodes, edges and metrics as a MinimaGraph.

    Node attributes named like the keywords of
    :meth:`~funcspace.graph.MinimaGraph.add_minimum` (``optimizer``, ``seed``,
    ``hyperparameters``, ``train_error``, ``test_error``) and edge attributes named like those
    of :meth:`~funcspace.graph.MinimaGraph.add_path` (``error_barrier``, ``error_peak``,
    ``t``, ``found``, ``length``, ...) are carried over, others left out. A node's metrics
    become its ``flatness`` (measure name -> value); a pair's metrics named like an edge
    attribute (``geodesic_distance``, ``function_distance``) go onto every path between the
    two. A value the graph refuses (a NaN error, a distance below 0) is left out with a
    warning (``logging``), and so is an edge that then holds no measurement; the store's own
    tables (:func:`~funcspace.study.write_report`) still show it.

    Parameters
    ----------
    store : StudyStore
        An open store (read-only is enough).
    names : sequence of str, optional
        Only these minima, in this order (edges and metrics between them); default all, in
        the order recorded.
    kinds : collection of str, optional
        Only the paths of these kinds (default all).
    keep : callable (Edge -> bool), optional
        Only the edges it keeps (default all).

    Returns
    -------
    MinimaGraph

    Raises
    ------
    GraphError
        When ``names`` names a minimum the store does not hold.

    Example
    -------
    >>> import tempfile
    >>> from funcspace.study import Edge, Metric, Node, StudyConfig, unit_key
    >>> with StudyStore.create(tempfile.mkdtemp(), StudyConfig(paths=("linear",))) as store:
    ...     key = unit_key("pair", a="a", b="b")
    ...     _ = store.begin(key, "pair", {})
    ...     store.finish(key, nodes=[Node("a", {"seed": 0}), Node("b", {"seed": 1})],
    ...                  edges=[Edge("a", "b", "linear", {"error_barrier": 0.25})],
    ...                  metrics=[Metric("a", "b", "geodesic_distance", 1.5)])
    ...     graph = graph_from_store(store)
    >>> graph, graph.edges()[0]["geodesic_distance"]
    (MinimaGraph(2 minima, 1 path of kind 'linear'), 1.5)
    """
    nodes, edges, metrics = store.nodes(), store.edges(), store.metrics()
    if names is not None:
        known = {n.name: n for n in nodes}
        missing = [n for n in names if n not in known]
        if missing:
            raise GraphError(f"{store.path}: no minima named {missing[:5]} in the store")
        nodes = tuple(known[n] for n in names)
    wanted = {n.name for n in nodes}
    edges = tuple(
        e
        for e in edges
        if e.a in wanted
        and e.b in wanted
        and (kinds is None or e.kind in kinds)
        and (keep is None or keep(e))
    )
    metrics = tuple(m for m in metrics if m.a in wanted and (m.b is None or m.b in wanted))
    graph, notes = build_graph(nodes, edges, metrics)
    for note in notes:
        log.warning("%s: %s", store.path, note)
    return graph


def build_graph(
    nodes: Iterable[Node], edges: Iterable[Edge], metrics: Iterable[Metric] = ()
) -> tuple[MinimaGraph, list[str]]:
    """The graph of these records, and a note for each value left out (see
    :func:`graph_from_store`)."""
    flatness: dict[str, dict[str, Any]] = {}
    distances: dict[frozenset, dict[str, Any]] = {}
    for m in metrics:
        if m.b is None:
            flatness.setdefault(m.a, {})[m.name] = m.value
        elif m.name in _PATH_KEYWORDS:
            distances.setdefault(frozenset((m.a, m.b)), {})[m.name] = m.value
    graph = MinimaGraph()
    notes: list[str] = []
    for node in nodes:
        fields = _fields(node.attributes, _MINIMUM_KEYWORDS)
        if node.name in flatness:
            fields["flatness"] = {**fields.get("flatness", {}), **flatness[node.name]}
        if node.weights is not None:
            fields["weights"] = node.weights
        where = f"minimum {node.name!r}"
        try:
            graph.add_minimum(node.name, **_usable(where, fields, notes))
        except GraphError as e:  # a value of the wrong type: keep the node without it
            notes.append(f"{where}: {e}; its attributes are left out of the map")
            graph.add_minimum(node.name)
    for edge in edges:
        fields = {
            **distances.get(frozenset((edge.a, edge.b)), {}),
            **_fields(edge.attributes, _PATH_KEYWORDS),
        }
        where = f"path {edge.a}-{edge.b} ({edge.kind})"
        try:
            graph.add_path(edge.a, edge.b, edge.kind, **_usable(where, fields, notes))
        except GraphError as e:
            notes.append(f"{where} is left out of the map: {e}")
    return graph, notes


def _fields(attributes: Mapping[str, Any], keywords: Iterable[str]) -> dict[str, Any]:
    return {name: attributes[name] for name in keywords if attributes.get(name) is not None}


def _usable(where: str, fields: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """``fields`` without the numbers MinimaGraph refuses (not finite, out of range)."""
    out = {}
    for name, value in fields.items():
        if name in _MAPPINGS or name in ("optimizer", "seed", "weights"):
            if name in _MAPPINGS and not _finite_data(value):
                notes.append(f"{where}: {name} holds a value that is not finite JSON data")
                continue
            out[name] = value
            continue
        bad = isinstance(value, bool) or not isinstance(value, (int, float))
        if bad or not math.isfinite(value):
            notes.append(f"{where}: {name} is {value!r}, not a finite number")
        elif name == "t" and not 0 <= value <= 1:
            notes.append(f"{where}: t is {value!r}, outside [0, 1]")
        elif name in _DISTANCES and value < 0:
            notes.append(f"{where}: {name} is {value!r}, below 0")
        else:
            out[name] = value
    return out


def _finite_data(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
