"""The connectivity study on binary networks: a tiny binary-MLP study end to end (Hamming
barriers, Hamming distances, binary local energy), resume, a copy merged at Hamming distance 0,
a committee machine, and the configurations refused."""

from __future__ import annotations

import pytest
import torch

import binary
from funcspace.study import units
from funcspace.study.config import ConfigError, ModelConfig, StudyConfig
from funcspace.study.report import write_report
from funcspace.study.runner import load, run
from funcspace.study.store import StudyStore

TINY = {
    "data": {"name": "mnist1d", "n_samples": 200},
    "model": {"kind": "binary_mlp", "hidden": [16]},
    "optimizers": [
        {"name": "sgd", "seeds": [0, 1], "epochs": 3, "options": {"lr": 0.1}},
        {"name": "adv", "seeds": [2], "epochs": 3, "options": {"lr": 0.3, "adv_epochs": 2}},
    ],
    "paths": ["hamming", "bent"],
    "flatness": ["local_energy"],
    "evaluation": {"resolution": 1 / 16, "coarse": 1 / 8, "align_examples": 64},
    "budget": {"path_epochs": 2, "max_pairs": 1, "tolerance": 0.0},
}


@pytest.fixture(scope="module")
def config() -> StudyConfig:
    return StudyConfig.from_dict(TINY)


@pytest.fixture(scope="module")
def study(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("binary-study")
    return out, run(config, out, progress=False)


def _edges(result, kind):
    return {frozenset((e["a"], e["b"])): e for e in result.graph.edges() if e["kind"] == kind}


def _plain(out, config, name):
    """The stored minimizer as the plain +-1 network the measurements use."""
    data = units.dataset(config.data.to_dict())
    with StudyStore.open(out, readonly=True) as store:
        state = store.load_weights(name)
    net = units.model(data, config.model.to_dict(), 0)
    net.load_state_dict(state)
    return data, binary.export(net)


def test_nodes_are_binarized_minimizers(study, config):
    out, result = study
    g = result.graph
    assert g.names == ["sgd-0", "sgd-1", "adv-2"]
    for name in g.names:
        data, plain = _plain(out, config, name)
        assert binary.is_binary(plain)
        # the node's training error is that of the +-1 network
        x, y = data.train
        with torch.no_grad():
            error = (plain(x).argmax(1) != y).double().mean().item()
        assert g.node(name)["train_error"] == pytest.approx(error, abs=1e-12)
        curve = g.node(name)["flatness"]["local_energy"]
        assert curve["fractions"] == list(binary.DEFAULT_FRACTIONS)
        assert len(curve["energy"]) == len(curve["fractions"]) and curve["energy"][0] == 0.0


def test_hamming_edges(study, config):
    out, result = study
    g = result.graph
    edges = _edges(result, "hamming")
    assert len(edges) == result.pairs == 3
    with StudyStore.open(out, readonly=True) as store:
        counts = {
            frozenset((m.a, m.b)): m.value for m in store.metrics() if m.name == "geodesic_distance"
        }
    for pair, e in edges.items():
        assert 0 <= e["error_barrier"] <= 1 and 0 <= e["error_peak"] <= 1
        assert e["error_peak"] >= max(g.node(n)["train_error"] for n in pair) - 1e-9
        assert 0 <= e["t"] <= 1 and e["loss_barrier"] is not None
        found = e["found"]
        assert found["orders"] == 8 and len(found["seeds"]) == 8
        for name in ("error_barrier", "error_peak", "t", "loss_barrier", "loss_peak"):
            spread = found["spread"][name]
            assert spread["min"] - 1e-12 <= e[name] <= spread["max"] + 1e-12
            assert spread["std"] >= 0
        # length: the Hamming distance after alignment; the geodesic distance its fraction
        a, b = e["ends"]  # b aligned to a, as measured
        _, net_a = _plain(out, config, a)
        data, net_b = _plain(out, config, b)
        x = data.train[0][: config.evaluation.align_examples]
        hamming = binary.hamming_distance(net_a, net_b, x)
        assert e["length"] == found["hamming_distance"] == hamming.count > 0
        assert found["binary_weights"] == hamming.total
        assert e["geodesic_distance"] == counts[pair] == pytest.approx(hamming.fraction)
        assert 0 < e["geodesic_distance"] <= 1 and 0 <= e["function_distance"] <= 1


def test_binary_bent_path(study):
    _, result = study
    assert result.measured and len(result.measured) == 1
    bent = _edges(result, "bent")
    assert set(bent) == {frozenset(result.measured[0])}
    (e,) = bent.values()
    found = e["found"]
    assert found["bend"] == units.bend_training()
    if hasattr(binary, "train_bend"):  # the bend trained within the budget's epochs
        assert found["bend"] == "trained"
        assert 1 <= found["bend_epochs"] <= TINY["budget"]["path_epochs"]
        assert 0 <= found["bend_train_error"] <= 1
        assert isinstance(found["bend_zero_error"], bool)
    assert e["length"] == sum(found["legs"]) > 0
    assert 0 <= e["t"] <= 1 and 0 <= e["error_peak"] <= 1


def test_resume_runs_nothing(study, config):
    out, result = study
    again = run(config, out, progress=False)
    assert dict(again.ran) == dict.fromkeys(again.ran, 0)
    assert {(e["a"], e["b"], e["kind"]): e["error_barrier"] for e in again.graph.edges()} == {
        (e["a"], e["b"], e["kind"]): e["error_barrier"] for e in result.graph.edges()
    }
    assert load(out).measured == result.measured


def test_report_draws_the_binary_local_energy(study):
    out, _ = study
    html = write_report(out).read_text()
    assert "local_energy (binary)" in html


def test_a_permuted_and_flipped_copy_is_merged(tmp_path, monkeypatch):
    """Seed 1 replaced by seed 0 with its hidden units permuted and sign-reversed (on the
    latent weights of the training model): Hamming distance 0 after alignment, one node."""
    from funcspace.study import runner as study_runner

    config = StudyConfig.from_dict(
        {
            **TINY,
            "model": {"kind": "binary_mlp", "hidden": [16], "batchnorm": False},
            "optimizers": [{"name": "sgd", "seeds": [0, 1, 2], "epochs": 3}],
            "paths": ["hamming"],
            "flatness": [],
        }
    )
    original = study_runner.train_unit

    def copying(spec):
        if spec["seed"] != 1:
            return original(spec)
        result = original({**spec, "seed": 0})
        state = dict(result["state"])  # Flatten, BinaryLinear, BinarySign, BinaryLinear
        g = torch.Generator().manual_seed(5)
        perm = torch.randperm(16, generator=g)
        signs = torch.randint(0, 2, (16,), generator=g) * 2.0 - 1
        state["1.weight"] = signs[:, None] * state["1.weight"][perm]
        state["3.weight"] = state["3.weight"][:, perm] * signs[None, :]
        result["state"] = state
        return result

    monkeypatch.setattr(study_runner, "train_unit", copying)
    result = run(config, tmp_path, progress=False)
    ((copy, of, distance),) = result.copies
    assert (copy, of, distance) == ("sgd-1", "sgd-0", 0.0)
    assert result.graph.names == ["sgd-0", "sgd-2"]
    assert result.graph.node("sgd-0")["merged"] == ["sgd-1"]


def test_committee_study(tmp_path):
    config = StudyConfig.from_dict(
        {
            "data": {"name": "hidden_manifold", "n_samples": 200},
            "model": {"kind": "committee", "hidden": [3]},
            "optimizers": [{"name": "sgd", "seeds": [0, 1], "epochs": 3, "options": {"lr": 0.1}}],
            "paths": ["hamming"],
            "flatness": ["local_energy"],
            "evaluation": {"resolution": 1 / 16, "coarse": 1 / 8, "align_examples": 64},
        }
    )
    result = run(config, tmp_path, progress=False)
    ((e,),) = [result.graph.edges()]
    assert e["kind"] == "hamming" and 0 <= e["error_barrier"] <= 1 and 0 <= e["t"] <= 1
    assert e["length"] == e["found"]["hamming_distance"] > 0
    assert 0 < e["geodesic_distance"] <= 1
    for name in result.graph.names:
        node = result.graph.node(name)
        assert 0 <= node["train_error"] <= 1
        assert len(node["flatness"]["local_energy"]["energy"]) == len(binary.DEFAULT_FRACTIONS)


# ----------------------------------------------------------------------------- configuration


def test_binary_defaults_and_round_trip(tmp_path):
    config = StudyConfig.from_dict({"model": {"kind": "binary_mlp"}})
    assert config.paths == ("hamming", "bent") and config.flatness == ("local_energy",)
    assert config.model.to_dict() == {"kind": "binary_mlp", "hidden": [128, 128], "batchnorm": True}
    file = tmp_path / "study.toml"
    file.write_text(config.to_toml())
    assert StudyConfig.from_toml(file) == config
    committee = ModelConfig("committee")
    assert committee.hidden == (3,) and committee.to_dict() == {"kind": "committee", "hidden": [3]}
    assert not StudyConfig().compatible_with(config)


def test_real_mlp_keys_are_unchanged():
    """Stores made before binary models keep their keys: the MLP's model section has no new
    field, and the configuration key is the one computed before."""
    assert ModelConfig().to_dict() == {"kind": "mlp", "hidden": [128, 128]}
    config = StudyConfig.from_dict(
        {
            "data": {"name": "digits", "n_samples": 200},
            "model": {"hidden": [8]},
            "optimizers": [{"name": "sgd", "seeds": [0, 1], "epochs": 2}],
            "paths": ["linear"],
            "flatness": [],
        }
    )
    assert config.key() == "2d927d638b82a424ebb8313b803f133ac082488495b6b3ead5b0f973ee5e98cb"
    assert StudyConfig().paths == ("linear", "aligned", "geodesic", "bent")
    assert StudyConfig().flatness == ("hessian_eigenvalues", "hessian_trace")


BINARY = {"kind": "binary_mlp", "hidden": [8]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"model": BINARY, "paths": ["hamming", "aligned"]},
            r"paths\[1\]: 'aligned' is not measured between binary networks \(model.kind "
            r"'binary_mlp'\): its points leave the \+-1 weights.*Binary models take the path "
            r"kinds hamming, bent",
        ),
        (
            {"model": BINARY, "paths": ["curve"]},
            r"paths\[0\]: 'curve' is not measured between binary networks",
        ),
        (
            {"paths": ["linear", "hamming"]},
            r"paths\[1\]: 'hamming' flips \+-1 weights one at a time and needs a binary model "
            r"\(model.kind binary_mlp or committee\); model.kind 'mlp' takes the path kinds "
            r"linear, aligned, geodesic, bent, curve",
        ),
        (
            {"model": BINARY, "flatness": ["local_energy", "hessian_trace"]},
            r"flatness\[1\]: 'hessian_trace' is not defined for binary networks \(model.kind "
            r"'binary_mlp'\): their loss is piecewise constant.*Binary models take the "
            r"flatness measure local_energy",
        ),
        (
            {"model": {"kind": "committee"}},
            r"model.kind 'committee' classifies into two classes, but data.name 'mnist1d' has "
            r"more; use a two-class data set \(hidden_manifold\)",
        ),
        (
            {"model": {"kind": "committee", "hidden": [4]}, "data": {"name": "hidden_manifold"}},
            r"model.hidden \[4\]: a committee has one layer of K hidden units, K odd",
        ),
        (
            {"model": {"kind": "committee", "hidden": [3, 3]}},
            r"model.hidden \[3, 3\]: a committee has one layer",
        ),
        (
            {"model": {"kind": "binary_mlp", "hidden": []}},
            r"model.hidden is empty; a binary_mlp needs at least one hidden layer",
        ),
        ({"model": {"batchnorm": False}}, r"model.batchnorm applies to kind 'binary_mlp' only"),
        (
            {"model": {"kind": "binary_mlp", "batchnorm": 1}},
            r"model.batchnorm must be true or false, got int 1",
        ),
        (
            {"model": {"kind": "perceptron"}},
            r"model.kind: unknown 'perceptron'; choose one of mlp, binary_mlp, committee",
        ),
    ],
)
def test_refused_configurations(data, message):
    with pytest.raises(ConfigError, match=message):
        StudyConfig.from_dict(data)
