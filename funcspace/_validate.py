"""Validation at funcspace's public boundary, in one place.

Each check raises a :class:`~funcspace.errors.FuncspaceError` (or the subclass a caller names,
such as :class:`~funcspace.errors.DataError`) that says what was wrong, and returns the value in
the form the inside of the package trusts. Also here: the eval-mode context every measuring
function uses, and the selector of parameters by name or module prefix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from funcspace.errors import FuncspaceError

Error = type[FuncspaceError]


def check_module(name: str, value: object, *, parameters: bool = False) -> nn.Module:
    """An ``nn.Module`` (with at least one parameter when ``parameters``)."""
    if not isinstance(value, nn.Module):
        raise FuncspaceError(f"{name} must be an nn.Module, got {type(value).__name__}")
    if parameters and not any(True for _ in value.parameters()):
        raise FuncspaceError(f"{name} has no parameters")
    return value


def check_choice(
    name: str, value: object, choices: Sequence[str], error: Error = FuncspaceError
) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise error(f"unknown {name} {value!r}; choose one of {', '.join(map(str, choices))}")
    return value  # type: ignore[return-value]


def check_int(name: str, value: object, minimum: int = 1, error: Error = FuncspaceError) -> int:
    """An integer (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_size(name: str, value: object) -> int | None:
    """A positive integer, or None (for sizes with a default rule)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise FuncspaceError(f"{name} must be a positive integer or None; got {value!r}")
    return value


def check_seed(value: object, *, optional: bool = False, error: Error = FuncspaceError):
    """A non-negative integer seed (or None when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        allowed = "a non-negative integer" + (" or None" if optional else "")
        raise error(f"seed must be {allowed}, got {value!r}")
    return int(value)


def check_fraction(
    name: str, value: object, *, closed: bool = False, error: Error = FuncspaceError
) -> float:
    """A number in [0, 1) (or [0, 1] when ``closed``)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
    if bad or not (0 <= value <= 1 if closed else 0 <= value < 1):  # type: ignore[operator]
        interval = "[0, 1]" if closed else "[0, 1)"
        raise error(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_nonnegative(name: str, value: object, error: Error = FuncspaceError) -> float:
    """A finite number >= 0."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
    if bad or not math.isfinite(value) or value < 0:  # type: ignore[arg-type, operator]
        raise error(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_bool(name: str, value: object, error: Error = FuncspaceError) -> bool:
    """True or False (not 0 or 1)."""
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False, got {value!r}")
    return value


def check_span(name: str, span: object) -> tuple[float, float]:
    """A finite pair ``(low, high)`` with ``low < high``."""
    try:
        low, high = (float(v) for v in span)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise FuncspaceError(
            f"{name} must be a pair of numbers (low, high), got {span!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise FuncspaceError(f"{name} must be finite with low < high, got {span!r}")
    return low, high


def check_generator(seed: object) -> torch.Generator:
    """A generator as given, or a new one seeded with an integer."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FuncspaceError(f"seed must be an integer or a torch.Generator, got {seed!r}")
    return torch.Generator().manual_seed(seed)


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; every submodule gets its own training flag back after.

    ``model.train(flag)`` would overwrite the submodules' own flags (a frozen BatchNorm kept
    in eval mode inside a training model); this puts each one back as it was, also when the
    body raises.
    """
    flags = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, flag in flags:
            module.training = flag


def select_parameters(
    names: Sequence[str], selection: str | Sequence[str] | Callable[[str], bool], what: str
) -> list[str]:
    """The parameter names a selection picks, in ``names``' order.

    A selection is parameter names or module names (``"0"`` picks ``"0.weight"`` and
    ``"0.bias"``), one or several, or a predicate on names. A name that matches nothing is
    refused, listing the parameters.
    """
    if callable(selection) and not isinstance(selection, str):
        return [n for n in names if selection(n)]
    wanted = [selection] if isinstance(selection, str) else list(selection)
    chosen: set[str] = set()
    for w in wanted:
        if not isinstance(w, str):
            raise FuncspaceError(f"{what} must be names, got {w!r}")
        hits = {n for n in names if n == w or n.startswith(w + ".")}
        if not hits:
            shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
            raise FuncspaceError(
                f"{what} names {w!r}, which is neither a parameter nor a module of the model; "
                f"its parameters are: {shown}"
            )
        chosen |= hits
    return [n for n in names if n in chosen]
