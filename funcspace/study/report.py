"""What a study found, for people: :func:`write_report` (a self-contained HTML file in the store)
and :func:`summary` (plain text, for a terminal).

The report is built from the store alone (opened read-only, so it can be written while a run
goes on): the configuration, the state of the work units, a table of the minimizers (node
attributes and flatness measures), a table of the measured paths (edge attributes and the
pair's distances), the pairs given optimized paths and why the others were skipped, the map of
minima, the disconnectivity tree, the barrier matrices and the flatness curves. Figures are
PNG images inside the file (``data:`` URIs), styles are inline: nothing is loaded from the
network, the file can be mailed or archived on its own. A store with fewer than two minima or
no measured path gives a report of what there is, which says what is missing.

The map comes from :func:`funcspace.study.minima.graph_from_store`, as everywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
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

from .minima import build_graph, graph_from_store
from .store import UNIT_STATES, Edge, Metric, Node, StudyStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REPORT", "graph_from_store", "summary", "write_report"]

log = logging.getLogger(__name__)

#: The report's file name inside the store directory.
REPORT = "report.html"

_NODE_COLUMNS = ("optimizer", "seed", "train_error", "test_error", "train_loss", "test_loss")
# Which barrier colours the map, and which levels build the tree (join attribute, leaf
# attribute), best first.
_MAP_ATTRIBUTES = ("error_barrier", "error_peak", "loss_barrier", "loss_peak")
_TREES = (("error_peak", "train_error"), ("error_barrier", None), ("loss_barrier", None))


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
    nodes, edges, units, metrics = store.nodes(), store.edges(), store.units(), store.metrics()
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
    found = _selection(units)
    if found is not None:
        line, rows = _selection_rows(found)
        lines += ["", line]
        if tables:
            lines += _text_table(["a", "b", "", "error peak / why skipped"], rows)
    if tables:
        node_header, node_rows = _node_table(nodes, metrics)
        edge_header, edge_rows = _edge_table(edges, metrics)
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


def _node_table(
    nodes: Sequence[Node], metrics: Sequence[Metric] = ()
) -> tuple[list[str], list[list[str]]]:
    # a node's metrics (flatness measures) as columns; curves are drawn, not tabulated
    measured: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if m.b is None:
            measured.setdefault(m.a, {})[m.name] = (
                f"curve of {_points(m.value)} points" if isinstance(m.value, Mapping) else m.value
            )
    records = [{**n.attributes, **measured.get(n.name, {})} for n in nodes]
    columns = _columns(records, _NODE_COLUMNS)
    header = ["name", *columns, "weights"]
    rows = [
        [n.name, *(_format(r.get(c)) for c in columns), _format(n.weights)]
        for n, r in zip(nodes, records, strict=True)
    ]
    return header, rows


def _points(curve: Mapping[str, Any]) -> int:
    return max((len(v) for v in curve.values() if isinstance(v, list)), default=0)


def _edge_table(
    edges: Sequence[Edge], metrics: Sequence[Metric] = ()
) -> tuple[list[str], list[list[str]]]:
    # a pair's metrics (its distances) on every path between the two
    pairs: dict[frozenset, dict[str, Any]] = {}
    for m in metrics:
        if m.b is not None:
            pairs.setdefault(frozenset((m.a, m.b)), {})[m.name] = m.value
    records = [{**pairs.get(frozenset((e.a, e.b)), {}), **e.attributes} for e in edges]
    columns = _columns(records, EDGE_NUMBERS)
    columns = [c for c in columns if c != "ends"]  # the pair as measured: a and b already
    header = ["a", "b", "kind", *columns]
    rows = [
        [e.a, e.b, e.kind, *(_format(r.get(c)) for c in columns)]
        for e, r in zip(edges, records, strict=True)
    ]
    return header, rows


def _selection(units: Sequence[Any]) -> dict[str, Any] | None:
    """The latest finished pair selection: ``names`` and the selection's plain data."""
    done = [u for u in units if u.kind == "select" and u.state == "done"]
    if not done or not isinstance(done[-1].result, Mapping):
        return None
    return dict(done[-1].result)


def _selection_rows(found: Mapping[str, Any]) -> tuple[str, list[list[str]]]:
    names, data = found["names"], found["selection"]
    n = len(names)
    measured = [
        [names[i], names[j], "measured", _format(v)]
        for (i, j), v in zip(data["measured"], data["values"], strict=True)
    ]
    skipped = [
        [names[s["pair"][0]], names[s["pair"][1]], "skipped", s["reason"]] for s in data["skipped"]
    ]
    ruled = sum(s["ruled_out"] for s in data["skipped"])
    line = (
        f"optimized paths: {len(measured)} of {n * (n - 1) // 2} pairs measured, "
        f"{ruled} ruled out by the minimum-spanning-tree bound, "
        f"{len(skipped) - ruled} left when the budget was spent"
    )
    return line, measured + skipped


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


# what a curve-valued flatness measure draws: (x key, y key, x label, y label)
_CURVES = {
    "local_energy": (
        "sigmas",
        "energy",
        "sigma (relative weight noise)",
        "training error increase",
    ),
    "hessian_spectrum": ("grid", "density", "Hessian eigenvalue", "density"),
    # binary networks' local energy (binary.local_energy): weights flipped, not scaled
    "local_energy (binary)": (
        "fractions",
        "energy",
        "fraction of flipped weights",
        "training error increase",
    ),
}


def _flatness_figure(metrics: Sequence[Metric]) -> str | None:
    curves: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for m in metrics:
        binary = isinstance(m.value, Mapping) and "fractions" in m.value
        name = f"{m.name} (binary)" if binary else m.name
        shape = _CURVES.get(name)
        if m.b is None and shape and isinstance(m.value, Mapping):
            x, y = m.value.get(shape[0]), m.value.get(shape[1])
            if isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and x:
                curves.setdefault(name, []).append((m.a, m.value))
    if not curves:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(curves), 3.8), layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (name, lines) in zip(axes, sorted(curves.items()), strict=True):
        xkey, ykey, xlabel, ylabel = _CURVES[name]
        for node, value in lines:
            ax.plot(
                value[xkey], value[ykey], marker="." if len(value[xkey]) < 30 else None, label=node
            )
        ax.set(title=name, xlabel=xlabel, ylabel=ylabel)
        ax.legend(fontsize=7)
    return _png(fig, "flatness curves of every minimum: " + ", ".join(sorted(curves)))


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
    nodes, edges, units, metrics = store.nodes(), store.edges(), store.units(), store.metrics()
    graph, notes = build_graph(nodes, edges, metrics)
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
    parts.append(_html_table(*_node_table(nodes, metrics)))
    parts.append("<h2>Measured paths</h2>")
    parts.append(_html_table(*_edge_table(edges, metrics)))
    found = _selection(units)
    if found is not None:
        line, rows = _selection_rows(found)
        parts.append("<h2>Optimized paths: which pairs, and why the others were skipped</h2>")
        parts.append(f"<p>{e(line)}.</p>")
        parts.append(_html_table(["a", "b", "", "error peak, or why skipped"], rows))

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
    image = _flatness_figure(metrics)
    if image is not None:
        figures.append(f"<h2>Flatness curves</h2>\n<figure>{image}</figure>")
    parts += figures
    if notes:
        parts.append("<h2>Notes</h2>\n<ul>")
        parts += [f'<li class="note">{e(n)}</li>' for n in notes]
        parts.append("</ul>")

    parts.append("<h2>Configuration</h2>")
    parts.append(f"<pre>{e(config.to_toml())}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
