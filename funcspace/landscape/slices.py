"""Lines and planes around a model, along random, given or PCA directions, each grid measured
in one batched engine call (which reuses the first layer's linearity along the directions)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from funcspace._validate import check_generator, check_int, check_module, check_span
from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import Settings
from funcspace.evaluation.settings import settings_or_legacy
from funcspace.params import Params, parameters_of

from ._checks import complete
from ._engine import meta_of, run
from .directions import Ignore, Normalization, random_direction
from .results import Slice1D, Slice2D, TrajectoryPCA

logger = logging.getLogger(__name__)


def _random(
    model: nn.Module,
    count: int,
    seed: int | torch.Generator,
    normalization: Normalization,
    ignore: Ignore,
) -> tuple[list[Params], dict[str, Any]]:
    """``count`` random directions drawn one after the other from ``seed``, and their meta.

    A seed is recorded as it is; a generator by its state before the draws (base64 of
    ``Generator.get_state()``: ``torch.Generator().set_state(...)`` draws the same directions).
    """
    gen = check_generator(seed)
    meta: dict[str, Any] = {"directions": "random"}
    if isinstance(seed, torch.Generator):
        state = base64.b64encode(bytes(gen.get_state().tolist())).decode("ascii")
        meta |= {"seed": None, "generator_state": state}
    else:
        meta |= {"seed": seed}
    directions = [
        random_direction(model, seed=gen, normalization=normalization, ignore=ignore)
        for _ in range(count)
    ]
    return directions, meta | {"normalization": normalization, "ignore": ignore}


def line(
    model: nn.Module,
    data: Dataset | Pair,
    direction: Params | None = None,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 51,
    seed: int | torch.Generator = 0,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
    settings: Settings | None = None,
    **deprecated: Any,
) -> Slice1D:
    """Metrics along the line ``model + t * direction``, ``t`` uniform in ``span``.

    Parameters
    ----------
    model : nn.Module
        The center of the line (left untouched).
    data : Dataset or (inputs, targets)
        Where the metrics are measured (``split`` of a data set).
    direction : dict[str, Tensor] or None
        Used as given (names left out are zero); None draws :func:`random_direction` with
        ``seed``, ``normalization`` and ``ignore``.
    span : (float, float)
        The range of ``t``.
    points : int
        Number of points (>= 2), endpoints included.
    seed, normalization, ignore
        For a random direction, as in :func:`random_direction`.
    settings : Settings, optional
        How every point is measured (:class:`funcspace.evaluation.Settings`: metrics, split,
        batch size, BatchNorm handling, ...); default error and loss on the training split.
    **deprecated
        The evaluation keywords of earlier versions (``metrics=``, ``split=``, ...): use
        ``settings``.

    Returns
    -------
    Slice1D

    Raises
    ------
    FuncspaceError
        For bad spans, counts, choices, or a direction that does not fit the model.

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> net = MLP(4, [8], 3, seed=0)
    >>> data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> s = line(net, data, points=5)
    >>> s.coordinates.tolist(), s.values["loss"].shape
    ([-1.0, -0.5, 0.0, 0.5, 1.0], (5,))
    """
    check_module("model", model, parameters=True)
    low, high = check_span("span", span)
    check_int("points", points, 2)
    settings = settings_or_legacy(settings, deprecated, "line")
    origin = parameters_of(model)
    if direction is None:
        (direction,), meta = _random(model, 1, seed, normalization, ignore)
    else:
        direction = complete(direction, origin, "direction")
        meta = {"directions": "given"}
    ts = np.linspace(low, high, points)
    values = run(model, origin, [direction], [ts], data, settings)
    return Slice1D(ts, values, (direction,), meta | {"kind": "line"} | meta_of(settings))


def plane(
    model: nn.Module,
    data: Dataset | Pair,
    directions: Sequence[Params] | TrajectoryPCA | None = None,
    *,
    span: tuple[tuple[float, float], tuple[float, float]] | None = None,
    resolution: tuple[int, int] = (25, 25),
    seed: int | torch.Generator = 0,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
    settings: Settings | None = None,
    **deprecated: Any,
) -> Slice2D:
    """Metrics on the plane ``model + x * d1 + y * d2`` over a grid (one batched evaluation).

    Parameters
    ----------
    model : nn.Module
        The center of the plane (left untouched).
    data : Dataset or (inputs, targets)
        Where the metrics are measured (``split`` of a data set).
    directions : two dicts, TrajectoryPCA, or None
        Two directions used as given (names left out are zero); a :class:`TrajectoryPCA`
        (``model`` should then be its ``center``, by default the trajectory's last point); or
        None: two :func:`random_direction` drawn one after the other from ``seed`` with
        ``normalization`` and ``ignore``.
    span : ((float, float), (float, float)) or None
        The ranges of ``x`` and ``y``; None gives ``((-1, 1), (-1, 1))``, or for a
        :class:`TrajectoryPCA` its :meth:`~TrajectoryPCA.span`.
    resolution : (int, int)
        Grid points along ``x`` and ``y`` (each >= 2). Odd numbers with a symmetric span put a
        grid point on the model itself.
    seed, normalization, ignore
        For random directions, as in :func:`random_direction`.
    settings : Settings, optional
        How every point is measured (:class:`funcspace.evaluation.Settings`: metrics, split,
        batch size, BatchNorm handling, ...); default error and loss on the training split.
    **deprecated
        The evaluation keywords of earlier versions (``metrics=``, ``split=``, ...): use
        ``settings``.

    Returns
    -------
    Slice2D
        ``values[m][i, j]`` at ``(x[i], y[j])``.

    Raises
    ------
    FuncspaceError
        For bad spans, resolutions, choices, or directions that do not fit the model.

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> net = MLP(4, [8], 3, seed=0)
    >>> data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> s = plane(net, data, resolution=(5, 3))
    >>> s.values["error"].shape, s.y.tolist()
    ((5, 3), [-1.0, 0.0, 1.0])
    """
    check_module("model", model, parameters=True)
    if not (isinstance(resolution, Sequence) and len(resolution) == 2):
        raise FuncspaceError(f"resolution must be a pair (nx, ny), got {resolution!r}")
    nx = check_int("resolution[0]", resolution[0], 2)
    ny = check_int("resolution[1]", resolution[1], 2)
    settings = settings_or_legacy(settings, deprecated, "plane")
    origin = parameters_of(model)
    if isinstance(directions, TrajectoryPCA):
        pca = directions
        if span is None:
            span = pca.span()
        _warn_off_center(origin, pca.center)
        directions = [
            complete(d, origin, f"pca.directions[{i}]") for i, d in enumerate(pca.directions)
        ]
        meta: dict[str, Any] = {
            "directions": "pca",
            "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
        }
    elif directions is None:
        directions, meta = _random(model, 2, seed, normalization, ignore)
    else:
        if isinstance(directions, dict) or len(directions) != 2:
            raise FuncspaceError(
                "directions must be two dicts of tensors (or a TrajectoryPCA, or None)"
            )
        directions = [complete(d, origin, f"directions[{i}]") for i, d in enumerate(directions)]
        meta = {"directions": "given"}
    if span is None:
        span = ((-1.0, 1.0), (-1.0, 1.0))
    if not (isinstance(span, Sequence) and len(span) == 2):
        raise FuncspaceError(f"span must be two pairs ((x0, x1), (y0, y1)), got {span!r}")
    xs = np.linspace(*check_span("span[0]", span[0]), nx)
    ys = np.linspace(*check_span("span[1]", span[1]), ny)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    values = run(model, origin, directions, [gx.ravel(), gy.ravel()], data, settings)
    grids = {m: v.reshape(nx, ny) for m, v in values.items()}
    meta |= {"kind": "plane"} | meta_of(settings)
    return Slice2D(xs, ys, grids, tuple(directions), meta)


def _warn_off_center(origin: Params, center: Params) -> None:
    same = origin.keys() == center.keys() and all(
        torch.allclose(origin[n], center[n].to(origin[n]), rtol=1e-5, atol=1e-7) for n in origin
    )
    if not same:
        logger.warning(
            "plane: the model is not the TrajectoryPCA's center, so the trajectory's coordinates "
            "are not positions on this plane; pass the center model (the trajectory's last point)"
        )
