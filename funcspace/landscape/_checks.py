"""Directions at the landscape functions' boundary (the general checks live in
:mod:`funcspace._validate`)."""

from __future__ import annotations

import torch
from torch import Tensor

from funcspace.errors import FuncspaceError
from funcspace.params import Params


def complete(direction: object, like: Params, what: str) -> Params:
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
