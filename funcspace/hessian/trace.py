"""Stochastic trace estimators: Hutchinson, Hutch++ and Krylov-deflated Hutchinson."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from funcspace.errors import FuncspaceError

from .krylov import Krylov, generator, positive_int, rademacher
from .operator import Operator, as_operator
from .results import TraceResult

__all__ = ["hutchinson_trace", "hutchpp_trace", "krylov_trace"]


def hutchinson_trace(
    op: Operator | Tensor, hvps: int = 100, seed: int = 0, *, samples: int | None = None
) -> TraceResult:
    """Hutchinson's trace estimate ``mean(z^T H z)`` over Rademacher vectors ``z``.

    Parameters
    ----------
    op : HessianOperator, operator, or square Tensor
    hvps : int
        Number of probe vectors (= products), the budget every trace estimator takes.
    seed : int
    samples : int, optional
        The former name of ``hvps``: deprecated, removed in the next release.

    Returns
    -------
    TraceResult
        ``std_error`` is the sample standard deviation over ``sqrt(hvps)``.

    Example
    -------
    >>> hutchinson_trace(torch.eye(5, dtype=torch.float64), hvps=3).estimate
    5.0
    """
    if samples is not None:
        warnings.warn(
            "hutchinson_trace(..., samples=) is deprecated and will be removed in the next "
            "release; pass hvps=, the budget every trace estimator takes",
            DeprecationWarning,
            stacklevel=2,
        )
        hvps = samples
    op = as_operator(op)
    hvps = positive_int("hvps", hvps)
    gen = generator(op.device, seed)
    values = []
    for _ in range(hvps):
        z = rademacher((op.shape[0],), op, gen)
        values.append(torch.dot(z, op.matvec(z)))
    v = torch.stack(values).double().cpu().numpy()
    err = float(v.std(ddof=1) / math.sqrt(hvps)) if hvps > 1 else math.nan
    return TraceResult(float(v.mean()), err, hvps, "hutchinson")


def hutchpp_trace(op: Operator | Tensor, hvps: int = 99, seed: int = 0) -> TraceResult:
    """Hutch++ trace estimate (Meyer, Musco, Musco, Woodruff 2021).

    A third of the products sketch the range (``Q = qr(H S)``), a third give the exact trace
    of ``H`` on that subspace (``tr(Q^T H Q)``), and the rest run Hutchinson on the deflated
    ``(I - QQ^T) H (I - QQ^T)``. For a spectrum dominated by a few large eigenvalues (as in
    trained networks) the spread is far smaller than Hutchinson's at the same cost.

    Parameters
    ----------
    op : HessianOperator, operator, or square Tensor
    hvps : int
        Product budget, at least 3.
    seed : int

    Returns
    -------
    TraceResult
        ``std_error`` is the standard error of the deflated Hutchinson part (the subspace
        part is exact given ``Q``).

    Example
    -------
    >>> A = torch.diag(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))
    >>> hutchpp_trace(A, hvps=9).estimate   # k = 3 = n: the sketch spans everything
    7.0
    """
    op = as_operator(op)
    hvps = positive_int("hvps", hvps)
    if hvps < 3:
        raise FuncspaceError(f"hutchpp_trace needs at least 3 products, got hvps={hvps}")
    n = op.shape[0]
    gen = generator(op.device, seed)
    k = min(hvps // 3, n)
    S = rademacher((n, k), op, gen)
    Y = torch.stack([op.matvec(s) for s in S.T], dim=1)
    Q, _ = torch.linalg.qr(Y)
    exact = sum(torch.dot(q, op.matvec(q)) for q in Q.T)
    used = 2 * k
    rest = hvps - used if k < n else 0
    values = []
    for _ in range(rest):
        g = rademacher((n,), op, gen)
        g = g - Q @ (Q.T @ g)
        values.append(torch.dot(g, op.matvec(g)))
    used += rest
    base = float(torch.as_tensor(exact).double().cpu())
    if not values:
        return TraceResult(base, 0.0 if k == n else math.nan, used, "hutch++")
    v = torch.stack(values).double().cpu().numpy()
    err = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return TraceResult(base + float(v.mean()), err, used, "hutch++")


def krylov_trace(
    op: Operator | Tensor, hvps: int = 99, seed: int = 0, *, steps: int | None = None
) -> TraceResult:
    """Trace by Lanczos deflation plus Hutchinson on the rest ("Krylov-deflated Hutchinson").

    ``steps`` Lanczos steps from a random sign vector build an orthonormal basis ``Q`` of a
    Krylov space, which holds the outlying (top) eigendirections of a trained network's
    Hessian far better than Hutch++'s one-shot sketch ``qr(H S)`` of the same size. The trace
    of ``H`` on that space is free: ``Q^T H Q`` is the Lanczos tridiagonal matrix, so
    ``tr(Q^T H Q)`` is the sum of its diagonal, with no extra product (Hutch++ pays a second
    third of its budget for it). The remaining ``hvps - steps`` products run Hutchinson on
    the deflated ``(I - QQ^T) H (I - QQ^T)`` with fresh sign vectors, so the estimate is
    unbiased. The idea is that of Krylov-aware trace estimation (Chen and Hallman, 2023).

    Parameters
    ----------
    op : HessianOperator, operator, or square Tensor
    hvps : int
        Product budget, at least 2.
    seed : int
    steps : int, optional
        Lanczos steps (the deflation's dimension), ``1 <= steps <= hvps``; default
        ``hvps // 2``. Measured on a trained MLP's Hessian (benchmarks/hessian.py) half the
        budget was near the best split from 30 to 300 products.

    Returns
    -------
    TraceResult
        ``std_error`` is the standard error of the deflated Hutchinson part (the Krylov part
        is exact given its basis); 0 when the Krylov space covers the whole operator.

    Example
    -------
    >>> import torch
    >>> A = torch.diag(torch.tensor([9.0, 4.0, 1.0, 0.5], dtype=torch.float64))
    >>> round(krylov_trace(A, hvps=4, steps=4).estimate, 10)   # the basis spans everything
    14.5
    """
    op = as_operator(op)
    hvps = positive_int("hvps", hvps)
    if hvps < 2:
        raise FuncspaceError(f"krylov_trace needs at least 2 products, got hvps={hvps}")
    n = op.shape[0]
    steps = max(1, hvps // 2) if steps is None else positive_int("steps", steps)
    if steps > hvps:
        raise FuncspaceError(f"steps={steps} cannot exceed the budget hvps={hvps}")
    steps = min(steps, n)
    gen = generator(op.device, seed)
    kr = Krylov(op, rademacher((n,), op, gen), steps, gen)
    while kr.size < steps:
        kr.step()
    base = math.fsum(kr.alphas)
    if steps == n:  # the basis spans the space: tr(Q^T H Q) is the trace
        return TraceResult(base, 0.0, steps, "krylov")
    Q = kr.Q[:steps].T
    values = []
    for _ in range(hvps - steps):
        g = rademacher((n,), op, gen)
        g = g - Q @ (Q.T @ g)
        g = g - Q @ (Q.T @ g)  # twice: orthogonal to working precision
        values.append(torch.dot(g, op.matvec(g)))
    if not values:
        return TraceResult(base, math.nan, steps, "krylov")
    v = torch.stack(values).double().cpu()
    err = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return TraceResult(base + float(v.mean()), err, hvps, "krylov")
