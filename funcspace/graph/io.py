"""The map of minima as files: JSON (node-link) and GraphML, each read back equal.

- JSON: :meth:`MinimaGraph.to_dict` (networkx node-link data, ``edges="edges"``), indented;
- GraphML (:func:`networkx.write_graphml`, for Gephi, Cytoscape, yEd): GraphML holds scalars
  only, so the dict and list attributes (``hyperparameters``, ``flatness``, ``merged``,
  ``found``, ``ends``) are written as JSON strings, which the reader parses, and, for viewing in
  those tools, each scalar entry of a dict also as its own attribute ``"<field>.<key>"``
  (``"flatness.local_energy@0.2"``), which the reader ignores, as it ignores attributes other
  tools add. Unknown values (None) are left out.

Files are written whole to a temporary name and moved in place. A missing, truncated or
malformed file is refused with a :class:`~funcspace.errors.DataError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import networkx as nx

from funcspace._store import PathLike, write_atomic
from funcspace.errors import DataError

from .minima import EDGE_FIELDS, NODE_FIELDS, GraphError, MinimaGraph, check_header

__all__ = [
    "graphml_text",
    "parse_graphml",
    "read_graphml",
    "read_json",
    "write_graphml",
    "write_json",
]

_JSON_FIELDS = ("hyperparameters", "flatness", "merged", "found", "ends")


def write_json(graph: MinimaGraph, path: PathLike) -> Path:
    """Write ``graph`` as node-link JSON (:meth:`MinimaGraph.to_dict`).

    Parameters
    ----------
    graph : MinimaGraph
    path : str or PathLike
        The file (missing parent folders are made).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    GraphError
        For something that is not a MinimaGraph.
    """
    _check(graph)
    text = json.dumps(graph.to_dict(), indent=1, allow_nan=False) + "\n"
    return _write(Path(path), text.encode("utf-8"))


def read_json(path: PathLike) -> MinimaGraph:
    """The graph :func:`write_json` wrote at ``path``.

    Raises
    ------
    DataError
        For a missing, unreadable or malformed file, or one that holds no MinimaGraph (the
        message names the file and says what is wrong).
    """
    file = Path(path)
    try:
        data = json.loads(_read(file).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{file}: not valid JSON (truncated or corrupted?): {e}") from e
    return _build(file, lambda: MinimaGraph.from_dict(data))


def write_graphml(graph: MinimaGraph, path: PathLike) -> Path:
    """Write ``graph`` as GraphML (see the module docstring for how dicts are flattened).

    Parameters
    ----------
    graph : MinimaGraph
    path : str or PathLike
        The file (missing parent folders are made).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    GraphError
        For something that is not a MinimaGraph.
    """
    return _write(Path(path), graphml_text(graph).encode("utf-8"))


def read_graphml(path: PathLike) -> MinimaGraph:
    """The graph :func:`write_graphml` wrote at ``path``.

    Attributes other than the graph's own (those a viewer adds, the ``"<field>.<key>"``
    copies) are left out.

    Raises
    ------
    DataError
        For a missing, unreadable or malformed file, or one that holds no MinimaGraph.
    """
    file = Path(path)
    try:
        text = _read(file).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: not valid GraphML (not UTF-8 text): {e}") from e
    return parse_graphml(text, where=str(file))


def graphml_text(graph: MinimaGraph) -> str:
    """The GraphML :func:`write_graphml` writes, as text."""
    _check(graph)
    flat = nx.MultiGraph(**graph._graph.graph)
    for name, attrs in graph._graph.nodes(data=True):
        flat.add_node(name, **_flatten(attrs))
    for u, v, kind, attrs in graph._graph.edges(keys=True, data=True):
        flat.add_edge(u, v, key=kind, kind=kind, **_flatten(attrs))
    return "\n".join(nx.generate_graphml(flat, encoding="utf-8", prettyprint=True)) + "\n"


def parse_graphml(text: str, *, where: str = "GraphML text") -> MinimaGraph:
    """The graph in GraphML ``text`` (:func:`graphml_text`); errors name ``where``."""
    try:
        flat = nx.parse_graphml(text, force_multigraph=True)
    except (ParseError, nx.NetworkXError, ValueError) as e:
        raise DataError(f"{where}: not valid GraphML (truncated or corrupted?): {e}") from e

    def build() -> MinimaGraph:
        check_header(flat.graph.get("funcspace"), flat.graph.get("format_version"))
        data: dict[str, Any] = {
            "graph": {k: flat.graph[k] for k in ("funcspace", "format_version")},
            "nodes": [
                {"id": name, **_unflatten(attrs, NODE_FIELDS)}
                for name, attrs in flat.nodes(data=True)
            ],
            "edges": [
                {"source": u, "target": v, "key": attrs.get("kind", key)}
                | _unflatten(attrs, EDGE_FIELDS)
                for u, v, key, attrs in flat.edges(keys=True, data=True)
            ],
        }
        return MinimaGraph.from_dict(data)

    return _build(where, build)


# --------------------------------------------------------------------------- helpers


def _check(graph: object) -> None:
    if not isinstance(graph, MinimaGraph):
        raise GraphError(f"expected a MinimaGraph, got {type(graph).__name__}")


def _flatten(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None:
            continue
        if key not in _JSON_FIELDS:
            out[key] = value
            continue
        out[key] = json.dumps(value, allow_nan=False)
        if isinstance(value, dict):
            for sub, item in value.items():
                if isinstance(item, (str, bool)):
                    out[f"{key}.{sub}"] = item
                elif isinstance(item, (int, float)):
                    out[f"{key}.{sub}"] = float(item)
    return out


def _unflatten(attrs: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in fields:
        value = attrs.get(key)
        if key in _JSON_FIELDS and value is not None:
            try:
                value = json.loads(value)
            except (TypeError, ValueError) as e:
                raise GraphError(f"attribute {key!r} holds no JSON ({e}): {value!r}") from e
        out[key] = value
    return out


def _build(where: object, build: Any) -> MinimaGraph:
    try:
        return build()
    except GraphError as e:
        raise DataError(f"{where}: {e}") from e


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{file}: no such file (nothing written there?)") from e
    except OSError as e:
        raise DataError(f"{file}: cannot be read: {e}") from e


def _write(file: Path, data: bytes) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(file, data)
    return file
