"""Mode-connectivity curves (Garipov et al. 2018): control points trained so that the whole
path between two minimizers has a low training loss.

A curve is a Bezier curve or a polygonal chain through ``bends`` trainable control points
between two fixed ends. Its training minimizes the expected loss over ``t`` uniform in [0, 1]:
every minibatch is evaluated at ``points`` values of ``t`` stratified over [0, 1] (one in each
of ``points`` equal bins), all in one vectorized pass, instead of the peers' one uniform draw
per step. With ``geometry="sphere"`` the curve lives in toroidal coordinates: the ends are
``a``'s canonical form and ``b`` aligned to it, every unit's sphere row moves on its sphere
(a Bezier curve projected to the sphere, or great circles between control points) and the
control rows are optimized with geoopt's Riemannian optimizers; every other coordinate moves
in Euclidean space. ``geometry="euclidean"`` works on the raw parameters (``b`` aligned to
``a`` first unless ``align=None``), as the peers do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from funcspace._validate import check_model_data
from funcspace.data import Dataset, Pair
from funcspace.errors import FuncspaceError
from funcspace.evaluation.functional import skeleton
from funcspace.metrics import as_metric
from funcspace.params import Params, buffers_of

from .path import Path, PathError, _ends, check_times, slerp

SHAPES = ("bezier", "polychain")
GEOMETRIES = ("sphere", "euclidean")
OPTIMIZERS = ("adam", "sgd")

Key = tuple[str, str]  # ("sphere" | "free" | "param", name)


@dataclass(frozen=True)
class CurveRecord:
    """How a curve was trained; plain data.

    Attributes
    ----------
    loss : numpy array (epochs,)
        The mean training loss over each epoch's minibatches and ``t`` (the objective).
    epochs, steps : epochs and optimizer steps run.
    points : values of ``t`` per minibatch (stratified).
    optimizer, lr, batch_size, seed : the run's settings.
    vectorized : whether the ``t`` of a minibatch ran in one ``vmap`` pass (else a loop).
    wall_time : seconds of training.
    """

    loss: np.ndarray
    epochs: int
    steps: int
    points: int
    optimizer: str
    lr: float
    batch_size: int
    seed: int
    vectorized: bool
    wall_time: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and numbers), for JSON."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["loss"] = self.loss.tolist()
        return out


@dataclass(frozen=True, eq=False)
class CurvePath(Path):
    """A trained curve: fixed ends and trained control points.

    Attributes
    ----------
    shape : {"bezier", "polychain"}
    geometry : {"sphere", "euclidean"}
    knots : tuple of dict
        The ends and control points in order (``bends + 2``), each a mapping from a coordinate
        key to a tensor: ``("sphere", block)`` rows on unit spheres, ``("free", name)`` other
        toroidal coordinates, ``("param", name)`` raw parameters (Euclidean geometry).
    point : canonicalize.TorusPoint or None
        The start in toroidal coordinates (sphere geometry): it maps coordinates back to
        parameters.
    end_buffers : pair of dicts
        The BatchNorm statistics of the two ends (those of the aligned end).
    record : CurveRecord
    """

    shape: str = "bezier"
    geometry: str = "sphere"
    knots: tuple[dict[Key, Tensor], ...] = ()
    point: Any = None
    end_buffers: tuple[Params, Params] = ({}, {})
    record: CurveRecord | None = None

    @property
    def bends(self) -> int:
        """The number of trained control points."""
        return len(self.knots) - 2

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        ts = check_times(t)
        like = next(iter(self.origin.values()))
        with torch.no_grad():
            coords = _coordinates(self.knots, torch.as_tensor(ts, dtype=like.dtype), self.shape)
            out = _parameters(coords, self.point)
        return {n: out[n].to(self.origin[n]) for n in self.origin}

    def _end_buffers(self) -> tuple[Params, Params]:
        return self.end_buffers

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the path's summary, its shape, geometry and training record."""
        out = super().to_dict()
        out.update(shape=self.shape, geometry=self.geometry, bends=self.bends)
        out["record"] = None if self.record is None else self.record.to_dict()
        return out


def _bernstein(ts: Tensor, degree: int) -> Tensor:
    """``(len(ts), degree + 1)`` Bernstein weights."""
    i = torch.arange(degree + 1, dtype=ts.dtype, device=ts.device)
    binomial = torch.tensor(
        [math.comb(degree, k) for k in range(degree + 1)], dtype=ts.dtype, device=ts.device
    )
    t = ts[:, None]
    return binomial * t**i * (1 - t) ** (degree - i)


def _coordinates(knots: Sequence[dict[Key, Tensor]], ts: Tensor, shape: str) -> dict[Key, Tensor]:
    """Every coordinate at every ``t`` (a leading axis of ``len(ts)``); differentiable."""
    degree = len(knots) - 1
    out = {}
    if shape == "bezier":
        weights = _bernstein(ts, degree)
        for key in knots[0]:
            stacked = torch.stack([k[key] for k in knots])
            value = torch.tensordot(weights.to(stacked), stacked, dims=1)
            if key[0] == "sphere":  # Bezier in the embedding, projected to the sphere
                value = value / value.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            out[key] = value
        return out
    scaled = ts * degree
    segment = scaled.floor().clamp(max=degree - 1).long()
    local = scaled - segment
    for key in knots[0]:
        stacked = torch.stack([k[key] for k in knots])
        u, v = stacked[segment], stacked[segment + 1]
        s = local.to(stacked).reshape(-1, *([1] * (u.ndim - 1)))
        out[key] = slerp(u, v, s) if key[0] == "sphere" else u + s * (v - u)
    return out


def _parameters(coords: dict[Key, Tensor], point: Any) -> Params:
    """The parameters that stacked coordinates stand for."""
    if point is None:
        return {name: value for (_, name), value in coords.items()}
    spheres = {name: v for (kind, name), v in coords.items() if kind == "sphere"}
    free = {name: v for (kind, name), v in coords.items() if kind == "free"}
    return point.unpack(spheres, free)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise PathError(f"{name} must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PathError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _ends_in(geometry, a, b, x, align, output, dtype):
    """The two ends as coordinate dicts, the start's torus point and the ends' buffers."""
    import canonicalize

    try:
        if geometry == "sphere":
            start = canonicalize.to_torus(a, x, output, reorder=True)
            reference = start.to_model()
            moved = b if align is None else canonicalize.align(b, reference, x, align)
            end = canonicalize.to_torus(moved, x, output, reorder=False)
            knots = [
                {
                    **{("sphere", n): v.to(dtype) for n, v in p.spheres.items()},
                    **{("free", n): v.to(dtype) for n, v in p.free.items()},
                }
                for p in (start, end)
            ]
            # the points' float64 coordinates, cast like the knots: unpack keeps their dtype
            return knots, start, (dict(start.buffers), dict(end.buffers))
        moved = b if align is None else canonicalize.align(b, a, x, align)
    except canonicalize.SymmetryError as err:
        raise PathError(f"curve: {err}") from err
    knots = [
        {("param", n): p.detach().to(dtype) for n, p in m.named_parameters()} for m in (a, moved)
    ]
    return knots, None, (buffers_of(a), buffers_of(moved))


def _initial(knots: list[dict[Key, Tensor]], bends: int) -> list[dict[Key, Tensor]]:
    """Control points on the straight (or great-circle) path at evenly spaced fractions."""
    first, last = knots
    inner = []
    for i in range(1, bends + 1):
        s = i / (bends + 1)
        inner.append(
            {
                key: slerp(v, last[key], s) if key[0] == "sphere" else v + s * (last[key] - v)
                for key, v in first.items()
            }
        )
    return [first, *inner, last]


def _trainable(knots: list[dict[Key, Tensor]]) -> tuple[list[dict[Key, Tensor]], list, list]:
    """The control points as leaves: geoopt sphere parameters and plain tensors."""
    import geoopt

    sphere, euclidean = [], []
    out = [knots[0]]
    for knot in knots[1:-1]:
        leaves = {}
        for key, value in knot.items():
            if key[0] == "sphere":
                leaf = geoopt.ManifoldParameter(value.clone(), manifold=geoopt.Sphere())
                sphere.append(leaf)
            else:
                leaf = nn.Parameter(value.clone())
                euclidean.append(leaf)
            leaves[key] = leaf
        out.append(leaves)
    out.append(knots[-1])
    return out, sphere, euclidean


def _batch_statistics_module(template: nn.Module) -> nn.Module:
    """A meta skeleton whose BatchNorm layers normalize with each batch's statistics and keep
    no running statistics (training a curve, as the peers do; profiles then recalibrate)."""
    module = skeleton(template, bn_train=True)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return module


def curve(
    a: nn.Module,
    b: nn.Module,
    data: Dataset | Pair,
    *,
    kind: str = "bezier",
    bends: int = 1,
    geometry: str = "sphere",
    align: str | None = "weights",
    example_input: Tensor | None = None,
    epochs: int = 20,
    points: int = 4,
    batch_size: int = 128,
    optimizer: str = "adam",
    lr: float | None = None,
    loss: str = "loss",
    seed: int = 0,
    output: str = "preserve",
    progress: bool | None = None,
) -> CurvePath:
    """Train a curve between ``a`` and ``b`` whose expected training loss along ``t`` is low.

    Parameters
    ----------
    a, b : nn.Module
        Two networks of one architecture (any model canonicalize accepts; nothing to rewrite).
    data : Dataset or (inputs, targets)
        Training data (its training split).
    kind : {"bezier", "polychain"}
        A Bezier curve with the ends and ``bends`` control points, or the polygonal chain
        through them at evenly spaced ``t`` (great circles on spheres).
    bends : int
        Trained control points (>= 1), initialized on the straight path (the great circle).
    geometry : {"sphere", "euclidean"}
        Toroidal coordinates (canonical ``a``, ``b`` aligned to it, spheres optimized with
        Riemannian steps) or raw parameters.
    align : {"weights", "cosine", "activations"} or None
        How ``b`` is matched to ``a`` first (None: as it is, the peers' way).
    example_input : Tensor, optional
        An input batch for canonicalize (default: the first 256 training inputs).
    epochs, points, batch_size : int
        Passes over the data; values of ``t`` per minibatch (stratified: one uniform draw in
        each of ``points`` equal bins of [0, 1]); minibatch size.
    optimizer : {"adam", "sgd"}
        Adam, or SGD with momentum 0.9: geoopt's Riemannian versions on the spheres, torch's
        elsewhere. ``lr`` defaults to 1e-2 (Adam) or 0.05 (SGD): on MNIST-1D MLPs, Adam at
        1e-2 reached barriers 10-40x lower in 16 epochs than at 1e-3, on spheres and off them.
    loss : str
        The training loss (a differentiable metric of :mod:`funcspace.metrics`).
    seed : int
        The run is deterministic under it (minibatch order and ``t`` draws).
    output : {"preserve", "normalize"}
        As :func:`paths.geodesic` (sphere geometry).
    progress : bool, optional
        A tqdm bar over epochs with the loss (None: shown when stderr is a terminal).

    Returns
    -------
    CurvePath
        Its ``record`` holds the loss along the training. Measure it with
        :func:`paths.profile` or :func:`paths.barrier`; BatchNorm layers train with batch
        statistics, so measure a BatchNorm network with ``batchnorm="recalibrate"`` (the
        default).

    Raises
    ------
    PathError
        For two architectures, non-finite weights, a model canonicalize refuses, unknown
        choices, counts below their minimum, or a loss that becomes non-finite.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 3, generator=g)
    >>> y = (x[:, 0] > 0).long()
    >>> a = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> b = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> path = curve(a, b, (x, y), epochs=2, progress=False)
    >>> path.kind, path.bends, len(path.record.loss)
    ('curve', 1, 2)
    """
    a, b, origin, _ = _ends(a, b)
    shape = _check_choice("kind", kind, SHAPES)
    geometry = _check_choice("geometry", geometry, GEOMETRIES)
    optimizer = _check_choice("optimizer", optimizer, OPTIMIZERS)
    if align not in (None, "weights", "cosine", "activations"):
        raise PathError(f"align must be 'weights', 'cosine', 'activations' or None, got {align!r}")
    for name, value, minimum in (
        ("bends", bends, 1),
        ("epochs", epochs, 1),
        ("points", points, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
    ):
        _check_count(name, value, minimum)
    lr = (1e-2 if optimizer == "adam" else 0.05) if lr is None else lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise PathError(f"lr must be a positive number, got {lr!r}")
    try:
        metric = as_metric(loss)
        _, inputs, targets = check_model_data(a, data, targets=metric.targets)
    except FuncspaceError as err:
        raise PathError(str(err)) from None
    if not metric.differentiable:
        raise PathError(f"loss {metric.name!r} is not differentiable: use 'loss' or 'mse'")
    like = next(iter(origin.values()))
    x = inputs[:256] if example_input is None else example_input
    ends, point, end_buffers = _ends_in(geometry, a, b, x, align, output, like.dtype)
    knots, sphere, euclidean = _trainable(_initial(ends, bends))
    record = _train(
        a,
        knots,
        point,
        shape,
        (inputs, targets),
        metric,
        sphere,
        euclidean,
        optimizer=optimizer,
        lr=float(lr),
        epochs=epochs,
        points=points,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    frozen = tuple({k: v.detach().clone() for k, v in knot.items()} for knot in knots)
    with torch.no_grad():
        ts = torch.tensor([0.0, 1.0], dtype=like.dtype)
        at_ends = _parameters(_coordinates(frozen, ts, shape), point)
    start = {n: at_ends[n][0].to(v) for n, v in origin.items()}
    direction = {n: at_ends[n][1].to(v) - start[n] for n, v in origin.items()}
    return CurvePath(
        start=a,
        end=b,
        kind="curve",
        origin=start,
        direction=direction,
        shape=shape,
        geometry=geometry,
        knots=frozen,
        point=point,
        end_buffers=end_buffers,
        record=record,
    )


def _train(
    template: nn.Module,
    knots,
    point,
    shape: str,
    pair: tuple[Tensor, Tensor],
    metric,
    sphere: list[Tensor],
    euclidean: list[Tensor],
    *,
    optimizer: str,
    lr: float,
    epochs: int,
    points: int,
    batch_size: int,
    seed: int,
    progress: bool | None,
) -> CurveRecord:
    import geoopt

    inputs, targets = pair
    module = _batch_statistics_module(template)
    kept = {n for n, _ in module.named_buffers()}
    buffers = {n: v for n, v in buffers_of(template).items() if n in kept}
    # geoopt's Riemannian steps on the spheres; torch's fused-loop ones elsewhere (the same
    # update in Euclidean space, with less per-tensor overhead)
    opts: list[torch.optim.Optimizer] = []
    if optimizer == "adam":
        opts += [torch.optim.Adam(euclidean, lr=lr)] if euclidean else []
        opts += [geoopt.optim.RiemannianAdam(sphere, lr=lr)] if sphere else []
    else:
        opts += [torch.optim.SGD(euclidean, lr=lr, momentum=0.9)] if euclidean else []
        opts += [geoopt.optim.RiemannianSGD(sphere, lr=lr, momentum=0.9)] if sphere else []
    generator = torch.Generator().manual_seed(seed)
    dtype = next(iter(knots[0].values())).dtype
    bins = torch.arange(points, dtype=dtype)
    n = len(inputs)
    vectorized = True
    history = []
    steps = 0
    started = time.perf_counter()
    bar = tqdm(range(epochs), desc="curve", disable=(progress is False) or None, leave=False)
    for epoch in bar:
        order = torch.randperm(n, generator=generator)
        total, batches = 0.0, 0
        for begin in range(0, n, batch_size):
            index = order[begin : begin + batch_size].to(inputs.device)
            xb, yb = inputs[index], targets[index]
            ts = (bins + torch.rand(points, generator=generator, dtype=dtype)) / points
            params = _parameters(_coordinates(knots, ts.to(inputs.device), shape), point)
            logits, vectorized = _forward(module, params, buffers, xb, vectorized)
            value = metric.sums(logits, yb, 2).sum() / (points * len(xb))
            if not bool(torch.isfinite(value.detach())):
                raise PathError(
                    f"curve training diverged at epoch {epoch + 1} (the loss is "
                    f"{float(value.detach())}): lower lr (now {lr})"
                )
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            value.backward()
            for opt in opts:
                opt.step()
            total += float(value.detach())
            batches += 1
            steps += 1
        history.append(total / batches)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    return CurveRecord(
        loss=np.asarray(history),
        epochs=epochs,
        steps=steps,
        points=points,
        optimizer=optimizer,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        vectorized=vectorized,
        wall_time=time.perf_counter() - started,
    )


def _forward(module: nn.Module, params: Params, buffers: Params, x: Tensor, vectorized: bool):
    """Outputs ``(k, N, ...)`` of ``k`` stacked parameter points (``buffers`` shared): one
    vmap pass, or a loop where vmap cannot run the model (remembered for the rest of the run)."""
    if vectorized:
        try:
            return vmap(lambda p: functional_call(module, {**p, **buffers}, (x,)))(params), True
        except (RuntimeError, NotImplementedError, ValueError):
            pass
    k = len(next(iter(params.values())))
    outs = [
        functional_call(module, {**{n: v[i] for n, v in params.items()}, **buffers}, (x,))
        for i in range(k)
    ]
    return torch.stack(outs), False
