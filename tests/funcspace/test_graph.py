"""Tests for funcspace.graph: the minimax barrier, components and disconnectivity tree against
brute force, MDS against exact distances, merging symmetric copies, JSON and GraphML round
trips, plots, and refusals."""

from __future__ import annotations

import json
import math
import tempfile
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.cluster import hierarchy  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from funcspace.errors import DataError, FuncspaceError  # noqa: E402
from funcspace.graph import (  # noqa: E402
    GraphError,
    MinimaGraph,
    classical_mds,
    components,
    disconnectivity,
    embedding,
    graphml_text,
    merge_copies,
    minimax,
    minimax_matrix,
    pair_matrix,
    parse_graphml,
    plot_disconnectivity,
    plot_map,
    read_graphml,
    read_json,
    spanning_tree,
    write_graphml,
    write_json,
)
from funcspace.graph.plots import _tree_drawing  # noqa: E402

KINDS = ("linear", "bent")
GRID = 8
levels = st.integers(0, GRID).map(lambda k: k / GRID)  # a grid: ties are common


def brute_minimax(w: np.ndarray) -> np.ndarray:
    """Floyd-Warshall over (max, min): the lowest highest edge over all chains."""
    m = np.array(w, dtype=np.float64)
    np.fill_diagonal(m, 0.0)
    for k in range(len(m)):
        m = np.minimum(m, np.maximum.outer(m[:, k], m[k, :]))
    return m


def brute_components(w: np.ndarray, threshold: float) -> set[frozenset[int]]:
    reach = (w <= threshold) | np.eye(len(w), dtype=bool)
    for k in range(len(w)):
        reach |= np.outer(reach[:, k], reach[k, :])
    return {frozenset(np.flatnonzero(row).tolist()) for row in reach}


def best_of_edges(g: MinimaGraph, attribute: str = "error_barrier", kinds=None) -> np.ndarray:
    """Each pair's lowest value, straight from the edge list."""
    index = {name: k for k, name in enumerate(g.names)}
    w = np.full((len(g), len(g)), np.inf)
    np.fill_diagonal(w, 0.0)
    for e in g.edges():
        if e[attribute] is None or (kinds is not None and e["kind"] not in kinds):
            continue
        i, j = index[e["a"]], index[e["b"]]
        w[i, j] = w[j, i] = min(w[i, j], e[attribute])
    return w


@st.composite
def graphs(draw, max_nodes: int = 7, density: float = 0.6):
    """Random maps: nodes with errors, each pair measured with some of two kinds (or not),
    peaks above both ends' errors, distances, some pairs with nothing measured."""
    n = draw(st.integers(1, max_nodes))
    g = MinimaGraph()
    errors = draw(st.lists(levels, min_size=n, max_size=n))
    for i, err in enumerate(errors):
        g.add_minimum(f"m{i}", train_error=err, seed=i)
    for i in range(n):
        for j in range(i + 1, n):
            for kind in KINDS:
                if draw(st.floats(0, 1)) > density:
                    continue
                height = draw(levels)
                g.add_path(
                    f"m{i}",
                    f"m{j}",
                    kind,
                    error_barrier=height,
                    error_peak=max(errors[i], errors[j]) + height,
                    geodesic_distance=draw(levels),
                )
    return g


# --------------------------------------------------------------------------- minimax


@given(st.integers(1, 8), st.data())
def test_minimax_matrix_equals_brute_force(n, data):
    values = data.draw(
        st.lists(st.one_of(levels, st.just(math.inf)), min_size=n * n, max_size=n * n)
    )
    w = np.array(values).reshape(n, n)
    w = np.minimum(w, w.T)
    expected = brute_minimax(w)
    np.testing.assert_array_equal(minimax_matrix(w), expected)
    tree = spanning_tree(w)
    assert all(i < j and w[i, j] == v for i, j, v in tree)
    assert [v for _, _, v in tree] == sorted(v for _, _, v in tree)
    assert len(tree) == n - len(brute_components(w, 1e300))  # a spanning forest
    assert np.array_equal(minimax_matrix(w), minimax_matrix(_tree_matrix(n, tree)))


def _tree_matrix(n: int, tree) -> np.ndarray:
    t = np.full((n, n), np.inf)
    for i, j, v in tree:
        t[i, j] = t[j, i] = v
    return t


@given(graphs(), st.sampled_from([None, "linear", "bent", ["linear", "bent"]]))
def test_minimax_of_a_graph_equals_brute_force_over_the_best_kind(g, kind):
    if kind is not None and not set([kind] if isinstance(kind, str) else kind) <= set(g.kinds):
        with pytest.raises(GraphError, match="has no path kind"):
            minimax(g, kind=kind)
        return
    kinds = None if kind is None else ([kind] if isinstance(kind, str) else kind)
    w = best_of_edges(g, kinds=kinds)
    m = minimax(g, kind=kind)
    np.testing.assert_array_equal(m.values, brute_minimax(w))
    np.testing.assert_array_equal(pair_matrix(g, kind=kind)[1], w)
    for a, b, value, k in m.tree:
        assert value == w[g.names.index(a), g.names.index(b)]
        assert any(
            e["kind"] == k and e["error_barrier"] == value and {e["a"], e["b"]} == {a, b}
            for e in g.edges()
        )
    for i, a in enumerate(g.names):
        for j, b in enumerate(g.names):
            if i != j and np.isfinite(m.values[i, j]):
                chain = m.chain(a, b)
                steps = [
                    w[g.names.index(x), g.names.index(y)]
                    for x, y in zip(chain, chain[1:], strict=False)
                ]
                assert chain[0] == a and chain[-1] == b and max(steps) == m.between(a, b)


@given(graphs(), levels)
def test_components_below_a_threshold_equal_brute_force(g, threshold):
    w = best_of_edges(g)
    got = components(g, threshold)
    expected = brute_components(w, threshold)
    assert {frozenset(g.names.index(x) for x in c) for c in got} == expected
    assert sorted(x for c in got for x in c) == sorted(g.names)
    assert [len(c) for c in got] == sorted((len(c) for c in got), reverse=True)
    m = minimax(g).values  # the same answer from the minimax barriers
    for c in got:
        idx = [g.names.index(x) for x in c]
        assert (m[np.ix_(idx, idx)] <= threshold).all()


# --------------------------------------------------------------------------- disconnectivity


@given(graphs())
def test_disconnectivity_tree_is_the_single_linkage_of_the_minimax(g):
    tree = disconnectivity(g)
    m = minimax(g, attribute="error_peak").values
    n = len(g)
    assert tree.roots == len(brute_components(m, 1e300))
    assert [x.level for x in tree.merges] == sorted(x.level for x in tree.merges)
    errors = np.array([g.node(x)["train_error"] for x in g.names])
    np.testing.assert_array_equal(tree.leaves, errors)
    if n < 2:
        return
    top = float(np.max(m[np.isfinite(m)])) + 1.0
    z = tree.linkage(top=top)
    assert hierarchy.is_valid_linkage(z) and hierarchy.is_monotonic(z)
    expected = np.where(np.isfinite(m), m, top)
    np.testing.assert_array_equal(hierarchy.cophenet(z), squareform(expected, checks=False))
    if tree.roots == 1:  # a complete tree: the same as scipy's single linkage on the minimax
        np.testing.assert_array_equal(tree.linkage(), z)
        scipy_z = hierarchy.linkage(squareform(m, checks=False), method="single")
        np.testing.assert_array_equal(hierarchy.cophenet(scipy_z), hierarchy.cophenet(z))
    else:
        with pytest.raises(GraphError, match=f"forest of {tree.roots} trees"):
            tree.linkage()


def test_disconnectivity_exact_case_and_level_checks():
    g = MinimaGraph()
    for name, err in [("a", 0.0), ("b", 0.02), ("c", 0.01), ("d", 0.0)]:
        g.add_minimum(name, train_error=err)
    g.add_path("a", "b", "bent", error_peak=0.05, error_barrier=0.01)
    g.add_path("b", "c", "bent", error_peak=0.3, error_barrier=0.28)
    tree = disconnectivity(g)
    assert tree.roots == 2 and repr(tree) == (
        "Disconnectivity(4 minima, 2 joins of error_peak, 2 trees)"
    )
    assert tree.linkage(top=1.0).tolist() == [
        [0.0, 1.0, 0.05, 2.0],
        [2.0, 4.0, 0.3, 3.0],
        [3.0, 5.0, 1.0, 4.0],
    ]
    with pytest.raises(GraphError, match=r"give top= \(a finite level >= 0.3\)"):
        tree.linkage(top=0.2)
    assert json.loads(json.dumps(tree.to_dict()))["merges"][0] == [0.05, 0, 1, 2]
    heights = disconnectivity(g, attribute="error_barrier", leaf=None)
    assert heights.leaves.tolist() == [0.0] * 4
    with pytest.raises(GraphError, match="lies below minimum 'b''s train_error 0.02"):
        disconnectivity(g, attribute="error_barrier", kind="bent")
    g.add_minimum("e")
    with pytest.raises(GraphError, match=r"minima \['e'\] have no train_error"):
        disconnectivity(g)
    with pytest.raises(GraphError, match="leaf must be"):
        disconnectivity(g, leaf="seed")


# --------------------------------------------------------------------------- embedding


points = st.lists(st.tuples(st.floats(-10, 10), st.floats(-10, 10)), min_size=1, max_size=9).map(
    np.array
)


@given(points)
def test_mds_reproduces_exact_euclidean_distances_up_to_rigid_motion(xy):
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1))
    e = classical_mds(d)
    fitted = ((e.coordinates[:, None] - e.coordinates[None]) ** 2).sum(-1)
    scale = max(1.0, float((d**2).max()))
    np.testing.assert_allclose(fitted, d**2, atol=1e-9 * scale)
    np.testing.assert_allclose(e.coordinates.mean(0), 0.0, atol=1e-9 * math.sqrt(scale))
    assert e.stress <= 1e-6 and e.explained >= 1 - 1e-9
    assert e.eigenvalues[2:].min(initial=0.0) >= -1e-9 * scale * len(xy)


def test_mds_reports_what_two_dimensions_lose():
    cube = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    d = np.sqrt(((cube[:, None] - cube[None]) ** 2).sum(-1))
    e = classical_mds(d, names=[f"v{k}" for k in range(8)])
    assert e.explained == pytest.approx(2 / 3) and e.stress > 0.1
    assert classical_mds(d, dimensions=3).stress == pytest.approx(0.0, abs=1e-7)
    assert repr(e).startswith("Embedding(8 points in 2 dimensions, explained 0.667")
    bent = np.array([[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 3], [1, 1, 3, 0]], dtype=float)
    assert classical_mds(bent).eigenvalues.min() < 0  # no Euclidean picture: said so


def test_embedding_of_a_graph_needs_every_distance():
    g = MinimaGraph()
    for name in "abc":
        g.add_minimum(name)
    g.add_path("a", "b", "linear", geodesic_distance=3.0)
    g.add_path("b", "c", "linear", geodesic_distance=4.0)
    with pytest.raises(GraphError, match="1 pairs have no geodesic_distance .*'a'-'c'"):
        embedding(g)
    g.add_path("a", "c", "geodesic", geodesic_distance=5.0)
    e = embedding(g)
    assert e.names == ("a", "b", "c") and e.stress == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- merging copies


def test_symmetric_copies_become_one_node():
    g = MinimaGraph()
    for name, err in [("a", 0.0), ("a-perm", 0.0), ("a-perm2", 0.0), ("b", 0.1), ("c", 0.2)]:
        g.add_minimum(name, train_error=err, optimizer="sgd")
    g.add_path("a", "a-perm", "geodesic", geodesic_distance=1e-8)
    g.add_path("a-perm", "a-perm2", "geodesic", geodesic_distance=0.0)  # a chain of copies
    g.add_path("a", "b", "linear", error_barrier=0.5, geodesic_distance=2.0)
    g.add_path("a-perm", "b", "linear", error_barrier=0.3, geodesic_distance=2.0)
    g.add_path("a-perm2", "c", "bent", error_barrier=0.1, t=0.25, geodesic_distance=3.0)
    g.add_path("b", "c", "linear", error_barrier=0.7, geodesic_distance=1.0)
    before = g.to_dict()
    merged = merge_copies(g)
    assert g.to_dict() == before  # the input is left as it was
    assert merged.names == ["a", "b", "c"]
    assert merged.node("a")["merged"] == ["a-perm", "a-perm2"]
    edges = {(e["a"], e["b"], e["kind"]): e for e in merged.edges()}
    assert set(edges) == {("a", "b", "linear"), ("a", "c", "bent"), ("b", "c", "linear")}
    assert edges["a", "b", "linear"]["error_barrier"] == 0.3  # the lower of the two kept
    assert edges["a", "b", "linear"]["ends"] == ["a-perm", "b"]
    assert edges["a", "c", "bent"]["ends"] == ["a-perm2", "c"]
    assert merge_copies(merged) == merged
    # merged again: what was merged before stays listed
    merged.add_minimum("a-copy")
    merged.add_path("a-copy", "a", "geodesic", geodesic_distance=0.0)
    assert merge_copies(merged).node("a")["merged"] == ["a-perm", "a-perm2", "a-copy"]
    assert merge_copies(g, tolerance=0.0).names == ["a", "a-perm", "b", "c"]  # 1e-8 > 0
    assert merge_copies(g, distance="function_distance").names == g.names


# --------------------------------------------------------------------------- files


def rich_graph() -> MinimaGraph:
    g = MinimaGraph()
    g.add_minimum(
        "sgd-0",
        optimizer="sgd",
        seed=0,
        hyperparameters={"lr": 0.02, "batch": 128, "nesterov": True, "widths": (256, 256)},
        train_error=0.0,
        test_error=0.35,
        flatness={"local_energy@0.2": 0.06, "curve": [0.0, 0.01, 0.06]},
        weights=Path("store/weights/sgd-0.safetensors"),
    )
    g.add_minimum("rsgd-0", optimizer="rsgd", seed=np.int64(1), train_error=np.float32(0.0))
    g.add_minimum("adv-0")
    g.add_path(
        "sgd-0",
        "rsgd-0",
        "linear",
        error_barrier=0.18,
        loss_barrier=0.9,
        error_peak=0.18,
        loss_peak=1.1,
        t=0.5,
        found={"method": "adaptive", "resolution": 1 / 256, "evaluations": 41},
        length=12.5,
        geodesic_distance=3.25,
        function_distance=0.2,
    )
    g.add_path("sgd-0", "rsgd-0", "bent", error_barrier=0.0, t=0.0)
    g.add_path("adv-0", "sgd-0", "geodesic", geodesic_distance=4.0)
    merged = merge_copies(g, tolerance=0.0)
    merged._graph.nodes["adv-0"]["merged"] = ["adv-0-copy"]
    return merged


@pytest.mark.parametrize(
    ("write", "read"), [(write_json, read_json), (write_graphml, read_graphml)]
)
def test_files_read_back_the_same_graph(tmp_path, write, read):
    g = rich_graph()
    file = write(g, tmp_path / "sub" / "map.file")
    back = read(file)
    assert back == g and back.to_dict() == g.to_dict()
    assert back.node("sgd-0")["hyperparameters"]["widths"] == [256, 256]
    assert back.node("rsgd-0")["seed"] == 1 and back.node("adv-0")["merged"] == ["adv-0-copy"]
    assert [f.name for f in tmp_path.joinpath("sub").iterdir()] == ["map.file"]  # no temp left


def test_graphml_has_flat_attributes_for_other_tools(tmp_path):
    text = write_graphml(rich_graph(), tmp_path / "map.graphml").read_text()
    assert 'attr.name="flatness.local_energy@0.2" attr.type="double"' in text
    assert 'attr.name="found.method" attr.type="string"' in text
    assert read_graphml(tmp_path / "map.graphml") == rich_graph()
    # a viewer's own attributes (a position, here) are left out on reading
    edited = text.replace(
        '<graph edgedefault="undirected">',
        '<key id="xpos" for="node" attr.name="x" attr.type="double" />\n'
        '<graph edgedefault="undirected">',
    ).replace('<node id="sgd-0">', '<node id="sgd-0"><data key="xpos">1.5</data>')
    assert edited.count("xpos") == 2
    (tmp_path / "edited.graphml").write_text(edited)
    assert read_graphml(tmp_path / "edited.graphml") == rich_graph()


@given(graphs(max_nodes=5))
def test_random_graphs_round_trip_through_both_formats(g):
    """In memory (the files' writers add only the atomic write, tested above)."""
    assert parse_graphml(graphml_text(g)) == g
    assert MinimaGraph.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert g.copy() == g


def test_damaged_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_json(tmp_path / "missing.json")
    good = write_json(rich_graph(), tmp_path / "g.json")
    (tmp_path / "cut.json").write_text(good.read_text()[:200])
    with pytest.raises(DataError, match="not valid JSON"):
        read_json(tmp_path / "cut.json")
    data = json.loads(good.read_text())
    data["graph"]["format_version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="format version 99"):
        read_json(tmp_path / "new.json")
    data["graph"] = {}
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="holds no MinimaGraph"):
        read_json(tmp_path / "other.json")
    graphml = write_graphml(rich_graph(), tmp_path / "g.graphml")
    (tmp_path / "cut.graphml").write_text(graphml.read_text()[:300])
    with pytest.raises(DataError, match="not valid GraphML"):
        read_graphml(tmp_path / "cut.graphml")
    (tmp_path / "nan.json").write_text(good.read_text().replace("3.25", "NaN"))
    with pytest.raises(DataError, match="geodesic_distance is nan"):
        read_json(tmp_path / "nan.json")


# --------------------------------------------------------------------------- plots


def test_plots_draw_the_map_and_the_tree():
    g = rich_graph()
    g.add_path("adv-0", "rsgd-0", "linear", error_barrier=0.6, geodesic_distance=4.5)
    fig = plot_map(g)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # the map and its colorbar
    assert fig.axes[1].get_ylabel() == "error_barrier"
    assert len(fig.axes[0].collections[0].get_segments()) == 2  # adv-0-sgd-0: no barrier
    own = Figure()
    left, right = own.subplots(1, 2)
    assert plot_map(g, layout="spring", ax=left, labels=False) is own
    tree = disconnectivity(g, attribute="error_barrier", leaf=None)
    assert plot_disconnectivity(tree, ax=right) is own
    fig = plot_map(g, layout={"sgd-0": (0, 0), "rsgd-0": (1, 0), "adv-0": (0, 1)}, kind="bent")
    assert len(fig.axes[0].collections[0].get_segments()) == 1
    fig = plot_map(g, layout=embedding(g))
    fig.savefig(tempfile.TemporaryFile(), format="png")


@given(graphs(max_nodes=7))
def test_the_tree_drawing_never_crosses_its_lines(g):
    """Every cluster's leaves sit side by side (no crossing), each leaf's stem rises from its
    level to its first join, each join is a bar at its level over its two children."""
    tree = disconnectivity(g)
    order, x, segments = _tree_drawing(tree)
    n = len(g)
    assert sorted(order) == list(range(n))
    assert len(segments) == 3 * len(tree.merges) + tree.roots
    members = {i: [i] for i in range(n)}
    for k, m in enumerate(tree.merges):
        members[n + k] = members[m.a] + members[m.b]
        spots = sorted(order.index(i) for i in members[n + k])
        assert spots == list(range(spots[0], spots[0] + len(spots)))  # contiguous
        left, right, bar = segments[3 * k : 3 * k + 3]
        assert bar == [(x[m.a], m.level), (x[m.b], m.level)]
        for stem, child in ((left, m.a), (right, m.b)):
            bottom = tree.leaves[child] if child < n else tree.merges[child - n].level
            assert stem == [(x[child], bottom), (x[child], m.level)]


def test_the_tree_plot_draws_forests():
    g = MinimaGraph()
    for name, err in [("a", 0.0), ("b", 0.02), ("c", 0.01), ("d", 0.0), ("e", 0.05)]:
        g.add_minimum(name, train_error=err)
    g.add_path("a", "b", "bent", error_peak=0.05)
    g.add_path("b", "c", "bent", error_peak=0.3)
    g.add_path("d", "e", "linear", error_peak=0.1)
    tree = disconnectivity(g)
    ax = plot_disconnectivity(tree).axes[0]
    (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 3 * 3 + 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d", "e"]
    assert ax.get_ylabel() == "train_error / error_peak"
    assert "2 trees" in ax.get_title()


def test_plot_refusals():
    g = MinimaGraph()
    g.add_minimum("a")
    g.add_minimum("b")
    with pytest.raises(GraphError, match="no measured pair has error_barrier"):
        plot_map(g, layout="spring")
    g.add_path("a", "b", "linear", error_barrier=0.1)
    with pytest.raises(GraphError, match="1 pairs have no geodesic_distance"):
        plot_map(g)
    with pytest.raises(GraphError, match="layout must be"):
        plot_map(g, layout="circle")
    with pytest.raises(GraphError, match=r"no position for \['b'\]"):
        plot_map(g, layout={"a": (0, 0)})
    with pytest.raises(GraphError, match="figsize only sizes a new figure"):
        plot_map(g, layout="spring", ax=Figure().add_subplot(), figsize=(3, 3))
    with pytest.raises(GraphError, match="takes a Disconnectivity"):
        plot_disconnectivity(g)


# --------------------------------------------------------------------------- building


def test_add_barrier_reads_paths_barriers():
    from paths.barrier import Barrier

    def barrier(height, peak, t):
        return Barrier(
            height=height,
            t=t,
            peak=peak,
            above_mean=height,
            ends=(0.0, 0.0),
            resolution=1 / 256,
            upper_bound=height,
            evaluations=41,
            metric="error",
            kind="geodesic",
            batchnorm="none",
            profile_t=np.array([0.0, 1.0]),
            profile_values=np.array([0.0, 0.0]),
        )

    g = MinimaGraph()
    g.add_minimum("a")
    g.add_minimum("b")
    g.add_barrier("a", "b", barrier(0.2, 0.21, 0.5), barrier(1.5, 1.6, 0.4), length=3.0)
    (edge,) = g.edges()
    assert edge["kind"] == "geodesic" and edge["error_barrier"] == 0.2 and edge["t"] == 0.5
    assert edge["loss_peak"] == 1.6 and edge["length"] == 3.0
    assert edge["found"] == {
        "method": "adaptive",
        "resolution": 1 / 256,
        "evaluations": 41,
        "upper_bound": 0.2,
    }
    other = types.SimpleNamespace(**{**vars(barrier(1.0, 1.0, 0.5)), "kind": "linear"})
    with pytest.raises(GraphError, match="loss barrier was measured on a 'linear' path"):
        g.add_barrier("a", "b", barrier(0.2, 0.2, 0.5), other)
    with pytest.raises(GraphError, match="add_barrier takes paths.Barrier results"):
        g.add_barrier("a", "b", 0.2)


def test_the_graph_view_and_repr():
    g = rich_graph()
    assert repr(g) == "MinimaGraph(3 minima, 3 paths of kinds 'linear', 'bent', 'geodesic')"
    view = g.graph
    assert view.number_of_edges("sgd-0", "rsgd-0") == 2
    assert view.edges["sgd-0", "rsgd-0", "bent"]["error_barrier"] == 0.0
    with pytest.raises(Exception, match="[Ff]rozen"):
        view.add_node("x")
    node = g.node("sgd-0")
    node["flatness"]["x"] = 1.0  # a copy: the graph is not changed
    assert "x" not in g.node("sgd-0")["flatness"]
    assert repr(MinimaGraph()) == "MinimaGraph(0 minima, 0 paths)"
    assert g != MinimaGraph() and "sgd-0" in g and len(g) == 3


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda g: g.add_minimum("a"), "already in the graph"),
        (lambda g: g.add_minimum(""), "non-empty string"),
        (lambda g: g.add_minimum("x", train_error=math.nan), "train_error is nan"),
        (lambda g: g.add_minimum("x", seed=1.5), "seed must be an integer"),
        (lambda g: g.add_minimum("x", hyperparameters={"lr": math.nan}), "JSON data"),
        (lambda g: g.add_minimum("x", flatness={"e": object()}), "JSON data"),
        (lambda g: g.add_minimum("x", flatness=[1]), "must be a dict"),
        (lambda g: g.add_minimum("x", weights=3), "weights must be a path"),
        (lambda g: g.add_path("a", "z", "linear", error_barrier=0.1), "no minimum named 'z'"),
        (lambda g: g.add_path("a", "a", "linear", error_barrier=0.1), "to itself"),
        (lambda g: g.add_path("a", "b", "linear"), "holds no measurement"),
        (lambda g: g.add_path("a", "b", "linear", error_barrier=math.nan), "is nan"),
        (lambda g: g.add_path("a", "b", "linear", error_peak=math.inf), "must be finite"),
        (lambda g: g.add_path("a", "b", "linear", error_barrier="0.1"), "must be a number"),
        (lambda g: g.add_path("a", "b", "linear", t=1.5), r"t must lie in \[0, 1\]"),
        (lambda g: g.add_path("a", "b", "linear", length=-1.0), "length must be >= 0"),
        (lambda g: g.add_path("a", "b", "", error_barrier=0.1), "kind must be a non-empty"),
        (lambda g: g.add_path("b", "a", "bent", error_barrier=0.1), "already has a 'bent' path"),
        (lambda g: g.node("z"), "no minimum named 'z'"),
        (lambda g: minimax(g, attribute="colour"), "unknown edge attribute 'colour'"),
        (lambda g: minimax(g, kind="curve"), "no path kind 'curve'; it has 'bent'"),
        (lambda g: minimax(g, kind=[]), "no path kind"),
        (lambda g: components(g, math.nan), "threshold is NaN"),
        (lambda g: components(g, "low"), "threshold must be a number"),
        (lambda g: minimax(g).between("a", "z"), "no minimum named 'z'"),
        (lambda g: minimax(g).chain("a", "c"), "no chain of measured paths joins 'a' and 'c'"),
        (lambda g: merge_copies(g, tolerance=-1.0), "tolerance must be"),
        (lambda g: merge_copies(g, distance="error_barrier"), "distance must be one of"),
        (lambda g: merge_copies(g.graph), "takes a MinimaGraph"),
        (lambda g: minimax(g.graph), "expected a MinimaGraph"),
        (lambda g: write_json(g.graph, "x.json"), "expected a MinimaGraph"),
        (lambda g: MinimaGraph.from_dict({"graph": {}}), "holds no MinimaGraph"),
        (lambda g: MinimaGraph.from_dict([]), "must be a dict"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, match):
    g = MinimaGraph()
    for name in "abc":
        g.add_minimum(name)
    g.add_path("a", "b", "bent", error_barrier=0.1)
    with pytest.raises(GraphError, match=match):
        call(g)
    assert issubclass(GraphError, FuncspaceError)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([[0, 1], [2, 0]], r"not symmetric: \[0, 1\] = 1.0 but \[1, 0\] = 2.0"),
        ([[0, math.nan], [math.nan, 0]], r"weights\[0, 1\] is NaN"),
        ([[0, -math.inf], [-math.inf, 0]], "is -inf"),
        ([1, 2, 3], "square"),
        ([["a", "b"], ["c", "d"]], "array of numbers"),
    ],
)
def test_bad_matrices_are_refused(weights, match):
    with pytest.raises(GraphError, match=match):
        minimax_matrix(weights)
    with pytest.raises(GraphError):
        spanning_tree(weights)


def test_bad_distances_for_mds_are_refused():
    with pytest.raises(GraphError, match=r"distances\[0, 1\] is -1.0"):
        classical_mds([[0, -1], [-1, 0]])
    with pytest.raises(GraphError, match=r"distances\[0, 1\] is inf"):
        classical_mds([[0, math.inf], [math.inf, 0]])
    with pytest.raises(GraphError, match="dimensions must be a positive integer"):
        classical_mds([[0, 1], [1, 0]], dimensions=0)
    with pytest.raises(GraphError, match="3 names for 2 points"):
        classical_mds([[0, 1], [1, 0]], names=["a", "b", "c"])
