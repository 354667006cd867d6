"""The study runner end to end on a tiny MNIST-1D study: stages, selection, resume, failures,
a process pool, and a mismatched store."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from funcspace.study import runner as study_runner
from funcspace.study.config import StudyConfig
from funcspace.study.runner import InlineExecutor, StudyError, load, run
from funcspace.study.store import StoreError, StudyStore

CHEAP = ("linear", "aligned", "geodesic")

TINY = {
    "data": {"name": "mnist1d", "n_samples": 200},
    "model": {"hidden": [16]},
    "optimizers": [
        {"name": "sgd", "seeds": [0, 1], "epochs": 3, "options": {"lr": 0.1}},
        {"name": "adv", "seeds": [2], "epochs": 3, "options": {"lr": 0.3, "adv_epochs": 2}},
    ],
    "paths": ["linear", "aligned", "geodesic", "bent"],
    "flatness": ["hessian_eigenvalues"],
    "evaluation": {"resolution": 1 / 16, "coarse": 1 / 8, "align_examples": 64},
    # one optimized path: the other pairs are skipped, with the budget as their reason
    "budget": {"path_epochs": 2, "max_pairs": 1, "tolerance": 0.0},
}


@pytest.fixture(scope="module")
def config() -> StudyConfig:
    return StudyConfig.from_dict(TINY)


@pytest.fixture(scope="module")
def study(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return out, run(config, out, progress=False)


def _pairs(names):
    return [frozenset((a, b)) for i, a in enumerate(names) for b in names[i + 1 :]]


def _values(result):
    """Every node and edge value, independent of the order of recording."""
    nodes = {n: result.graph.node(n) for n in result.graph.names}
    edges = {(frozenset((e["a"], e["b"])), e["kind"]): e for e in result.graph.edges()}
    return nodes, edges


def test_end_to_end(study):
    out, result = study
    g = result.graph
    assert g.names == ["sgd-0", "sgd-1", "adv-2"]
    node = g.node("adv-2")
    assert node["optimizer"] == "adv" and node["seed"] == 2
    assert node["hyperparameters"]["options"] == {"lr": 0.3, "adv_epochs": 2}
    assert 0 <= node["train_error"] <= 1 and node["test_error"] is not None
    assert node["flatness"]["hessian_eigenvalues"] > 0
    assert result.pairs == 3 and result.copies == ()
    edges = {(frozenset((e["a"], e["b"])), e["kind"]): e for e in g.edges()}
    for pair in _pairs(g.names):
        for kind in CHEAP:
            e = edges[(pair, kind)]
            assert e["error_barrier"] >= 0 and e["loss_barrier"] is not None
            assert 0 <= e["t"] <= 1 and e["found"]["evaluations"] > 0
            assert e["found"]["resolution"] == 1 / 16
            assert e["error_peak"] >= max(g.node(n)["train_error"] for n in pair) - 1e-9
            assert e["length"] > 0 and e["geodesic_distance"] > 0
            assert 0 <= e["function_distance"] <= 1
        # one distance per pair, on every edge of it
        assert len({edges[(pair, k)]["geodesic_distance"] for k in CHEAP}) == 1
    straight = [e for e in g.edges() if e["kind"] in ("linear", "aligned")]
    for e in straight:  # the geodesic distance is measured on the torus, not in parameters
        assert e["length"] != e["geodesic_distance"]
    bent = {pair for pair, kind in edges if kind == "bent"}
    assert bent == {frozenset(p) for p in result.measured}
    assert len(result.measured) == 1 and len(result.skipped) == 2
    # each skipped pair: ruled out by the tree bound, or left when the budget was spent
    assert all(
        "budget of 1 measurements spent" in why or ">= tree path max" in why
        for _, _, why in result.skipped
    )
    assert result.selection is not None
    ruled = sum(">= tree path max" in why for _, _, why in result.skipped)
    assert result.selection.complete == (ruled == 2)

    # the selection measured the pair with the lowest upper bound's tree first: Kruskal order
    table = result.table()
    for text in ("sgd-0", "adv-2", "bent", "1 of 3 pairs measured", "skipped"):
        assert text in table
    with StudyStore.open(out, readonly=True) as store:
        assert store.load_weights("sgd-1")
        units = store.units()
        assert {u.state for u in units} == {"done"}
        assert sum(u.kind == "train" for u in units) == 3
        assert sum(u.kind == "pair" for u in units) == 3 * 3 + 1
        assert sum(u.kind == "distance" for u in units) == 3
        assert sum(u.kind == "flatness" for u in units) == 3
        assert len(store.metrics()) == 3 + 3 * 2

        assert sum(u.kind == "select" for u in units) == 1


def test_resume_runs_nothing_and_gives_the_same_result(study, config):
    out, first = study
    with StudyStore.open(out, readonly=True) as store:
        before = store.units()
    again = run(config, out, progress=False)
    assert dict(again.ran) == dict.fromkeys(again.ran, 0)
    assert _values(again) == _values(first)
    assert again.measured == first.measured and again.skipped == first.skipped
    with StudyStore.open(out, readonly=True) as store:
        assert store.units() == before  # no attempt added, nothing re-run


def test_load_rebuilds_the_result(study):
    out, first = study
    loaded = load(out)
    assert _values(loaded) == _values(first)
    assert loaded.measured == first.measured and loaded.skipped == first.skipped
    assert loaded.timings["train"] > 0  # the stored compute seconds
    assert "1 of 3 pairs measured" in loaded.table()


def test_a_failed_unit_is_recorded_and_a_rerun_finishes(study, config, tmp_path, monkeypatch):
    original = study_runner.pair_unit

    def flaky(spec):
        if spec["kind"] == "geodesic":
            raise RuntimeError("simulated crash")
        return original(spec)

    monkeypatch.setattr(study_runner, "pair_unit", flaky)
    with pytest.raises(StudyError, match="simulated crash"):
        run(config, tmp_path, progress=False)
    with StudyStore.open(tmp_path, readonly=True) as store:
        failed = store.units(state="failed")
        assert len(failed) == 3 and {u.inputs["path"] for u in failed} == {"geodesic"}
        assert len(store.units(state="done", kind="pair")) == 6
        assert {e.kind for e in store.edges()} == {"linear", "aligned"}
        assert store.units(state="running") == ()
    monkeypatch.setattr(study_runner, "pair_unit", original)
    result = run(config, tmp_path, executor=InlineExecutor(), progress=False)
    assert result.ran["train"] == 0 and result.ran["cheap"] == 3
    assert _values(result) == _values(study[1])
    with StudyStore.open(tmp_path, readonly=True) as store:
        assert {u.state for u in store.units()} == {"done"}
        assert max(u.attempts for u in store.units()) == 2


def test_two_workers_give_the_same_numbers(study, config, tmp_path):
    result = run(config, tmp_path, workers=2, progress=False)
    assert _values(result) == _values(study[1])
    assert result.measured == study[1].measured


def test_a_mismatched_store_is_refused(study, config):
    out, _ = study
    other = StudyConfig.from_dict({**TINY, "data": {"name": "mnist1d", "n_samples": 300}})
    with pytest.raises(StoreError, match="incompatible.*data.n_samples: 200 != 300"):
        run(other, out, progress=False)


def test_bad_arguments_are_refused(config, tmp_path):
    with pytest.raises(StudyError, match="workers"):
        run(config, tmp_path, workers=0)
    with pytest.raises(StudyError, match="Executor"):
        run(config, tmp_path, executor=object())


def test_a_dask_cluster_gives_the_same_numbers(study, config, tmp_path):
    """The --scheduler path of the command: a Dask LocalCluster (two worker processes, one
    thread each) gives the numbers of the run in this process."""
    distributed = pytest.importorskip("distributed")
    from funcspace.study.cli import main

    file = tmp_path / "study.toml"
    file.write_text(config.to_toml())
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        status = main(
            [
                "study",
                str(file),
                "--out",
                str(tmp_path / "out"),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
    assert status == 0
    result = load(tmp_path / "out")
    assert _values(result) == _values(study[1])
    assert result.measured == study[1].measured and result.skipped == study[1].skipped


def _done_units(out) -> int:
    file = out / "study.sqlite"
    if not file.exists():
        return 0
    try:
        db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return db.execute("SELECT count(*) FROM units WHERE state = 'done'").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:  # being created
        return 0


def test_sigkill_at_random_points_then_resume(study, config, tmp_path):
    """The real command, killed with SIGKILL at random points (after a random number of
    finished units, and once at a random moment), then run again: the same numbers as an
    uninterrupted run, every unit done once, no duplicate or orphan rows or files."""
    with StudyStore.open(study[0], readonly=True) as store:
        total = len(store.units())
    file = tmp_path / "study.toml"
    file.write_text(config.to_toml())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "funcspace", "study", str(file), "--out", str(out)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    rng = random.Random(17)
    targets = sorted(rng.sample(range(1, total), 3))
    kills = 0
    for target in [*targets, None]:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + (rng.uniform(3.0, 8.0) if target is None else 600)
        while process.poll() is None:
            if (target is not None and _done_units(out) >= target) or time.monotonic() > deadline:
                process.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.02)
        process.wait()
    assert kills >= 3  # the three unit counts were reached while the command ran
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    assert finished.returncode == 0, finished.stderr
    result = load(out)
    assert _values(result) == _values(study[1])
    assert result.measured == study[1].measured and result.skipped == study[1].skipped
    with StudyStore.open(out, readonly=True) as store:
        units = store.units()
        assert len(units) == total and {u.state for u in units} == {"done"}
        # a kill interrupts at most the one unit running then: it is the only one run twice
        assert sum(u.attempts for u in units) <= total + kills
        assert len(store.nodes()) == len({n.name for n in store.nodes()}) == 3
        names = set(store.weight_names())
        assert {f.stem for f in (out / "weights").iterdir()} == names
        assert not [f for f in (out / "weights").iterdir() if not f.name.endswith(".safetensors")]


def test_copies_of_one_function_become_one_node(config, tmp_path, monkeypatch):
    """A minimizer that is another one with its hidden units permuted and rescaled (here:
    seed 1 replaced by a random symmetry transform of seed 0) is found by its zero geodesic
    distance, merged into the first, and given no optimized path."""
    import canonicalize
    from funcspace.study import units

    original = study_runner.train_unit

    def copying(spec):
        if spec["seed"] != 1:
            return original(spec)
        result = original({**spec, "seed": 0})
        data = units.dataset(spec["data"])
        net = units.model(data, spec["model"], 0)
        net.load_state_dict(result["state"])
        moved = canonicalize.random_transform(net, data.train[0][:64], seed=5)
        result["state"] = {k: v.detach().clone() for k, v in moved.state_dict().items()}
        return result

    monkeypatch.setattr(study_runner, "train_unit", copying)
    result = run(config, tmp_path, progress=False)
    ((copy, of, distance),) = result.copies
    assert (copy, of) == ("sgd-1", "sgd-0") and distance < study_runner.COPY_TOLERANCE
    assert result.graph.names == ["sgd-0", "adv-2"]
    assert result.graph.node("sgd-0")["merged"] == ["sgd-1"]
    # the copy's weights differ (it was moved), its function does not
    with StudyStore.open(tmp_path, readonly=True) as store:
        a, b = store.load_weights("sgd-0"), store.load_weights("sgd-1")
    assert any((a[k] - b[k]).abs().max() > 1e-3 for k in a)
    assert result.selection.n == 2 and result.measured == (("adv-2", "sgd-0"),)
    why = {(a, b): w for a, b, w in result.skipped}
    assert why[("sgd-0", "sgd-1")].startswith("sgd-1 is a copy of sgd-0")
    assert why[("adv-2", "sgd-1")].startswith("sgd-1 is a copy of sgd-0")
    assert "sgd-1 is a copy of sgd-0" in result.table()
    assert load(tmp_path).copies == result.copies
