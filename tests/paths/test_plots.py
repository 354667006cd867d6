"""Plots of paths: profiles overlaid with labels and barrier marks, the plane through a path's
ends and its bend (ends exactly at (0, 0) and (1, 0), a straight path on the x-axis, honest
distances from the plane), clear errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import paths  # noqa: E402
from funcspace.evaluation import Settings  # noqa: E402
from funcspace.landscape import Slice2D  # noqa: E402
from funcspace.models import MLP  # noqa: E402
from paths import PathPlane, path_plane, plot_path_plane, plot_profiles  # noqa: E402


def data(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g)


@pytest.fixture(scope="module")
def ends():
    return MLP(6, [8], 3, seed=0).double(), MLP(6, [8], 3, seed=1).double()


def labelled(axis) -> list[str]:
    return [line.get_label() for line in axis.lines if not line.get_label().startswith("_")]


def bump(kind: str = "linear", height: float = 0.25, mode: str = "none") -> paths.Profile:
    t = np.linspace(0, 1, 9)
    values = {"error": 0.1 + 4 * height * t * (1 - t), "loss": 1 + t}
    return paths.Profile(t, values, kind, mode, Settings())


# --------------------------------------------------------------------------- profiles


def test_one_line_per_profile_with_kind_and_label_in_the_legend():
    fig = plot_profiles([bump(), bump("geodesic", 0.1)], labels=["aligned", "raw"])
    (axis,) = fig.axes
    assert labelled(axis) == ["aligned (linear)", "raw (geodesic)"]
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == labelled(axis) and axis.get_xlabel().startswith("t")
    assert labelled(plot_profiles(bump()).axes[0]) == ["linear"]
    modes = plot_profiles([bump(mode="repair"), bump(mode="recalibrate")]).axes[0]
    assert labelled(modes) == ["linear, BatchNorm repair", "linear, BatchNorm recalibrate"]


def test_the_barrier_is_marked_at_its_peak_for_profiles_and_barriers(ends):
    fig = plot_profiles([bump(), bump(height=0.0)])
    peaks = [line for line in fig.axes[0].lines if line.get_label() == "_peak"]
    assert len(peaks) == 1  # the flat profile never rises above its chord
    assert peaks[0].get_xdata()[0] == 0.5 and peaks[0].get_ydata()[0] == pytest.approx(0.35)
    assert not [
        ln for ln in plot_profiles(bump(), barrier=False).axes[0].lines if ln.get_label() == "_peak"
    ]

    found = paths.barrier(paths.linear(*ends), data(), "loss", resolution=1 / 16, coarse=1 / 8)
    prof = paths.profile(paths.linear(*ends), data(), n=5, settings=Settings(metrics="loss"))
    fig = plot_profiles([found, prof], "loss", labels=["adaptive", "grid"])
    axis = fig.axes[0]
    assert len(labelled(axis)) == 2
    (line,) = [ln for ln in axis.lines if ln.get_label() == "adaptive (linear)"]
    assert len(line.get_xdata()) == found.evaluations
    marks = [ln for ln in axis.lines if ln.get_label() == "_peak"]
    if found.height > 0:
        assert marks[0].get_xdata()[0] == found.t


def test_profiles_draw_into_a_given_axes():
    fig = Figure()
    axis = fig.subplots()
    assert plot_profiles([bump()], "loss", ax=axis) is fig and axis.get_ylabel() == "loss"


def test_bad_profiles_are_refused():
    with pytest.raises(paths.PathError, match="no profiles"):
        plot_profiles([])
    with pytest.raises(paths.PathError, match=r"profiles\[1\] must be"):
        plot_profiles([bump(), {"t": [0, 1]}])
    with pytest.raises(paths.PathError, match="sequence of them"):
        plot_profiles(3.0)
    with pytest.raises(paths.PathError, match="2 labels for 1"):
        plot_profiles([bump()], labels=["a", "b"])
    with pytest.raises(paths.PathError, match="labels must be"):
        plot_profiles([bump()], labels="a")
    with pytest.raises(paths.PathError, match="no metric 'mse'"):
        plot_profiles([bump()], "mse")
    broken = bump()
    broken.values["error"][3] = np.nan
    with pytest.raises(paths.PathError, match="non-finite"):
        plot_profiles([broken])
    with pytest.raises(paths.PathError, match="Axes"):
        plot_profiles([bump()], ax="left")


def test_a_barrier_of_another_metric_is_refused(ends):
    found = paths.barrier(paths.linear(*ends), data(), "loss", resolution=1 / 8, coarse=1 / 8)
    with pytest.raises(paths.PathError, match="barrier of 'loss', not 'error'"):
        plot_profiles([found])


# --------------------------------------------------------------------------- the plane


@pytest.fixture(scope="module")
def geodesic_plane(ends):
    x, y = data()
    path = paths.geodesic(*ends, x)
    # the straight path between the geodesic's own (aligned) ends, and the raw one between
    # the models as given: in other coordinates, so far from the plane
    others = [paths.linear(path.at(0.0), path.at(1.0)), paths.linear(*ends)]
    return path, path_plane(path, (x, y), others=others, n=11, resolution=(5, 4), metric="loss")


def test_the_ends_land_at_zero_and_one_and_the_bend_above_the_axis(geodesic_plane):
    path, found = geodesic_plane
    assert isinstance(found, PathPlane) and isinstance(found.slice, Slice2D)
    xy = found.coordinates["geodesic"]
    assert xy[0].tolist() == [0.0, 0.0]
    assert xy[-1][0] == 1.0 and abs(xy[-1][1]) < 1e-12
    assert found.third == "midpoint" and found.through[1] > 0
    np.testing.assert_allclose(xy[5], found.through, atol=1e-12)  # t = 1/2 is the third point
    off = found.residual["geodesic"]
    assert off[0] == 0 and off[-1] < 1e-12 and off[5] < 1e-12
    assert off.max() > 1e-6  # a geodesic on spheres is curved: it leaves the plane
    # units of |b - a| in both directions: the directions are orthogonal and equally long
    u, v = (torch.cat([d[n].reshape(-1) for n in d]) for d in found.slice.directions)
    assert float(u @ v) == pytest.approx(0.0, abs=1e-12 * float(u @ u))
    assert float(u.norm()) == pytest.approx(found.scale) == pytest.approx(float(v.norm()))
    assert found.slice.values["loss"].shape == (5, 4)
    assert {"slice", "coordinates", "residual", "third"} <= set(found.to_dict())
    assert "PathPlane(geodesic, linear, linear (2)" in repr(found)
    aligned = found.coordinates["linear"]
    np.testing.assert_allclose(aligned, np.c_[np.linspace(0, 1, 11), np.zeros(11)], atol=1e-12)
    assert found.residual["linear"].max() < 1e-12 and found.residual["linear (2)"].max() > 0.1


def test_the_measured_plane_is_the_plane_of_the_coordinates(ends):
    # the grid's point at (1, 0) is b: the loss there is b's own (no BatchNorm here)
    x, y = data()
    found = path_plane(
        paths.linear(*ends), (x, y), n=3, resolution=(4, 3), margin=1.0, metric="loss"
    )
    i = int(np.argmin(np.abs(found.slice.x - 1.0)))
    j = int(np.argmin(np.abs(found.slice.y)))
    assert found.slice.x[i] == pytest.approx(1.0) and found.slice.y[j] == pytest.approx(0.0)
    own = paths.profile(paths.linear(*ends), (x, y), t=[1.0]).values["loss"][0]
    assert found.slice.values["loss"][i, j] == pytest.approx(own, rel=1e-9)


def test_a_straight_path_lies_on_the_x_axis_with_zero_residual(ends):
    found = path_plane(paths.linear(*ends), data(), n=5, resolution=(3, 3))
    xy = found.coordinates["linear"]
    np.testing.assert_allclose(xy[:, 0], np.linspace(0, 1, 5), atol=1e-12)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(found.residual["linear"], 0.0, atol=1e-12)
    assert found.third == "random" and found.through is None


def test_an_explicit_third_point(ends, geodesic_plane):
    path, _ = geodesic_plane
    x, y = data()
    bend = {k: v[0] for k, v in path.params([0.3]).items()}
    found = path_plane(path, (x, y), through=bend, n=11, resolution=(3, 3))
    assert found.third == "given" and found.residual["geodesic"][0] == 0
    straight = path_plane(
        paths.linear(*ends), (x, y), through=MLP(6, [8], 3, seed=7).double(), n=3, resolution=(3, 3)
    )
    assert straight.third == "given" and straight.through[1] > 0


def test_the_plane_is_drawn_with_its_paths(geodesic_plane):
    _, found = geodesic_plane
    fig = plot_path_plane(found)
    axis = fig.axes[0]
    names = labelled(axis)
    assert names[0].startswith("geodesic (up to") and names[1] == "linear"
    assert names[2].startswith("linear (2) (up to") and names[3:] == ["a", "b", "midpoint"]
    fig = Figure()
    axis = fig.subplots()
    assert plot_path_plane(found, "loss", ax=axis, log=True) is fig


def test_bad_planes_are_refused(ends):
    x, y = data()
    a, b = ends
    with pytest.raises(paths.PathError, match="coincide"):
        path_plane(paths.linear(a, a), (x, y))
    with pytest.raises(paths.PathError, match="lies on the line"):
        path_plane(paths.linear(a, b), (x, y), through=paths.linear(a, b).at(0.5))
    with pytest.raises(paths.PathError, match="'layers.1.weight'"):
        path_plane(paths.linear(a, b), (x, y), through={"layers.1.weight": torch.zeros(2)})
    with pytest.raises(paths.PathError, match="through must be"):
        path_plane(paths.linear(a, b), (x, y), through=[1, 2])
    with pytest.raises(paths.PathError, match="margin"):
        path_plane(paths.linear(a, b), (x, y), margin=0)
    with pytest.raises(paths.PathError, match="n must be"):
        path_plane(paths.linear(a, b), (x, y), n=1)
    with pytest.raises(paths.PathError, match="others must be"):
        path_plane(paths.linear(a, b), (x, y), others=paths.linear(a, b))
    other = MLP(6, [5], 3, seed=0).double()
    with pytest.raises(paths.PathError, match="share the architecture"):
        path_plane(paths.linear(a, b), (x, y), others=[paths.linear(other, other)])
    with pytest.raises(paths.PathError, match="path must be"):
        path_plane("linear", (x, y))
    with pytest.raises(paths.PathError, match="PathPlane"):
        plot_path_plane(paths.linear(a, b))
