"""What a study found, for people: :func:`write_report` (a self-contained HTML file in the store)
and :func:`summary` (plain text, for a terminal).

The report is built from the store alone (opened read-only, so it can be written while a run
goes on): the configuration, the state of the work units, a table of the minimizers (node
attributes), a table of the measured paths (edge attributes), the map of minima, the
disconnectivity tree and the barrier matrices. Figures are PNG images inside the file (``data:``
URIs), styles are inline: nothing is loaded from the network, the file can be mailed or archived
on its own. A store with fewer than two minima or no measured path gives a report of what there
is, which says what is missing.

:func:`graph_from_store` turns the store's nodes and edges into a
:class:`~funcspace.graph.MinimaGraph` for the analyses of :mod:`funcspace.graph`.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from funcspace._store import write_atomic
from funcspace.graph import (
    GraphError,
    MinimaGraph,
    disconnectivity,
    minimax,
    pair_matrix,
    plot_disconnectivity,
    plot_map,
)
from funcspace.graph.minima import EDGE_NUMBERS

from .store import UNIT_STATES, Edge, Node, StudyStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REPORT", "graph_from_store", "summary", "write_report"]

log = logging.getLogger(__name__)

#: The report's file name inside the store directory.
REPORT = "report.html"

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
# Other names a runner may give an attribute (tried in order when the keyword is missing).
_ALIASES = {"hyperparameters": ("options",), "error_barrier": ("barrier",)}

_NODE_COLUMNS = ("optimizer", "seed", "train_error", "test_error", "train_loss", "test_loss")
# Which barrier colours the map, and which levels build the tree (join attribute, leaf
# attribute), best first.
_MAP_ATTRIBUTES = ("error_barrier", "error_peak", "loss_barrier", "loss_peak")
_TREES = (("error_peak", "train_error"), ("error_barrier", None), ("loss_barrier", None))


# ----------------------------------------------------------------------------- the graph


def graph_from_store(store: StudyStore) -> MinimaGraph:
    """The map of minima recorded in a store: its nodes and edges as a MinimaGraph.

    Node attributes named like the keywords of
    :meth:`~funcspace.graph.MinimaGraph.add_minimum` (``optimizer``, ``seed``,
    ``hyperparameters``, ``train_error``, ``test_error``, ``flatness``) and edge attributes
    named like those of :meth:`~funcspace.graph.MinimaGraph.add_path` (``error_barrier``,
    ``error_peak``, ``t``, ``found``, ``geodesic_distance``, ...) are carried over; missing ones
    are None,
    others are left out. A value the graph refuses (a NaN error, a distance below 0) is left out
    with a warning (``logging``), and so is an edge that then holds no measurement; the store's
    own tables (:func:`write_report`) still show it.

    Parameters
    ----------
    store : StudyStore
        An open store (read-only is enough).

    Returns
    -------
    MinimaGraph

    Example
    -------
    >>> import tempfile
    >>> from funcspace.study import Edge, Node, StudyConfig, unit_key
    >>> with StudyStore.create(tempfile.mkdtemp(), StudyConfig(paths=("linear",))) as store:
    ...     key = unit_key("pair", a="a", b="b")
    ...     _ = store.begin(key, "pair", {})
    ...     store.finish(key, nodes=[Node("a", {"seed": 0}), Node("b", {"seed": 1})],
    ...                  edges=[Edge("a", "b", "linear", {"error_barrier": 0.25})])
    ...     graph_from_store(store)
    MinimaGraph(2 minima, 1 path of kind 'linear')
    """
    graph, notes = _build_graph(store.nodes(), store.edges())
    for note in notes:
        log.warning("%s: %s", store.path, note)
    return graph


def _build_graph(nodes: Sequence[Node], edges: Sequence[Edge]) -> tuple[MinimaGraph, list[str]]:
    graph = MinimaGraph()
    notes: list[str] = []
    for node in nodes:
        fields = _fields(node.attributes, _MINIMUM_KEYWORDS)
        if node.weights is not None:
            fields["weights"] = node.weights
        where = f"minimum {node.name!r}"
        try:
            graph.add_minimum(node.name, **_usable(where, fields, notes))
        except GraphError as e:  # a value of the wrong type: keep the node without it
            notes.append(f"{where}: {e}; its attributes are left out of the map")
            graph.add_minimum(node.name)
    for edge in edges:
        fields = _fields(edge.attributes, _PATH_KEYWORDS)
        where = f"path {edge.a}-{edge.b} ({edge.kind})"
        try:
            graph.add_path(edge.a, edge.b, edge.kind, **_usable(where, fields, notes))
        except GraphError as e:
            notes.append(f"{where} is left out of the map: {e}")
    return graph, notes


def _fields(attributes: Mapping[str, Any], keywords: Iterable[str]) -> dict[str, Any]:
    out = {}
    for name in keywords:
        for key in (name, *_ALIASES.get(name, ())):
            if attributes.get(key) is not None:
                out[name] = attributes[key]
                break
    return out


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
        elif name in ("length", "geodesic_distance", "function_distance") and value < 0:
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


# ----------------------------------------------------------------------------- text


def summary(store: StudyStore, *, tables: bool = True) -> str:
    """A plain-text summary of a store: its configuration key, the counts of nodes, edges and
    work units (by kind and state) and, with ``tables``, the minimizers and measured paths.

    Parameters
    ----------
    store : StudyStore
        An open store (read-only is enough).
    tables : bool
        Add the tables of minimizers and paths (default True).

    Returns
    -------
    str
    """
    nodes, edges, units = store.nodes(), store.edges(), store.units()
    edge_kinds = f" ({_counts(Counter(e.kind for e in edges))})" if edges else ""
    unit_states = f" ({_counts(Counter(u.state for u in units))})" if units else ""
    lines = [
        f"study store {store.path}",
        f"config     {store.config.key()}",
        f"minimizers {len(nodes)}",
        f"paths      {len(edges)}{edge_kinds}",
        f"units      {len(units)}{unit_states}",
    ]
    for kind, states in _unit_counts(units).items():
        lines.append(f"  {kind:<9}{_counts(states)}")
    if tables:
        node_header, node_rows = _node_table(nodes)
        edge_header, edge_rows = _edge_table(edges)
        lines += ["", "minimizers", *_text_table(node_header, node_rows)]
        lines += ["", "paths", *_text_table(edge_header, edge_rows)]
    return "\n".join(lines)


def _counts(counter: Mapping[str, int]) -> str:
    order = {s: k for k, s in enumerate(UNIT_STATES)}
    keys = sorted(counter, key=lambda s: order.get(s, len(order)))  # stable: others as seen
    return ", ".join(f"{counter[k]} {k}" for k in keys)


def _unit_counts(units: Sequence[Any]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for u in units:
        out.setdefault(u.kind, Counter())[u.state] += 1
    return out


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["  (none)"]
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


# ----------------------------------------------------------------------------- tables


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)
    return str(value)


def _columns(records: Iterable[Mapping[str, Any]], first: Sequence[str]) -> list[str]:
    seen = dict.fromkeys(k for r in records for k in r)
    return [c for c in first if c in seen] + [c for c in seen if c not in first]


def _node_table(nodes: Sequence[Node]) -> tuple[list[str], list[list[str]]]:
    columns = _columns((n.attributes for n in nodes), _NODE_COLUMNS)
    header = ["name", *columns, "weights"]
    rows = [
        [n.name, *(_format(n.attributes.get(c)) for c in columns), _format(n.weights)]
        for n in nodes
    ]
    return header, rows


def _edge_table(edges: Sequence[Edge]) -> tuple[list[str], list[list[str]]]:
    columns = _columns((e.attributes for e in edges), EDGE_NUMBERS)
    columns = [c for c in columns if c != "ends"]  # the pair as measured: a and b already
    header = ["a", "b", "kind", *columns]
    rows = [[e.a, e.b, e.kind, *(_format(e.attributes.get(c)) for c in columns)] for e in edges]
    return header, rows


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    if not rows:
        return '<p class="note">None.</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{html.escape(css)}">\n<tr>{head}</tr>\n{body}\n</table>'


# ----------------------------------------------------------------------------- figures


def _png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    # Figure.savefig picks the Agg canvas for PNG: no pyplot, no backend switch
    fig.savefig(buffer, format="png", dpi=100)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _map_figure(graph: MinimaGraph, notes: list[str]) -> str | None:
    kinds_with = [a for a in _MAP_ATTRIBUTES if any(e[a] is not None for e in graph.edges())]
    if not kinds_with:
        notes.append("no measured path has a barrier: no map")
        return None
    attribute = kinds_with[0]
    try:
        fig = plot_map(graph, attribute=attribute, figsize=(6.0, 4.8))
    except GraphError:  # MDS needs the distance of every pair; the spring layout does not
        fig = plot_map(graph, attribute=attribute, layout="spring", figsize=(6.0, 4.8))
        notes.append(
            "the map is a spring layout of the measured paths (not every pair has a "
            "geodesic distance for MDS)"
        )
    return _png(fig, f"map of minima, edges coloured by {attribute}")


def _tree_figure(graph: MinimaGraph, notes: list[str]) -> str | None:
    reasons = []
    for attribute, leaf in _TREES:
        if not any(e[attribute] is not None for e in graph.edges()):
            continue
        try:
            tree = disconnectivity(graph, attribute=attribute, leaf=leaf)
        except GraphError as e:
            reasons.append(f"{attribute}: {e}")
            continue
        fig = plot_disconnectivity(tree, figsize=(max(4.0, 0.45 * len(tree.names) + 2), 4.2))
        return _png(fig, f"disconnectivity tree of {attribute}")
    notes.append(
        "no disconnectivity tree: "
        + ("; ".join(reasons) if reasons else "no path has an error peak or barrier")
    )
    return None


def _matrices_figure(graph: MinimaGraph) -> str | None:
    panels = []
    for kind in graph.kinds:
        names, w = pair_matrix(graph, "error_barrier", kind=kind)
        if np.isfinite(w[~np.eye(len(names), dtype=bool)]).any():
            panels.append((f"{kind}", w))
    if not panels:
        return None
    if len(panels) > 1:
        m = minimax(graph, attribute="error_barrier")
        panels.append(("minimax (all kinds)", m.values))
    from matplotlib.figure import Figure

    names = graph.names
    size = max(2.6, 0.3 * len(names) + 1.6)
    fig = Figure(figsize=(size * len(panels), size + 0.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    finite = np.concatenate([w[np.isfinite(w)] for _, w in panels])
    high = float(finite.max()) if finite.size else 1.0
    image = None
    for ax, (title, w) in zip(axes, panels, strict=True):
        image = ax.imshow(
            np.ma.masked_invalid(np.where(np.isfinite(w), w, np.nan)),
            vmin=0.0,
            vmax=high if high > 0 else 1.0,
            cmap="viridis",
        )
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(image, ax=list(axes), label="error_barrier (blank: not measured)")
    return _png(fig, "error barrier of every pair, per path kind")


# ----------------------------------------------------------------------------- the report

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
td { font-family: monospace; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.85em; overflow-x: auto; }
.note { color: #865; font-style: italic; }
figure { margin: 1em 0; } img { max-width: 100%; }
"""


def write_report(out: str | os.PathLike[str]) -> Path:
    """Write the HTML report of the study in the store ``out`` as ``out/report.html``.

    The store is opened read-only (a run may go on meanwhile); the file is written whole under a
    temporary name, then renamed. It holds the configuration, the work units by kind and state
    (with the errors of failed ones), a table of minimizers, a table of measured paths, the map
    of minima (:func:`~funcspace.graph.plot_map`), the disconnectivity tree
    (:func:`~funcspace.graph.plot_disconnectivity`) and the error-barrier matrices, figures
    embedded as PNG ``data:`` URIs and nothing loaded from the network. What cannot be drawn yet
    (fewer than two minima, no paths) is said in the report.

    Parameters
    ----------
    out : str or PathLike
        The store directory.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    StoreError
        For a directory without a store, or a damaged store (see :meth:`StudyStore.open`).
    """
    with StudyStore.open(out, readonly=True) as store:
        document = _document(store)
        file = store.path / REPORT
    write_atomic(file, document.encode("utf-8"))
    # the temporary file was private (0600); a report is for sharing: the umask decides
    mask = os.umask(0)
    os.umask(mask)
    file.chmod(0o666 & ~mask)
    return file


def _document(store: StudyStore) -> str:
    config = store.config
    nodes, edges, units = store.nodes(), store.edges(), store.units()
    graph, notes = _build_graph(nodes, edges)
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>funcspace study: {e(store.path.name)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>funcspace connectivity study</h1>",
        f"<p>Store <code>{e(str(store.path))}</code>; configuration key "
        f"<code>{e(config.key())}</code>.</p>",
        f"<p>{len(nodes)} minimizer{'s' * (len(nodes) != 1)}, {len(edges)} measured "
        f"path{'s' * (len(edges) != 1)}, {len(units)} work unit{'s' * (len(units) != 1)}.</p>",
    ]
    missing = []
    if len(nodes) < 2:
        missing.append(f"only {len(nodes)} minimizer{'s' * (len(nodes) != 1)}")
    if not edges:
        missing.append("no measured path")
    if missing:
        parts.append(
            f'<p class="note">The study is not far enough for a map: {e(" and ".join(missing))}'
            " (run it to the end, then write the report again).</p>"
        )

    parts.append("<h2>Work units</h2>")
    unit_rows = [
        [kind, *(str(states.get(s, 0)) for s in UNIT_STATES)]
        for kind, states in _unit_counts(units).items()
    ]
    parts.append(_html_table(["kind", *UNIT_STATES], unit_rows))
    failed = [u for u in units if u.state == "failed"]
    if failed:
        parts.append(
            _html_table(
                ["failed unit", "attempts", "error"],
                [[u.key, str(u.attempts), u.error or ""] for u in failed],
            )
        )

    parts.append("<h2>Minimizers</h2>")
    parts.append(_html_table(*_node_table(nodes)))
    parts.append("<h2>Measured paths</h2>")
    parts.append(_html_table(*_edge_table(edges)))

    figures = []
    if len(graph) >= 2 and edges:
        for title, draw in (
            ("Map of minima", _map_figure),
            ("Disconnectivity tree", _tree_figure),
        ):
            image = draw(graph, notes)
            if image is not None:
                figures.append(f"<h2>{e(title)}</h2>\n<figure>{image}</figure>")
        image = _matrices_figure(graph)
        if image is not None:
            figures.append(f"<h2>Error barriers of every pair</h2>\n<figure>{image}</figure>")
    parts += figures
    if notes:
        parts.append("<h2>Notes</h2>\n<ul>")
        parts += [f'<li class="note">{e(n)}</li>' for n in notes]
        parts.append("</ul>")

    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{e(config.to_toml())}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
