"""Tests for funcspace.landscape and funcspace.plots: Li et al.'s filter normalization, planes
and lines against a slow explicit loop, interpolation endpoints, trajectory PCA, and figures."""

from __future__ import annotations

import copy
import types

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from funcspace import landscape, plots  # noqa: E402
from funcspace.errors import FuncspaceError  # noqa: E402
from funcspace.evaluation import Settings, evaluate  # noqa: E402
from funcspace.landscape import (  # noqa: E402
    Slice1D,
    Slice2D,
    TrajectoryPCA,
    interpolate,
    line,
    normalize_direction,
    plane,
    random_direction,
    trajectory_pca,
)
from funcspace.models import MLP  # noqa: E402
from funcspace.params import parameters_of  # noqa: E402

# --------------------------------------------------------------------------- fixtures


def _data(n=48, d=5, classes=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=gen)


def _mlp(seed=0):
    return MLP(5, [7], 3, seed=seed).double()


def _slow(model, params, data):
    """Error and loss of ``model`` carrying ``params``: one explicit forward pass, float64."""
    x, y = data
    net = copy.deepcopy(model).eval()
    net.load_state_dict(params, strict=False)
    with torch.no_grad():
        out = net(x)
    return float((out.argmax(1) != y).double().mean()), float(F.cross_entropy(out, y))


def _assert_plane_equals_slow_loop(s, net, data):
    """Every grid point of ``s`` against one explicit forward pass of ``net`` moved there."""
    origin = parameters_of(net)
    d1, d2 = s.directions
    for i, x in enumerate(s.x):
        for j, y in enumerate(s.y):
            point = {n: origin[n] + x * d1[n] + y * d2[n] for n in origin}
            error, loss = _slow(net, point, data)
            assert s.values["error"][i, j] == pytest.approx(error, abs=1e-12)
            assert s.values["loss"][i, j] == pytest.approx(loss, rel=1e-9)


def _conv_bn_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        nn.ReLU(),
        nn.Linear(5, 2, bias=False),
    )


# --------------------------------------------------------------------------- directions


def test_filter_normalization_rows_match_weight_rows_and_biasbn_is_zero():
    net = _conv_bn_net()
    before = copy.deepcopy(net.state_dict())
    d = random_direction(net, seed=1)
    assert d.keys() == dict(net.named_parameters()).keys()
    for name, w in net.named_parameters():
        if w.ndim >= 2:
            rows_d, rows_w = d[name].reshape(len(w), -1), w.detach().reshape(len(w), -1)
            torch.testing.assert_close(rows_d.norm(dim=1), rows_w.norm(dim=1))
        else:  # conv/linear biases and BatchNorm gamma, beta
            assert torch.count_nonzero(d[name]) == 0, name
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])


def test_ignore_none_includes_biases_and_bn_rescaled_as_one_row():
    net = _conv_bn_net()
    d = random_direction(net, seed=1, ignore="none")
    for name, w in net.named_parameters():
        if w.ndim == 1:
            torch.testing.assert_close(d[name].norm(), w.detach().norm())
            # BatchNorm's beta starts at zero: a zero-norm row gets a zero direction
            assert torch.count_nonzero(d[name]) == (w.numel() if w.norm() > 0 else 0)
    assert torch.count_nonzero(d["1.weight"]) == 3 and torch.count_nonzero(d["1.bias"]) == 0


def test_layer_and_none_normalization():
    net = _conv_bn_net()
    layer = random_direction(net, seed=2, normalization="layer", ignore="none")
    raw = random_direction(net, seed=2, normalization="none", ignore="none")
    for name, w in net.named_parameters():
        torch.testing.assert_close(layer[name].norm(), w.detach().norm())
        if w.norm() == 0:
            continue
        # same draw, only rescaled: parallel to the raw direction
        cos = (layer[name] * raw[name]).sum() / (layer[name].norm() * raw[name].norm())
        torch.testing.assert_close(cos, torch.tensor(1.0), atol=1e-6, rtol=0)
    biasbn = random_direction(net, seed=2, normalization="none")
    assert torch.count_nonzero(biasbn["1.weight"]) == 0
    assert torch.equal(biasbn["0.weight"], raw["0.weight"])


def test_random_direction_is_deterministic_and_follows_the_seed():
    net = _mlp()
    a, b = random_direction(net, seed=3), random_direction(net, seed=3)
    c = random_direction(net, seed=4)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["layers.1.weight"], c["layers.1.weight"])
    assert a["layers.1.weight"].dtype == torch.float64


def test_zero_weight_row_gives_zero_direction_row():
    w = {"w": torch.tensor([[0.0, 0.0], [1.0, 1.0]])}
    d = normalize_direction({"w": torch.ones(2, 2)}, w)
    assert d["w"][0].abs().sum() == 0
    torch.testing.assert_close(d["w"][1].norm(), torch.tensor(2.0).sqrt())


def test_direction_validation():
    net = _mlp()
    with pytest.raises(FuncspaceError, match="normalization"):
        random_direction(net, seed=0, normalization="filters")
    with pytest.raises(FuncspaceError, match="ignore"):
        random_direction(net, seed=0, ignore="bias")
    with pytest.raises(FuncspaceError, match="seed"):
        random_direction(net, seed=1.5)
    with pytest.raises(FuncspaceError, match="does not have"):
        normalize_direction({"nope": torch.zeros(1)}, net)
    with pytest.raises(FuncspaceError, match="shape"):
        normalize_direction({"layers.1.weight": torch.zeros(2, 2)}, net)


# --------------------------------------------------------------------------- slices


def test_plane_center_equals_evaluate_at_the_model():
    net, data = _mlp(), _data()
    s = plane(net, data, resolution=(5, 3), seed=0)
    assert isinstance(s, Slice2D) and s.values["loss"].shape == (5, 3)
    at = evaluate(net, data)
    assert s.x[2] == 0 and s.y[1] == 0
    assert s.values["error"][2, 1] == pytest.approx(float(np.asarray(at.error)[0]), abs=1e-12)
    assert s.values["loss"][2, 1] == pytest.approx(float(np.asarray(at.loss)[0]), rel=1e-9)


def test_plane_equals_a_slow_explicit_loop():
    net, data = _mlp(), _data()
    before = copy.deepcopy(net.state_dict())
    span = ((-0.5, 1.5), (-1.0, 0.25))
    s = plane(net, data, span=span, resolution=(4, 3), seed=7, ignore="none")
    _assert_plane_equals_slow_loop(s, net, data)
    d1, d2 = s.directions
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # the two random directions differ (drawn one after the other from one stream)
    assert not torch.equal(d1["layers.1.weight"], d2["layers.1.weight"])
    out = s.to_dict()
    assert set(out) == {"x", "y", "values", "directions", "meta"}
    assert out["meta"]["normalization"] == "filter" and out["meta"]["seed"] == 7


def test_plane_with_given_directions_fills_missing_names_with_zero():
    net, data = _mlp(), _data()
    d = {"layers.3.weight": torch.randn(3, 7, dtype=torch.float64)}
    e = {"layers.1.bias": torch.randn(7, dtype=torch.float64)}
    s = plane(net, data, [d, e], resolution=(3, 3), span=((-1, 1), (0, 2)))
    assert s.meta["directions"] == "given"
    assert torch.count_nonzero(s.directions[0]["layers.1.weight"]) == 0
    origin = parameters_of(net)
    point = dict(origin)
    point["layers.3.weight"] = origin["layers.3.weight"] + d["layers.3.weight"]
    point["layers.1.bias"] = origin["layers.1.bias"] + 2 * e["layers.1.bias"]
    assert s.values["loss"][2, 2] == pytest.approx(_slow(net, point, data)[1], rel=1e-9)


def test_line_equals_slow_loop():
    net, data = _mlp(), _data()
    d = random_direction(net, seed=5)
    s = line(net, data, d, span=(-2, 2), points=5)
    assert isinstance(s, Slice1D) and s.coordinates.tolist() == [-2, -1, 0, 1, 2]
    origin = parameters_of(net)
    for t, error, loss in zip(s.coordinates, s.values["error"], s.values["loss"], strict=True):
        ref = _slow(net, {n: origin[n] + t * d[n] for n in origin}, data)
        assert (error, loss) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    random = line(net, data, points=3, seed=5)
    torch.testing.assert_close(random.directions[0], d)


def test_slice_validation():
    net, data = _mlp(), _data()
    with pytest.raises(FuncspaceError, match="resolution"):
        plane(net, data, resolution=(1, 3))
    with pytest.raises(FuncspaceError, match="span"):
        plane(net, data, span=((1, -1), (0, 1)))
    with pytest.raises(FuncspaceError, match="two dicts"):
        plane(net, data, [random_direction(net, seed=0)])
    with pytest.raises(FuncspaceError, match="points"):
        line(net, data, points=1)
    with pytest.raises(FuncspaceError, match="nn.Module"):
        line(parameters_of(net), data)


# --------------------------------------------------------------------------- interpolation


def test_interpolate_endpoints_equal_each_models_values():
    a, b, data = _mlp(0), _mlp(1), _data()
    path = interpolate(a, b, data, points=5)
    assert path.coordinates.tolist() == [0, 0.25, 0.5, 0.75, 1]
    ea, eb = evaluate(a, data), evaluate(b, data)
    assert path.values["error"][0] == pytest.approx(float(np.asarray(ea.error)[0]), abs=1e-12)
    assert path.values["loss"][0] == pytest.approx(float(np.asarray(ea.loss)[0]), rel=1e-9)
    assert path.values["error"][-1] == pytest.approx(float(np.asarray(eb.error)[0]), abs=1e-12)
    assert path.values["loss"][-1] == pytest.approx(float(np.asarray(eb.loss)[0]), rel=1e-9)
    pa, pb = parameters_of(a), parameters_of(b)
    mid = {n: 0.5 * (pa[n] + pb[n]) for n in pa}
    assert path.values["loss"][2] == pytest.approx(_slow(a, mid, data)[1], rel=1e-9)
    assert path.meta["kind"] == "interpolation"


def test_interpolate_a_subset_of_layers_keeps_the_rest_at_a():
    a, b, data = _mlp(0), _mlp(1), _data()
    path = interpolate(a, b, data, points=3, layers=["layers.1"])
    pa, pb = parameters_of(a), parameters_of(b)
    hybrid = {n: (pb[n] if n.startswith("layers.1.") else pa[n]) for n in pa}
    assert path.values["loss"][-1] == pytest.approx(_slow(a, hybrid, data)[1], rel=1e-9)
    assert torch.count_nonzero(path.directions[0]["layers.3.bias"]) == 0
    with pytest.raises(FuncspaceError, match="neither a parameter nor a module"):
        interpolate(a, b, data, layers=["layers.9"])


def test_interpolate_refuses_mismatches():
    data = _data()
    with pytest.raises(FuncspaceError, match="shape"):
        interpolate(_mlp(), MLP(5, [6], 3, seed=0).double(), data)
    a = MLP(5, [7], 3, batchnorm=True, seed=0).double()
    b = copy.deepcopy(a)
    b.layers[2].running_mean.add_(1.0)
    with pytest.raises(FuncspaceError, match="recalibrate"):
        interpolate(a, b, data)


# --------------------------------------------------------------------------- trajectory PCA


def _planar_trajectory(points=9, seed=0):
    """Points c + a_i u + b_i v with u, v orthonormal over two tensors."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(12, 2, generator=gen, dtype=torch.float64))
    center = torch.randn(12, generator=gen, dtype=torch.float64)
    ts = torch.linspace(0, 1, points, dtype=torch.float64)
    coeffs = torch.stack([3 * (1 - ts), torch.sin(4 * ts)], dim=1)  # not on a line
    flat = center + coeffs @ q.T
    trajectory = [{"w": f[:8].reshape(2, 4), "b": f[8:]} for f in flat]
    return trajectory, q, coeffs


def test_pca_recovers_a_planar_trajectory_with_explained_variance_one():
    trajectory, q, coeffs = _planar_trajectory()
    pca = trajectory_pca(trajectory)
    assert isinstance(pca, TrajectoryPCA)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-10)
    assert pca.explained_variance_ratio[0] >= pca.explained_variance_ratio[1] > 0
    dirs = torch.stack([torch.cat([d["w"].reshape(-1), d["b"]]) for d in pca.directions], 1)
    torch.testing.assert_close(dirs.T @ dirs, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(dirs @ dirs.T, q @ q.T)  # the same plane
    # coordinates are w_i - w_final on the plane, exactly (the points lie on it)
    final = torch.cat([trajectory[-1]["w"].reshape(-1), trajectory[-1]["b"]])
    for point, xy in zip(trajectory, pca.coordinates, strict=True):
        w = torch.cat([point["w"].reshape(-1), point["b"]])
        torch.testing.assert_close(dirs @ torch.as_tensor(xy), w - final)
    assert np.allclose(pca.coordinates[-1], 0) and (pca.coordinates[0] >= 0).all()
    # variance along the plane equals the variance of the 2-D coefficients
    var = np.linalg.eigvalsh(np.cov(coeffs.numpy().T))[::-1]
    assert np.allclose(pca.explained_variance, var)


def test_pca_of_modules_and_a_given_center():
    models = [_mlp(s) for s in range(4)]
    pca = trajectory_pca(models, center=models[0])
    assert np.allclose(pca.coordinates[0], 0)
    assert 0 < pca.explained_variance_ratio.sum() < 1
    assert pca.directions[0].keys() == parameters_of(models[0]).keys()
    (x0, x1), (y0, y1) = pca.span()
    assert x0 <= pca.coordinates[:, 0].min() and x1 >= pca.coordinates[:, 0].max()
    assert y0 <= pca.coordinates[:, 1].min() and y1 >= pca.coordinates[:, 1].max()


def test_pca_refuses_degenerate_trajectories():
    with pytest.raises(FuncspaceError, match="at least 3"):
        trajectory_pca([{"w": torch.zeros(2)}] * 2)
    on_a_line = [{"w": torch.tensor([t, 2 * t], dtype=torch.float64)} for t in range(4)]
    with pytest.raises(FuncspaceError, match="fewer than two"):
        trajectory_pca(on_a_line)
    with pytest.raises(FuncspaceError, match="shape"):
        trajectory_pca([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}, {"w": torch.zeros(2)}])


def test_plane_on_the_pca_directions_of_a_trajectory():
    net, data = _mlp(), _data()
    origin = parameters_of(net)
    gen = torch.Generator().manual_seed(1)
    steps = [
        {
            n: p + 0.1 * k * torch.randn(p.shape, generator=gen, dtype=p.dtype)
            for n, p in origin.items()
        }
        for k in range(4, 0, -1)
    ]
    pca = trajectory_pca([*steps, origin])
    s = plane(net, data, pca, resolution=(3, 3))
    assert s.meta["directions"] == "pca"
    assert s.meta["explained_variance_ratio"] == pytest.approx(pca.explained_variance_ratio)
    assert plots.plot_plane(s, trajectory=pca).axes[0].get_xlabel().startswith("PC 1 (")
    assert (s.x[0], s.x[-1]) == pytest.approx(pca.span()[0])
    # a grid point equals the explicit point on the PCA plane
    point = {
        n: origin[n] + s.x[0] * pca.directions[0][n] + s.y[2] * pca.directions[1][n] for n in origin
    }
    assert s.values["loss"][0, 2] == pytest.approx(_slow(net, point, data)[1], rel=1e-9)


# --------------------------------------------------------------------------- plots


def _slices():
    t = np.linspace(-1, 1, 7)
    s1 = Slice1D(t, {"error": t**2 / 2, "loss": t**2}, (), {"kind": "line"})
    x, y = np.linspace(-1, 1, 5), np.linspace(-2, 2, 6)
    s2 = Slice2D(
        x, y, {"error": np.add.outer(x**2, y**2) / 8, "loss": np.add.outer(x**2, y**2)}, ()
    )
    return s1, s2


def test_plots_return_figures_with_one_axes_per_metric_and_save(tmp_path):
    from matplotlib.figure import Figure

    s1, s2 = _slices()
    trajectory, *_ = _planar_trajectory()
    pca = trajectory_pca(trajectory)
    energy = types.SimpleNamespace(
        sigmas=np.array([0.0, 0.1, 0.2]),
        mean={"error": np.array([0.0, 0.05, 0.2]), "loss": np.array([0.1, 0.2, 0.6])},
        std={"error": np.array([0.0, 0.01, 0.02]), "loss": np.array([0.0, 0.02, 0.05])},
    )
    figures = {
        "line": (plots.plot_line(s1), 2),
        "line_one": (plots.plot_line(s1, "loss"), 1),
        "contour": (plots.plot_plane(s2, trajectory=pca), 2),
        "surface": (plots.plot_plane(s2, kind="surface", metrics="loss", trajectory=pca), 1),
        "levels": (plots.plot_plane(s2, metrics=["error"], levels=5), 1),
        "energy": (plots.plot_local_energy(energy), 2),
        "energy_many": (plots.plot_local_energy({"SGD": energy, "ADV": energy}, "error"), 1),
    }
    for name, (fig, axes) in figures.items():
        assert isinstance(fig, Figure), name
        assert len(fig.axes) == axes, name
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    surface_axes = figures["surface"][0].axes[0]
    assert surface_axes.name == "3d"
    contour_axes = figures["contour"][0].axes[0]
    assert len(contour_axes.lines) >= 3  # trajectory, start, end


def test_plots_refuse_bad_input():
    s1, s2 = _slices()
    bad = Slice1D(s1.coordinates, {"loss": np.where(s1.coordinates > 0, np.nan, 1.0)}, ())
    with pytest.raises(FuncspaceError, match="non-finite"):
        plots.plot_line(bad)
    with pytest.raises(FuncspaceError, match="no metric"):
        plots.plot_plane(s2, metrics="accuracy")
    with pytest.raises(FuncspaceError, match="kind"):
        plots.plot_plane(s2, kind="heatmap")
    with pytest.raises(FuncspaceError, match="trajectory"):
        plots.plot_plane(s2, trajectory=np.zeros((3, 3)))
    with pytest.raises(FuncspaceError, match="sigmas"):
        plots.plot_local_energy(object())


def test_module_surface():
    assert set(landscape.__all__) >= {"plane", "line", "interpolate", "trajectory_pca"}
    assert set(plots.__all__) == {"plot_line", "plot_plane", "plot_local_energy"}


def test_plane_is_one_batched_evaluate_affine_call(monkeypatch):
    calls = []

    class Counting(landscape._engine.Evaluator):
        def evaluate_affine(self, origin, directions, coefficients, *args, **kwargs):
            calls.append(coefficients.shape)
            return super().evaluate_affine(origin, directions, coefficients, *args, **kwargs)

    monkeypatch.setattr(landscape._engine, "Evaluator", Counting)
    plane(_mlp(), _data(), resolution=(4, 3))
    assert calls == [torch.Size([12, 2])]


def test_plane_of_a_conv_bn_net_equals_slow_loop():
    net = _conv_bn_net().double()
    gen = torch.Generator().manual_seed(3)
    data = (
        torch.randn(20, 1, 6, 6, generator=gen, dtype=torch.float64),
        torch.randint(0, 2, (20,), generator=gen),
    )
    s = plane(net, data, resolution=(3, 2), seed=1)
    _assert_plane_equals_slow_loop(s, net, data)
    recalibrated = plane(
        net, data, resolution=(3, 2), seed=1, settings=Settings(batchnorm="recalibrate")
    )
    assert recalibrated.meta["batchnorm"] == "recalibrate"
    assert np.isfinite(recalibrated.values["loss"]).all()


def test_a_plane_drawn_from_a_generator_records_how_to_draw_it_again():
    import base64

    net, data = _mlp(), _data()
    gen = torch.Generator().manual_seed(11)
    gen.manual_seed(11)
    torch.randn(3, generator=gen)  # a generator already in use
    s = landscape.plane(net, data, resolution=(2, 2), seed=gen)
    state = base64.b64decode(s.meta["generator_state"])
    again = torch.Generator()
    again.set_state(torch.tensor(list(state), dtype=torch.uint8))
    redrawn = landscape.plane(net, data, resolution=(2, 2), seed=again)
    for a, b in zip(s.directions, redrawn.directions, strict=True):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert s.meta["seed"] is None
