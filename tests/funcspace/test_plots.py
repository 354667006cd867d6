"""Tests for funcspace.plots: ``ax=`` on every plot function, overlaid lines with a legend,
colorbars and thinned contour labels on contour panels."""

from __future__ import annotations

import types

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from funcspace import plots  # noqa: E402
from funcspace.errors import FuncspaceError  # noqa: E402
from funcspace.landscape import Slice1D, Slice2D, line, plane  # noqa: E402


@pytest.fixture(scope="module")
def slices() -> tuple[Slice1D, Slice1D, Slice2D]:
    """Two real lines and a real plane of a tiny MLP (float64, random data)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 4, generator=gen, dtype=torch.float64), torch.randint(0, 3, (32,)))
    return (
        line(net, data, points=5, seed=0),
        line(net, data, points=7, seed=1),
        plane(net, data, resolution=(6, 5), seed=0),
    )


def _energy(scale: float = 1.0) -> types.SimpleNamespace:
    s = np.array([0.0, 0.1, 0.2])
    return types.SimpleNamespace(
        sigmas=s,
        mean={"error": scale * s**2, "loss": scale * s},
        std={"error": 0.1 * s, "loss": 0.2 * s},
    )


def _bowl(levels_span: float = 1.0) -> Slice2D:
    x, y = np.linspace(-1, 1, 21), np.linspace(-2, 2, 25)
    bowl = np.add.outer(x**2, y**2) * levels_span
    return Slice2D(x, y, {"error": bowl / 8 + 0.2, "loss": bowl + 2.3}, ())


# --------------------------------------------------------------------------- ax=


def test_ax_single_axes_draws_there_and_returns_its_figure(slices):
    s1, _, s2 = slices
    fig = Figure()
    left, right, middle = fig.subplots(1, 3)
    assert plots.plot_line(s1, "loss", ax=left) is fig
    assert plots.plot_plane(s2, metrics="error", ax=right) is fig
    assert plots.plot_local_energy(_energy(), "error", ax=middle) is fig
    assert len(fig.axes) == 3  # no new axes: colorbars are insets of their panel
    assert len(left.lines) == 2  # the curve and the dotted origin
    assert right.get_title() == "error" and right.collections
    assert middle.get_title() == "error" and len(middle.lines) == 1
    fig3d = Figure()
    ax3d = fig3d.add_subplot(projection="3d")
    assert plots.plot_plane(s2, "surface", metrics="loss", ax=ax3d) is fig3d
    assert len(fig3d.axes) == 1 and ax3d.get_title() == "loss"


@pytest.mark.parametrize("container", [list, tuple, np.array])
def test_ax_sequence_one_per_metric(slices, container):
    s1, _, s2 = slices
    for draw, metrics in [
        (lambda ax: plots.plot_line(s1, ax=ax), ["error", "loss"]),
        (lambda ax: plots.plot_plane(s2, ax=ax), ["error", "loss"]),
        (lambda ax: plots.plot_local_energy(_energy(), ax=ax), ["error", "loss"]),
    ]:
        fig = Figure()
        axes = fig.subplots(1, 2)
        assert draw(container(list(axes))) is fig
        assert [a.get_title() for a in axes] == metrics
        assert len(fig.axes) == 2


def test_ax_wrong_count_or_kind_is_refused(slices):
    s1, _, s2 = slices
    fig = Figure()
    one, two, three = fig.subplots(1, 3)
    with pytest.raises(FuncspaceError, match="ax must be 2 Axes"):
        plots.plot_line(s1, ax=one)
    with pytest.raises(FuncspaceError, match="ax must be 2 Axes"):
        plots.plot_plane(s2, ax=[one, two, three])
    with pytest.raises(FuncspaceError, match="ax must be 1 Axes"):
        plots.plot_local_energy(_energy(), "loss", ax=[one, two])
    with pytest.raises(FuncspaceError, match="ax must hold matplotlib Axes"):
        plots.plot_line(s1, "loss", ax=fig)
    with pytest.raises(FuncspaceError, match="same figure"):
        plots.plot_line(s1, ax=[one, Figure().subplots()])
    with pytest.raises(FuncspaceError, match="3-D Axes"):
        plots.plot_plane(s2, "surface", metrics="loss", ax=one)
    with pytest.raises(FuncspaceError, match="2-D Axes"):
        plots.plot_plane(s2, metrics="loss", ax=Figure().add_subplot(projection="3d"))
    with pytest.raises(FuncspaceError, match="figsize"):
        plots.plot_line(s1, "loss", ax=one, figsize=(3, 3))
    assert not any(a.lines or a.collections for a in (one, two, three))


# --------------------------------------------------------------------------- overlays


def test_plot_line_overlays_a_dict_of_slices_with_a_legend(slices):
    a, b, _ = slices
    fig = plots.plot_line({"seed 0": a, "seed 1": b})
    assert len(fig.axes) == 2
    for ax, metric in zip(fig.axes, ["error", "loss"], strict=True):
        assert ax.get_title() == metric and ax.get_ylabel() == metric
        curves = [ln for ln in ax.lines if not ln.get_label().startswith("_")]
        assert [ln.get_label() for ln in curves] == ["seed 0", "seed 1"]
        assert len(curves[1].get_xdata()) == 7
        legend = ax.get_legend()
        assert [t.get_text() for t in legend.get_texts()] == ["seed 0", "seed 1"]
    # one curve: no legend
    assert plots.plot_line(a).axes[0].get_legend() is None
    assert plots.plot_line({"only": a}).axes[0].get_legend() is None
    assert plots.plot_local_energy(_energy()).axes[0].get_legend() is None
    many = plots.plot_local_energy({"SGD": _energy(), "ADV": _energy(2.0)})
    assert many.axes[0].get_legend() is not None


def test_plot_line_overlay_refuses_missing_metrics_and_bad_entries(slices):
    a, _, _ = slices
    t = a.coordinates
    other = Slice1D(t, {"loss": t**2}, ())
    with pytest.raises(FuncspaceError, match="slice 'B' has no metric 'error'"):
        plots.plot_line({"A": a, "B": other})
    assert len(plots.plot_line({"A": a, "B": other}, "loss").axes) == 1
    with pytest.raises(FuncspaceError, match="nothing to plot"):
        plots.plot_line({})
    with pytest.raises(FuncspaceError, match="slice 'B' must be a Slice1D"):
        plots.plot_line({"A": a, "B": np.zeros(3)})
    bad = Slice1D(t, {"loss": np.full(len(t), np.inf)}, ())
    with pytest.raises(FuncspaceError, match="slice 'B' has .* non-finite"):
        plots.plot_line({"A": a, "B": bad}, "loss")


# --------------------------------------------------------------------------- contours


def test_contour_panels_have_a_labelled_colorbar(slices):
    _, _, s2 = slices
    fig = plots.plot_plane(s2)
    assert len(fig.axes) == 2  # colorbars live inside their panel, not beside it
    for ax, metric in zip(fig.axes, ["error", "loss"], strict=True):
        (contours,) = ax.collections
        assert contours.colorbar is not None
        assert contours.colorbar.ax in ax.child_axes
        assert contours.colorbar.ax.get_ylabel() == metric
        assert ax.get_title() == metric
    logged = plots.plot_plane(_bowl(), metrics="loss", log=True)
    assert logged.axes[0].collections[0].colorbar.ax.get_ylabel() == "log10 loss"
    surface = plots.plot_plane(s2, "surface")
    assert [a.name for a in surface.axes] == ["3d", "3d"]


def test_contour_labels_are_thinned_and_distinct():
    fig = plots.plot_plane(_bowl(), metrics="loss", levels=30)
    ax = fig.axes[0]
    contours = ax.collections[0]
    labels = {t.get_text() for t in ax.texts}
    assert len(contours.levels) > 20
    assert 2 <= len(labels) <= 6
    assert all(len(text) <= 4 for text in labels)  # short, e.g. "4.3"
    # close levels (a gentle ramp) still get distinct labels, where "%.3g" gives "2.3" to all
    x = np.linspace(0, 1, 9)
    ramp = Slice2D(x, x, {"loss": 2.3 + 1e-4 * np.add.outer(x, 0 * x)}, ())
    ax = plots.plot_plane(ramp, levels=12).axes[0]
    texts = {t.get_text() for t in ax.texts}
    assert 3 <= len(texts) <= 6


def test_new_figures_are_constrained_and_save(slices, tmp_path):
    a, b, s2 = slices
    for name, fig in {
        "lines": plots.plot_line({"a": a, "b": b}),
        "plane": plots.plot_plane(s2, trajectory=[[0.5, 0.5], [0.0, 0.0]]),
        "energy": plots.plot_local_energy({"SGD": _energy(), "ADV": _energy(2.0)}),
    }.items():
        assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
