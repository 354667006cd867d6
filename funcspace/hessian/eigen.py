"""Extreme eigenvalues by Lanczos with full reorthogonalization."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

from funcspace.errors import FuncspaceError

from .krylov import Krylov, generator, positive_int
from .operator import Operator, as_operator
from .results import EigenResult

__all__ = ["lanczos"]

log = logging.getLogger(__name__)


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    order = np.arange(len(theta))
    if which == "largest":
        return order[::-1][:k]
    if which == "smallest":
        return order[:k]
    return np.concatenate([order[::-1][:k], order[:k][::-1]])


# --------------------------------------------------------------------------- estimators


def lanczos(
    op: Operator | Tensor,
    k: int = 1,
    which: str = "largest",
    *,
    max_iter: int | None = None,
    tol: float = 1e-3,
    seed: int = 0,
    v0: Tensor | None = None,
) -> EigenResult:
    """Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalization.

    After every step the Ritz pairs of the tridiagonal matrix ``T_m`` are computed; the
    residual of a pair ``(theta, Q y)`` is ``|beta_m * y_m|`` (``y_m`` its last component,
    ``beta_m`` the next off-diagonal), the exact ``||H Q y - theta Q y||`` when the basis is
    orthogonal. The run stops when the residual of **every** wanted pair is at most
    ``tol * |theta|`` (as ARPACK does, ``|theta|`` is floored at ``eps**(2/3)`` times the
    largest Ritz magnitude, so eigenvalues near zero are judged on an absolute scale). An
    eigenvalue of the operator then lies within ``tol * |theta|`` of each Ritz value.

    Memory: ``max_iter`` basis vectors of length ``n`` on the operator's device.

    Parameters
    ----------
    op : HessianOperator, operator, or square symmetric Tensor
    k : int
        Number of eigenvalues (at each end for ``"both"``); ``1 <= k < n``.
    which : {"largest", "smallest", "both"}
        Algebraically largest, smallest (most negative), or ``k`` of each.
    max_iter : int, optional
        Most Lanczos steps (= products); default ``min(n, max(60, 20 * wanted))``.
    tol : float
        Relative residual tolerance.
    seed : int
        Seed of the random start vector (and of restarts after a breakdown).
    v0 : Tensor, optional
        Start vector instead of a random one.

    Returns
    -------
    EigenResult
        ``converged`` is False when ``max_iter`` ran out first; the residuals say how far
        the values can be trusted either way.

    Raises
    ------
    FuncspaceError
        For a bad ``k``, ``which``, ``tol``, ``max_iter`` or start vector.

    Notes
    -----
    A single-vector Krylov method sees one copy of an exactly repeated eigenvalue until its
    space closes (a breakdown: then it restarts from a random vector orthogonal to it), and
    cannot see an eigenvector its start vector is orthogonal to; a random start makes the
    latter improbable. The residual test bounds the distance to *an* eigenvalue: with a start
    vector nearly orthogonal to the top eigenvector and a tight cluster at the top, Lanczos
    can converge to the second eigenvalue of the cluster (any Krylov method can). Estimates
    that divide the residual by a gap estimated from Ritz values stop far earlier but are
    fooled by clusters the Krylov space has not resolved yet, so they are not used here.

    Example
    -------
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> res = lanczos(A, k=2, tol=1e-10)
    >>> res.values.numpy().round(8).tolist(), res.converged
    ([10.0, 9.0], True)
    """
    op = as_operator(op)
    n = op.shape[0]
    if which not in ("largest", "smallest", "both"):
        raise FuncspaceError(f"which must be 'largest', 'smallest' or 'both', got {which!r}")
    k = positive_int("k", k)
    wanted = 2 * k if which == "both" else k
    if k >= n or wanted > n:
        raise FuncspaceError(
            f"k={k} is too large for an operator of size n={n}: need k < n"
            + (" and 2k <= n for which='both'" if which == "both" else "")
            + "; for all eigenvalues of a tiny operator use torch.linalg.eigvalsh(op.dense())"
        )
    if max_iter is None:
        max_iter = min(n, max(60, 20 * wanted))
    max_iter = min(positive_int("max_iter", max_iter), n)
    if max_iter < wanted:
        raise FuncspaceError(f"max_iter={max_iter} must be at least the {wanted} wanted values")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise FuncspaceError(f"tol must be a positive finite number, got {tol!r}")
    gen = generator(op.device, seed)
    if v0 is None:
        q = torch.randn(n, generator=gen, device=op.device, dtype=op.dtype)
    else:
        q = torch.as_tensor(v0).to(device=op.device, dtype=op.dtype).reshape(-1)
        if q.numel() != n or not torch.isfinite(q).all() or not q.any():
            raise FuncspaceError(f"v0 must be a finite non-zero vector of length {n}")

    kr = Krylov(op, q, max_iter, gen)
    eps23 = kr.eps ** (2 / 3)
    converged = False
    while True:
        # right after a breakdown every Ritz residual is 0, but a repeated eigenvalue may have
        # more copies outside the closed Krylov space: look once more from the restart vector
        broke = kr.step()
        theta, Y, res = kr.ritz()
        if kr.size >= wanted:
            idx = _wanted(theta, k, which)
            floor = eps23 * np.abs(theta).max()
            small = bool(np.all(res[idx] <= tol * np.maximum(np.abs(theta[idx]), floor)))
            converged = small and (not broke or kr.size == n)
        if converged or kr.size == max_iter:
            break
    log.debug("lanczos: %d steps, converged=%s", kr.size, converged)
    m = kr.size
    y = torch.as_tensor(Y[:, idx], device=op.device, dtype=op.dtype)
    vectors = kr.Q[:m].T @ y
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=0)
    return EigenResult(
        values=torch.as_tensor(theta[idx], dtype=torch.float64),
        vectors=vectors,
        residuals=torch.as_tensor(res[idx], dtype=torch.float64),
        iterations=m,
        converged=converged,
        hvps=m,
    )
