"""Tests for funcspace.study.store: round trips, resume semantics, SIGKILL at random moments,
and refusal of damaged, mismatched or busy stores."""

from __future__ import annotations

import inspect
import math
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from funcspace.errors import FuncspaceError
from funcspace.study.config import BudgetConfig, DataConfig, StudyConfig, unit_key
from funcspace.study.store import SCHEMA_VERSION, Edge, Node, StoreError, StudyStore

CONFIG = StudyConfig(paths=("linear",), flatness=())


def train_unit(store: StudyStore, i: int, *, edge_to: int | None = None) -> str:
    """Begin and finish unit ``i``: node ``n<i>`` with weights, an edge to ``n<edge_to>``."""
    key = unit_key("train", i=i)
    store.begin(key, "train", {"i": i})
    edges = [] if edge_to is None else [Edge(f"n{edge_to}", f"n{i}", "linear", {"barrier": 0.5})]
    store.finish(
        key,
        result={"i": i, "error": 0.0},
        nodes=[Node(f"n{i}", {"i": i}, f"n{i}")],
        edges=edges,
        weights={f"n{i}": {"w": torch.full((3, 2), float(i)), "b": torch.arange(i + 1)}},
    )
    return key


def test_round_trip(tmp_path):
    weights = {
        "w": torch.randn(4, 3, dtype=torch.float64),
        "b": torch.arange(5),
        "t": torch.randn(6)[::2],  # a view: stored as its own contiguous copy
    }
    with StudyStore.create(tmp_path, CONFIG) as store:
        assert store.config == CONFIG
        key = unit_key("train", optimizer="sgd", seed=0)
        assert store.begin(key, "train", {"optimizer": "sgd", "seed": 0}) == 1
        store.finish(
            key,
            result={"epochs": 3, "test_error": math.nan},
            nodes=[Node("sgd0", {"seed": 0, "flatness": {"trace": 1.5}}, "sgd0"), {"name": "x"}],
            weights={"sgd0": weights},
        )
        pair = unit_key("pair", a="sgd0", b="x")
        store.begin(pair, "pair", {"a": "sgd0", "b": "x"})
        store.finish(pair, result=None, edges=[{"a": "x", "b": "sgd0", "kind": "geodesic"}])
    with StudyStore.open(tmp_path, CONFIG) as store:
        assert store.done(key) and store.done(pair) and not store.done("nothing")
        result = store.result(key)
        assert result["epochs"] == 3 and math.isnan(result["test_error"])
        assert store.result(pair) is None
        assert store.nodes() == (
            Node("sgd0", {"seed": 0, "flatness": {"trace": 1.5}}, "sgd0"),
            Node("x", {}, None),
        )
        assert store.edges() == (Edge("x", "sgd0", "geodesic", {}),)
        assert store.weight_names() == ("sgd0",)
        loaded = store.load_weights("sgd0")
        assert set(loaded) == set(weights)
        for name, tensor in weights.items():
            assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor)
        unit = store.unit(key)
        assert (unit.kind, unit.inputs, unit.state, unit.attempts) == (
            "train",
            {"optimizer": "sgd", "seed": 0},
            "done",
            1,
        )
        assert [u.key for u in store.units(kind="pair")] == [pair]
        assert store.pending() == ()
    assert (tmp_path / "study.sqlite").is_file()
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["sgd0.safetensors"]


def test_resume_semantics(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        done = train_unit(store, 0)
        begun = unit_key("train", i=1)
        store.begin(begun, "train", {"i": 1})
        planned = unit_key("train", i=2)
        store.add(planned, "train", {"i": 2})
        store.add(planned, "train", {"i": 2})  # idempotent
        # killed here: `begun` is running, never finished
    with StudyStore.open(tmp_path) as store:
        assert store.done(done) and not store.done(begun)
        assert [(u.key, u.state, u.attempts) for u in store.pending()] == [
            (begun, "pending", 1),
            (planned, "pending", 0),
        ]
        assert store.begin(begun, "train", {"i": 1}) == 2
        store.finish(begun, result={"i": 1}, nodes=[Node("n1")])
        with pytest.raises(StoreError, match="it is done already"):
            store.finish(begun, result={"i": 1})
        with pytest.raises(StoreError, match="is done already"):
            store.begin(done, "train", {"i": 0})
        with pytest.raises(StoreError, match=r"call store.begin\(key, ...\) first"):
            store.finish(planned, result={})
    with StudyStore.open(tmp_path) as store:
        assert [n.name for n in store.nodes()] == ["n0", "n1"]
        assert [u.attempts for u in store.units("done")] == [1, 2]
        assert [u.key for u in store.pending()] == [planned]


def test_fail_and_retry(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        key = unit_key("train", i=0)
        store.begin(key, "train", {"i": 0})
        store.fail(key, "RuntimeError: diverged")
        unit = store.unit(key)
        assert (unit.state, unit.error, unit.attempts) == ("failed", "RuntimeError: diverged", 1)
        assert store.pending() == () and store.units("failed") == (unit,)
        with pytest.raises(StoreError, match="has no result: it is failed"):
            store.result(key)
        with pytest.raises(StoreError, match="it is failed, not running"):
            store.fail(key, "again")
        assert store.begin(key, "train", {"i": 0}) == 2
        store.finish(key, result=1)
        assert store.unit(key).error is None and store.result(key) == 1


def test_finish_refusals_record_nothing(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        train_unit(store, 0)
        key = unit_key("train", i=1)
        store.begin(key, "train", {"i": 1})
        w = {"w": torch.ones(2)}
        cases = [
            ({"nodes": [Node("n0")]}, "node 'n0' exists already"),
            ({"nodes": [Node("a"), Node("a")]}, "node 'a' exists already or is repeated"),
            ({"nodes": [Node("a", {}, "nope")]}, "refers to weights 'nope'"),
            ({"edges": [Edge("n0", "zz", "linear")]}, "no node 'zz'"),
            ({"edges": [Edge("n0", "n0", "linear")]}, "joins a node to itself"),
            ({"weights": {"n0": w}}, "weights 'n0' exist already"),
            ({"weights": {"../evil": w}}, "it names a file"),
            ({"weights": {"a": {"w": [1.0]}}}, "'w' is not a dense tensor"),
            ({"result": object()}, "result holds data that JSON cannot store"),
            ({"nodes": [{"nam": "a"}]}, "not a Node"),
        ]
        for kwargs, message in cases:
            with pytest.raises(StoreError, match=message):
                store.finish(key, **kwargs)
        store.finish(
            key, nodes=[Node("n1", {}, "n1")], weights={"n1": w}, edges=[Edge("n1", "n0", "linear")]
        )
        other = unit_key("pair", i=2)
        store.begin(other, "pair", {"i": 2})
        with pytest.raises(StoreError, match=r"edge n0-n1 \(linear\) exists already"):
            store.finish(other, edges=[Edge("n0", "n1", "linear")])  # the reversed edge
        store.finish(other, edges=[Edge("n0", "n1", "geodesic")])  # another kind is new
        assert len(store.edges()) == 2
        with pytest.raises(StoreError, match="stored as a 'train' unit"):
            store.begin(unit_key("train", i=0), "train", {"i": 99})
    files = sorted(p.name for p in (tmp_path / "weights").iterdir())
    assert files == ["n0.safetensors", "n1.safetensors"]


def test_orphans_of_a_killed_finish_are_removed(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        train_unit(store, 0)
        key = unit_key("train", i=1)
        store.begin(key, "train", {"i": 1})
    # what a kill between writing the files and committing leaves
    (tmp_path / "weights" / "n1.safetensors").write_bytes(b"half")
    (tmp_path / "weights" / ".n1.safetensors.abc.tmp").write_bytes(b"partial")
    with StudyStore.open(tmp_path, CONFIG) as store:
        assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["n0.safetensors"]
        assert [u.key for u in store.pending()] == [key]
        train_unit(store, 1, edge_to=0)
        assert torch.equal(store.load_weights("n1")["w"], torch.full((3, 2), 1.0))


def work(path: str, n: int) -> None:
    """What the killed child runs (and the test itself, to finish): units in order, each a
    node with weights and an edge to the previous node; done units are skipped."""
    store = StudyStore.open(path, StudyConfig(paths=("linear",), flatness=()))
    print("ready", flush=True)
    for i in range(n):
        key = unit_key("train", i=i)
        if store.done(key):
            continue
        store.begin(key, "train", {"i": i})
        edges = [Edge(f"n{i - 1}", f"n{i}", "linear", {"barrier": i / n})] if i else []
        store.finish(
            key,
            result={"i": i},
            nodes=[Node(f"n{i}", {"i": i}, f"n{i}")],
            edges=edges,
            weights={f"n{i}": {"w": torch.full((64, 64), float(i))}},
        )
    store.close()


CHILD = (
    "import sys, torch\n"
    "from funcspace.study.config import StudyConfig, unit_key\n"
    "from funcspace.study.store import Edge, Node, StudyStore\n"
    + inspect.getsource(work)
    + "work(sys.argv[1], int(sys.argv[2]))\n"
)


def run_child(path: Path, n: int, kill_after: float) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


def check_consistent(path: Path, n: int) -> int:
    """Every done unit has its node, weights and edge; nothing else is stored; returns the
    number of done units."""
    with StudyStore.open(path, CONFIG) as store:  # verifies every weight file's sha256
        units = store.units()
        assert all(u.state in ("done", "pending") for u in units)  # running -> pending
        done = sorted(u.inputs["i"] for u in units if u.state == "done")
        assert done == list(range(len(done)))  # the child runs units in order
        assert [n.name for n in store.nodes()] == [f"n{i}" for i in done]
        assert [(e.a, e.b) for e in store.edges()] == [(f"n{i - 1}", f"n{i}") for i in done[1:]]
        for i in done:
            assert store.result(unit_key("train", i=i)) == {"i": i}
            assert torch.equal(store.load_weights(f"n{i}")["w"], torch.full((64, 64), float(i)))
        files = sorted(p.name for p in (path / "weights").iterdir())
        assert files == sorted(f"n{i}.safetensors" for i in done)  # orphans were removed
        assert len(units) <= len(done) + 1  # at most one unit was interrupted
        return len(done)


def test_sigkill_at_random_moments_then_resume(tmp_path):
    n = 300
    StudyStore.create(tmp_path, CONFIG).close()
    progress = []
    for seed in range(3):
        run_child(tmp_path, n, kill_after=random.Random(seed).uniform(0.0, 0.3))
        progress.append(check_consistent(tmp_path, n))
    assert progress == sorted(progress) and progress[-1] < n  # every kill interrupted
    work(str(tmp_path), n)  # resume in this process
    assert check_consistent(tmp_path, n) == n
    with StudyStore.open(tmp_path, readonly=True) as store:
        attempts = [u.attempts for u in store.units()]
        assert len(attempts) == n and all(a in (1, 2) for a in attempts)
        assert sum(a == 2 for a in attempts) <= 3  # only units a kill interrupted were redone


def test_refuses_incompatible_config(tmp_path):
    StudyStore.create(tmp_path, CONFIG).close()
    other = StudyConfig(data=DataConfig(n_samples=1000), paths=("linear",), flatness=())
    with pytest.raises(
        StoreError, match=r"incompatible .*\(stored != given\): data.n_samples: 4000 != 1000"
    ):
        StudyStore.open(tmp_path, other)
    more = StudyConfig(paths=("linear", "bent"), budget=BudgetConfig(max_pairs=3))
    with StudyStore.open(tmp_path, more) as store:  # compatible: recorded, now the current
        assert store.config == more
    with StudyStore.open(tmp_path) as store:
        assert store.config == more
    with pytest.raises(StoreError, match="already holds a study store"):
        StudyStore.create(tmp_path, CONFIG)


def test_refuses_damaged_databases(tmp_path):
    with pytest.raises(StoreError, match="no study store here"):
        StudyStore.open(tmp_path)
    (tmp_path / "study.sqlite").write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(StoreError, match="study.sqlite: not a readable SQLite database"):
        StudyStore.open(tmp_path)

    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "study.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="tables meta, configs, units.* missing"):
        StudyStore.open(other)

    old = tmp_path / "old"
    StudyStore.create(old, CONFIG).close()
    db = sqlite3.connect(old / "study.sqlite")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(
        StoreError, match=f"schema version 99; this funcspace reads version {SCHEMA_VERSION}"
    ):
        StudyStore.open(old)
    assert issubclass(StoreError, FuncspaceError)


def test_refuses_truncated_or_altered_weights(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        train_unit(store, 0)
        train_unit(store, 1)
    file = tmp_path / "weights" / "n1.safetensors"
    data = file.read_bytes()

    file.write_bytes(data[:-5])
    with pytest.raises(StoreError, match=r"n1.safetensors: \d+ bytes, \d+ recorded: truncated"):
        StudyStore.open(tmp_path)
    with pytest.raises(StoreError, match="n1.safetensors.*truncated"):
        StudyStore.open(tmp_path, verify=False)  # sizes are always checked

    altered = bytearray(data)
    altered[-1] ^= 0xFF
    file.write_bytes(bytes(altered))
    with pytest.raises(StoreError, match="n1.safetensors: its sha256 is not the one recorded"):
        StudyStore.open(tmp_path)
    with StudyStore.open(tmp_path, verify=False) as store:
        assert store.load_weights("n0")["w"].shape == (3, 2)
        with pytest.raises(StoreError, match="n1.safetensors: its sha256"):
            store.load_weights("n1")
        with pytest.raises(StoreError, match="no weights named 'n9'.*stored: n0, n1"):
            store.load_weights("n9")

    file.unlink()
    with pytest.raises(StoreError, match="n1.safetensors: missing"):
        StudyStore.open(tmp_path)


def test_one_writer_and_readers(tmp_path):
    with StudyStore.create(tmp_path, CONFIG) as store:
        train_unit(store, 0)
        with pytest.raises(StoreError, match="another process has this store open for writing"):
            StudyStore.open(tmp_path)
        with StudyStore.open(tmp_path, readonly=True) as reader:
            assert [n.name for n in reader.nodes()] == ["n0"]
            with pytest.raises(StoreError, match="opened read-only"):
                reader.begin(unit_key("train", i=1), "train", {"i": 1})
        train_unit(store, 1, edge_to=0)
    with StudyStore.open(tmp_path) as store:  # the lock went with the writer
        assert len(store.nodes()) == 2
    assert "closed" in repr(store)
