"""Tests for funcspace.study.report: the HTML report of a store parses, embeds every figure as a
data: URI, loads nothing from the network, escapes text, and copes with an unfinished store."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest
import torch

from funcspace.study.config import StudyConfig, unit_key
from funcspace.study.report import REPORT, summary, write_report
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
                        "hyperparameters": {"lr": 0.1},
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


def test_report_lists_the_selection_and_draws_flatness_curves(tmp_path):
    from funcspace.study.store import Metric

    make_store(tmp_path)
    with StudyStore.open(tmp_path) as store:
        key = unit_key("flatness", x=0)
        store.begin(key, "flatness", {})
        store.finish(
            key,
            metrics=[
                Metric(name, None, "local_energy", {"sigmas": [0, 0.1], "energy": [0, 0.01 * i]})
                for i, name in enumerate(NAMES)
            ]
            + [Metric("sgd0", None, "hessian_trace", 42.0)],
        )
        key = unit_key("select", x=0)
        store.begin(key, "select", {})
        selection = {
            "measured": [[0, 2]],
            "values": [0.03],
            "skipped": [
                {"pair": [0, 1], "ruled_out": True, "reason": "lower bound 0.01 >= tree 0.01"},
                {"pair": [1, 2], "ruled_out": False, "reason": "budget of 1 spent"},
            ],
        }
        store.finish(key, result={"names": list(NAMES), "selection": selection})
    doc = parse(write_report(tmp_path))
    text = " ".join(doc.text)
    assert "1 of 3 pairs measured, 1 ruled out by the minimum-spanning-tree bound, 1 left" in text
    assert "lower bound 0.01 >= tree 0.01" in text and "budget of 1 spent" in text
    assert "curve of 2 points" in text and "42" in text  # the node table's flatness columns
    images = [attrs["alt"] for tag, attrs in doc.tags if tag == "img"]
    assert len(images) == 4 and "flatness curves of every minimum: local_energy" in images
    with StudyStore.open(tmp_path, readonly=True) as store:
        short = summary(store)
    assert "1 of 3 pairs measured" in short and "budget of 1 spent" in short
