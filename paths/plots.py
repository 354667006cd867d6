"""Plots of paths: several profiles on one axes, and the plane through a path's ends and a
third point (its bend) with the paths drawn on it.

Drawing follows :mod:`funcspace.plots` (matplotlib imported on first use, a new
:class:`~matplotlib.figure.Figure` without ``pyplot``, or ``ax=`` to draw into your own, the
Figure returned, non-finite values refused). :func:`path_plane` computes what
:func:`plot_path_plane` draws, so the numbers can be kept and drawn again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from funcspace.errors import FuncspaceError

from .barrier import Barrier
from .path import PathError
from .plane import PathPlane
from .profile import Profile

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    AxesArg = Axes | Sequence[Axes] | np.ndarray | None

#: Colors of the paths drawn on a plane (the contours use viridis).
_PATH_COLORS = ("C3", "C1", "C0", "C6", "C4", "C5")


def _plots():
    from funcspace import plots

    return plots


def _checked_draw(call, *args: Any, **kwargs: Any) -> Any:
    """A funcspace.plots helper, its errors as PathError (one exception for paths)."""
    try:
        return call(*args, **kwargs)
    except PathError:
        raise
    except FuncspaceError as err:
        raise PathError(str(err)) from None


def _curve(item: Profile | Barrier, metric: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The (sorted) ``t`` and values of ``metric`` of a profile or a barrier's evaluations."""
    if isinstance(item, Barrier):
        if item.metric != metric:
            raise PathError(
                f"{where} is a barrier of {item.metric!r}, not {metric!r}; plot it with "
                f"metric={item.metric!r} or measure the barrier of {metric!r}"
            )
        t, values = item.profile_t, item.profile_values
    else:
        if metric not in item.values:
            known = ", ".join(map(repr, item.values))
            raise PathError(f"{where} has no metric {metric!r}; it has {known}")
        t, values = item.t, item.values[metric]
    order = np.argsort(t, kind="stable")
    values = _checked_draw(_plots()._finite, np.asarray(values)[order], metric, where)
    return np.asarray(t, dtype=np.float64)[order], values


def _peak(item: Profile | Barrier, t: np.ndarray, f: np.ndarray) -> tuple[float, float, float]:
    """Where the curve rises highest above the chord between its end values: ``(t, f, chord)``
    (``t`` NaN without both ends or without a rise)."""
    if isinstance(item, Barrier):
        f0, f1 = item.ends
        k = int(np.argmin(np.abs(t - item.t)))
    else:
        if not (t[0] == 0.0 and t[-1] == 1.0):
            return np.nan, np.nan, np.nan
        f0, f1 = f[0], f[-1]
        k = int(np.argmax(f - ((1 - t) * f0 + t * f1)))
    chord = (1 - t[k]) * f0 + t[k] * f1
    if not f[k] > chord:
        return np.nan, np.nan, np.nan
    return float(t[k]), float(f[k]), float(chord)


def plot_profiles(
    profiles: Profile | Barrier | Sequence[Profile | Barrier],
    metric: str = "error",
    labels: Sequence[str] | None = None,
    *,
    barrier: bool = True,
    ax: Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Several profiles of one metric on one axes: ``t`` across, one line each.

    Parameters
    ----------
    profiles : Profile, Barrier, or a sequence of them
        :func:`paths.profile` results, or :func:`paths.barrier` results (drawn through every
        point the search evaluated); paths of any kinds.
    metric : str
        The metric drawn; a barrier must be of this metric.
    labels : sequence of str, optional
        One per profile; the legend shows each with its path's kind (and its BatchNorm mode
        when the profiles' modes differ).
    barrier : bool
        Mark where each curve rises highest above the chord between its end values (a
        barrier's own ``t``): the chord dotted, a vertical segment up to the peak. A profile
        without both ends, or one that never rises above the chord, gets no mark.
    ax : Axes, optional
        Draw into it (None: a new figure).
    figsize : (float, float), optional
        Size of a new figure in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or that of ``ax``.

    Raises
    ------
    PathError
        For no profiles, something that is not a Profile or Barrier, labels that do not match,
        a metric a profile lacks, non-finite values, or ``ax`` that is not one Axes.

    Examples
    --------
    >>> import numpy as np
    >>> from funcspace.evaluation import Settings
    >>> t = np.linspace(0, 1, 5)
    >>> bump = Profile(t, {"error": 0.1 + t * (1 - t)}, "linear", "none", Settings())
    >>> fig = plot_profiles([bump, bump], labels=["x", "y"])
    >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    ['x (linear)', 'y (linear)']
    """
    if isinstance(profiles, (Profile, Barrier)):
        items: list[Any] = [profiles]
    elif isinstance(profiles, Sequence) and not isinstance(profiles, str):
        items = list(profiles)
    else:
        raise PathError(
            "profiles must be a paths.Profile or paths.Barrier or a sequence of them, got "
            f"{type(profiles).__name__}"
        )
    if not items:
        raise PathError("nothing to plot: no profiles")
    for i, item in enumerate(items):
        if not isinstance(item, (Profile, Barrier)):
            raise PathError(
                f"profiles[{i}] must be a paths.Profile or paths.Barrier, got {type(item).__name__}"
            )
    if not isinstance(metric, str):
        raise PathError(f"metric must be a metric name, got {metric!r}")
    if labels is None:
        names: list[str | None] = [None] * len(items)
    elif isinstance(labels, str) or not isinstance(labels, Sequence):
        raise PathError(f"labels must be a sequence of strings, one per profile, got {labels!r}")
    else:
        names = [str(label) for label in labels]
        if len(names) != len(items):
            raise PathError(f"{len(names)} labels for {len(items)} profiles; give one each")
    curves = [_curve(item, metric, f"profiles[{i}]") for i, item in enumerate(items)]
    fig, (axis,) = _checked_draw(_plots()._panels, ax, [metric], figsize)
    show_mode = len({item.batchnorm for item in items}) > 1
    for i, (item, label, (t, f)) in enumerate(zip(items, names, curves, strict=True)):
        color = f"C{i}"
        text = item.kind if label is None else f"{label} ({item.kind})"
        if show_mode:
            text += f", BatchNorm {item.batchnorm}"
        axis.plot(t, f, marker=".", markersize=4, color=color, label=text)
        if barrier:
            at, peak, chord = _peak(item, t, f)
            if np.isfinite(at):
                ends = (f[0], f[-1]) if isinstance(item, Profile) else item.ends
                style = {"color": color, "linewidth": 0.8, "label": "_chord"}
                axis.plot([0.0, 1.0], ends, linestyle=":", alpha=0.7, **style)
                axis.plot([at, at], [chord, peak], linestyle="--", **style)
                axis.plot([at], [peak], marker="v", color=color, linestyle="none", label="_peak")
    axis.set_xlabel("t (a at 0, b at 1)")
    axis.set_ylabel(metric)
    axis.set_title(metric)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return fig


def plot_path_plane(
    found: PathPlane,
    metric: str | Sequence[str] | None = None,
    *,
    levels: int | Sequence[float] = 20,
    log: bool = False,
    ax: AxesArg = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Contours of a :func:`path_plane` with its paths drawn on them (one panel per metric).

    The background is :func:`funcspace.plots.plot_plane`; each path is a line (labelled with
    its largest distance from the plane when it leaves it), ``a`` a circle at ``(0, 0)``,
    ``b`` a star at ``(1, 0)``, the third point a square. The axes have equal scales.

    Parameters
    ----------
    found : PathPlane
    metric : str, sequence of str, or None
        Which metrics to draw (None: all the plane has).
    levels : int or sequence of float
        Contour levels, as :func:`funcspace.plots.plot_plane`.
    log : bool
        Draw ``log10`` of the values.
    ax : Axes, sequence of Axes, or None
        Draw into these, one per metric (None: a new figure).
    figsize : (float, float), optional
        Size of a new figure in inches.

    Returns
    -------
    matplotlib.figure.Figure
        The new figure, or that of ``ax``.

    Raises
    ------
    PathError
        For something that is not a PathPlane, a metric it lacks, or unusable ``ax``.
    """
    if not isinstance(found, PathPlane):
        raise PathError(
            f"plot_path_plane draws a paths.PathPlane (from path_plane), got {type(found).__name__}"
        )
    plots = _plots()
    chosen = _checked_draw(plots._pick, list(found.slice.values), metric, "plane")
    if ax is None and figsize is None:  # equal scales: the height follows the plane's shape
        x, y = found.slice.x, found.slice.y
        ratio = (y[-1] - y[0]) / (x[-1] - x[0])
        figsize = (5.0 * len(chosen), float(np.clip(3.2 * ratio + 1.9, 3.0, 9.0)))
    fig, axes = _checked_draw(plots._panels, ax, chosen, figsize)
    _checked_draw(
        plots.plot_plane, found.slice, metrics=chosen, levels=levels, log=log, ax=list(axes)
    )
    for axis in axes:
        for k, (label, xy) in enumerate(found.coordinates.items()):
            off = float(found.residual[label].max())
            text = label if off < 1e-9 else f"{label} (up to {off:.2g} off the plane)"
            color = _PATH_COLORS[k % len(_PATH_COLORS)]
            axis.plot(xy[:, 0], xy[:, 1], color=color, linewidth=1.4, label=text)
        axis.plot([0.0], [0.0], marker="o", color="k", linestyle="none", label="a")
        axis.plot([1.0], [0.0], marker="*", markersize=10, color="k", linestyle="none", label="b")
        if found.through is not None:
            axis.plot(*found.through, marker="s", color="k", linestyle="none", label=found.third)
        axis.set_aspect("equal")
        axis.set_xlabel("along b - a (units of |b - a|)")
        axis.set_ylabel(
            "random, orthogonal" if found.third == "random" else f"toward the {found.third}"
        )
        if ax is not None:
            axis.legend(loc="best", fontsize=7)
    if ax is None:  # one legend below the panels: inside one, it would hide the paths it names
        handles = axes[0].get_legend_handles_labels()[0]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7)
    return fig


__all__ = ["plot_path_plane", "plot_profiles"]
