"""The map of minima read from a study store (funcspace.study.minima)."""

from __future__ import annotations

import logging

import pytest

from funcspace.graph import GraphError
from funcspace.study.config import unit_key
from funcspace.study.minima import graph_from_store
from funcspace.study.store import Edge, Metric, Node, StudyStore

from .test_study_report import CONFIG, NAMES, make_store


def test_graph_from_store(tmp_path, caplog):
    make_store(tmp_path)
    with caplog.at_level(logging.WARNING), StudyStore.open(tmp_path, readonly=True) as store:
        graph = graph_from_store(store)
    assert graph.names == list(NAMES)
    assert sorted(graph.kinds) == ["geodesic", "linear"]
    node = graph.node("sgd1")
    assert node["optimizer"] == "sgd" and node["seed"] == 1
    assert node["hyperparameters"] == {"lr": 0.1}
    assert node["weights"] == "sgd1"
    assert graph.node("adv0")["test_error"] is None  # NaN: left out, with a warning
    assert "test_error is nan" in caplog.text
    (edge,) = [e for e in graph.edges("linear") if {e["a"], e["b"]} == {"sgd0", "adv0"}]
    assert edge["error_barrier"] == 0.375 and edge["found"]["evaluations"] == 9


def test_graph_from_store_skips_edges_without_measurements(tmp_path, caplog):
    with StudyStore.create(tmp_path, CONFIG) as store:
        key = unit_key("pair", x=0)
        store.begin(key, "pair", {})
        store.finish(
            key,
            nodes=[Node("a"), Node("b"), Node("c")],
            edges=[
                Edge(
                    "a", "b", "linear", {"error_barrier": 0.5, "barrier": 0.1}
                ),  # unknown: left out
                Edge("a", "c", "linear", {"t": 2.0, "other": 1}),  # nothing usable: skipped
            ],
        )
        with caplog.at_level(logging.WARNING):
            graph = graph_from_store(store)
    assert [(e["a"], e["b"], e["error_barrier"]) for e in graph.edges()] == [("a", "b", 0.5)]
    assert "outside [0, 1]" in caplog.text and "left out of the map" in caplog.text


def test_graph_from_store_reads_metrics_onto_nodes_and_every_edge_of_a_pair(tmp_path):
    make_store(tmp_path)
    with StudyStore.open(tmp_path) as store:
        key = unit_key("metrics", x=1)
        store.begin(key, "distance", {})
        store.finish(
            key,
            metrics=[
                Metric("sgd1", None, "hessian_trace", 12.5),
                Metric("sgd1", None, "local_energy", {"sigmas": [0, 0.1], "energy": [0, 0.2]}),
                # given in either order: stored in name order
                Metric("sgd1", "sgd0", "function_distance", 0.25),
                Metric("sgd0", "sgd1", "other_number", 3.0),  # not an edge attribute: left out
            ],
        )
        assert store.metrics("function_distance") == (
            Metric("sgd0", "sgd1", "function_distance", 0.25),
        )
        graph = graph_from_store(store)
    assert graph.node("sgd1")["flatness"] == {
        "hessian_trace": 12.5,
        "local_energy": {"sigmas": [0, 0.1], "energy": [0, 0.2]},
    }
    assert graph.node("sgd0")["flatness"] is None or graph.node("sgd0")["flatness"] == {}
    between = [e for e in graph.edges() if {e["a"], e["b"]} == {"sgd0", "sgd1"}]
    assert sorted(e["kind"] for e in between) == ["geodesic", "linear"]
    assert all(e["function_distance"] == 0.25 for e in between)
    assert all("other_number" not in e for e in between)
    others = [e for e in graph.edges() if {e["a"], e["b"]} != {"sgd0", "sgd1"}]
    assert all(e["function_distance"] is None for e in others)


def test_graph_from_store_selects_minima_and_kinds(tmp_path):
    make_store(tmp_path)
    with StudyStore.open(tmp_path, readonly=True) as store:
        graph = graph_from_store(store, names=["adv0", "sgd0"], kinds={"linear"})
        assert graph.names == ["adv0", "sgd0"]
        assert [(e["kind"], {e["a"], e["b"]}) for e in graph.edges()] == [
            ("linear", {"sgd0", "adv0"})
        ]
        with pytest.raises(GraphError, match="no minima named \\['nobody'\\]"):
            graph_from_store(store, names=["sgd0", "nobody"])


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (Metric("a", "nobody", "function_distance", 0.1), "no node 'nobody'"),
        (Metric("a", "a", "function_distance", 0.1), "another node's name"),
        (Metric("a", None, "", 0.1), "non-empty strings"),
        (Metric("a", None, "hessian_trace", float("inf")), None),  # JSON holds it as Infinity
    ],
)
def test_store_checks_metrics(tmp_path, metric, message):
    from funcspace.study.store import StoreError

    with StudyStore.create(tmp_path, CONFIG) as store:
        key = unit_key("train", x=0)
        store.begin(key, "train", {})
        store.finish(key, nodes=[Node("a"), Node("b")])
        key = unit_key("flatness", x=0)
        store.begin(key, "flatness", {})
        if message is None:
            store.finish(key, metrics=[metric])
            assert store.metrics() == (metric,)
            return
        with pytest.raises(StoreError, match=message):
            store.finish(key, metrics=[metric])
        assert store.metrics() == () and not store.done(key)


def test_store_refuses_a_repeated_metric(tmp_path):
    from funcspace.study.store import StoreError

    with StudyStore.create(tmp_path, CONFIG) as store:
        key = unit_key("train", x=0)
        store.begin(key, "train", {})
        store.finish(key, nodes=[Node("a"), Node("b")], metrics=[Metric("a", "b", "d", 1.0)])
        key = unit_key("distance", x=0)
        store.begin(key, "distance", {})
        with pytest.raises(StoreError, match="metric d of a-b exists already"):
            store.finish(key, metrics=[Metric("b", "a", "d", 2.0)])
