"""Flatness and curvature of a minimizer: Hessian eigenvalues, trace and spectral density.

Each function builds a :class:`~funcspace.hessian.HessianOperator` of the mean training loss
(model in eval mode, all of the data, optionally a parameter subset) and runs one estimator
of :mod:`funcspace.hessian` over it; build the operator yourself to run several estimators
on one operator (and reuse its cached gradient graph).

Operator options accepted by every function: ``loss``, ``batch_size``, ``params`` (names of
parameters or modules, or a predicate on names), ``split``.

Example
-------
>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
>>> data = (torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,)))
>>> top = hessian_eigenvalues(model, data, k=2, tol=1e-8)
>>> top.converged, len(top.values)
(True, 2)
>>> full = hessian_trace(model, data, hvps=2 * 67)  # 67 Lanczos steps span all 67 weights
>>> full.std_error, full.hvps   # so the estimate is exact, and the rest of the budget unused
(0.0, 67)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from funcspace.data import Dataset, Pair, as_pair
from funcspace.energy import LocalEnergy, local_energy
from funcspace.errors import FuncspaceError
from funcspace.hessian import (
    EigenResult,
    HessianOperator,
    Selection,
    SpectralDensity,
    TraceResult,
    hutchinson_trace,
    hutchpp_trace,
    krylov_trace,
    lanczos,
    spectral_density,
)
from funcspace.metrics import Metric

__all__ = [
    "LocalEnergy",
    "hessian_eigenvalues",
    "hessian_spectrum",
    "hessian_trace",
    "local_energy",
]

#: A loss: a differentiable metric's name (``"loss"``, ``"mse"``), a
#: :class:`~funcspace.metrics.Metric`, or ``loss(outputs, targets) -> scalar mean``.
Loss = str | Metric | Callable[[Tensor, Tensor], Tensor]


def _operator(
    model: nn.Module,
    data: Dataset | Pair,
    loss: Loss | None,
    batch_size: int | None,
    params: Selection,
    split: str,
) -> HessianOperator:
    return HessianOperator(
        model, data, loss=loss, batch_size=batch_size, params=params, split=split
    )


def hessian_eigenvalues(
    model: nn.Module,
    data: Dataset | Pair,
    k: int = 1,
    which: str = "largest",
    *,
    loss: Loss | None = None,
    batch_size: int | None = None,
    params: Selection = None,
    split: str = "train",
    warm_start: float | str | None = "auto",
    tol: float = 1e-3,
    max_iter: int | None = None,
    seed: int = 0,
    v0: Tensor | None = None,
) -> EigenResult:
    """Extreme eigenvalues of the loss Hessian (Lanczos on exact Hessian-vector products).

    Warm start: Lanczos first runs to a loose 3% residual on the Hessian of a random
    subsample of the data (each product a fraction of the cost of a full one), and the full
    run starts from the sum of the Ritz vectors it found. That start already points almost
    along the wanted eigenvectors, so the full run, stopped by the same residual test, needs
    fewer products; the answer and its guarantee are the full operator's. On the digits MLP
    of ``benchmarks/hessian.py`` a 10% subsample cut the cost from 5.5 to 4.4 full products
    at ``tol=3e-2`` and from 6.2 to 5.1 at ``tol=1e-2``.

    Parameters
    ----------
    model : nn.Module
        Evaluated in eval mode (BatchNorm running statistics); never changed.
    data : Dataset or (inputs, targets)
    k : int
        Number of eigenvalues (at each end for ``which="both"``), ``1 <= k < n``.
    which : {"largest", "smallest", "both"}
        ``"smallest"`` gives the most negative eigenvalues (non-convexity, Li et al. 2018).
    loss, batch_size, params, split
        Operator options, see :class:`~funcspace.hessian.HessianOperator`.
    warm_start : "auto", float in (0, 1), or None
        The subsample's share of the data; ``"auto"``: 10% for ``which="largest"`` when the
        data has at least 1,000 examples (below that a full product is cheap and the
        subsample too small to say much), else none; None: a random start. Ignored when
        ``v0`` is given. The most negative eigenvalues of a trained network sit at the edge
        of the bulk, where the subsample's eigenvectors say little about the full
        Hessian's: on the benchmark MLP a warm start cost 4-6 more products there, so
        ``"auto"`` leaves it out (for k=3 largest it saved 0.5-1 product).
    tol, max_iter, v0
        Of :func:`~funcspace.hessian.lanczos`: the relative residual every wanted pair must
        reach, the step budget (default: the operator's size), a start vector.
    seed : int
        Seeds Lanczos' start and the warm start's subsample.

    Returns
    -------
    EigenResult
        Values with their residuals, iterations, convergence flag and HVP count (and the
        warm start's products in ``warm_hvps``; ``cost`` counts both in full products).

    Raises
    ------
    FuncspaceError
        For bad data or options (``k < 1``, ``k >= n``, non-finite weights, ...).

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2).double()
    >>> data = (torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,)))
    >>> res = hessian_eigenvalues(model, data, k=1, which="both", tol=1e-8)
    >>> bool(res.values[0] >= res.values[1])
    True
    """
    op = _operator(model, data, loss, batch_size, params, split)
    inputs, targets = as_pair(data, split)
    fraction = _warm_fraction(warm_start, len(inputs), which)
    options = dict(tol=tol, max_iter=max_iter, seed=seed)
    if fraction is None or v0 is not None:
        return lanczos(op, k, which, v0=v0, **options)
    if isinstance(seed, bool) or not isinstance(seed, int):
        return lanczos(op, k, which, **options)  # which says what is wrong with the seed
    size = max(2, round(fraction * len(inputs)))
    pick = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))[:size]
    pick = pick.to(inputs.device)
    subsample = (inputs[pick], targets[pick])
    sub = _operator(model, subsample, loss, batch_size, params, split)
    warm = lanczos(sub, k, which, tol=_WARM_TOL, seed=seed, max_iter=max_iter)
    result = lanczos(op, k, which, v0=warm.vectors.sum(dim=1), **options)
    return dataclasses.replace(result, warm_hvps=warm.hvps, warm_fraction=size / len(inputs))


_WARM_TOL = 0.03  # loose: the full run does the rest (0.1 and 0.3 cost the same, less exact)
_WARM_AUTO = (0.1, 1000)  # share of the data, from this many examples on


def _warm_fraction(warm_start: float | str | None, examples: int, which: str) -> float | None:
    if warm_start is None:
        return None
    if warm_start == "auto":
        share, minimum = _WARM_AUTO
        return share if examples >= minimum and which == "largest" else None
    if (
        isinstance(warm_start, bool)
        or not isinstance(warm_start, (int, float))
        or not 0 < warm_start < 1
    ):
        raise FuncspaceError(
            f"warm_start must be 'auto', None or a share of the data in (0, 1), got {warm_start!r}"
        )
    return float(warm_start)


def hessian_trace(
    model: nn.Module,
    data: Dataset | Pair,
    method: str = "krylov",
    hvps: int = 99,
    seed: int = 0,
    *,
    loss: Loss | None = None,
    batch_size: int | None = None,
    params: Selection = None,
    split: str = "train",
) -> TraceResult:
    """Trace of the loss Hessian, estimated with ``hvps`` Hessian-vector products.

    Parameters
    ----------
    model : nn.Module
    data : Dataset or (inputs, targets)
    method : {"krylov", "hutch++", "hutchinson"}
        ``"krylov"`` (default, :func:`~funcspace.hessian.krylov_trace`) deflates the top of
        the spectrum with half of the products spent on Lanczos steps, whose trace comes for
        free; ``"hutch++"`` deflates with a random sketch and pays a third of the budget
        again for its trace. Both have a much smaller spread than plain ``"hutchinson"``
        when a few eigenvalues dominate, as in trained networks; at the same budget the
        Krylov deflation was the tightest of the three on every budget we measured
        (benchmarks/hessian.py).
    hvps : int
        Product budget (Krylov needs at least 2, Hutch++ at least 3).
    seed : int
    loss, batch_size, params, split
        Operator options, see :class:`~funcspace.hessian.HessianOperator`.

    Returns
    -------
    TraceResult
        The estimate with its standard error.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2).double()
    >>> data = (torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,)))
    >>> hessian_trace(model, data, method="hutchinson", hvps=10).hvps
    10
    """
    methods = {"krylov": krylov_trace, "hutch++": hutchpp_trace, "hutchinson": hutchinson_trace}
    if method not in methods:
        raise FuncspaceError(f"method must be one of {sorted(methods)}, got {method!r}")
    op = _operator(model, data, loss, batch_size, params, split)
    return methods[method](op, hvps, seed)


def hessian_spectrum(
    model: nn.Module,
    data: Dataset | Pair,
    *,
    loss: Loss | None = None,
    batch_size: int | None = None,
    params: Selection = None,
    split: str = "train",
    n_vectors: int = 3,
    steps: int = 60,
    seed: int = 0,
    grid: int | np.ndarray | Tensor = 1000,
    sigma: float | None = None,
) -> SpectralDensity:
    """Eigenvalue density of the loss Hessian (stochastic Lanczos quadrature).

    Parameters
    ----------
    model : nn.Module
    data : Dataset or (inputs, targets)
    loss, batch_size, params, split
        Operator options, see :class:`~funcspace.hessian.HessianOperator`.
    n_vectors, steps, seed, grid, sigma
        Of :func:`~funcspace.hessian.spectral_density`: random probes, Lanczos steps per
        probe, their seed, the evaluation grid (points or values), the Gaussian width.

    Returns
    -------
    SpectralDensity
        Grid, density (integrates to 1), quadrature nodes and weights.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2).double()
    >>> data = (torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,)))
    >>> round(hessian_spectrum(model, data, steps=8).mass(), 4)
    1.0
    """
    op = _operator(model, data, loss, batch_size, params, split)
    return spectral_density(op, n_vectors=n_vectors, steps=steps, seed=seed, grid=grid, sigma=sigma)
