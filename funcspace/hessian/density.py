"""Spectral density by stochastic Lanczos quadrature."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from funcspace.errors import FuncspaceError

from .krylov import Krylov, generator, positive_int, rademacher
from .operator import Operator, as_operator
from .results import SpectralDensity

__all__ = ["spectral_density"]


def spectral_density(
    op: Operator | Tensor,
    n_vectors: int = 3,
    steps: int = 60,
    seed: int = 0,
    *,
    grid: int | np.ndarray | Tensor = 1000,
    sigma: float | None = None,
) -> SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature with Gaussian broadening.

    For each random unit probe ``q`` (Rademacher), ``steps`` Lanczos steps (full
    reorthogonalization) give ``T = V diag(theta) V^T``; the nodes ``theta`` with weights
    ``V[0]**2`` are the Gauss quadrature of the spectral measure seen from ``q``, whose
    average over probes estimates the eigenvalue distribution (Ghorbani et al. 2019).

    Parameters
    ----------
    op : HessianOperator, operator, or square Tensor
    n_vectors : int
        Number of probes.
    steps : int
        Lanczos steps per probe (capped at ``n``).
    seed : int
    grid : int or array
        An array of eigenvalue positions, or the number of points of a uniform grid from the
        smallest node minus ``5 sigma`` to the largest plus ``5 sigma``.
    sigma : float, optional
        Gaussian width; default 1% of the spread of the nodes.

    Returns
    -------
    SpectralDensity
        Products used: ``n_vectors * steps`` (fewer if a probe's Krylov space closes).

    Example
    -------
    >>> import torch
    >>> A = torch.diag(torch.tensor([-1.0, 0.0, 2.0, 3.0], dtype=torch.float64))
    >>> sd = spectral_density(A, n_vectors=2, steps=4)
    >>> round(sd.mass(), 6), round(sd.mean(), 6)   # each probe sees q^T A q = trace / n
    (1.0, 1.0)
    """
    op = as_operator(op)
    n_vectors = positive_int("n_vectors", n_vectors)
    steps = min(positive_int("steps", steps), op.shape[0])
    gen = generator(op.device, seed)
    nodes = np.zeros((n_vectors, steps))
    weights = np.zeros((n_vectors, steps))
    used = 0
    for i in range(n_vectors):
        kr = Krylov(op, rademacher((op.shape[0],), op, gen), steps, gen)
        while kr.size < steps:
            if kr.step():  # the probe's Krylov space is invariant: its quadrature is exact
                break
        used += kr.size
        theta, Y, _ = kr.ritz()
        m = len(theta)
        nodes[i, :m], weights[i, :m] = theta, Y[0, :] ** 2
        nodes[i, m:] = theta[-1]
    lo, hi = float(nodes.min()), float(nodes.max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(1e-3 * abs(hi), 1e-12)
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise FuncspaceError(f"sigma must be a positive finite number, got {sigma!r}")
    if isinstance(grid, int) and not isinstance(grid, bool):
        points = positive_int("grid", grid)
        axis = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
    else:
        axis = np.asarray(grid.cpu() if isinstance(grid, Tensor) else grid, dtype=np.float64)
        if axis.ndim != 1 or not np.all(np.isfinite(axis)):
            raise FuncspaceError("grid must be a number of points or a finite 1-D array")
    z = (axis[:, None, None] - nodes[None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (kernel * weights[None]).sum(axis=(1, 2)) / n_vectors
    return SpectralDensity(axis, density, nodes, weights, float(sigma), used)
