"""Plots of landscape slices and local-energy curves (matplotlib, imported on first use).

Every function builds a :class:`matplotlib.figure.Figure` directly, without ``pyplot``: no
window opens, no global figure state is touched, and it works under any backend (Agg
included). Or pass ``ax=`` (one Axes, or one per panel) to draw into a figure of your own and
compose several plots. Save with ``fig.savefig("plane.png")``; in a notebook it displays as
usual. Non-finite values are refused rather than quietly left out of a plot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from funcspace.errors import FuncspaceError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from funcspace.landscape import Slice1D, Slice2D, TrajectoryPCA

    AxesArg = Axes | Sequence[Axes] | np.ndarray | None

_AXES_SIZE = (4.0, 3.2)
_MAX_LABELLED_LEVELS = 6


def _new_figure(panels: int, figsize: tuple[float, float] | None) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise FuncspaceError(
            "plots need matplotlib; install it with `pip install matplotlib` (or funcspace's "
            "plot dependencies)"
        ) from err
    if figsize is None:
        figsize = (_AXES_SIZE[0] * panels, _AXES_SIZE[1])
    return Figure(figsize=figsize, layout="constrained")


def _panels(
    ax: AxesArg,
    chosen: Sequence[str],
    figsize: tuple[float, float] | None,
    projection: str | None = None,
) -> tuple[Figure, list[Axes]]:
    """The figure and one Axes per metric: new ones, or those of ``ax`` after checking them."""
    count = len(chosen)
    if ax is None:
        fig = _new_figure(count, figsize)
        return fig, [fig.add_subplot(1, count, k + 1, projection=projection) for k in range(count)]
    from matplotlib.axes import Axes

    if figsize is not None:
        raise FuncspaceError("figsize only sizes a new figure; with ax=, size ax's figure")
    axes = [ax] if isinstance(ax, Axes) else list(np.ravel(np.asarray(ax, dtype=object)))
    if len(axes) != count:
        raise FuncspaceError(
            f"ax must be {count} Axes, one per metric ({', '.join(chosen)}); got {len(axes)}"
        )
    for a in axes:
        if not isinstance(a, Axes):
            raise FuncspaceError(f"ax must hold matplotlib Axes, got {type(a).__name__}")
    if len({id(a.figure) for a in axes}) > 1:
        raise FuncspaceError("the Axes in ax must all belong to the same figure")
    three_d = projection == "3d"
    if any((a.name == "3d") != three_d for a in axes):
        raise FuncspaceError(
            "surface panels need 3-D Axes (add_subplot(projection='3d'))"
            if three_d
            else "these panels need 2-D Axes, not 3-D ones"
        )
    return axes[0].figure, axes


def _pick(available: Sequence[str], metrics: str | Sequence[str] | None, what: str) -> list[str]:
    if metrics is None:
        chosen = list(available)
    elif isinstance(metrics, str):
        chosen = [metrics]
    else:
        chosen = list(metrics)
    if not chosen:
        raise FuncspaceError(f"nothing to plot: the {what} has no metrics")
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise FuncspaceError(
            f"the {what} has no metric {unknown[0]!r}; it has {', '.join(map(repr, available))}"
        )
    return chosen


def _finite(values: np.ndarray, metric: str, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise FuncspaceError(
            f"{what} has {bad} non-finite value(s) of {metric!r}; nothing is plotted with holes: "
            "narrow the span, or drop that metric"
        )
    return values


def plot_line(
    slice1d: Slice1D | Mapping[str, Slice1D],
    metrics: str | Sequence[str] | None = None,
    *,
    ax: AxesArg = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per metric of 1-D slices (:func:`~funcspace.landscape.line` or
    :func:`~funcspace.landscape.interpolate`), several slices overlaid with a legend.

    Parameters
    ----------
    slice1d : Slice1D or dict of label -> Slice1D
        One slice, or several (``{"SGD": s1, "ADV": s2}``) drawn as labelled curves on the
        same panels; all must have the chosen metrics.
    metrics : str, sequence of str, or None
        Which metrics to draw (None: all those of the first slice, in its order).
    ax : Axes, sequence of Axes, or None
        Draw into these, one per metric (None: a new figure).
    figsize : (float, float) or None
        Size of a new figure in inches (default: 4 x 3.2 per panel).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (one Axes per metric), or that of ``ax``.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from funcspace.landscape import Slice1D
    >>> t = np.linspace(-1, 1, 5)
    >>> s = Slice1D(t, {"error": t**2, "loss": 2 * t**2}, ())
    >>> len(plot_line(s).axes)
    2
    >>> fig = Figure()
    >>> plot_line({"a": s, "b": Slice1D(t, {"loss": t**4}, ())}, "loss", ax=fig.subplots()) is fig
    True
    """
    slices = dict(slice1d) if isinstance(slice1d, Mapping) else {None: slice1d}
    if not slices:
        raise FuncspaceError("nothing to plot: no slices")
    what = {label: "the slice" if label is None else f"slice {label!r}" for label in slices}
    for label, s in slices.items():
        if not isinstance(getattr(s, "values", None), Mapping) or not hasattr(s, "coordinates"):
            raise FuncspaceError(f"{what[label]} must be a Slice1D, got {type(s).__name__}")
    first = next(iter(slices))
    chosen = _pick(list(slices[first].values), metrics, what[first])
    for label, s in slices.items():
        _pick(list(s.values), chosen, what[label])
    fig, axes = _panels(ax, chosen, figsize)
    interpolation = all(s.meta.get("kind") == "interpolation" for s in slices.values())
    for a, metric in zip(axes, chosen, strict=True):
        for index, (label, s) in enumerate(slices.items()):
            values = _finite(s.values[metric], metric, what[label])
            a.plot(s.coordinates, values, marker=".", color=f"C{index}", label=label)
        if interpolation:
            a.set_xlabel("t (a at 0, b at 1)")
        else:
            a.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
            a.set_xlabel("step along the direction")
        a.set_ylabel(metric)
        a.set_title(metric)
        a.grid(alpha=0.3)
        if len(slices) > 1:
            a.legend(fontsize=8)
    return fig


def _trajectory_xy(trajectory: TrajectoryPCA | np.ndarray | Sequence) -> np.ndarray:
    coordinates = getattr(trajectory, "coordinates", trajectory)
    xy = np.asarray(coordinates, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise FuncspaceError(
            f"trajectory must be a TrajectoryPCA or (points, 2) coordinates, got shape {xy.shape}"
        )
    return _finite(xy, "coordinates", "the trajectory")


def _level_labels(levels: np.ndarray) -> dict[float, str]:
    """At most ``_MAX_LABELLED_LEVELS`` evenly spread levels, as the shortest distinct text."""
    step = max(1, math.ceil(len(levels) / _MAX_LABELLED_LEVELS))
    chosen = levels[step // 2 :: step]
    for digits in range(2, 8):
        text = [f"{v:.{digits}g}" for v in chosen]
        if len(set(text)) == len(text):
            break
    return dict(zip(chosen.tolist(), text, strict=True))


def plot_plane(
    slice2d: Slice2D,
    kind: Literal["contour", "surface"] = "contour",
    trajectory: TrajectoryPCA | np.ndarray | None = None,
    *,
    metrics: str | Sequence[str] | None = None,
    levels: int | Sequence[float] = 20,
    log: bool = False,
    ax: AxesArg = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per metric of a 2-D slice: contours with a colorbar, or a 3-D surface.

    Parameters
    ----------
    slice2d : Slice2D
    kind : {"contour", "surface"}
        Contour lines (a few levels labelled inline, a colorbar beside the panel), or a 3-D
        surface.
    trajectory : TrajectoryPCA, (points, 2) array, or None
        Coordinates drawn on top (a line from a circle at the start to a star at the end; on
        a surface, on the floor of the plot). Use the slice made with ``directions=pca``
        around ``pca.center`` so they are positions on the same plane.
    metrics : str, sequence of str, or None
        Which metrics to draw (None: all).
    levels : int or sequence of float
        Contour levels (count or values); at most six of them are labelled.
    log : bool
        Draw ``log10`` of the values (all must be positive), as loss planes often are.
    ax : Axes, sequence of Axes, or None
        Draw into these, one per metric (3-D Axes for ``"surface"``; None: a new figure).
    figsize : (float, float) or None
        Size of a new figure in inches (default: 4 x 3.2 per panel).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (one Axes per metric, each contour panel's colorbar an inset of it),
        or that of ``ax``.

    Examples
    --------
    >>> import numpy as np
    >>> from funcspace.landscape import Slice2D
    >>> x = y = np.linspace(-1, 1, 5)
    >>> bowl = np.add.outer(x**2, y**2)
    >>> fig = plot_plane(Slice2D(x, y, {"loss": bowl}, ()), trajectory=[[1, 1], [0.5, 0], [0, 0]])
    >>> len(fig.axes), fig.axes[0].collections[0].colorbar.ax.get_ylabel()
    (1, 'loss')
    """
    if kind not in ("contour", "surface"):
        raise FuncspaceError(f"unknown kind {kind!r}; choose 'contour' or 'surface'")
    chosen = _pick(list(slice2d.values), metrics, "slice")
    xy = None if trajectory is None else _trajectory_xy(trajectory)
    values = {m: _finite(slice2d.values[m], m, "the slice") for m in chosen}
    if log:
        for metric, z in values.items():
            if (z <= 0).any():
                raise FuncspaceError(f"log=True needs positive values; {metric!r} has some <= 0")
    fig, axes = _panels(ax, chosen, figsize, "3d" if kind == "surface" else None)
    gx, gy = np.meshgrid(slice2d.x, slice2d.y, indexing="ij")
    axis_labels = ["direction 1", "direction 2"]
    ratio = slice2d.meta.get("explained_variance_ratio")
    if slice2d.meta.get("directions") == "pca" and ratio is not None:
        axis_labels = [f"PC {k + 1} ({100 * r:.1f}% of variance)" for k, r in enumerate(ratio)]
    for a, (metric, z) in zip(axes, values.items(), strict=True):
        label = metric
        if log:
            z, label = np.log10(z), f"log10 {metric}"
        if kind == "contour":
            lines = a.contour(gx, gy, z, levels=levels, cmap="viridis", linewidths=0.9)
            labels = _level_labels(np.asarray(lines.levels))
            a.clabel(lines, list(labels), inline=True, fontsize=7, fmt=labels)
            colorbar = fig.colorbar(lines, cax=a.inset_axes((1.04, 0.0, 0.05, 1.0)))
            colorbar.set_label(label)
            if xy is not None:
                a.plot(xy[:, 0], xy[:, 1], color="C3", linewidth=1.2, marker=".", markersize=3)
                a.plot(*xy[0], marker="o", color="C3", linestyle="none", label="start")
                a.plot(*xy[-1], marker="*", color="k", markersize=10, linestyle="none", label="end")
                a.legend(loc="best", fontsize=7)
        else:
            a.plot_surface(gx, gy, z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.9)
            a.set_zlabel(label)
            if xy is not None:
                floor = np.full(len(xy), z.min())
                a.plot(xy[:, 0], xy[:, 1], floor, color="C3", linewidth=1.2)
        a.set_title(label)
        a.set_xlabel(axis_labels[0])
        a.set_ylabel(axis_labels[1])
    return fig


def _energy_curves(result: Any, what: str) -> tuple[np.ndarray, Mapping, Mapping]:
    sigmas = getattr(result, "sigmas", None)
    mean = getattr(result, "mean", None)
    std = getattr(result, "std", None)
    if sigmas is None or not isinstance(mean, Mapping) or not isinstance(std, Mapping):
        raise FuncspaceError(
            f"{what} must be a local-energy result with .sigmas and per-metric .mean and .std "
            f"dicts (funcspace.flatness.local_energy), got {type(result).__name__}"
        )
    return _finite(np.asarray(sigmas), "sigmas", what), mean, std


def plot_local_energy(
    result: Any,
    metrics: str | Sequence[str] | None = None,
    *,
    ax: AxesArg = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Local energy as a curve over sigma, with its spread (mean +- one standard deviation).

    Binary curves (kind ``"flip"``, :func:`binary.local_energy`) are drawn over the fraction of
    flipped weights; they cannot share axes with noise curves.


    Parameters
    ----------
    result : local-energy result, or dict of label -> result
        Anything with ``.sigmas`` (shape ``(S,)``) and per-metric ``.mean`` and ``.std`` dicts
        of shape ``(S,)`` (as :func:`funcspace.flatness.local_energy` returns); a dict of
        several (``{"SGD": r1, "ADV": r2}``) draws one labelled curve each on the same panels.
    metrics : str, sequence of str, or None
        Which metrics to draw (None: those of the first result).
    ax : Axes, sequence of Axes, or None
        Draw into these, one per metric (None: a new figure).
    figsize : (float, float) or None
        Size of a new figure in inches (default: 4 x 3.2 per panel).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure (one Axes per metric), or that of ``ax``.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> s = np.array([0.0, 0.1, 0.2])
    >>> r = SimpleNamespace(sigmas=s, mean={"error": s**2}, std={"error": 0.1 * s})
    >>> len(plot_local_energy({"SGD": r, "ADV": r}).axes)
    1
    """
    results = dict(result) if isinstance(result, Mapping) else {None: result}
    if not results:
        raise FuncspaceError("nothing to plot: no local-energy results")
    curves = {label: _energy_curves(r, f"result {label!r}") for label, r in results.items()}
    first = next(iter(curves.values()))
    kinds = {getattr(r, "kind", None) == "flip" for r in results.values()}
    if len(kinds) > 1:
        raise FuncspaceError(
            "cannot draw flip curves (fractions of flipped binary weights) on the same axes as "
            "noise curves (sigma): plot them separately"
        )
    xlabel = "fraction of flipped weights p" if kinds == {True} else "sigma (relative noise)"
    chosen = _pick(list(first[1]), metrics, "local-energy result")
    fig, axes = _panels(ax, chosen, figsize)
    for a, metric in zip(axes, chosen, strict=True):
        for index, (label, (sigmas, mean, std)) in enumerate(curves.items()):
            if metric not in mean or metric not in std:
                raise FuncspaceError(f"result {label!r} has no {metric!r} curve")
            m = _finite(mean[metric], metric, f"result {label!r}")
            s = _finite(std[metric], metric, f"result {label!r}")
            if m.shape != sigmas.shape or s.shape != sigmas.shape:
                raise FuncspaceError(
                    f"result {label!r}: {metric!r} has {m.shape[0] if m.ndim else 0} values for "
                    f"{len(sigmas)} sigmas"
                )
            color = f"C{index}"
            a.plot(sigmas, m, marker=".", color=color, label=label)
            a.fill_between(sigmas, m - s, m + s, color=color, alpha=0.2, linewidth=0)
        a.set_xlabel(xlabel)
        a.set_ylabel(f"local energy ({metric})")
        a.set_title(metric)
        a.grid(alpha=0.3)
        if len(curves) > 1:
            a.legend(fontsize=8)
    return fig


__all__ = ["plot_line", "plot_local_energy", "plot_plane"]
