"""Tests for funcspace.study.config: defaults, dict and TOML round trips, validation messages,
key stability across processes, compatible and incompatible changes, unit keys."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from funcspace.errors import FuncspaceError
from funcspace.study.config import (
    BudgetConfig,
    ConfigError,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    OptimizerConfig,
    StudyConfig,
    unit_key,
)


def test_defaults_are_the_complete_default_study():
    config = StudyConfig()
    assert (config.data.name, config.data.n_samples) == ("mnist1d", 4000)
    assert config.model == ModelConfig("mlp", (128, 128))
    assert {o.name: dict(o.options) for o in config.optimizers} == {
        "sgd": {"lr": 0.1},
        "rsgd": {"lr": 0.1},
        "adv": {"lr": 0.3, "adv_epochs": 20},
    }
    seeds = [s for o in config.optimizers for s in o.seeds]
    assert len(seeds) == len(set(seeds)) == 6  # no two minima share an initialization
    assert config.paths == ("linear", "aligned", "geodesic", "bent")
    assert issubclass(ConfigError, FuncspaceError)


def test_dict_round_trip_and_frozen():
    config = StudyConfig(
        data=DataConfig(n_samples=300, label_noise=0.1, seed=3),
        model=ModelConfig(hidden=[16]),
        optimizers=(OptimizerConfig("sgd", seeds=[4, 2], options={"lr": 0.05}),),
        paths=["linear", "curve"],
        flatness=[],
        evaluation=EvaluationConfig(batch_size=64, resolution=1 / 64, coarse=1 / 8),
        budget=BudgetConfig(max_pairs=3, tolerance=0.01, path_epochs=5),
    )
    assert config.model.hidden == (16,) and config.paths == ("linear", "curve")
    d = config.to_dict()
    assert StudyConfig.from_dict(d) == config
    assert StudyConfig.from_dict(d).key() == config.key()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.data = DataConfig()  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.optimizers[0].options["lr"] = 1.0  # type: ignore[index]
    d["optimizers"][0]["options"]["lr"] = 9.0  # to_dict hands out copies
    assert config.optimizers[0].options["lr"] == 0.05


def test_toml_round_trip(tmp_path):
    config = StudyConfig(
        optimizers=(
            OptimizerConfig("sgd", seeds=(0, 1, 2), options={"lr": 0.1, "schedule": "constant"}),
            OptimizerConfig("adv", seeds=(7,), epochs=30, options={"lr": 1e-05}),
        ),
        budget=BudgetConfig(max_pairs=None, tolerance=0.25),
    )
    file = tmp_path / "study.toml"
    file.write_text(config.to_toml())
    assert StudyConfig.from_toml(file) == config
    file.write_text(
        'paths = ["linear", "geodesic"]\n'
        "[data]\nn_samples = 1000\n"
        '[[optimizers]]\nname = "sgd"\nseeds = [0, 1]\noptions = { lr = 0.2 }\n'
    )
    loaded = StudyConfig.from_toml(file)
    assert loaded.data.n_samples == 1000 and loaded.paths == ("linear", "geodesic")
    assert [(o.name, o.seeds, dict(o.options)) for o in loaded.optimizers] == [
        ("sgd", (0, 1), {"lr": 0.2})
    ]


def test_toml_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such configuration file"):
        StudyConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        StudyConfig.from_toml(bad)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dataa": {}}, r"no field 'dataa'; its fields are data, model, optimizers"),
        ({"data": {"samples": 3}}, r"data has no field 'samples'; its fields are name, n_samples"),
        ({"data": {"n_samples": "4000"}}, r"data.n_samples must be an integer, got str"),
        ({"data": {"n_samples": True}}, r"data.n_samples must be an integer, got bool"),
        ({"data": {"n_samples": 0}}, r"data.n_samples must be at least 1"),
        ({"data": {"name": "imagenet"}}, r"data.name: unknown 'imagenet'; choose one of digits"),
        ({"data": {"label_noise": 1.0}}, r"data.label_noise must lie in \[0, 1\)"),
        ({"model": {"kind": "cnn"}}, r"model.kind: unknown 'cnn'; choose one of mlp"),
        ({"model": {"hidden": [8, 0]}}, r"model.hidden\[1\] must be at least 1"),
        ({"paths": []}, r"paths is empty; give at least one value"),
        ({"paths": "linear"}, r"paths must be a list, got str"),
        ({"paths": ["linear", "spline"]}, r"paths\[1\]: unknown 'spline'; choose one of linear"),
        ({"paths": ["linear", "linear"]}, r"paths lists 'linear' more than once"),
        ({"flatness": ["sharpness"]}, r"flatness\[0\]: unknown 'sharpness'; choose one of"),
        ({"optimizers": []}, r"optimizers is empty"),
        ({"optimizers": [{"seeds": [0]}]}, r"optimizers\[0\] has no name"),
        ({"optimizers": [{"name": "lbfgs"}]}, r"optimizer name: unknown 'lbfgs'; choose one of"),
        ({"optimizers": [{"name": "sgd", "seeds": []}]}, r"optimizers\['sgd'\].seeds is empty"),
        ({"optimizers": [{"name": "sgd", "seeds": [1, 1]}]}, r"repeats a seed"),
        ({"optimizers": [{"name": "sgd", "seed": [1]}]}, r"no field 'seed'; its fields are name"),
        (
            {"optimizers": [{"name": "sgd", "options": {"learning_rate": 0.1}}]},
            r"optimizers\['sgd'\].options: .*no option\(s\) 'learning_rate'; its options are",
        ),
        (
            {"optimizers": [{"name": "sgd", "options": {"lr": -1.0}}]},
            r"optimizers\['sgd'\].options: .*lr",
        ),
        (
            {"optimizers": [{"name": "sgd"}, {"name": "sgd", "seeds": [5]}]},
            r"optimizers lists 'sgd' more than once",
        ),
        ({"evaluation": {"resolution": 0.3}}, r"evaluation.resolution must be a power of one half"),
        (
            {"evaluation": {"resolution": 0.5, "coarse": 0.25}},
            r"evaluation.coarse \(0.25\) is finer than evaluation.resolution",
        ),
        ({"budget": {"max_pairs": -1}}, r"budget.max_pairs must be at least 0"),
        ({"budget": {"tolerance": float("nan")}}, r"budget.tolerance must lie in"),
    ],
)
def test_validation_messages(data, message):
    with pytest.raises(ConfigError, match=message):
        StudyConfig.from_dict(data)


def test_python_construction_is_validated_too():
    with pytest.raises(ConfigError, match="data must be a DataConfig, got dict"):
        StudyConfig(data={"name": "mnist1d"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a plain option value"):
        OptimizerConfig("sgd", options={"lr": object()})


def test_key_is_stable_across_processes():
    config = StudyConfig()
    code = (
        "from funcspace.study.config import StudyConfig; "
        "print(StudyConfig().key(), StudyConfig.from_dict({'data': {'n_samples': 1000}}).key())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    default, changed = out.stdout.split()
    assert default == config.key()
    assert changed == StudyConfig.from_dict({"data": {"n_samples": 1000}}).key() != default
    assert len(default) == 64 and int(default, 16) >= 0


def test_every_field_changes_the_key():
    base = StudyConfig()
    changed = [
        dataclasses.replace(base, data=DataConfig(seed=1)),
        dataclasses.replace(base, data=DataConfig(label_noise=0.1)),
        dataclasses.replace(base, model=ModelConfig(hidden=(128,))),
        dataclasses.replace(base, paths=("linear",)),
        dataclasses.replace(base, flatness=()),
        dataclasses.replace(base, evaluation=EvaluationConfig(batch_size=7)),
        dataclasses.replace(base, budget=BudgetConfig(max_pairs=2)),
        dataclasses.replace(base, optimizers=base.optimizers[:2]),
    ]
    keys = {c.key() for c in changed}
    assert len(keys) == len(changed) and base.key() not in keys


def test_compatible_changes():
    base = StudyConfig()
    sgd, rsgd, adv = base.optimizers
    compatible = [
        dataclasses.replace(base, optimizers=(dataclasses.replace(sgd, seeds=(0, 1, 9)), rsgd)),
        dataclasses.replace(base, optimizers=(*base.optimizers, OptimizerConfig("sam"))),
        dataclasses.replace(base, paths=("linear", "curve"), flatness=("local_energy",)),
        dataclasses.replace(base, evaluation=EvaluationConfig(batch_size=128)),
        dataclasses.replace(base, budget=BudgetConfig(max_pairs=1, tolerance=0.5)),
    ]
    for other in compatible:
        assert other.key() != base.key()
        assert other.compatible_with(base) and base.compatible_with(other)
        assert other.incompatibilities(base) == ()


def test_incompatible_changes_say_what_differs():
    base = StudyConfig()
    sgd, rsgd, adv = base.optimizers
    cases = {
        "data.n_samples: 4000 != 1000": dataclasses.replace(base, data=DataConfig(n_samples=1000)),
        "data.label_noise: 0.0 != 0.2": dataclasses.replace(base, data=DataConfig(label_noise=0.2)),
        "model.hidden: [128, 128] != [64]": dataclasses.replace(
            base, model=ModelConfig(hidden=(64,))
        ),
        "optimizers['sgd'].options: {'lr': 0.1} != {'lr': 0.2}": dataclasses.replace(
            base, optimizers=(OptimizerConfig("sgd", seeds=(0, 1), options={"lr": 0.2}), rsgd)
        ),
        "optimizers['adv'].epochs: 100 != 10": dataclasses.replace(
            base, optimizers=(dataclasses.replace(adv, epochs=10),)
        ),
        "evaluation.resolution: 0.00390625 != 0.0078125": dataclasses.replace(
            base, evaluation=EvaluationConfig(resolution=1 / 128)
        ),
        "budget.path_epochs: 100 != 50": dataclasses.replace(
            base, budget=BudgetConfig(path_epochs=50)
        ),
    }
    for expected, other in cases.items():
        assert not base.compatible_with(other)
        assert base.incompatibilities(other) == (expected,)


def test_unit_keys():
    key = unit_key("train", optimizer="sgd", seed=0, hidden=(128, 128), options={"lr": 0.1})
    assert key.startswith("train:") and len(key) == len("train:") + 64
    assert key == unit_key("train", options={"lr": 0.1}, hidden=[128, 128], seed=0, optimizer="sgd")
    assert key != unit_key("train", optimizer="sgd", seed=1, hidden=(128, 128), options={"lr": 0.1})
    assert key != unit_key("node", optimizer="sgd", seed=0, hidden=(128, 128), options={"lr": 0.1})
    assert unit_key("pair", x=1) != unit_key("pair", x=1.0) != unit_key("pair", x=True)
    config = StudyConfig()
    assert unit_key("train", config=config.to_dict()) == unit_key(
        "train", config=StudyConfig.from_dict(config.to_dict()).to_dict()
    )
    with pytest.raises(ConfigError, match="lowercase identifier"):
        unit_key("Train", x=1)
    with pytest.raises(ConfigError, match=r"train input 'x'\[1\]: 'nan' is not finite|not finite"):
        unit_key("train", x=[0.0, float("nan")])
    with pytest.raises(ConfigError, match=r"train input 'model': a object is not plain data"):
        unit_key("train", model=object())
    with pytest.raises(ConfigError, match="dict keys must be strings"):
        unit_key("train", x={1: 2})
