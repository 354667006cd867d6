"""The graph of minima: one node per minimizer, one edge per measured pair and path kind.

:class:`MinimaGraph` holds what was measured elsewhere (training, flatness, paths, distances)
in a :class:`networkx.MultiGraph` whose edge keys are the path kinds; it measures nothing.
Values are checked once, when they are added: numbers must be finite, dictionaries must hold
JSON data (stored as their JSON round trip, so that a saved graph reads back equal).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import networkx as nx
import numpy as np

from funcspace.errors import FuncspaceError

__all__ = ["BarrierLike", "GraphError", "MinimaGraph", "merge_copies"]

#: The format written by :meth:`MinimaGraph.to_dict` and the file writers.
FORMAT_VERSION = 1
TYPE_NAME = "MinimaGraph"

#: Node attributes, in their order.
NODE_FIELDS = (
    "optimizer",
    "seed",
    "hyperparameters",
    "train_error",
    "test_error",
    "flatness",
    "weights",
    "merged",
)
#: Edge attributes that hold a number (what the analyses can read), in their order.
EDGE_NUMBERS = (
    "error_barrier",
    "loss_barrier",
    "error_peak",
    "loss_peak",
    "t",
    "length",
    "geodesic_distance",
    "function_distance",
)
#: Every edge attribute besides its kind.
EDGE_FIELDS = (*EDGE_NUMBERS, "found", "ends")
_NONNEGATIVE = ("length", "geodesic_distance", "function_distance")


class GraphError(FuncspaceError):
    """Bad input to :mod:`funcspace.graph`: the message says what, where, and what to do."""


class BarrierLike(Protocol):
    """What :meth:`MinimaGraph.add_barrier` reads of a barrier (:class:`paths.Barrier` has it)."""

    height: float
    t: float
    peak: float
    resolution: float
    evaluations: int
    upper_bound: float
    kind: str


class MinimaGraph:
    """The map of minima: minimizers as nodes, measured paths between them as edges.

    A node per minimizer, named by a string, with the attributes ``optimizer``, ``seed``,
    ``hyperparameters`` (a dict), ``train_error``, ``test_error``, ``flatness`` (a dict of
    measures), ``weights`` (where its weights are stored) and ``merged`` (the names of the
    symmetric copies merged into it, see :func:`merge_copies`); any may be None.

    An edge per measured pair and path kind (``"linear"``, ``"geodesic"``, ``"bent"``, ...),
    keyed by the kind, with ``error_barrier``, ``loss_barrier`` (heights, as the user defines
    them: :class:`paths.Barrier` reports the height above the chord), ``error_peak``,
    ``loss_peak`` (the highest values themselves: the levels a disconnectivity tree joins at),
    ``t`` (where the error barrier is, from ``ends[0]``), ``found`` (a dict: how it was found),
    ``length`` (of the path), ``geodesic_distance``, ``function_distance`` and ``ends`` (the
    pair as measured); any value may be None but one.

    The graph itself, a read-only :class:`networkx.MultiGraph` view, is :attr:`graph`; the
    analyses (:func:`~funcspace.graph.minimax`, :func:`~funcspace.graph.components`, ...) are
    functions that take a MinimaGraph first.

    Examples
    --------
    >>> g = MinimaGraph()
    >>> g.add_minimum("sgd-0", optimizer="sgd", seed=0, train_error=0.0)
    >>> g.add_minimum("sgd-1", optimizer="sgd", seed=1, train_error=0.01)
    >>> g.add_path("sgd-0", "sgd-1", "linear", error_barrier=0.2, geodesic_distance=3.1)
    >>> g
    MinimaGraph(2 minima, 1 path of kind 'linear')
    """

    def __init__(self) -> None:
        self._graph = nx.MultiGraph(funcspace=TYPE_NAME, format_version=FORMAT_VERSION)

    # ------------------------------------------------------------------ building

    def add_minimum(
        self,
        name: str,
        *,
        optimizer: str | None = None,
        seed: int | None = None,
        hyperparameters: Mapping[str, Any] | None = None,
        train_error: float | None = None,
        test_error: float | None = None,
        flatness: Mapping[str, Any] | None = None,
        weights: str | os.PathLike[str] | None = None,
    ) -> None:
        """Add a minimizer as a node.

        Parameters
        ----------
        name : str
            The node's name, unique in the graph.
        optimizer : str, optional
        seed : int, optional
        hyperparameters : dict, optional
            JSON data (numbers, strings, lists, dicts); tuples are stored as lists.
        train_error, test_error : float, optional
            Finite numbers.
        flatness : dict, optional
            Flatness measures by name (JSON data), e.g. ``{"local_energy@0.2": 0.06}``.
        weights : str or PathLike, optional
            Where the weights are stored.

        Raises
        ------
        GraphError
            For a name already in the graph, or a value of the wrong type or not finite.
        """
        self._add_node(
            name,
            {
                "optimizer": optimizer,
                "seed": seed,
                "hyperparameters": hyperparameters,
                "train_error": train_error,
                "test_error": test_error,
                "flatness": flatness,
                "weights": weights,
                "merged": None,
            },
        )

    def add_path(
        self,
        a: str,
        b: str,
        kind: str,
        *,
        error_barrier: float | None = None,
        loss_barrier: float | None = None,
        error_peak: float | None = None,
        loss_peak: float | None = None,
        t: float | None = None,
        found: Mapping[str, Any] | None = None,
        length: float | None = None,
        geodesic_distance: float | None = None,
        function_distance: float | None = None,
    ) -> None:
        """Add the measurements of one path between two minimizers as an edge.

        Parameters
        ----------
        a, b : str
            Two different nodes already in the graph; ``t`` counts from ``a``.
        kind : str
            The path kind (the edge's key); one edge per pair and kind.
        error_barrier, loss_barrier : float, optional
            Barrier heights (finite).
        error_peak, loss_peak : float, optional
            The highest error and loss on the path (finite).
        t : float, optional
            Where the error barrier is, in [0, 1].
        found : dict, optional
            How the barrier was found (JSON data), e.g.
            ``{"method": "adaptive", "resolution": 0.0039, "evaluations": 41}``.
        length, geodesic_distance, function_distance : float, optional
            Non-negative.

        Raises
        ------
        GraphError
            For an unknown node, a self-loop, a pair already measured with this kind, nothing
            measured, or a value of the wrong type, not finite or out of range.
        """
        values = {
            "error_barrier": error_barrier,
            "loss_barrier": loss_barrier,
            "error_peak": error_peak,
            "loss_peak": loss_peak,
            "t": t,
            "length": length,
            "geodesic_distance": geodesic_distance,
            "function_distance": function_distance,
            "found": found,
        }
        if all(v is None for v in values.values()):
            raise GraphError(
                f"path {a!r}-{b!r} ({kind!r}) holds no measurement; give at least one of "
                f"{', '.join(EDGE_NUMBERS)}"
            )
        self._add_edge(a, b, kind, {**values, "ends": [a, b]})

    def add_barrier(
        self,
        a: str,
        b: str,
        error: BarrierLike,
        loss: BarrierLike | None = None,
        *,
        length: float | None = None,
        geodesic_distance: float | None = None,
        function_distance: float | None = None,
    ) -> None:
        """Add an edge from measured barriers (:class:`paths.Barrier` of the error, the loss).

        The kind is ``error.kind``; ``error_barrier``/``loss_barrier`` are the heights,
        ``error_peak``/``loss_peak`` the peaks, ``t`` the error barrier's place, and ``found``
        records the adaptive search (resolution, evaluations, upper bound).

        Raises
        ------
        GraphError
            For a loss barrier measured on another path kind, or what :meth:`add_path` refuses.
        """
        try:
            kind = str(error.kind)
            found = {
                "method": "adaptive",
                "resolution": float(error.resolution),
                "evaluations": int(error.evaluations),
                "upper_bound": float(error.upper_bound),
            }
            fields = {"error_barrier": error.height, "error_peak": error.peak, "t": error.t}
            if loss is not None:
                if str(loss.kind) != kind:
                    raise GraphError(
                        f"the loss barrier was measured on a {loss.kind!r} path, the error "
                        f"barrier on a {kind!r} path; add them as two edges"
                    )
                fields.update(loss_barrier=loss.height, loss_peak=loss.peak)
        except AttributeError as e:
            raise GraphError(
                f"add_barrier takes paths.Barrier results (height, peak, t, resolution, "
                f"evaluations, upper_bound, kind): {e}"
            ) from e
        self.add_path(
            a,
            b,
            kind,
            **fields,
            found=found,
            length=length,
            geodesic_distance=geodesic_distance,
            function_distance=function_distance,
        )

    # ------------------------------------------------------------------ reading

    @property
    def graph(self) -> nx.MultiGraph:
        """A read-only view of the underlying :class:`networkx.MultiGraph`, keyed by kind."""
        return self._graph.copy(as_view=True)

    @property
    def names(self) -> list[str]:
        """The nodes' names, in the order they were added."""
        return list(self._graph.nodes)

    @property
    def kinds(self) -> list[str]:
        """The path kinds measured, in the order first seen."""
        return list(dict.fromkeys(k for _, _, k in self._graph.edges(keys=True)))

    def node(self, name: str) -> dict[str, Any]:
        """A copy of the attributes of node ``name``."""
        self._check_node(name)
        return json.loads(json.dumps(self._graph.nodes[name]))

    def edges(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Copies of the edges' attributes (with ``a``, ``b`` and ``kind``), one kind or all."""
        return [
            {"a": u, "b": v, "kind": k, **json.loads(json.dumps(d))}
            for u, v, k, d in self._graph.edges(keys=True, data=True)
            if kind is None or k == kind
        ]

    def __len__(self) -> int:
        return self._graph.number_of_nodes()

    def __contains__(self, name: object) -> bool:
        return name in self._graph

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MinimaGraph):
            return NotImplemented
        return _canonical(self.to_dict()) == _canonical(other.to_dict())

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        paths = self._graph.number_of_edges()
        kinds = ", ".join(map(repr, self.kinds))
        return (
            f"MinimaGraph({len(self)} minim{'um' if len(self) == 1 else 'a'}, {paths} "
            f"path{'' if paths == 1 else 's'}"
            + (f" of kind{'' if len(self.kinds) == 1 else 's'} {kinds})" if paths else ")")
        )

    def copy(self) -> MinimaGraph:
        """An independent copy."""
        return MinimaGraph.from_dict(self.to_dict())

    # ------------------------------------------------------------------ plain data

    def to_dict(self) -> dict[str, Any]:
        """Node-link data (:func:`networkx.node_link_data` with ``edges="edges"``), JSON-ready.

        The graph attributes name the type and format (``{"funcspace": "MinimaGraph",
        "format_version": 1}``); every node and edge lists all its attributes (None where
        unknown); edges carry their kind as ``key``.
        """
        # a deep copy: the caller may change it without changing the graph
        return json.loads(json.dumps(nx.node_link_data(self._graph, edges="edges")))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinimaGraph:
        """The graph :meth:`to_dict` returned, checked as :meth:`add_minimum` and
        :meth:`add_path` check their input.

        Raises
        ------
        GraphError
            For data that is not a MinimaGraph's node-link data, or of a newer format.
        """
        if not isinstance(data, Mapping):
            raise GraphError(f"MinimaGraph data must be a dict, got {type(data).__name__}")
        try:
            check_header(data["graph"].get("funcspace"), data["graph"].get("format_version"))
            nodes, edges = list(data["nodes"]), list(data["edges"])
            out = cls()
            for node in nodes:
                fields = {f: node.get(f) for f in NODE_FIELDS}
                unknown = set(node) - {"id", *NODE_FIELDS}
                if unknown:
                    raise GraphError(
                        f"node {node['id']!r} has unknown attributes {sorted(unknown)}"
                    )
                out._add_node(node["id"], fields)
            for edge in edges:
                fields = {f: edge.get(f) for f in EDGE_FIELDS}
                unknown = set(edge) - {"source", "target", "key", "kind", *EDGE_FIELDS}
                if unknown:
                    raise GraphError(f"an edge has unknown attributes {sorted(unknown)}")
                if fields["ends"] is None:
                    fields["ends"] = [edge["source"], edge["target"]]
                out._add_edge(edge["source"], edge["target"], edge["key"], fields)
        except (KeyError, TypeError, AttributeError) as e:
            raise GraphError(f"not a MinimaGraph's node-link data ({type(e).__name__}: {e})") from e
        return out

    # ------------------------------------------------------------------ internals

    def _check_node(self, name: object) -> None:
        if name not in self._graph:
            known = ", ".join(map(repr, self.names[:8])) + (", ..." if len(self) > 8 else "")
            raise GraphError(
                f"no minimum named {name!r} in the graph (it has {known or 'none'}); "
                "add it with add_minimum first"
            )

    def _add_node(self, name: object, fields: Mapping[str, Any]) -> None:
        if not isinstance(name, str) or not name:
            raise GraphError(f"a minimum's name must be a non-empty string, got {name!r}")
        if name in self._graph:
            raise GraphError(f"a minimum named {name!r} is already in the graph")
        where = f"minimum {name!r}"
        seed = fields["seed"]
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise GraphError(f"{where}: seed must be an integer or None, got {seed!r}")
        for key in ("optimizer",):
            if fields[key] is not None and not isinstance(fields[key], str):
                raise GraphError(f"{where}: {key} must be a string or None, got {fields[key]!r}")
        weights = fields["weights"]
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise GraphError(f"{where}: weights must be a path (str) or None, got {weights!r}")
        merged = fields["merged"]
        if merged is not None and (
            isinstance(merged, str)
            or not isinstance(merged, Iterable)
            or not all(isinstance(m, str) for m in merged)
        ):
            raise GraphError(f"{where}: merged must be a list of names or None, got {merged!r}")
        attrs = {
            "optimizer": fields["optimizer"],
            "seed": None if seed is None else int(seed),
            "hyperparameters": _json_data(where, "hyperparameters", fields["hyperparameters"]),
            "train_error": _number(where, "train_error", fields["train_error"]),
            "test_error": _number(where, "test_error", fields["test_error"]),
            "flatness": _json_data(where, "flatness", fields["flatness"]),
            "weights": None if weights is None else os.fspath(weights),
            "merged": None if merged is None else list(merged),
        }
        self._graph.add_node(name, **attrs)

    def _add_edge(self, a: object, b: object, kind: object, fields: Mapping[str, Any]) -> None:
        self._check_node(a)
        self._check_node(b)
        if a == b:
            raise GraphError(f"a path from {a!r} to itself is no edge of the map")
        if not isinstance(kind, str) or not kind:
            raise GraphError(f"a path kind must be a non-empty string, got {kind!r}")
        if self._graph.has_edge(a, b, key=kind):
            raise GraphError(
                f"the pair {a!r}-{b!r} already has a {kind!r} path; one edge per pair and kind "
                "(use another kind name for another measurement)"
            )
        where = f"path {a!r}-{b!r} ({kind!r})"
        attrs: dict[str, Any] = {}
        for key in EDGE_NUMBERS:
            value = _number(where, key, fields[key])
            if value is not None and key in _NONNEGATIVE and value < 0:
                raise GraphError(f"{where}: {key} must be >= 0, got {value!r}")
            if value is not None and key == "t" and not 0 <= value <= 1:
                raise GraphError(f"{where}: t must lie in [0, 1], got {value!r}")
            attrs[key] = value
        attrs["found"] = _json_data(where, "found", fields["found"])
        ends = fields["ends"]
        if (
            not isinstance(ends, (list, tuple))
            or len(ends) != 2
            or not all(isinstance(e, str) for e in ends)
        ):
            raise GraphError(f"{where}: ends must be two names, got {ends!r}")
        attrs["ends"] = list(ends)
        self._graph.add_edge(a, b, key=kind, **attrs)


def check_header(kind: object, version: object) -> None:
    """Refuse data that is not a MinimaGraph's, or that a newer funcspace wrote."""
    if kind != TYPE_NAME:
        raise GraphError(f"the data holds no MinimaGraph (its graph attribute funcspace={kind!r})")
    if isinstance(version, bool) or not isinstance(version, int):
        raise GraphError(f"the MinimaGraph data has no integer format_version ({version!r})")
    if not 1 <= version <= FORMAT_VERSION:
        raise GraphError(
            f"the MinimaGraph data has format version {version}; this funcspace reads versions "
            f"1 to {FORMAT_VERSION} (a newer funcspace wrote it?)"
        )


def merge_copies(
    graph: MinimaGraph, *, tolerance: float = 1e-6, distance: str = "geodesic_distance"
) -> MinimaGraph:
    """A copy of ``graph`` in which minimizers at zero distance are one node.

    Two minimizers whose ``distance`` (on any edge between them, usually the geodesic distance
    of their canonical forms) is at most ``tolerance`` are one function up to symmetry; chains
    of such pairs are merged as a whole. Each group becomes its first-added node, which keeps
    its own attributes and lists the others in ``merged`` (with what they had merged). Their
    edges to other nodes move to it, ``ends`` still naming the pair as measured; where two
    edges of one kind meet, the one with the lower ``error_barrier`` (then ``error_peak``,
    then ``loss_barrier``) is kept: a path from a copy is a path from the original. Edges
    inside a group go. ``graph`` is left as it was.

    Parameters
    ----------
    graph : MinimaGraph
    tolerance : float
        The largest distance read as zero (default 1e-6; float32 round-off in a canonical form
        gives distances near 1e-7 times the distance scale).
    distance : str
        The edge attribute that says how far apart two minimizers are.

    Returns
    -------
    MinimaGraph

    Raises
    ------
    GraphError
        For a graph that is not a MinimaGraph, a negative or non-finite tolerance, or an edge
        attribute that is not a distance.

    Examples
    --------
    >>> g = MinimaGraph()
    >>> for name in ("a", "a-permuted", "b"):
    ...     g.add_minimum(name)
    >>> g.add_path("a", "a-permuted", "geodesic", geodesic_distance=0.0)
    >>> g.add_path("a-permuted", "b", "geodesic", error_barrier=0.3, geodesic_distance=2.0)
    >>> merged = merge_copies(g)
    >>> merged.names, merged.node("a")["merged"], merged.edges()[0]["ends"]
    (['a', 'b'], ['a-permuted'], ['a-permuted', 'b'])
    """
    if not isinstance(graph, MinimaGraph):
        raise GraphError(f"merge_copies takes a MinimaGraph, got {type(graph).__name__}")
    if distance not in _NONNEGATIVE:
        raise GraphError(f"distance must be one of {', '.join(_NONNEGATIVE)}; got {distance!r}")
    tol = _number("merge_copies", "tolerance", tolerance)
    if tol is None or tol < 0:
        raise GraphError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    g = graph._graph
    order = {name: k for k, name in enumerate(g.nodes)}
    zero = nx.Graph()
    zero.add_nodes_from(g.nodes)
    zero.add_edges_from(
        (u, v) for u, v, d in g.edges(data=True) if d[distance] is not None and d[distance] <= tol
    )
    owner: dict[str, str] = {}
    for group in nx.connected_components(zero):
        first = min(group, key=order.__getitem__)
        for name in group:
            owner[name] = first
    out = MinimaGraph()
    for name, attrs in g.nodes(data=True):
        if owner[name] != name:
            continue
        fields = dict(attrs)
        copies = sorted((n for n in owner if owner[n] == name and n != name), key=order.get)
        if copies:
            merged = list(attrs["merged"] or [])
            for c in copies:
                merged += [c, *(g.nodes[c]["merged"] or [])]
            fields["merged"] = merged
        out._add_node(name, fields)
    kept: dict[tuple[str, str, str], dict[str, Any]] = {}
    for u, v, kind, attrs in g.edges(keys=True, data=True):
        a, b = owner[u], owner[v]
        if a == b:
            continue
        key = (*sorted((a, b), key=order.__getitem__), kind)
        if key not in kept or _rank(attrs) < _rank(kept[key]):
            kept[key] = attrs
    for (a, b, kind), attrs in kept.items():
        out._add_edge(a, b, kind, attrs)
    return out


# --------------------------------------------------------------------------- helpers


def _rank(attrs: Mapping[str, Any]) -> tuple[float, ...]:
    return tuple(
        math.inf if attrs[k] is None else attrs[k]
        for k in ("error_barrier", "error_peak", "loss_barrier")
    )


def _number(where: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise GraphError(f"{where}: {key} must be a number or None, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise GraphError(
            f"{where}: {key} is {out}; a measurement must be finite (leave it out, None, "
            "when it was not measured)"
        )
    return out


def _json_data(where: str, key: str, value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise GraphError(f"{where}: {key} must be a dict with string keys or None, got {value!r}")
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False, default=_plain))
    except (TypeError, ValueError) as e:
        raise GraphError(
            f"{where}: {key} must hold JSON data (numbers, strings, lists, dicts; finite "
            f"numbers only): {e}"
        ) from e


def _plain(value: object) -> object:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON data")


def _canonical(data: Mapping[str, Any]) -> tuple[Any, ...]:
    nodes = sorted(json.dumps(n, sort_keys=True) for n in data["nodes"])
    edges = sorted(
        json.dumps(
            {**e, "source": min(e["source"], e["target"]), "target": max(e["source"], e["target"])},
            sort_keys=True,
        )
        for e in data["edges"]
    )
    return json.dumps(data["graph"], sort_keys=True), nodes, edges
