"""Parameters as tensors: one network as ``dict[str, Tensor]``, many as one leading axis.

The torch.func convention: a network is its module (the architecture, a template) plus a dict
of parameter tensors; :class:`Stacked` holds K networks of one architecture with a leading axis
of length K on every tensor, which is what the batched evaluation, planes and paths consume.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from funcspace.errors import FuncspaceError

Params = dict[str, Tensor]


def parameters_of(model: nn.Module) -> Params:
    """Detached copies of the model's parameters, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def buffers_of(model: nn.Module) -> Params:
    """Detached copies of the model's buffers (BatchNorm statistics), by name."""
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def with_params(model: nn.Module, params: Params, buffers: Params | None = None) -> nn.Module:
    """A copy of ``model`` holding ``params`` (and ``buffers``); the model is left untouched."""
    new = copy.deepcopy(model)
    state = {**params, **(buffers or {})}
    missing = set(new.state_dict()) - set(state) - set(buffers_of(model))
    if missing:
        raise FuncspaceError(f"params lack tensors of the model: {sorted(missing)[:5]}")
    new.load_state_dict(state, strict=False)
    return new


def flatten(params: Params) -> Tensor:
    """All tensors concatenated into one vector (in the dict's order)."""
    return torch.cat([t.reshape(-1) for t in params.values()])


def unflatten(vector: Tensor, like: Params) -> Params:
    """Split a vector back into tensors shaped like ``like``."""
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    if start != vector.numel():
        raise FuncspaceError(f"vector has {vector.numel()} entries, the params {start}")
    return out


def check_compatible(points: Sequence[Params], label: str = "point") -> None:
    """Refuse parameter dicts that differ in names or shapes, saying which and where.

    ``label`` names the items in the message (``"model 2"``, ``"trajectory 5"``).
    """
    first = points[0]
    for i, point in enumerate(points[1:], start=1):
        if point.keys() != first.keys():
            raise FuncspaceError(f"{label} {i} has other tensor names than {label} 0")
        for name in first:
            if point[name].shape != first[name].shape:
                raise FuncspaceError(
                    f"{label} {i} differs from {label} 0 in '{name}': shape "
                    f"{tuple(point[name].shape)} vs {tuple(first[name].shape)}"
                )


@dataclass(frozen=True, eq=False)
class Stacked:
    """K networks of one architecture: ``params[name]`` has shape ``(K, *shape)``.

    ``buffers`` are either stacked the same way (per-network BatchNorm statistics) or shared
    (no leading axis), as ``shared_buffers`` says.
    """

    template: nn.Module
    params: Params
    buffers: Params
    shared_buffers: bool = True

    def __len__(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def __getitem__(self, k: int) -> nn.Module:
        """Network ``k`` as a module."""
        buffers = self.buffers
        if not self.shared_buffers:
            buffers = {n: b[k] for n, b in self.buffers.items()}
        return with_params(self.template, {n: p[k] for n, p in self.params.items()}, buffers)

    def point(self, k: int) -> Params:
        """The parameters of network ``k``."""
        return {n: p[k] for n, p in self.params.items()}

    def __repr__(self) -> str:
        count = sum(p[0].numel() for p in self.params.values())
        name = type(self.template).__name__
        return f"Stacked({len(self)} networks of {name}, {count} parameters each)"


def difference(
    a: nn.Module, b: nn.Module, layers: str | Sequence[str] | None = None
) -> tuple[Params, Params]:
    """``a``'s parameters and the straight step to ``b``'s (zero outside ``layers``).

    The one implementation of straight paths: :func:`funcspace.landscape.interpolate` and
    ``paths.linear`` / ``paths.layerwise`` both build on it. ``layers`` names modules or
    parameters (None: all move).

    Raises
    ------
    FuncspaceError
        For two architectures (the message names the parameter) or a layer matching nothing.

    Examples
    --------
    >>> from torch import nn
    >>> a = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    >>> origin, step = difference(a, a, layers="1")
    >>> sorted(n for n, d in step.items() if d.any())
    []
    """
    from funcspace._validate import select_parameters

    pa, pb = parameters_of(a), parameters_of(b)
    if pa.keys() != pb.keys():
        only_a, only_b = sorted(set(pa) - set(pb))[:3], sorted(set(pb) - set(pa))[:3]
        raise FuncspaceError(
            f"a and b are not one architecture: parameters only in a {only_a}, only in b {only_b}"
        )
    for name, value in pa.items():
        if value.shape != pb[name].shape:
            raise FuncspaceError(
                f"a and b are not one architecture: {name!r} has shape {tuple(value.shape)} in a "
                f"and {tuple(pb[name].shape)} in b"
            )
    chosen = set(pa) if layers is None else set(select_parameters(list(pa), layers, "layers"))
    step = {n: (pb[n].to(pa[n]) - pa[n]) if n in chosen else torch.zeros_like(pa[n]) for n in pa}
    return pa, step


def stack(models: Sequence[nn.Module]) -> Stacked:
    """Stack networks of one architecture (same parameter names and shapes) into :class:`Stacked`.

    Buffers are stacked too (per-network BatchNorm statistics) when there are any.

    Raises
    ------
    FuncspaceError
        If the list is empty or the architectures differ (the message says where).
    """
    if not models:
        raise FuncspaceError("stack needs at least one model")
    first = parameters_of(models[0])
    check_compatible([parameters_of(m) for m in models], "model")
    named = [dict(m.named_parameters()) for m in models]
    params = {n: torch.stack([p[n].detach() for p in named]) for n in first}
    buffer_names = list(buffers_of(models[0]))
    buffers = {
        n: torch.stack([dict(m.named_buffers())[n].detach() for m in models]) for n in buffer_names
    }
    return Stacked(models[0], params, buffers, shared_buffers=not buffer_names)


def from_params(template: nn.Module, params: Params, buffers: Params | None = None) -> Stacked:
    """Wrap stacked parameter tensors (leading axis K) with their architecture.

    ``buffers`` default to the template's own, shared by every network.
    """
    shapes = {n: p.shape for n, p in template.named_parameters()}
    if params.keys() != shapes.keys():
        raise FuncspaceError("stacked params must have exactly the template's parameter names")
    sizes = {p.shape[0] for p in params.values()}
    if len(sizes) != 1:
        raise FuncspaceError(f"stacked params disagree on the number of networks: {sorted(sizes)}")
    for name, p in params.items():
        if p.shape[1:] != shapes[name]:
            raise FuncspaceError(
                f"stacked '{name}' has shape {tuple(p.shape)}; expected (K, *{tuple(shapes[name])})"
            )
    shared = buffers is None
    return Stacked(template, params, buffers_of(template) if shared else buffers, shared)
