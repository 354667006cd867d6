"""Minimizers of the training loss plus a penalty (``L + lambda R``), one per ``lambda``: the
comparison points of a level-set walk (:func:`~paths.level_set`). For a convex loss and
regularizer they lie on the walk's curve: the level set's end at level ``L(theta_lambda)`` is
``theta_lambda``. Like the walk, they evaluate the network in eval mode, and only the parameters
that require grad move."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from funcspace._validate import check_int
from funcspace.data import Dataset, Pair
from funcspace.metrics import Metric

from .level_set import Regularizer, _positive, _Problem, _progress
from .path import PathError


@dataclass(frozen=True, eq=False)
class Penalized:
    """Minimizers of ``loss + lambda * regularizer``, one per ``lambda``, with their measures.

    Attributes
    ----------
    lambdas : numpy array
        As given (same order).
    regularizer, train_loss : numpy arrays
        At each minimizer.
    train_error, test_loss, test_error : numpy arrays or None
        As in :class:`~paths.LevelSet`.
    gradient_norm : numpy array
        The largest entry of the objective's gradient at the end (its infinity norm: the
        evidence of a minimum).
    iterations : numpy int array
        L-BFGS iterations taken.
    converged : numpy bool array
        Whether ``gradient_norm <= tolerance``.
    tolerance : float
    regularizer_name, loss : str
    models : tuple of nn.Module
        The minimizers as new networks (eval mode); the input model is never modified.
    """

    lambdas: np.ndarray
    regularizer: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray | None
    test_loss: np.ndarray | None
    test_error: np.ndarray | None
    gradient_norm: np.ndarray
    iterations: np.ndarray
    converged: np.ndarray
    tolerance: float
    regularizer_name: str
    loss: str
    models: tuple[nn.Module, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON (the models are left out)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            if key == "models":
                continue
            value = getattr(self, key)
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def __repr__(self) -> str:
        return (
            f"Penalized({self.regularizer_name}, {len(self.lambdas)} lambdas in "
            f"[{self.lambdas.min():.3g}, {self.lambdas.max():.3g}]; {self.regularizer_name} "
            f"{self.regularizer.max():.4g} -> {self.regularizer.min():.4g}, {self.loss} "
            f"{self.train_loss.min():.4g} -> {self.train_loss.max():.4g}; "
            f"{int(self.converged.sum())}/{len(self.lambdas)} converged)"
        )


def penalized(
    model: nn.Module,
    data: Dataset | Pair,
    *,
    regularizer: Regularizer = "l2",
    lambdas: Sequence[float] | np.ndarray = (1e-4, 1e-3, 1e-2, 1e-1),
    loss: str | Metric | Callable[[Tensor, Tensor], Tensor] = "loss",
    steps: int = 500,
    tolerance: float = 1e-7,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Penalized:
    """The minimizers of ``loss + lambda * regularizer`` from ``model``, one per ``lambda``.

    Each ``lambda`` starts from the model's parameters and runs full-batch L-BFGS (strong
    Wolfe line search), so the result is deterministic. These are the points a level-set walk
    is compared with: for a convex loss and regularizer, the minimizer at ``lambda`` is the
    end of :func:`~paths.level_set` at level ``L(theta_lambda)``.

    Parameters
    ----------
    model, data, regularizer, loss, batch_size, progress
        As in :func:`~paths.level_set` (``progress`` counts lambdas). ``"l1"`` is not smooth:
        L-BFGS finds an approximate minimizer; check ``converged`` (networks with ReLUs are
        not smooth either, and may stop short of the tolerance too).
    lambdas : sequence of float
        The penalty weights (>= 0; 0 minimizes the loss alone).
    steps : int
        The most L-BFGS iterations per ``lambda`` (>= 1).
    tolerance : float
        L-BFGS stops once the objective's largest gradient entry is at most this (> 0). Its
        line search compares objective values, so it also stops where their round-off hides
        any further decrease: gradients much below ``sqrt(eps * objective * curvature)``
        (about 1e-9 in float64 for losses of order one) are out of reach.

    Returns
    -------
    Penalized

    Raises
    ------
    PathError
        As :func:`~paths.level_set`, and for lambdas that are not a non-empty sequence of finite
        numbers >= 0.

    Examples
    --------
    Ridge regression, ``mean((x w - y)^2) + lambda w^2`` on one example ``x = 1, y = 2``, has
    its minimum at ``w = 2 / (1 + lambda)``:

    >>> import torch
    >>> from torch import nn
    >>> data = (torch.ones(1, 1, dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    >>> ridge = penalized(nn.Linear(1, 1, bias=False).double(), data, loss="mse", lambdas=[0, 1])
    >>> [round(m.weight.item(), 6) for m in ridge.models]
    [2.0, 1.0]
    """
    values = np.atleast_1d(np.asarray(lambdas, dtype=np.float64)) if _numbers(lambdas) else None
    if values is None or values.ndim != 1 or values.size == 0:
        raise PathError(f"lambdas must be a non-empty sequence of numbers, got {lambdas!r}")
    if not np.isfinite(values).all() or (values < 0).any():
        raise PathError(f"lambdas must be finite and >= 0, got {values.tolist()}")
    steps = check_int("steps", steps, 1, PathError)
    tolerance = _positive("tolerance", tolerance)
    problem = _Problem(model, data, loss, regularizer, batch_size)
    start = problem.start()
    found = []
    with _progress(progress, len(values), "penalized", "lambda") as bar:
        for lam in values.tolist():
            theta, iterations = _minimize(problem, start, lam, steps, tolerance)
            value = problem.loss_grad(theta)
            reg, reg_grad = problem.reg_grad(theta)
            gradient = float((value.grad + lam * reg_grad).abs().max())
            found.append((theta, iterations, value, reg, gradient, problem.measure_test(theta)))
            bar.update()

    def optional(values: list) -> np.ndarray | None:
        return None if values[0] is None else np.asarray(values, dtype=np.float64)

    gradient = np.asarray([f[4] for f in found], dtype=np.float64)
    return Penalized(
        lambdas=values,
        regularizer=np.asarray([f[3] for f in found], dtype=np.float64),
        train_loss=np.asarray([f[2].loss for f in found], dtype=np.float64),
        train_error=optional([f[2].error for f in found]),
        test_loss=optional([f[5][0] for f in found]),
        test_error=optional([f[5][1] for f in found]),
        gradient_norm=gradient,
        iterations=np.asarray([f[1] for f in found], dtype=np.int64),
        converged=gradient <= tolerance,
        tolerance=tolerance,
        regularizer_name=problem.reg_name,
        loss=problem.loss_name,
        models=tuple(problem.module(f[0]) for f in found),
    )


def _minimize(
    problem: _Problem, start: Tensor, lam: float, steps: int, tolerance: float
) -> tuple[Tensor, int]:
    """Full-batch L-BFGS on ``loss + lam * regularizer`` from ``start``: the end, iterations."""
    theta = start.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta],
        lr=1.0,
        max_iter=steps,
        tolerance_grad=tolerance,
        tolerance_change=0.0,  # stop on the gradient, or where the line search finds no descent
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        value = problem.loss_grad(theta.detach())
        reg, reg_grad = problem.reg_grad(theta.detach())
        theta.grad = value.grad + lam * reg_grad
        return torch.tensor(value.loss + lam * reg, dtype=torch.float64)

    optimizer.step(closure)
    return theta.detach().clone(), int(optimizer.state[theta].get("n_iter", 0))


def _numbers(value: object) -> bool:
    if isinstance(value, (str, bytes, bool)):
        return False
    try:
        np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True
