"""Tests for funcspace.study.report: the HTML report of a store parses, embeds every figure as a
data: URI, loads nothing from the network, escapes text, and copes with an unfinished store."""

from __future__ import annotations

import logging
import math
from html.parser import HTMLParser

import pytest
import torch

from funcspace.study.config import StudyConfig, unit_key
from funcspace.study.report import REPORT, graph_from_store, summary, write_report
from funcspace.study.store import Edge, Node, StoreError, StudyStore

CONFIG = StudyConfig(paths=("linear", "geodesic"), flatness=())
NAMES = ("sgd0", "sgd1", "adv0")
BARRIERS = {("sgd0", "sgd1"): 0.125, ("sgd0", "adv0"): 0.375, ("sgd1", "adv0"): 0.6875}


class Document(HTMLParser):
    """Every tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(file) -> Document:
    doc = Document()
    doc.feed(file.read_text(encoding="utf-8"))
    doc.close()
    return doc


def make_store(folder, *, edges: bool = True) -> None:
    with StudyStore.create(folder, CONFIG) as store:
        key = unit_key("train", all=True)
        store.begin(key, "train", {})
        store.finish(
            key,
            nodes=[
                Node(
                    name,
                    {
                        "optimizer": name[:3],
                        "seed": i,
                        "options": {"lr": 0.1},
                        "train_error": 0.01 * i,
                        "test_error": math.nan if i == 2 else 0.2 + 0.01 * i,
                        "comment": "<script>alert('x')</script>" if i == 0 else "ok",
                    },
                    name,
                )
                for i, name in enumerate(NAMES)
            ],
            weights={name: {"w": torch.zeros(2, 2)} for name in NAMES},
        )
        if not edges:
            return
        for (a, b), barrier in BARRIERS.items():
            for kind in ("linear", "geodesic"):
                key = unit_key("pair", a=a, b=b, path=kind)
                store.begin(key, "pair", {"a": a, "b": b, "path": kind})
                height = barrier if kind == "linear" else barrier / 2
                attributes = {
                    "error_barrier": height,
                    "error_peak": height + 0.05,
                    "loss_barrier": 2 * height,
                    "t": 0.5,
                    "geodesic_distance": 1.0 + barrier,
                    "found": {"method": "adaptive", "evaluations": 9},
                }
                store.finish(key, edges=[Edge(a, b, kind, attributes)])


def test_report_embeds_figures_and_tables(tmp_path):
    make_store(tmp_path)
    file = write_report(tmp_path)
    assert file == tmp_path / REPORT and file.is_file()
    doc = parse(file)
    images = [attrs for tag, attrs in doc.tags if tag == "img"]
    assert len(images) == 3  # the map, the tree, the barrier matrices
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
        assert attrs["alt"]
    links = [v for _, attrs in doc.tags for k, v in attrs.items() if k in ("src", "href")]
    assert not [v for v in links if v and ("http://" in v or "https://" in v)]
    assert not [tag for tag, _ in doc.tags if tag in ("script", "link", "iframe")]
    text = "".join(doc.text)
    for name in NAMES:
        assert name in text
    for barrier in BARRIERS.values():
        assert f"{barrier:.4g}" in text and f"{barrier / 2:.4g}" in text
    assert CONFIG.key() in text
    # the store is still a valid store, opened read-only by the report
    with StudyStore.open(tmp_path) as store:
        assert len(store.edges()) == 6


def test_report_escapes_text(tmp_path):
    make_store(tmp_path)
    raw = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<script>" not in raw
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in raw
    # the text reads back as it was stored
    assert "<script>alert('x')</script>" in "".join(parse(tmp_path / REPORT).text)


def test_report_of_a_store_without_paths(tmp_path):
    make_store(tmp_path, edges=False)
    doc = parse(write_report(tmp_path))
    assert not [tag for tag, _ in doc.tags if tag == "img"]
    text = " ".join(doc.text)
    assert "no measured path" in text
    assert "sgd0" in text


def test_report_of_an_empty_store(tmp_path):
    StudyStore.create(tmp_path, CONFIG).close()
    doc = parse(write_report(tmp_path))
    text = " ".join(doc.text)
    assert "only 0 minimizers" in text and "no measured path" in text
    assert not [tag for tag, _ in doc.tags if tag == "img"]


def test_report_refuses_a_missing_store(tmp_path):
    with pytest.raises(StoreError, match="no study store"):
        write_report(tmp_path / "nothing")


def test_graph_from_store(tmp_path, caplog):
    make_store(tmp_path)
    with caplog.at_level(logging.WARNING), StudyStore.open(tmp_path, readonly=True) as store:
        graph = graph_from_store(store)
    assert graph.names == list(NAMES)
    assert sorted(graph.kinds) == ["geodesic", "linear"]
    node = graph.node("sgd1")
    assert node["optimizer"] == "sgd" and node["seed"] == 1
    assert node["hyperparameters"] == {"lr": 0.1}  # stored as "options"
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
                Edge("a", "b", "linear", {"barrier": 0.5}),  # an older name: read
                Edge("a", "c", "linear", {"t": 2.0, "other": 1}),  # nothing usable: skipped
            ],
        )
        with caplog.at_level(logging.WARNING):
            graph = graph_from_store(store)
    assert [(e["a"], e["b"], e["error_barrier"]) for e in graph.edges()] == [("a", "b", 0.5)]
    assert "outside [0, 1]" in caplog.text and "left out of the map" in caplog.text


def test_summary(tmp_path):
    make_store(tmp_path)
    with StudyStore.open(tmp_path, readonly=True) as store:
        short = summary(store, tables=False)
        text = summary(store)
    assert CONFIG.key() in short
    assert "minimizers 3" in short and "paths      6 (3 linear, 3 geodesic)" in short
    assert "units      7 (7 done)" in short
    assert text.startswith(short)
    assert "0.6875" in text and "adv0" in text
