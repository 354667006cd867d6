"""Landscape slices: filter-normalized lines and planes, interpolations, trajectory PCA.

- :func:`random_direction` draws a Gaussian direction and rescales it the way Li et al. (2018)
  do, so slices of different networks can be compared;
- :func:`line` and :func:`plane` evaluate error and loss on a 1-D or 2-D grid around a model,
  along random, given or PCA directions; every grid goes through the batched engine
  (:func:`funcspace.evaluation.evaluate_affine`) in one call, which reuses the first layer's
  linearity along the directions;
- :func:`interpolate` walks the straight path from one model to another (Vlaar & Frankle
  2022), optionally moving only some layers;
- :func:`trajectory_pca` finds the two principal directions of a saved training trajectory and
  its coordinates on them, so :func:`plane` can draw the trajectory on its own plane.

Directions are ``dict[str, Tensor]`` over the model's parameter names (the torch.func
convention); a name left out of a given direction counts as zero. BatchNorm running statistics
are never moved: they stay the model's (``batchnorm="fixed"``) or are recalibrated at every
point (``batchnorm="recalibrate"``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation import evaluate_affine
from funcspace.params import Params, buffers_of, check_compatible, parameters_of

logger = logging.getLogger(__name__)

Normalization = Literal["filter", "layer", "none"]
Ignore = Literal["biasbn", "none"]

_NORMALIZATIONS = ("filter", "layer", "none")
_IGNORES = ("biasbn", "none")
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


# --------------------------------------------------------------------------- results


def _numpy_params(params: Params) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy() for name, t in params.items()}


@dataclass(frozen=True, eq=False)
class Slice1D:
    """Metrics along a line ``origin + t * direction``.

    Attributes
    ----------
    coordinates : np.ndarray
        The ``t`` of every point, shape ``(points,)``.
    values : dict[str, np.ndarray]
        Each metric (``"error"``, ``"loss"``, ...) at every point, shape ``(points,)``.
    directions : tuple[dict[str, Tensor]]
        The one direction used (for :func:`interpolate`: ``b - a``, zero outside ``layers``).
    meta : dict
        How the slice was made (kind, split, normalization, seed, ...), plain data.
    """

    coordinates: np.ndarray
    values: dict[str, np.ndarray]
    directions: tuple[Params, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: numpy arrays and the meta data (directions as numpy arrays)."""
        return {
            "coordinates": self.coordinates.copy(),
            "values": {k: v.copy() for k, v in self.values.items()},
            "directions": [_numpy_params(d) for d in self.directions],
            "meta": dict(self.meta),
        }

    def __repr__(self) -> str:
        ranges = ", ".join(f"{k} in [{v.min():.4g}, {v.max():.4g}]" for k, v in self.values.items())
        return (
            f"Slice1D({len(self.coordinates)} points, t in [{self.coordinates[0]:.4g}, "
            f"{self.coordinates[-1]:.4g}], {ranges})"
        )


@dataclass(frozen=True, eq=False)
class Slice2D:
    """Metrics on a grid ``origin + x * directions[0] + y * directions[1]``.

    Attributes
    ----------
    x, y : np.ndarray
        The grid's coordinates along the two directions, shapes ``(nx,)`` and ``(ny,)``.
    values : dict[str, np.ndarray]
        Each metric on the grid, shape ``(nx, ny)``: ``values[m][i, j]`` is at
        ``(x[i], y[j])`` (numpy's ``"ij"`` indexing; transpose for matplotlib's ``contour``).
    directions : tuple[dict[str, Tensor], dict[str, Tensor]]
        The two directions used.
    meta : dict
        How the slice was made (kind, split, normalization, seed, ...), plain data.
    """

    x: np.ndarray
    y: np.ndarray
    values: dict[str, np.ndarray]
    directions: tuple[Params, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: numpy arrays and the meta data (directions as numpy arrays)."""
        return {
            "x": self.x.copy(),
            "y": self.y.copy(),
            "values": {k: v.copy() for k, v in self.values.items()},
            "directions": [_numpy_params(d) for d in self.directions],
            "meta": dict(self.meta),
        }

    def __repr__(self) -> str:
        ranges = ", ".join(f"{k} in [{v.min():.4g}, {v.max():.4g}]" for k, v in self.values.items())
        return f"Slice2D({len(self.x)}x{len(self.y)} grid, {ranges})"


@dataclass(frozen=True, eq=False)
class TrajectoryPCA:
    """The two principal directions of a trajectory and its coordinates on them.

    Attributes
    ----------
    directions : tuple[dict[str, Tensor], dict[str, Tensor]]
        Orthonormal (over all parameters together) principal directions, largest first.
    coordinates : np.ndarray
        ``(points, 2)``: each trajectory point minus ``center``, projected on the directions.
    explained_variance : np.ndarray
        ``(2,)``: the variance of the trajectory along each direction.
    explained_variance_ratio : np.ndarray
        ``(2,)``: the same as fractions of the trajectory's total variance.
    center : dict[str, Tensor]
        The origin of the coordinates (the last point unless given): put :func:`plane` there.
    """

    directions: tuple[Params, Params]
    coordinates: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    center: Params

    def span(self, margin: float = 0.2) -> tuple[tuple[float, float], tuple[float, float]]:
        """A plane span that covers the trajectory and the center, widened by ``margin``."""
        lows = np.minimum(self.coordinates.min(0), 0.0)
        highs = np.maximum(self.coordinates.max(0), 0.0)
        pad = margin * np.maximum(highs - lows, 1e-12)
        return (
            (float(lows[0] - pad[0]), float(highs[0] + pad[0])),
            (float(lows[1] - pad[1]), float(highs[1] + pad[1])),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (numpy arrays)."""
        return {
            "directions": [_numpy_params(d) for d in self.directions],
            "coordinates": self.coordinates.copy(),
            "explained_variance": self.explained_variance.copy(),
            "explained_variance_ratio": self.explained_variance_ratio.copy(),
            "center": _numpy_params(self.center),
        }

    def __repr__(self) -> str:
        ratio = ", ".join(f"{r:.3f}" for r in self.explained_variance_ratio)
        return f"TrajectoryPCA({len(self.coordinates)} points, explained variance ratio ({ratio}))"


# --------------------------------------------------------------------------- validation


def _check_module(name: str, model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise FuncspaceError(f"{name} must be an nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise FuncspaceError(f"{name} has no parameters")
    return model


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise FuncspaceError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FuncspaceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_span(name: str, span: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in span)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        message = f"{name} must be a pair of numbers (low, high), got {span!r}"
        raise FuncspaceError(message) from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise FuncspaceError(f"{name} must be finite with low < high, got {span!r}")
    return low, high


def _norm_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, _NORM_LAYERS):
            names |= {f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters()}
    return names


def _complete(direction: object, like: Params, what: str) -> Params:
    """A full direction over ``like``'s names: checked, missing names filled with zeros."""
    if not isinstance(direction, dict):
        raise FuncspaceError(
            f"{what} must be a dict of tensors by parameter name, got {type(direction).__name__}"
        )
    unknown = sorted(set(direction) - set(like))
    if unknown:
        raise FuncspaceError(
            f"{what} names tensors the model does not have as parameters: {unknown[:5]} "
            "(directions cover parameters only; buffers such as BatchNorm statistics are never "
            "moved)"
        )
    full = {}
    for name, weight in like.items():
        if name not in direction:
            full[name] = torch.zeros_like(weight)
            continue
        value = direction[name]
        if not isinstance(value, Tensor):
            raise FuncspaceError(f"{what}[{name!r}] must be a tensor, got {type(value).__name__}")
        if value.shape != weight.shape:
            raise FuncspaceError(
                f"{what}[{name!r}] has shape {tuple(value.shape)}, the parameter "
                f"{tuple(weight.shape)}"
            )
        if not torch.isfinite(value).all():
            raise FuncspaceError(f"{what}[{name!r}] contains NaN or inf")
        full[name] = value.detach().to(device=weight.device, dtype=weight.dtype)
    return full


# --------------------------------------------------------------------------- directions


def normalize_direction(
    direction: Params,
    weights: nn.Module | Params,
    *,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
) -> Params:
    """Rescale a direction to the weights' scale (Li et al. 2018); a new dict is returned.

    - ``normalization="filter"``: every row of a weight tensor with two or more axes (a neuron's
      incoming weights of ``nn.Linear``, one output filter of a convolution: index 0 of the
      tensor) is rescaled to the norm of the same row of the weights;
    - ``"layer"``: every tensor is rescaled as a whole to the norm of the weight tensor;
    - ``"none"``: the direction is left as it is (only the ``ignore`` policy applies).

    Biases and normalization-layer parameters (every tensor with at most one axis, and every
    parameter of a BatchNorm, LayerNorm or GroupNorm):

    - ``ignore="biasbn"`` (Li et al.'s default) sets them to zero: the slice never moves them;
    - ``ignore="none"`` keeps them, each 1-D tensor rescaled as one row to the weights' norm
      (under ``"filter"`` and ``"layer"`` alike). Li et al.'s code instead copies the weights
      themselves into the direction; a random rescaled row keeps the direction random.

    A weight row of norm zero gives a zero row: under ``ignore="none"`` a BatchNorm shift
    (beta) or a bias still at its initial zero does not move (as in Li et al.'s code).

    Parameters
    ----------
    direction : dict[str, Tensor]
        One tensor per parameter name; names left out count as zero.
    weights : nn.Module or dict[str, Tensor]
        The model (or its parameters) whose scale the direction takes.
    normalization : {"filter", "layer", "none"}
    ignore : {"biasbn", "none"}

    Returns
    -------
    dict[str, Tensor]
        The rescaled direction over every parameter name.

    Examples
    --------
    >>> import torch
    >>> w = {"weight": torch.tensor([[3.0, 4.0], [0.0, 2.0]]), "bias": torch.ones(2)}
    >>> d = normalize_direction({"weight": torch.ones(2, 2), "bias": torch.ones(2)}, w)
    >>> d["weight"].norm(dim=1).round(decimals=4).tolist(), d["bias"].tolist()
    ([5.0, 2.0], [0.0, 0.0])
    """
    _check_choice("normalization", normalization, _NORMALIZATIONS)
    _check_choice("ignore", ignore, _IGNORES)
    if isinstance(weights, nn.Module):
        params, norm_names = parameters_of(weights), _norm_parameter_names(weights)
    elif isinstance(weights, dict):
        params, norm_names = {n: w.detach() for n, w in weights.items()}, set()
    else:
        raise FuncspaceError(
            f"weights must be an nn.Module or a dict of tensors, got {type(weights).__name__}"
        )
    full = _complete(direction, params, "direction")
    out = {}
    for name, d in full.items():
        w = params[name]
        flat_like = d.ndim <= 1 or name in norm_names
        if flat_like and ignore == "biasbn":
            out[name] = torch.zeros_like(d)
        elif normalization == "none":
            out[name] = d.clone()
        elif normalization == "layer" or flat_like:
            out[name] = d * (w.norm() / d.norm().clamp_min(torch.finfo(d.dtype).tiny))
        else:
            rows_d, rows_w = d.reshape(len(d), -1), w.reshape(len(w), -1)
            scale = rows_w.norm(dim=1) / rows_d.norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
            out[name] = (rows_d * scale[:, None]).reshape(d.shape)
    return out


def _generator(seed: int | torch.Generator) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FuncspaceError(f"seed must be an integer or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(seed)


def random_direction(
    model: nn.Module,
    *,
    seed: int | torch.Generator,
    normalization: Normalization = "filter",
    ignore: Ignore = "biasbn",
) -> Params:
    """A Gaussian direction in parameter space, normalized as Li et al. (2018) do.

    Every entry is drawn from N(0, 1) (on the CPU from ``seed``, so the direction does not
    depend on the device), then :func:`normalize_direction` rescales it: with the defaults each
    neuron row or convolution filter gets the norm of the same row of the weights, and biases
    and BatchNorm parameters are zero (left out of the slice); ``ignore="none"`` includes them,
    each rescaled as one row.

    Parameters
    ----------
    model : nn.Module
        The model (left untouched).
    seed : int or torch.Generator
        Where the draw comes from (a generator lets several directions share one stream).
    normalization : {"filter", "layer", "none"}
    ignore : {"biasbn", "none"}

    Returns
    -------
    dict[str, Tensor]
        One tensor per parameter name, on the parameters' device and dtype.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> d = random_direction(net, seed=0)
    >>> bool(torch.allclose(d["0.weight"].norm(dim=1), net[0].weight.norm(dim=1)))
    True
    >>> float(d["0.bias"].abs().sum())
    0.0
    """
    _check_module("model", model)
    gen = _generator(seed)
    params = parameters_of(model)
    draw = {}
    for name, w in params.items():
        dtype = w.dtype if w.is_floating_point() else torch.float32
        draw[name] = torch.randn(w.shape, generator=gen, dtype=dtype).to(w.device)
    return normalize_direction(draw, model, normalization=normalization, ignore=ignore)


# --------------------------------------------------------------------------- evaluation


def _evaluate_affine(
    model: nn.Module,
    origin: Params,
    directions: Sequence[Params],
    coefficients: Tensor,
    data: Dataset | Pair,
    metrics: Sequence[str],
    options: dict[str, Any],
) -> dict[str, np.ndarray]:
    result = evaluate_affine(
        model, origin, list(directions), coefficients, data, metrics=tuple(metrics), **options
    )
    return {
        metric: np.asarray(result[metric], dtype=np.float64).reshape(len(coefficients))
        for metric in metrics
    }


def _check_metrics(metrics: object) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not isinstance(metrics, Sequence) or not metrics:
        raise FuncspaceError(f"metrics must be a non-empty sequence of names, got {metrics!r}")
    return tuple(metrics)


def _coefficients(columns: Sequence[np.ndarray], like: Tensor) -> Tensor:
    grid = np.stack(columns, axis=1)
    return torch.as_tensor(grid, dtype=like.dtype, device=like.device)


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
    metrics: Sequence[str] = ("error", "loss"),
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: Literal["fixed", "recalibrate"] = "fixed",
    **options: Any,
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
    metrics : sequence of str
        What the engine measures at every point.
    split, batch_size, chunk, batchnorm, **options
        Passed to :func:`funcspace.evaluation.evaluate_affine`.

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
    _check_module("model", model)
    low, high = _check_span("span", span)
    _check_count("points", points, 2)
    metrics = _check_metrics(metrics)
    origin = parameters_of(model)
    if direction is None:
        direction = random_direction(model, seed=seed, normalization=normalization, ignore=ignore)
        meta = {"directions": "random", "seed": seed if isinstance(seed, int) else None}
        meta |= {"normalization": normalization, "ignore": ignore}
    else:
        direction = _complete(direction, origin, "direction")
        meta = {"directions": "given"}
    ts = np.linspace(low, high, points)
    values = _evaluate_affine(
        model,
        origin,
        [direction],
        _coefficients([ts], next(iter(origin.values()))),
        data,
        metrics,
        {"split": split, "batch_size": batch_size, "chunk": chunk, "batchnorm": batchnorm}
        | options,
    )
    meta |= {"kind": "line", "split": split, "batchnorm": batchnorm}
    return Slice1D(ts, values, (direction,), meta)


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
    metrics: Sequence[str] = ("error", "loss"),
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: Literal["fixed", "recalibrate"] = "fixed",
    **options: Any,
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
    metrics : sequence of str
        What the engine measures at every point.
    split, batch_size, chunk, batchnorm, **options
        Passed to :func:`funcspace.evaluation.evaluate_affine`.

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
    _check_module("model", model)
    if not (isinstance(resolution, Sequence) and len(resolution) == 2):
        raise FuncspaceError(f"resolution must be a pair (nx, ny), got {resolution!r}")
    nx = _check_count("resolution[0]", resolution[0], 2)
    ny = _check_count("resolution[1]", resolution[1], 2)
    metrics = _check_metrics(metrics)
    origin = parameters_of(model)
    if isinstance(directions, TrajectoryPCA):
        pca = directions
        if span is None:
            span = pca.span()
        _warn_off_center(origin, pca.center)
        directions = [
            _complete(d, origin, f"pca.directions[{i}]") for i, d in enumerate(pca.directions)
        ]
        meta: dict[str, Any] = {
            "directions": "pca",
            "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
        }
    elif directions is None:
        gen = _generator(seed)
        directions = [
            random_direction(model, seed=gen, normalization=normalization, ignore=ignore)
            for _ in range(2)
        ]
        meta = {"directions": "random", "seed": seed if isinstance(seed, int) else None}
        meta |= {"normalization": normalization, "ignore": ignore}
    else:
        if isinstance(directions, dict) or len(directions) != 2:
            raise FuncspaceError(
                "directions must be two dicts of tensors (or a TrajectoryPCA, or None)"
            )
        directions = [_complete(d, origin, f"directions[{i}]") for i, d in enumerate(directions)]
        meta = {"directions": "given"}
    if span is None:
        span = ((-1.0, 1.0), (-1.0, 1.0))
    if not (isinstance(span, Sequence) and len(span) == 2):
        raise FuncspaceError(f"span must be two pairs ((x0, x1), (y0, y1)), got {span!r}")
    xs = np.linspace(*_check_span("span[0]", span[0]), nx)
    ys = np.linspace(*_check_span("span[1]", span[1]), ny)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    values = _evaluate_affine(
        model,
        origin,
        directions,
        _coefficients([gx.ravel(), gy.ravel()], next(iter(origin.values()))),
        data,
        metrics,
        {"split": split, "batch_size": batch_size, "chunk": chunk, "batchnorm": batchnorm}
        | options,
    )
    meta |= {"kind": "plane", "split": split, "batchnorm": batchnorm}
    grids = {m: v.reshape(nx, ny) for m, v in values.items()}
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


# --------------------------------------------------------------------------- interpolation


def _layer_mask(names: Sequence[str], layers: Sequence[str]) -> set[str]:
    chosen = set()
    for layer in layers:
        if not isinstance(layer, str):
            raise FuncspaceError(f"layers must be names, got {layer!r}")
        hits = {n for n in names if n == layer or n.startswith(layer + ".")}
        if not hits:
            shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
            raise FuncspaceError(
                f"layer {layer!r} matches no parameter; name a module (prefix) or a parameter: "
                f"{shown}"
            )
        chosen |= hits
    return chosen


def interpolate(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair,
    points: int = 21,
    *,
    layers: Sequence[str] | None = None,
    span: tuple[float, float] = (0.0, 1.0),
    metrics: Sequence[str] = ("error", "loss"),
    split: str = "train",
    batch_size: int | None = None,
    chunk: int | None = None,
    batchnorm: Literal["fixed", "recalibrate"] = "fixed",
    **options: Any,
) -> Slice1D:
    """Metrics along the straight path ``(1 - t) a + t b`` (Vlaar & Frankle 2022).

    With ``layers``, only the parameters of those modules (names or name prefixes as in
    ``named_parameters``) move from ``a`` to ``b``; every other parameter stays at ``a``.
    ``span=(0, 1)`` gives the path between the two; a wider span extrapolates.

    Parameters
    ----------
    a, b : nn.Module
        Two networks of one architecture (left untouched); ``a`` is ``t = 0``.
    data : Dataset or (inputs, targets)
        Where the metrics are measured (``split`` of a data set).
    points : int
        Number of values of ``t`` (>= 2), endpoints included.
    layers : sequence of str or None
        The modules or parameters to interpolate; None for all.
    span : (float, float)
        Range of ``t``.
    metrics : sequence of str
    split, batch_size, chunk, batchnorm, **options
        Passed to :func:`funcspace.evaluation.evaluate_affine`.

    Returns
    -------
    Slice1D
        ``coordinates`` are the ``t``; ``directions[0]`` is ``b - a`` (zero outside ``layers``).

    Raises
    ------
    FuncspaceError
        If the architectures differ, a layer name matches nothing, or the two models carry
        different BatchNorm statistics under ``batchnorm="fixed"`` (the whole path would use
        ``a``'s: pass ``batchnorm="recalibrate"``).

    Examples
    --------
    >>> from funcspace.models import MLP
    >>> a, b = MLP(4, [8], 3, seed=0), MLP(4, [8], 3, seed=1)
    >>> data = (torch.randn(32, 4), torch.randint(0, 3, (32,)))
    >>> path = interpolate(a, b, data, points=5, layers=["layers.1"])
    >>> path.coordinates.tolist(), float(path.directions[0]["layers.3.weight"].abs().sum())
    ([0.0, 0.25, 0.5, 0.75, 1.0], 0.0)
    """
    _check_module("a", a)
    _check_module("b", b)
    _check_count("points", points, 2)
    low, high = _check_span("span", span)
    metrics = _check_metrics(metrics)
    pa, pb = parameters_of(a), parameters_of(b)
    if pa.keys() != pb.keys():
        raise FuncspaceError("a and b have different parameter names: not one architecture")
    for name in pa:
        if pa[name].shape != pb[name].shape:
            raise FuncspaceError(
                f"a and b differ in {name!r}: shape {tuple(pa[name].shape)} vs "
                f"{tuple(pb[name].shape)}"
            )
    if batchnorm == "fixed":
        ba, bb = buffers_of(a), buffers_of(b)
        differ = [
            n
            for n in ba
            if ba[n].is_floating_point() and not torch.equal(ba[n], bb[n].to(ba[n].device))
        ]
        if differ:
            raise FuncspaceError(
                f"a and b have different BatchNorm statistics ({differ[0]!r}, ...); with "
                "batchnorm='fixed' the whole path would use a's. Pass batchnorm='recalibrate'"
            )
    chosen = set(pa) if layers is None else _layer_mask(list(pa), layers)
    direction = {
        n: (pb[n].to(pa[n]) - pa[n]) if n in chosen else torch.zeros_like(pa[n]) for n in pa
    }
    ts = np.linspace(low, high, points)
    values = _evaluate_affine(
        a,
        pa,
        [direction],
        _coefficients([ts], next(iter(pa.values()))),
        data,
        metrics,
        {"split": split, "batch_size": batch_size, "chunk": chunk, "batchnorm": batchnorm}
        | options,
    )
    meta = {
        "kind": "interpolation",
        "layers": None if layers is None else list(layers),
        "split": split,
        "batchnorm": batchnorm,
    }
    return Slice1D(ts, values, (direction,), meta)


# --------------------------------------------------------------------------- trajectories


def _as_point(item: object, index: int, names: Sequence[str] | None) -> Params:
    if isinstance(item, nn.Module):
        point = parameters_of(item)
    elif isinstance(item, dict):
        point = {
            n: t.detach()
            for n, t in item.items()
            if isinstance(t, Tensor) and t.is_floating_point()
        }
    else:
        raise FuncspaceError(
            f"trajectory[{index}] must be an nn.Module or a dict of tensors, "
            f"got {type(item).__name__}"
        )
    if names is not None:
        missing = [n for n in names if n not in point]
        if missing:
            raise FuncspaceError(f"trajectory[{index}] lacks {missing[:5]}")
        point = {n: point[n] for n in names}
    return point


def trajectory_pca(
    trajectory: Sequence[nn.Module | Params],
    center: nn.Module | Params | None = None,
    *,
    names: Sequence[str] | None = None,
) -> TrajectoryPCA:
    """The top two principal directions of a trajectory and its coordinates on them.

    As Li et al. (2018): the points ``w_i`` (all parameters flattened together) are centered on
    their mean and decomposed; the two leading directions span the plane on which an
    optimization path is best drawn, and ``coordinates`` are ``(w_i - center)`` projected on
    them (``center`` defaults to the last point, the trained network, so :func:`plane` around
    it with ``directions=pca`` shows the path ending at the origin). The decomposition uses the
    points' Gram matrix (points x points), never a parameters x parameters matrix.

    Parameters
    ----------
    trajectory : sequence of nn.Module or dict[str, Tensor]
        At least three points of one architecture (modules give their parameters; dicts give
        their floating-point tensors, or ``names``).
    center : nn.Module, dict or None
        The origin of the coordinates; None for the last point.
    names : sequence of str or None
        Restrict to these tensor names (for state dicts that also hold buffers).

    Returns
    -------
    TrajectoryPCA

    Raises
    ------
    FuncspaceError
        For fewer than three points, points of different shapes, or a trajectory that spans
        fewer than two dimensions.

    Examples
    --------
    >>> import torch
    >>> path = [{"w": torch.tensor([t, t * t, 1.0], dtype=torch.float64)} for t in range(4)]
    >>> pca = trajectory_pca(path)
    >>> round(float(pca.explained_variance_ratio.sum()), 6), pca.coordinates.shape
    (1.0, (4, 2))
    """
    if isinstance(trajectory, (nn.Module, dict)) or not isinstance(trajectory, Sequence):
        raise FuncspaceError("trajectory must be a list of modules or of parameter dicts")
    if len(trajectory) < 3:
        raise FuncspaceError(f"trajectory_pca needs at least 3 points, got {len(trajectory)}")
    points = [_as_point(item, i, names) for i, item in enumerate(trajectory)]
    first = points[0]
    if not first:
        raise FuncspaceError("trajectory points hold no floating-point tensors")
    check_compatible(points, "trajectory point")
    origin = points[-1] if center is None else _as_point(center, -1, list(first))
    if origin.keys() != first.keys():
        raise FuncspaceError("center must have the trajectory's tensor names")

    n = len(points)
    device = next(iter(first.values())).device
    gram = torch.zeros(n, n, dtype=torch.float64, device=device)
    for name in first:
        rows = torch.stack([p[name].reshape(-1).to(device, torch.float64) for p in points])
        rows = rows - rows.mean(0)
        gram += rows @ rows.T
    eigenvalues, vectors = torch.linalg.eigh(gram)
    eigenvalues, vectors = eigenvalues.flip(0).clamp_min(0), vectors.flip(1)
    total = float(eigenvalues.sum())
    if total <= 0 or float(eigenvalues[1]) <= 1e-12 * total:
        raise FuncspaceError(
            "the trajectory spans fewer than two dimensions (its points lie on a line or "
            "coincide); a PCA plane needs points that spread in two directions"
        )
    top = vectors[:, :2] / eigenvalues[:2].sqrt()
    alongs = {}
    coordinates = torch.zeros(n, 2, dtype=torch.float64, device=device)
    for name in first:
        rows = torch.stack([p[name].reshape(-1).to(device, torch.float64) for p in points])
        alongs[name] = (rows - rows.mean(0)).T @ top  # (entries, 2), orthonormal over all
        coordinates += (rows - origin[name].reshape(-1).to(device, torch.float64)) @ alongs[name]
    # An eigenvector's sign is arbitrary: fix it so the first point has coordinates >= 0.
    signs = torch.where(coordinates[0] < 0, -1.0, 1.0).to(coordinates)
    coordinates = coordinates * signs
    directions: tuple[Params, Params] = tuple(
        {
            name: (alongs[name][:, k] * signs[k]).reshape(like.shape).to(like.dtype)
            for name, like in first.items()
        }
        for k in range(2)
    )  # type: ignore[assignment]
    variance = eigenvalues[:2] / (n - 1)
    return TrajectoryPCA(
        directions=directions,
        coordinates=coordinates.cpu().numpy(),
        explained_variance=variance.cpu().numpy(),
        explained_variance_ratio=(eigenvalues[:2] / total).cpu().numpy(),
        center={k: v.clone() for k, v in origin.items()},
    )


__all__ = [
    "Slice1D",
    "Slice2D",
    "TrajectoryPCA",
    "interpolate",
    "line",
    "normalize_direction",
    "plane",
    "random_direction",
    "trajectory_pca",
]
