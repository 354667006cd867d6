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


def check_module(
    name: str, value: object, *, parameters: bool = False, finite: bool = False
) -> nn.Module:
    """An ``nn.Module`` (with at least one parameter when ``parameters``; with no NaN or inf
    in its parameters when ``finite``: a broken network has nothing to measure)."""
    if not isinstance(value, nn.Module):
        raise FuncspaceError(f"{name} must be an nn.Module, got {type(value).__name__}")
    if parameters and not any(True for _ in value.parameters()):
        raise FuncspaceError(f"{name} has no parameters")
    if finite:
        for key, p in value.named_parameters():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                raise FuncspaceError(
                    f"parameter {key!r} contains NaN or inf (in {name}); a network with "
                    "non-finite weights has nothing to measure (did training diverge?)"
                )
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


def check_targets(
    y: torch.Tensor, kind: str, *, dtype: torch.dtype, device: torch.device, role: str = "data"
) -> torch.Tensor:
    """Targets as a metric or loss reads them (``kind`` of :class:`~funcspace.metrics.Metric`):
    class indices (1-D integers, int64), +-1 labels (1-D, ``dtype``), real values (``dtype``)
    or anything (moved only); anything else is refused, saying what to do."""
    if kind == "class":
        if y.is_floating_point() or y.ndim != 1:
            raise FuncspaceError(
                f"{role} targets must be a 1-D tensor of integer class indices; got {y.dtype} of "
                f"shape {tuple(y.shape)} (for regression targets use 'mse' or a metric of your "
                "own)"
            )
        return y.to(device=device, dtype=torch.long)
    if kind == "sign" and (y.ndim != 1 or not bool(((y == 1) | (y == -1)).all())):
        raise FuncspaceError(f"{role} targets must be a 1-D tensor of +-1 labels for these metrics")
    if kind in ("real", "sign"):
        return y.to(device=device, dtype=dtype)
    return y.to(device=device)


def check_class_range(y: torch.Tensor, classes: int) -> None:
    """Refuse class indices outside ``0 ... classes - 1`` (the model's number of outputs)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise FuncspaceError(
            f"targets range over [{int(y.min())}, {int(y.max())}] but the model has {classes} "
            "outputs; targets must be class indices below the number of outputs"
        )


def explain_forward_error(model: nn.Module, inputs: torch.Tensor, err: Exception) -> FuncspaceError:
    """A clear error for a forward pass that failed on the user's inputs, with what to do."""
    hints = []
    has_conv = any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules())
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))), None)
    if has_conv and inputs.ndim == 2:
        hints.append(
            "the model has convolutions but the inputs are flat vectors (N, features); load "
            "image data as images, e.g. funcspace.data.load('digits', flat=False) or "
            "load('mnist', ..., flatten=False)"
        )
    if not inputs.is_floating_point() and not isinstance(first, nn.Embedding):
        hints.append(
            f"the inputs are {inputs.dtype}; convert them to floats (for image bytes, "
            "x.float() / 255) or load them with funcspace.data.load"
        )
    hint = ("; " + "; ".join(hints)) if hints else ""
    return FuncspaceError(
        f"{type(model).__name__} cannot run on inputs of shape {tuple(inputs.shape[1:])} per "
        f"example ({inputs.dtype}): {type(err).__name__}: {err}{hint}"
    )


def check_model_data(
    model: object, data: object, split: str = "train", *, targets: str = "class"
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The one boundary check of a (model, data) pair, for every function that takes both.

    Refuses a model without parameters or with NaN or inf in them, data that are not a
    :class:`~funcspace.data.Dataset` or an ``(inputs, targets)`` pair, targets the loss cannot
    read (``targets``: ``"class"`` for integer class indices, ``"sign"``, ``"real"`` or
    ``"any"``, as :class:`~funcspace.metrics.Metric` says), and a model that fails on two of
    the inputs or whose outputs do not fit the class targets, each with what to do.

    Returns
    -------
    (model, inputs, targets)
        Inputs moved to the model's device, floating ones cast to its floating dtype; class
        targets as int64, real or sign targets in the model's dtype.
    """
    from funcspace.data import as_pair  # funcspace.data imports this module

    model = check_module("model", model, parameters=True, finite=True)
    x, y = as_pair(data, split)
    like = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = next(model.parameters()).device
    dtype = like.dtype if like is not None else torch.get_default_dtype()
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
    y = check_targets(y, targets, dtype=dtype, device=device)
    if len(x) == 0:
        raise FuncspaceError("the data are empty: there is nothing to measure")
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x[:2])
    except (RuntimeError, TypeError, ValueError, IndexError) as err:
        raise explain_forward_error(model, x, err) from err
    if targets == "class":
        classes = out.shape[1] if isinstance(out, torch.Tensor) and out.ndim == 2 else None
        if classes is None:
            raise FuncspaceError(
                f"the model must return (N, n_classes) logits; it returned "
                f"{tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__}"
                " per example"
            )
        check_class_range(y, classes)
    return model, x, y
