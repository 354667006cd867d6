"""Validation at the landscape functions' boundary: each check raises a FuncspaceError that
says what was wrong, and returns the value in the form the inside of the package trusts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.errors import FuncspaceError
from funcspace.params import Params


def check_module(name: str, model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise FuncspaceError(f"{name} must be an nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise FuncspaceError(f"{name} has no parameters")
    return model


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise FuncspaceError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value  # type: ignore[return-value]


def check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FuncspaceError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_span(name: str, span: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in span)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        message = f"{name} must be a pair of numbers (low, high), got {span!r}"
        raise FuncspaceError(message) from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise FuncspaceError(f"{name} must be finite with low < high, got {span!r}")
    return low, high


def check_metrics(metrics: object) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    if not isinstance(metrics, Sequence) or not metrics:
        raise FuncspaceError(f"metrics must be a non-empty sequence of names, got {metrics!r}")
    return tuple(metrics)


def check_generator(seed: object) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FuncspaceError(f"seed must be an integer or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(seed)


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
