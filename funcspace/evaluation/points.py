"""The K parameter points of an evaluation, their buffers and data: validated at the boundary,
then served per chunk or per point.

Points come stacked (:class:`~funcspace.params.Stacked`), as a list of modules' tensors
(stacked a chunk at a time), or as an affine family ``origin + coefficients @ directions``
(materialized a block at a time). Nothing of the user's is copied per point or mutated; the
checks say what was wrong and where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from funcspace._validate import check_targets
from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError
from funcspace.metrics import Targets
from funcspace.params import Params, Stacked

from .settings import DEFAULT_BATCH

_POINT_BLOCK_BYTES = 32 * 2**20


@dataclass(frozen=True, eq=False)
class Affine:
    """The points ``origin + sum_i coefficients[k, i] * directions[i]``, as given (validated)."""

    origin: Params
    directions: list[Params]
    coefficients: Tensor


class Points:
    """K parameter points: per chunk as stacked tensors, per point as a dict."""

    size: int

    def chunk(self, start: int, stop: int) -> Params:
        raise NotImplementedError

    def point(self, k: int) -> Params:
        raise NotImplementedError


class StackedPoints(Points):
    def __init__(self, params: Params) -> None:
        self.params = params
        self.size = next(iter(params.values())).shape[0]

    def chunk(self, start: int, stop: int) -> Params:
        return {n: p[start:stop] for n, p in self.params.items()}

    def point(self, k: int) -> Params:
        return {n: p[k] for n, p in self.params.items()}


class ModulePoints(Points):
    def __init__(self, tensors: list[Params]) -> None:
        self.tensors = tensors
        self.size = len(tensors)

    def chunk(self, start: int, stop: int) -> Params:
        part = self.tensors[start:stop]
        return {n: torch.stack([t[n] for t in part]) for n in part[0]}

    def point(self, k: int) -> Params:
        return self.tensors[k]


class AffinePoints(Points):
    """origin + coefficients @ directions, materialized per chunk from flat vectors."""

    def __init__(self, affine: Affine) -> None:
        origin, directions = affine.origin, affine.directions
        self.names = list(origin)
        self.shapes = [origin[n].shape for n in self.names]
        self.sizes = [origin[n].numel() for n in self.names]
        self.origin = torch.cat([origin[n].reshape(-1) for n in self.names])
        self.directions = torch.stack(
            [
                torch.cat(
                    [
                        d[n].reshape(-1) if n in d else origin[n].new_zeros(origin[n].numel())
                        for n in self.names
                    ]
                )
                for d in directions
            ]
        )
        self.coefficients = affine.coefficients
        self.size = affine.coefficients.shape[0]
        itemsize = self.origin.element_size()
        self.block_size = int(max(1, min(16, _POINT_BLOCK_BYTES // (len(self.origin) * itemsize))))
        self._block: tuple[int, int, Tensor | None] = (0, 0, None)

    def _unflat(self, flat: Tensor, lead: tuple[int, ...]) -> Params:
        parts = flat.split(self.sizes, dim=-1)
        return {
            n: t.reshape(*lead, *s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)
        }

    def chunk(self, start: int, stop: int) -> Params:
        c = self.coefficients[start:stop]
        flat = torch.addmm(self.origin, c, self.directions)
        return self._unflat(flat, (len(c),))

    def point(self, k: int) -> Params:
        # Points are materialized a block at a time: one product reads the directions once
        # for the block instead of once per point (they leave the cache between points).
        start, stop, block = self._block
        if not start <= k < stop:
            stop = min(k + self.block_size, self.size)
            block = torch.addmm(self.origin, self.coefficients[k:stop], self.directions)
            start, self._block = k, (k, stop, block)
        return self._unflat(block[k - start], ())


@dataclass
class Buffers:
    """BatchNorm statistics (and any other buffers): shared by all points or stacked."""

    values: Params
    shared: bool

    def chunk(self, start: int, stop: int) -> Params:
        if self.shared:
            return self.values
        return {n: b[start:stop] for n, b in self.values.items()}

    def point(self, k: int) -> Params:
        return self.values if self.shared else {n: b[k] for n, b in self.values.items()}


def fresh_bn_buffers(buffers: Buffers, bn_names: Sequence[str], size: int) -> Buffers:
    """Per-point buffers with every BatchNorm statistic reset (mean 0, var 1, count 0)."""
    values = {}
    for name, b in buffers.values.items():
        stacked = b.expand(size, *b.shape) if buffers.shared else b
        values[name] = stacked.clone()
    for bn in bn_names:
        values[f"{bn}.running_mean"].zero_()
        values[f"{bn}.running_var"].fill_(1.0)
        if f"{bn}.num_batches_tracked" in values:
            values[f"{bn}.num_batches_tracked"].zero_()
    return Buffers(values, shared=False)


def template_of(models: nn.Module | Sequence[nn.Module] | Stacked) -> nn.Module:
    """The architecture of one network, a list of them, or a Stacked (the list's first)."""
    if isinstance(models, Stacked):
        return models.template
    if isinstance(models, nn.Module):
        return models
    if not isinstance(models, (list, tuple)) or not models:
        raise FuncspaceError(
            "models must be an nn.Module, a non-empty list of nn.Modules of one architecture, "
            f"or a funcspace.params.Stacked; got {type(models).__name__}"
            + (" (empty)" if isinstance(models, (list, tuple)) else "")
        )
    if not isinstance(models[0], nn.Module):
        raise FuncspaceError(f"models[0] is a {type(models[0]).__name__}, not an nn.Module")
    return models[0]


def as_points(
    models: nn.Module | Sequence[nn.Module] | Stacked,
) -> tuple[nn.Module, Points, Buffers]:
    """The template, points and buffers of one network, a list of them, or a Stacked."""
    if isinstance(models, Stacked):
        missing = sorted({n for n, _ in models.template.named_buffers()} - set(models.buffers))
        if missing:
            raise FuncspaceError(
                f"the Stacked networks lack buffers of the template: {missing[:3]}; pass them "
                "(from_params(template, params, buffers)) or leave buffers=None to share the "
                "template's"
            )
        buffers = Buffers(dict(models.buffers), models.shared_buffers)
        return models.template, StackedPoints(dict(models.params)), buffers
    template = template_of(models)
    if isinstance(models, nn.Module):
        models = [models]
    _check_architecture(models)
    tensors = [{n: p.detach() for n, p in m.named_parameters()} for m in models]
    if not tensors[0]:
        raise FuncspaceError(f"{type(template).__name__} has no parameters to evaluate")
    names = [n for n, _ in template.named_buffers()]
    if len(models) == 1 or not names:
        buffers = Buffers({n: b.detach() for n, b in template.named_buffers()}, True)
    else:
        named = [dict(m.named_buffers()) for m in models]
        buffers = Buffers({n: torch.stack([b[n].detach() for b in named]) for n in names}, False)
    return template, ModulePoints(tensors), buffers


def affine_points(
    template: nn.Module,
    origin: Params,
    directions: Sequence[Params],
    coefficients: Tensor,
    buffers: Params | None,
    reuse_first_layer: bool,
) -> tuple[AffinePoints, Buffers, Affine | None]:
    """Points, shared buffers and (when the first layer may be shared) the affine family."""
    shapes = {n: p.shape for n, p in template.named_parameters()}
    if not isinstance(origin, dict) or origin.keys() != shapes.keys():
        missing = sorted(set(shapes) - set(origin or {}))[:3]
        extra = sorted(set(origin or {}) - set(shapes))[:3]
        raise FuncspaceError(
            f"origin must hold exactly the template's parameters; missing {missing}, "
            f"unknown {extra}"
        )
    origin = {n: origin[n].detach() for n in shapes}
    directions = list(directions)
    for i, d in enumerate([origin, *directions]):
        where = "origin" if i == 0 else f"directions[{i - 1}]"
        if not isinstance(d, dict):
            raise FuncspaceError(f"{where} must be a dict of parameter tensors")
        for name, t in d.items():
            if name not in shapes:
                raise FuncspaceError(f"{where} has '{name}', which the template does not have")
            if tuple(t.shape) != tuple(shapes[name]):
                raise FuncspaceError(
                    f"{where}['{name}'] has shape {tuple(t.shape)}; the template's is "
                    f"{tuple(shapes[name])}"
                )
    directions = [{n: t.detach() for n, t in d.items()} for d in directions]
    check_finite(origin, "origin")
    for i, d in enumerate(directions):
        check_finite(d, f"directions[{i}]")
    device, dtype = device_dtype(origin)
    coefficients = torch.as_tensor(coefficients).to(device=device, dtype=dtype)
    if coefficients.ndim != 2 or coefficients.shape[1] != len(directions):
        raise FuncspaceError(
            f"coefficients must have shape (K, {len(directions)}) (one column per direction); "
            f"got {tuple(coefficients.shape)}"
        )
    if buffers is None:
        buffers = {n: b.detach() for n, b in template.named_buffers()}
    family = Affine(origin, directions, coefficients)
    shared = Buffers(dict(buffers), True)
    return AffinePoints(family), shared, family if reuse_first_layer and directions else None


def check_finite(tensors: Params, where: str) -> None:
    """Refuse parameters holding NaN or inf: every metric of them would be meaningless."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise FuncspaceError(
                f"{where}: parameter {name!r} contains NaN or inf; a network with non-finite "
                "weights has no error or loss to measure (did training diverge?)"
            )


def device_dtype(tensors: Params) -> tuple[torch.device, torch.dtype]:
    """Where the parameters live, and their floating dtype (the default one if none is)."""
    for t in tensors.values():
        if t.is_floating_point():
            return t.device, t.dtype
    t = next(iter(tensors.values()))
    return t.device, torch.get_default_dtype()


def read_batches(
    data: Dataset | Pair,
    split: str,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int | None,
    targets: Targets = "class",
    role: str = "data",
) -> tuple[list[Pair], int]:
    """``data`` on ``device`` (inputs cast to ``dtype``) in batches, and the batch size used.

    ``targets`` is what the metrics read (:class:`~funcspace.metrics.Metric`): class indices
    (1-D integers, kept as int64), +-1 labels (1-D, cast to ``dtype``), real values (cast), or
    anything (moved only).
    """
    x, y = as_pair(data, split)
    if len(x) == 0:
        raise FuncspaceError(f"{role} is empty: there is nothing to evaluate on")
    y = check_targets(y, targets, dtype=dtype, device=device, role=role)
    x = x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
    if batch_size is None:
        batch_size = min(len(x), DEFAULT_BATCH)
    return [
        (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
    ], batch_size


def _check_architecture(models: Sequence[nn.Module]) -> None:
    first = {n: p.shape for n, p in models[0].named_parameters()}
    for i, model in enumerate(models[1:], start=1):
        if not isinstance(model, nn.Module):
            raise FuncspaceError(f"models[{i}] is a {type(model).__name__}, not an nn.Module")
        other = {n: p.shape for n, p in model.named_parameters()}
        if other.keys() != first.keys():
            only = sorted(set(other) ^ set(first))[:3]
            raise FuncspaceError(
                f"models[{i}] has other parameters than models[0] (differing names: {only}); "
                "all models must share one architecture"
            )
        for name, shape in first.items():
            if other[name] != shape:
                raise FuncspaceError(
                    f"models[{i}] differs from models[0] in '{name}': shape "
                    f"{tuple(other[name])} vs {tuple(shape)}; all models must share one "
                    "architecture"
                )
