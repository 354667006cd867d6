"""Plots of landscape slices and local-energy curves (matplotlib, imported on first use).

Every function builds a :class:`matplotlib.figure.Figure` directly, without ``pyplot``: no
window opens, no global figure state is touched, and it works under any backend (Agg
included). Save it with ``fig.savefig("plane.png")``; in a notebook it displays as usual.
Non-finite values are refused rather than quietly left out of a plot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from funcspace.errors import FuncspaceError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from funcspace.landscape import Slice1D, Slice2D, TrajectoryPCA

_AXES_SIZE = (4.0, 3.2)


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
    slice1d: Slice1D,
    metrics: str | Sequence[str] | None = None,
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per metric of a 1-D slice (:func:`~funcspace.landscape.line` or
    :func:`~funcspace.landscape.interpolate`).

    Parameters
    ----------
    slice1d : Slice1D
    metrics : str, sequence of str, or None
        Which metrics to draw (None: all of them, in the slice's order).
    figsize : (float, float) or None
        Figure size in inches (default: 4 x 3.2 per panel).

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per metric.

    Examples
    --------
    >>> import numpy as np
    >>> from funcspace.landscape import Slice1D
    >>> t = np.linspace(-1, 1, 5)
    >>> fig = plot_line(Slice1D(t, {"error": t**2, "loss": 2 * t**2}, ()))
    >>> len(fig.axes)
    2
    """
    chosen = _pick(list(slice1d.values), metrics, "slice")
    fig = _new_figure(len(chosen), figsize)
    interpolation = slice1d.meta.get("kind") == "interpolation"
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    for ax, metric in zip(axes, chosen, strict=True):
        values = _finite(slice1d.values[metric], metric, "the slice")
        ax.plot(slice1d.coordinates, values, marker=".", color="C0")
        if interpolation:
            ax.set_xlabel("t (a at 0, b at 1)")
        else:
            ax.axvline(0.0, color="0.6", linewidth=0.8, linestyle=":")
            ax.set_xlabel("step along the direction")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    return fig


def _trajectory_xy(trajectory: TrajectoryPCA | np.ndarray | Sequence) -> np.ndarray:
    coordinates = getattr(trajectory, "coordinates", trajectory)
    xy = np.asarray(coordinates, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise FuncspaceError(
            f"trajectory must be a TrajectoryPCA or (points, 2) coordinates, got shape {xy.shape}"
        )
    return _finite(xy, "coordinates", "the trajectory")


def plot_plane(
    slice2d: Slice2D,
    kind: Literal["contour", "surface"] = "contour",
    trajectory: TrajectoryPCA | np.ndarray | None = None,
    *,
    metrics: str | Sequence[str] | None = None,
    levels: int | Sequence[float] = 20,
    log: bool = False,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per metric of a 2-D slice: labelled contours or a 3-D surface.

    Parameters
    ----------
    slice2d : Slice2D
    kind : {"contour", "surface"}
        Contour lines with labels, or a 3-D surface.
    trajectory : TrajectoryPCA, (points, 2) array, or None
        Coordinates drawn on top (a line from a circle at the start to a star at the end; on
        a surface, on the floor of the plot). Use the slice made with ``directions=pca``
        around ``pca.center`` so they are positions on the same plane.
    metrics : str, sequence of str, or None
        Which metrics to draw (None: all).
    levels : int or sequence of float
        Contour levels (count or values).
    log : bool
        Draw ``log10`` of the values (all must be positive), as loss planes often are.
    figsize : (float, float) or None
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per metric (3-D axes for ``"surface"``).

    Examples
    --------
    >>> import numpy as np
    >>> from funcspace.landscape import Slice2D
    >>> x = y = np.linspace(-1, 1, 5)
    >>> bowl = np.add.outer(x**2, y**2)
    >>> fig = plot_plane(Slice2D(x, y, {"loss": bowl}, ()), trajectory=[[1, 1], [0.5, 0], [0, 0]])
    >>> len(fig.axes)
    1
    """
    if kind not in ("contour", "surface"):
        raise FuncspaceError(f"unknown kind {kind!r}; choose 'contour' or 'surface'")
    chosen = _pick(list(slice2d.values), metrics, "slice")
    xy = None if trajectory is None else _trajectory_xy(trajectory)
    fig = _new_figure(len(chosen), figsize)
    gx, gy = np.meshgrid(slice2d.x, slice2d.y, indexing="ij")
    axis_labels = ["direction 1", "direction 2"]
    ratio = slice2d.meta.get("explained_variance_ratio")
    if slice2d.meta.get("directions") == "pca" and ratio is not None:
        axis_labels = [f"PC {k + 1} ({100 * r:.1f}% of variance)" for k, r in enumerate(ratio)]
    for index, metric in enumerate(chosen, start=1):
        z = _finite(slice2d.values[metric], metric, "the slice")
        label = metric
        if log:
            if (z <= 0).any():
                raise FuncspaceError(f"log=True needs positive values; {metric!r} has some <= 0")
            z, label = np.log10(z), f"log10 {metric}"
        if kind == "contour":
            ax = fig.add_subplot(1, len(chosen), index)
            lines = ax.contour(gx, gy, z, levels=levels, cmap="viridis", linewidths=0.9)
            ax.clabel(lines, inline=True, fontsize=7, fmt="%.3g")
            ax.set_aspect("auto")
            if xy is not None:
                ax.plot(xy[:, 0], xy[:, 1], color="C3", linewidth=1.2, marker=".", markersize=3)
                ax.plot(*xy[0], marker="o", color="C3", linestyle="none", label="start")
                ax.plot(
                    *xy[-1], marker="*", color="k", markersize=10, linestyle="none", label="end"
                )
                ax.legend(loc="best", fontsize=7)
        else:
            ax = fig.add_subplot(1, len(chosen), index, projection="3d")
            ax.plot_surface(gx, gy, z, cmap="viridis", linewidth=0, antialiased=True, alpha=0.9)
            ax.set_zlabel(label)
            if xy is not None:
                floor = np.full(len(xy), z.min())
                ax.plot(xy[:, 0], xy[:, 1], floor, color="C3", linewidth=1.2)
        ax.set_title(label)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
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
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Local energy as a curve over sigma, with its spread (mean +- one standard deviation).

    Parameters
    ----------
    result : local-energy result, or dict of label -> result
        Anything with ``.sigmas`` (shape ``(S,)``) and per-metric ``.mean`` and ``.std`` dicts
        of shape ``(S,)`` (as :func:`funcspace.flatness.local_energy` returns); a dict of
        several (``{"SGD": r1, "ADV": r2}``) draws one labelled curve each on the same panels.
    metrics : str, sequence of str, or None
        Which metrics to draw (None: those of the first result).
    figsize : (float, float) or None
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per metric.

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
    chosen = _pick(list(first[1]), metrics, "local-energy result")
    fig = _new_figure(len(chosen), figsize)
    axes = fig.subplots(1, len(chosen), squeeze=False)[0]
    for ax, metric in zip(axes, chosen, strict=True):
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
            ax.plot(sigmas, m, marker=".", color=color, label=label)
            ax.fill_between(sigmas, m - s, m + s, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel("sigma (relative noise)")
        ax.set_ylabel(f"local energy ({metric})")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    return fig


__all__ = ["plot_line", "plot_local_energy", "plot_plane"]
