"""Results kept as plain files: ``to_dict`` is JSON, ``save``/``load`` round-trip exactly,
and truncated, corrupted or mismatched files are refused with an error naming the file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from funcspace import flatness, landscape, train
from funcspace.energy import LocalEnergy
from funcspace.errors import DataError, FuncspaceError
from funcspace.evaluation import Settings
from funcspace.hessian import EigenResult, SpectralDensity, TraceResult
from funcspace.landscape import Slice1D, Slice2D, TrajectoryPCA
from funcspace.metrics import Metric
from funcspace.params import parameters_of
from funcspace.training import TrainResult


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster on a busy machine; the setting comes back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp(seed: int = 0, hidden: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 3)).double()


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(20, 4, dtype=torch.float64, generator=gen), torch.randint(
        0, 3, (20,), generator=gen
    )


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    """One small real instance of every result type."""
    net, data = _mlp(), _data()
    trajectory = [parameters_of(_mlp(seed)) for seed in range(3)]
    return {
        "Slice1D": landscape.line(net, data, points=3),
        "Slice2D": landscape.plane(net, data, resolution=(3, 2)),
        "TrajectoryPCA": landscape.trajectory_pca(trajectory),
        "EigenResult": flatness.hessian_eigenvalues(net, data, k=2),
        "TraceResult": flatness.hessian_trace(net, data, hvps=10),
        "SpectralDensity": flatness.hessian_spectrum(net, data, n_vectors=2, steps=5),
        "LocalEnergy": flatness.local_energy(net, data, sigmas=(0.0, 0.1), samples=3),
        "TrainResult": train(net, data, optimizer="sgd", epochs=1, save_init=True),
    }


CLASSES = {
    "Slice1D": Slice1D,
    "Slice2D": Slice2D,
    "TrajectoryPCA": TrajectoryPCA,
    "EigenResult": EigenResult,
    "TraceResult": TraceResult,
    "SpectralDensity": SpectralDensity,
    "LocalEnergy": LocalEnergy,
    "TrainResult": TrainResult,
}
WITH_TENSORS = ["Slice1D", "Slice2D", "TrajectoryPCA", "EigenResult", "TrainResult"]


def _load(name: str, path: Path) -> Any:
    if name == "TrainResult":
        return TrainResult.load(path, _mlp(seed=5))
    return CLASSES[name].load(path)


def _assert_same(a: Any, b: Any, where: str = "result") -> None:
    """Exact equality: arrays bit for bit, tensors with their dtype, NaN equal to NaN."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, nn.Module):
        _assert_same(a.state_dict(), b.state_dict(), f"{where}.state_dict()")
        assert a.training == b.training, where
    elif isinstance(a, Settings):
        assert a.to_dict() == b.to_dict(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("name", list(CLASSES))
def test_to_dict_is_plain_json(results, name):
    result = results[name]
    text = json.dumps(result.to_dict())
    assert json.dumps(json.loads(text)) == text


@pytest.mark.parametrize("name", list(CLASSES))
def test_save_load_round_trips_exactly(results, name, tmp_path):
    result = results[name]
    json_file = result.save(tmp_path / "kept")
    assert json_file == tmp_path / "kept.json"
    assert (tmp_path / "kept.safetensors").exists() == (name in WITH_TENSORS)
    stored = json.loads(json_file.read_text())
    assert stored["type"] == f"funcspace.{name}" and stored["format_version"] == 1
    back = _load(name, tmp_path / "kept.json")  # the suffix may be given
    _assert_same(result, back)
    assert json.dumps(back.to_dict()) == json.dumps(result.to_dict())


@pytest.mark.parametrize("name", list(CLASSES))
def test_truncated_json_names_the_file(results, name, tmp_path):
    json_file = results[name].save(tmp_path / "kept")
    text = json_file.read_bytes()
    json_file.write_bytes(text[: len(text) // 2])
    with pytest.raises(DataError, match=re.escape(str(json_file))):
        _load(name, tmp_path / "kept")


@pytest.mark.parametrize("name", WITH_TENSORS)
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_safetensors_names_the_file(results, name, damage, tmp_path):
    results[name].save(tmp_path / "kept")
    tensor_file = tmp_path / "kept.safetensors"
    raw = bytearray(tensor_file.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 9]
    else:
        raw[-3] ^= 0xFF  # a byte of tensor data: the file still parses
    tensor_file.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=re.escape(str(tensor_file))):
        _load(name, tmp_path / "kept")


def test_garbage_safetensors_with_a_matching_checksum_is_a_data_error(results, tmp_path):
    json_file = results["EigenResult"].save(tmp_path / "kept")
    tensor_file = tmp_path / "kept.safetensors"
    tensor_file.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    envelope = json.loads(json_file.read_text())
    envelope["tensors"]["sha256"] = hashlib.sha256(tensor_file.read_bytes()).hexdigest()
    json_file.write_text(json.dumps(envelope))
    with pytest.raises(DataError, match="not a valid safetensors file"):
        EigenResult.load(tmp_path / "kept")


@pytest.mark.parametrize("name", list(CLASSES))
def test_a_file_of_another_type_is_refused(results, name, tmp_path):
    other = "TraceResult" if name != "TraceResult" else "Slice1D"
    results[other].save(tmp_path / "other")
    with pytest.raises(FuncspaceError, match=f"holds a funcspace.{other}, not a funcspace.{name}"):
        _load(name, tmp_path / "other")


def test_missing_newer_and_malformed_files_are_refused(results, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        TraceResult.load(tmp_path / "nothing")
    json_file = results["TraceResult"].save(tmp_path / "kept")
    envelope = json.loads(json_file.read_text())
    json_file.write_text(json.dumps({**envelope, "format_version": 99}))
    with pytest.raises(FuncspaceError, match="format version 99"):
        TraceResult.load(json_file)
    json_file.write_text(json.dumps({**envelope, "data": {"estimate": 1.0}}))
    with pytest.raises(DataError, match="malformed funcspace.TraceResult"):
        TraceResult.load(json_file)
    json_file.write_text("[1, 2]")
    with pytest.raises(DataError, match="not a saved funcspace result"):
        TraceResult.load(json_file)
    results["Slice1D"].save(tmp_path / "slice")
    (tmp_path / "slice.safetensors").unlink()
    with pytest.raises(DataError, match="slice.safetensors: no such file"):
        Slice1D.load(tmp_path / "slice")


def test_train_result_loads_into_a_copy_of_the_template(results, tmp_path):
    result = results["TrainResult"]
    result.save(tmp_path / "run")
    template = _mlp(seed=9)
    before = {k: v.clone() for k, v in template.state_dict().items()}
    back = TrainResult.load(tmp_path / "run", template)
    _assert_same(before, dict(template.state_dict()))  # the template is left untouched
    assert back.model is not template and not back.model.training
    _assert_same(result.init, back.init)
    x = _data()[0]
    assert torch.equal(back.model(x), result.model(x))
    with pytest.raises(FuncspaceError, match=r"tensor '0\.weight' is saved as \(6, 4\)"):
        TrainResult.load(tmp_path / "run", _mlp(hidden=7))
    with pytest.raises(FuncspaceError, match="torch.float64, the model has .* torch.float32"):
        TrainResult.load(tmp_path / "run", _mlp().float())
    with pytest.raises(FuncspaceError, match="not the saved architecture"):
        TrainResult.load(tmp_path / "run", nn.Sequential(nn.Linear(4, 3)).double())


def test_train_result_with_tied_weights_and_without_init(results, tmp_path):
    shared = nn.Linear(3, 3).double()
    model = nn.Sequential(shared, nn.Tanh(), shared).eval()  # entries share storage
    result = TrainResult(model, results["TrainResult"].record)
    result.save(tmp_path / "tied")
    template = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    back = TrainResult.load(tmp_path / "tied", template)
    assert back.init is None
    _assert_same(model, back.model)


def test_from_dict_without_the_tensor_file(results):
    s = results["Slice2D"]
    plain = Slice2D.from_dict(json.loads(json.dumps(s.to_dict())))
    assert plain.directions == () and plain.values["loss"].shape == (3, 2)
    np.testing.assert_array_equal(plain.values["loss"], s.values["loss"])
    _assert_same(s, Slice2D.from_dict(s.to_dict(), s.directions))
    with pytest.raises(FuncspaceError, match="1 directions given"):
        Slice2D.from_dict(s.to_dict(), s.directions[:1])
    wrong = {k: v.float() for k, v in s.directions[0].items()}
    with pytest.raises(FuncspaceError, match="directions\\[0\\]: tensor '0.weight'"):
        Slice2D.from_dict(s.to_dict(), (wrong, s.directions[1]))
    eigen = EigenResult.from_dict(results["EigenResult"].to_dict())
    assert eigen.vectors.shape == (0, 2)
    _assert_same(eigen.values, results["EigenResult"].values)
    assert s.to_dict()["directions"][0]["0.weight"] == {"shape": [6, 4], "dtype": "float64"}


def _margin(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    true = outputs.gather(1, targets[:, None])[:, 0]
    return torch.relu(outputs.scatter(1, targets[:, None], float("-inf")).max(1).values - true)


def test_local_energy_keeps_user_metrics_and_its_settings(tmp_path):
    user = Metric("margin", _margin, targets="class")
    settings = Settings(metrics=("loss", user), batch_size=8)
    energy = flatness.local_energy(_mlp(), _data(), sigmas=(0.0, 0.2), samples=2, settings=settings)
    energy.save(tmp_path / "energy")
    with pytest.raises(FuncspaceError, match="unknown metric 'margin'"):
        LocalEnergy.load(tmp_path / "energy")
    back = LocalEnergy.load(tmp_path / "energy", metrics=[user])
    assert back.settings.metrics[1] is user and back.settings.batch_size == 8
    _assert_same(energy, back)
    assert back.perturbed["margin"].shape == (2, 2)


def test_eigen_vectors_keep_their_dtype(results, tmp_path):
    eigen = dataclasses.replace(
        results["EigenResult"], vectors=results["EigenResult"].vectors.float()
    )
    eigen.save(tmp_path / "eigen")
    back = EigenResult.load(tmp_path / "eigen")
    assert back.vectors.dtype == torch.float32
    _assert_same(eigen, back)


def test_data_that_json_cannot_hold_is_refused_before_writing(results, tmp_path):
    bad = dataclasses.replace(results["Slice1D"], meta={"model": nn.Linear(1, 1)})
    with pytest.raises(FuncspaceError, match="JSON cannot store"):
        bad.save(tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []
