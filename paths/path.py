"""Paths between two networks: the object, and the straight (linear, layer-wise) ones.

A :class:`Path` holds its two ends (left untouched), its kind, and the parameters at any ``t``
in ``[0, 1]`` at once (stacked, one leading axis), so every measurement along it goes through
the batched engine. Straight paths are affine in ``t``: ``theta(t) = theta_a + t (theta_b -
theta_a)``, which the engine uses to compute the first layer once per batch, not once per point.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace._validate import check_module, select_parameters
from funcspace.errors import FuncspaceError
from funcspace.params import Params, buffers_of, parameters_of

#: Path kinds built so far.
KINDS = ("linear", "layerwise")


class PathError(FuncspaceError):
    """Bad input to a paths function: the message says what, where, and what to do."""


@dataclass(frozen=True, eq=False)
class Path:
    """A path from ``start`` (``t = 0``) to ``end`` (``t = 1``) through parameter space.

    Attributes
    ----------
    start, end : nn.Module
        The two networks (one architecture), never modified.
    kind : {"linear", "layerwise"}
    origin : dict of str -> Tensor
        The parameters at ``t = 0``.
    direction : dict of str -> Tensor
        ``theta(t) = origin + t * direction``: ``end - start`` on the moving parameters, zero on
        the others.
    layers : tuple of str or None
        The parameters or modules that move (``None``: all).
    """

    start: nn.Module
    end: nn.Module
    kind: str
    origin: Params
    direction: Params
    layers: tuple[str, ...] | None = None

    def params(self, t: Sequence[float] | np.ndarray | Tensor) -> Params:
        """The parameters at every ``t``, stacked along a leading axis of ``len(t)``."""
        ts = check_times(t)
        like = next(iter(self.origin.values()))
        ts = torch.as_tensor(ts, dtype=like.dtype, device=like.device)
        return {
            name: value.unsqueeze(0) + _along(ts, value) * self.direction[name].unsqueeze(0)
            for name, value in self.origin.items()
        }

    def at(self, t: float) -> nn.Module:
        """A new network at ``t`` (eval mode).

        Its BatchNorm statistics are the linear interpolation of the ends' (for a layer-wise
        path, only in the BatchNorm layers that move); recalibrate them, or measure with
        :func:`paths.profile`, for honest values between the ends.
        """
        (t,) = check_times([t])
        moving = {n.rsplit(".", 1)[0] for n in self.moving}
        model = copy.deepcopy(self.start)
        state = dict(model.state_dict())
        state.update({n: v + t * self.direction[n] for n, v in self.origin.items()})
        ends = buffers_of(self.start), buffers_of(self.end)
        for name, value in ends[0].items():
            module = name.rsplit(".", 1)[0]
            if value.is_floating_point() and (self.kind == "linear" or module in moving):
                state[name] = (1 - t) * value + t * ends[1][name].to(value)
        model.load_state_dict(state)
        return model.eval()

    @property
    def moving(self) -> tuple[str, ...]:
        """The parameters that change along the path."""
        return tuple(n for n, d in self.direction.items() if bool(d.any()))

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the kind, the layers that move, and how far the ends are apart."""
        squared = sum(float((d.double() ** 2).sum()) for d in self.direction.values())
        return {
            "kind": self.kind,
            "layers": None if self.layers is None else list(self.layers),
            "moving": list(self.moving),
            "euclidean_length": squared**0.5,
        }

    def __repr__(self) -> str:
        info = self.to_dict()
        return (
            f"Path({self.kind}, {type(self.start).__name__}, {len(info['moving'])} moving "
            f"tensors, |b - a| = {info['euclidean_length']:.4g})"
        )


def _along(ts: Tensor, like: Tensor) -> Tensor:
    return ts.reshape(-1, *([1] * like.ndim))


def check_times(t: Sequence[float] | np.ndarray | Tensor) -> np.ndarray:
    """Values of ``t`` as a 1-D float64 array in [0, 1]; anything else is refused."""
    values = np.asarray(t.detach().cpu() if isinstance(t, Tensor) else t, dtype=np.float64)
    values = np.atleast_1d(values)
    if values.ndim != 1 or values.size == 0:
        raise PathError(f"t must be a non-empty 1-D sequence of numbers, got shape {values.shape}")
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise PathError(
            f"t must lie in [0, 1] (a path runs from its start at 0 to its end at 1); got values "
            f"in [{values.min()}, {values.max()}]"
        )
    return values


def _ends(a: object, b: object) -> tuple[nn.Module, nn.Module, Params, Params]:
    try:
        a = check_module("a", a, parameters=True, finite=True)
        b = check_module("b", b, parameters=True, finite=True)
    except FuncspaceError as err:
        raise PathError(str(err)) from None
    pa, pb = parameters_of(a), parameters_of(b)
    if pa.keys() != pb.keys():
        only_a, only_b = sorted(set(pa) - set(pb))[:3], sorted(set(pb) - set(pa))[:3]
        raise PathError(
            f"a and b are not one architecture: parameters only in a {only_a}, only in b {only_b}"
        )
    for name, value in pa.items():
        if value.shape != pb[name].shape:
            raise PathError(
                f"a and b are not one architecture: {name!r} has shape {tuple(value.shape)} in a "
                f"and {tuple(pb[name].shape)} in b"
            )
    return a, b, pa, {n: v.to(pa[n]) for n, v in pb.items()}


def linear(a: nn.Module, b: nn.Module) -> Path:
    """The straight path ``(1 - t) a + t b`` between two networks of one architecture.

    From an initialization to a solution as well as between two minimizers. BatchNorm
    statistics are not parameters: :func:`paths.profile` says how it treats them.

    Raises
    ------
    PathError
        For two architectures, or a model with NaN or inf parameters.

    Examples
    --------
    >>> from torch import nn
    >>> a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    >>> path = linear(a, b)
    >>> mid = path.params([0.5])["weight"][0]
    >>> bool(torch.allclose(mid, (a.weight + b.weight) / 2))
    True
    """
    a, b, pa, pb = _ends(a, b)
    return Path(a, b, "linear", pa, {n: pb[n] - pa[n] for n in pa})


def layerwise(a: nn.Module, b: nn.Module, layers: str | Sequence[str]) -> Path:
    """The straight path on the named layers only: every other parameter stays at ``a``.

    ``layers`` names modules (``"features.0"`` moves its weight and bias) or parameters; a
    name that matches nothing is refused, listing the parameters. Its end is ``a`` with those
    layers taken from ``b`` (a hybrid network, as Vlaar & Frankle 2022 study).

    Raises
    ------
    PathError
        For two architectures, non-finite parameters, or a layer name that matches nothing.

    Examples
    --------
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> b = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> layerwise(a, b, "2").moving
    ('2.weight', '2.bias')
    """
    a, b, pa, pb = _ends(a, b)
    try:
        chosen = set(select_parameters(list(pa), layers, "layers"))
    except FuncspaceError as err:
        raise PathError(str(err)) from None
    direction = {n: pb[n] - pa[n] if n in chosen else torch.zeros_like(pa[n]) for n in pa}
    names = (layers,) if isinstance(layers, str) else tuple(layers)
    return Path(a, b, "layerwise", pa, direction, names)
