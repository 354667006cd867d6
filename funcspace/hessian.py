"""The loss Hessian as a linear operator, and estimators over it (curvlinops style).

:class:`HessianOperator` gives exact Hessian-vector products (HVPs) of the mean training loss
of a model over all of its data, with respect to all of its parameters or a subset (one
layer, say), as a linear operator on flat vectors. The estimators are plain functions over
any such operator (or a square symmetric tensor):

* :func:`lanczos`: extreme eigenvalues (largest, smallest or both) by Lanczos with full
  reorthogonalization, stopped by the Ritz residual of every wanted eigenpair;
* :func:`hutchinson_trace` and :func:`hutchpp_trace`: stochastic trace estimates;
* :func:`spectral_density`: stochastic Lanczos quadrature with Gaussian broadening.

Results are frozen dataclasses that carry their evidence (residuals, iterations, standard
errors, HVP counts). Every random function takes a ``seed``; random vectors are drawn on the
operator's device, so nothing of size ``n`` travels to the host during an estimate.

Example
-------
>>> import torch
>>> A = torch.diag(torch.tensor([3.0, 1.0, 0.5, -2.0], dtype=torch.float64))
>>> lanczos(A, k=1, which="both", tol=1e-10).values.numpy().round(8).tolist()
[3.0, -2.0]
>>> round(hutchpp_trace(A, hvps=12).estimate, 8)   # k = n = 4: exact
2.5
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from funcspace.data import Dataset, Pair, as_pair
from funcspace.errors import FuncspaceError

__all__ = [
    "EigenResult",
    "HessianOperator",
    "SpectralDensity",
    "TraceResult",
    "hutchinson_trace",
    "hutchpp_trace",
    "lanczos",
    "spectral_density",
]

log = logging.getLogger(__name__)

Selection = str | Sequence[str] | Callable[[str], bool] | None


class Operator(Protocol):
    """What the estimators need: a symmetric ``(n, n)`` map on flat tensors."""

    shape: tuple[int, int]
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: Tensor) -> Tensor: ...


# --------------------------------------------------------------------------- the operator


@contextmanager
def _eval_mode(model: nn.Module):
    """Evaluate ``model`` in eval mode and give every submodule its own flag back."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _select(model: nn.Module, params: Selection) -> list[str]:
    named = dict(model.named_parameters())
    if params is None:
        chosen = [n for n, p in named.items() if p.requires_grad]
    elif callable(params) and not isinstance(params, str):
        chosen = [n for n in named if params(n)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        chosen = []
        for w in wanted:
            hits = [n for n in named if n == w or n.startswith(w + ".")]
            if not hits:
                shown = ", ".join(list(named)[:12]) + (", ..." if len(named) > 12 else "")
                raise FuncspaceError(
                    f"params names {w!r}, which is neither a parameter nor a module of the model; "
                    f"its parameters are: {shown}"
                )
            chosen += [n for n in hits if n not in chosen]
        chosen = [n for n in named if n in chosen]  # the model's order
    if not chosen:
        raise FuncspaceError(
            "no parameter selected: the model has no trainable parameters or `params` matched "
            "none; pass parameter or module names, or a predicate on names"
        )
    return chosen


class HessianOperator:
    """Hessian of the mean training loss of ``model`` on ``data``, as a linear operator.

    ``op.matvec(v)`` (also ``op @ v``) returns the exact product ``H v`` for a flat vector
    ``v`` over the selected parameters (in the model's parameter order), where ``H`` is the
    Hessian of the mean loss over **all** examples of ``data``: per-batch products are
    accumulated with weight ``batch size / number of examples``, so ``loss`` must return the
    mean over its batch. Each product is a double backward through a first-order gradient
    graph; when the data fit in one batch that graph is built once and cached, so repeated
    products cost no forward pass.

    The operator is a snapshot: parameters and buffers are copied when it is built and the
    model is never changed (its train/eval flags are given back after every forward).

    Parameters
    ----------
    model : nn.Module
        The network. It is evaluated in **eval mode**: BatchNorm uses its running statistics
        (the Hessian of the function the model computes at test time, and a loss that is a
        plain mean over examples) and dropout is off.
    data : Dataset or (inputs, targets)
        The examples (``split`` of a :class:`~funcspace.data.Dataset`); moved once to the
        model's device.
    loss : callable, default ``torch.nn.functional.cross_entropy``
        ``loss(outputs, targets) -> scalar``, the mean over the batch.
    batch_size : int, optional
        Examples per forward pass; ``None`` takes all of them at once (and caches the graph).
    params : str, sequence of str, or callable, optional
        The parameter subset: parameter names or module names (``"0"`` selects ``"0.weight"``
        and ``"0.bias"``), or a predicate on parameter names. Default: every parameter that
        requires grad.
    split : {"train", "test"}
        Which split of a Dataset.

    Attributes
    ----------
    shape : (n, n)
    names : tuple of str, the selected parameters in the order of the flat vector.
    hvps : int, Hessian-vector products performed so far (``dense()`` counts ``n``).

    Raises
    ------
    FuncspaceError
        For bad data, an empty or unknown parameter selection, parameters that are not finite
        or that mix dtypes or devices, or a bad ``batch_size``.

    Example
    -------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2).double()
    >>> data = (torch.randn(8, 3, dtype=torch.float64), torch.tensor([0, 1] * 4))
    >>> op = HessianOperator(model, data)
    >>> op.shape
    (8, 8)
    >>> H = op.dense()
    >>> bool(torch.allclose(H, H.T))
    True
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | Pair,
        *,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        batch_size: int | None = None,
        params: Selection = None,
        split: str = "train",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise FuncspaceError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if loss is not None and not callable(loss):
            raise FuncspaceError("loss must be a callable loss(outputs, targets) -> scalar")
        inputs, targets = as_pair(data, split)
        self.names = tuple(_select(model, params))
        named = dict(model.named_parameters())
        chosen = [named[n] for n in self.names]
        dtypes = {p.dtype for p in chosen}
        devices = {p.device for p in chosen}
        if len(dtypes) != 1 or len(devices) != 1:
            raise FuncspaceError(
                f"the selected parameters mix dtypes {sorted(map(str, dtypes))} or devices "
                f"{sorted(map(str, devices))}; convert the model to one dtype and device"
            )
        if not all(p.dtype.is_floating_point for p in chosen):
            raise FuncspaceError("the selected parameters must be floating point")
        for n, p in named.items():  # a non-finite fixed weight spoils the Hessian as well
            if p.dtype.is_floating_point and not torch.isfinite(p).all():
                raise FuncspaceError(
                    f"parameter {n!r} contains NaN or inf; the Hessian is undefined"
                )
        self.dtype: torch.dtype = dtypes.pop()
        self.device: torch.device = devices.pop()
        n_examples = len(inputs)
        if batch_size is None:
            batch_size = n_examples
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise FuncspaceError(
                f"batch_size must be a positive integer or None, got {batch_size!r}"
            )

        self._model = model
        self._loss = loss if loss is not None else F.cross_entropy
        self._leaves = [p.detach().clone().requires_grad_(True) for p in chosen]
        self._fixed = {n: p.detach().clone() for n, p in named.items() if n not in set(self.names)}
        self._fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
        self._shapes = [p.shape for p in chosen]
        self._sizes = [p.numel() for p in chosen]
        n = sum(self._sizes)
        self.shape: tuple[int, int] = (n, n)
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        self._batches = [
            (inputs[i : i + batch_size], targets[i : i + batch_size])
            for i in range(0, n_examples, batch_size)
        ]
        self._n_examples = n_examples
        self._cached: list[Tensor | None] | None = None
        self.hvps = 0

    # -- the products --------------------------------------------------------------------

    def _gradients(self, x: Tensor, y: Tensor) -> list[Tensor | None]:
        state = {**self._fixed, **dict(zip(self.names, self._leaves, strict=True))}
        with _eval_mode(self._model):
            out = functional_call(self._model, state, (x,))
        value = self._loss(out, y)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise FuncspaceError("loss must return a scalar tensor (the mean over the batch)")
        return list(torch.autograd.grad(value, self._leaves, create_graph=True, allow_unused=True))

    def _hvp(self, grads: list[Tensor | None], chunks: list[Tensor], retain: bool) -> list[Tensor]:
        pairs = [
            (g, c) for g, c in zip(grads, chunks, strict=True) if g is not None and g.requires_grad
        ]
        if not pairs:  # the loss is at most linear in these parameters
            return [torch.zeros_like(p) for p in self._leaves]
        out = torch.autograd.grad(
            [g for g, _ in pairs],
            self._leaves,
            grad_outputs=[c for _, c in pairs],
            retain_graph=retain,
            allow_unused=True,
        )
        return [
            torch.zeros_like(p) if o is None else o for o, p in zip(out, self._leaves, strict=True)
        ]

    def matvec(self, v: Tensor) -> Tensor:
        """The exact product ``H v`` for a flat vector ``v`` of length ``n``."""
        v = torch.as_tensor(v)
        if v.shape != (self.shape[0],):
            raise FuncspaceError(
                f"matvec needs a vector of shape ({self.shape[0]},), got {tuple(v.shape)}"
            )
        v = v.to(device=self.device, dtype=self.dtype)
        chunks = [c.view(s) for c, s in zip(torch.split(v, self._sizes), self._shapes, strict=True)]
        self.hvps += 1
        with torch.enable_grad():  # under a caller's no_grad() the graph would silently vanish
            if len(self._batches) == 1:
                if self._cached is None:
                    self._cached = self._gradients(*self._batches[0])
                parts = self._hvp(self._cached, chunks, retain=True)
                return torch.cat([p.reshape(-1) for p in parts])
            total = torch.zeros(self.shape[0], device=self.device, dtype=self.dtype)
            for x, y in self._batches:
                parts = self._hvp(self._gradients(x, y), chunks, retain=False)
                flat = torch.cat([p.reshape(-1) for p in parts])
                total.add_(flat, alpha=len(x) / self._n_examples)
            return total

    def __matmul__(self, other: Tensor) -> Tensor:
        """``op @ v`` for a vector, ``op @ V`` (one product per column) for a matrix."""
        if other.dim() == 1:
            return self.matvec(other)
        return torch.stack([self.matvec(c) for c in other.T], dim=1)

    def dense(self, max_size: int = 4096) -> Tensor:
        """The full ``(n, n)`` Hessian, column by column (``n`` HVPs): for tiny models only."""
        n = self.shape[0]
        if n > max_size:
            raise FuncspaceError(
                f"dense() would need {n} HVPs and an {n}x{n} matrix; it is meant for tiny models "
                f"(raise max_size={max_size} if you really want it)"
            )
        eye = torch.eye(n, device=self.device, dtype=self.dtype)
        return torch.stack([self.matvec(e) for e in eye], dim=1)

    def to_scipy(self) -> scipy.sparse.linalg.LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` (numpy in and out, through host memory)."""
        dtype = torch.empty((), dtype=self.dtype).numpy().dtype

        def mv(x: np.ndarray) -> np.ndarray:
            v = torch.as_tensor(np.asarray(x).reshape(-1))
            return self.matvec(v).detach().cpu().numpy()

        return scipy.sparse.linalg.LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=dtype)

    def __repr__(self) -> str:
        return (
            f"HessianOperator(n={self.shape[0]}, params={len(self.names)} tensors, "
            f"batches={len(self._batches)}, examples={self._n_examples}, "
            f"device={self.device}, dtype={self.dtype}, hvps={self.hvps})"
        )


class _TensorOperator:
    """A square symmetric tensor seen as an operator (tests, small problems, user matrices)."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise FuncspaceError(
                f"a matrix operator must be square, got shape {tuple(matrix.shape)}"
            )
        if not matrix.dtype.is_floating_point:
            raise FuncspaceError("a matrix operator must be floating point")
        self.matrix = matrix
        self.shape = tuple(matrix.shape)
        self.dtype = matrix.dtype
        self.device = matrix.device

    def matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v


def _as_operator(op: Any) -> Operator:
    if isinstance(op, Tensor):
        return _TensorOperator(op.detach())
    if not all(hasattr(op, a) for a in ("shape", "matvec", "dtype", "device")):
        raise FuncspaceError(
            "expected a HessianOperator, an object with shape, dtype, device and matvec, or a "
            f"square tensor; got {type(op).__name__}"
        )
    if len(op.shape) != 2 or op.shape[0] != op.shape[1]:
        raise FuncspaceError(f"the operator must be square, got shape {tuple(op.shape)}")
    return op


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Eigenvalues from :func:`lanczos`, with the evidence of their accuracy.

    Attributes
    ----------
    values : Tensor (float64, CPU)
        Ritz values: for ``"largest"`` in descending order, for ``"smallest"`` ascending
        (most negative first), for ``"both"`` the ``k`` largest then the ``k`` smallest, all
        in descending order.
    vectors : Tensor (n, len(values))
        Unit Ritz vectors (columns), on the operator's device and dtype.
    residuals : Tensor (float64, CPU)
        ``||H y - theta y||`` of each pair; an eigenvalue of ``H`` lies within it of the
        Ritz value (and typically within ``residual**2 / gap``).
    iterations : int
        Lanczos steps taken (the dimension of the Krylov space).
    converged : bool
        Whether every residual met the tolerance.
    hvps : int
        Operator products used.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    iterations: int
    converged: bool
    hvps: int

    @property
    def relative_residuals(self) -> Tensor:
        """``residuals / |values|``: each value is this close (relatively) to an eigenvalue."""
        return self.residuals / self.values.abs()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the vectors left out)."""
        return {
            "values": self.values.tolist(),
            "residuals": self.residuals.tolist(),
            "iterations": self.iterations,
            "converged": self.converged,
            "hvps": self.hvps,
        }

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.values.tolist())
        res = ", ".join(f"{r:.2g}" for r in self.residuals.tolist())
        return (
            f"EigenResult(values=[{vals}], residuals=[{res}], iterations={self.iterations}, "
            f"converged={self.converged}, hvps={self.hvps})"
        )


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate with its standard error (``nan`` when it has no spread)."""

    estimate: float
    std_error: float
    hvps: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "std_error": self.std_error,
            "hvps": self.hvps,
            "method": self.method,
        }


@dataclass(frozen=True, eq=False)
class SpectralDensity:
    """A smoothed eigenvalue density from stochastic Lanczos quadrature.

    Attributes
    ----------
    grid : ndarray (g,)
        Eigenvalue axis.
    density : ndarray (g,)
        The density on ``grid``: the average over the probe vectors of Gaussians of width
        ``sigma`` at the quadrature nodes, weighted by the quadrature weights; it integrates
        to 1 over the real line (over ``grid`` when it covers the nodes by a few ``sigma``).
    nodes, weights : ndarray (n_vectors, steps)
        Gauss quadrature nodes (Ritz values) and weights (each row sums to 1) per probe
        vector; rows of a probe that ended early (invariant subspace) are padded with weight 0.
    sigma : float
        The Gaussian width.
    hvps : int
        Operator products used.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    hvps: int

    def mass(self) -> float:
        """The integral of ``density`` over ``grid`` (trapezoid rule); about 1."""
        return float(np.trapezoid(self.density, self.grid))

    def mean(self) -> float:
        """The mean eigenvalue of the quadrature (an estimate of ``trace / n``)."""
        return float(np.sum(self.nodes * self.weights) / self.nodes.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "grid": self.grid.tolist(),
            "density": self.density.tolist(),
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "sigma": self.sigma,
            "hvps": self.hvps,
        }

    def __repr__(self) -> str:
        return (
            f"SpectralDensity(grid=[{self.grid[0]:.4g}, {self.grid[-1]:.4g}] x {len(self.grid)}, "
            f"n_vectors={self.nodes.shape[0]}, steps={self.nodes.shape[1]}, "
            f"sigma={self.sigma:.3g}, hvps={self.hvps})"
        )


# --------------------------------------------------------------------------- helpers


def _generator(device: torch.device, seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FuncspaceError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def _rademacher(shape: tuple[int, ...], op: Operator, gen: torch.Generator) -> Tensor:
    bits = torch.randint(0, 2, shape, generator=gen, device=op.device)
    return (2 * bits - 1).to(op.dtype)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FuncspaceError(f"{name} must be a positive integer, got {value!r}")
    return value


class _Krylov:
    """Lanczos with full reorthogonalization; vectors stay on the operator's device.

    Only the two new tridiagonal coefficients of each step are read to the host (they decide
    convergence and breakdown); the basis and every vector operation stay where ``op`` is.
    """

    def __init__(self, op: Operator, q: Tensor, capacity: int, gen: torch.Generator) -> None:
        self.op, self.gen = op, gen
        self.Q = torch.empty((capacity, op.shape[0]), device=op.device, dtype=op.dtype)
        self.alphas: list[float] = []
        self.betas: list[float] = []  # betas[j] couples steps j and j+1; 0 after a breakdown
        self.eps = torch.finfo(op.dtype).eps
        self.scale = 0.0
        self.q = q / torch.linalg.vector_norm(q)

    @property
    def size(self) -> int:
        return len(self.alphas)

    def _orthogonalize(self, w: Tensor, m: int) -> Tensor:
        basis = self.Q[:m]
        for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to working precision
            w = w - basis.T @ (basis @ w)
        return w

    def step(self) -> bool:
        """One step; returns whether the Krylov space became invariant (a breakdown)."""
        j = self.size
        self.Q[j] = self.q
        w = self.op.matvec(self.q)
        alpha = torch.dot(self.q, w)
        w = self._orthogonalize(w, j + 1)
        beta = torch.linalg.vector_norm(w)
        a, b = torch.stack([alpha, beta]).double().cpu().tolist()
        self.alphas.append(a)
        self.scale = max(self.scale, abs(a), b)
        breakdown = b <= 10 * self.eps * max(self.scale, 1e-300) * math.sqrt(self.op.shape[0])
        self.betas.append(0.0 if breakdown else b)
        if j + 1 < self.Q.shape[0]:
            if breakdown:  # restart in the orthogonal complement
                q = torch.randn(
                    self.op.shape[0], generator=self.gen, device=self.op.device, dtype=self.op.dtype
                )
                w = self._orthogonalize(q, j + 1)
                self.q = w / torch.linalg.vector_norm(w)
            else:
                self.q = w / beta
        return breakdown

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), eigenvectors of T, residual norms ``|beta_m y_m|``."""
        d = np.asarray(self.alphas)
        if len(d) == 1:
            theta, Y = d.copy(), np.ones((1, 1))
        else:
            theta, Y = scipy.linalg.eigh_tridiagonal(d, np.asarray(self.betas[:-1]))
        return theta, Y, np.abs(self.betas[-1] * Y[-1, :])


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
    op = _as_operator(op)
    n = op.shape[0]
    if which not in ("largest", "smallest", "both"):
        raise FuncspaceError(f"which must be 'largest', 'smallest' or 'both', got {which!r}")
    k = _positive_int("k", k)
    wanted = 2 * k if which == "both" else k
    if k >= n or wanted > n:
        raise FuncspaceError(
            f"k={k} is too large for an operator of size n={n}: need k < n"
            + (" and 2k <= n for which='both'" if which == "both" else "")
            + "; for all eigenvalues of a tiny operator use torch.linalg.eigvalsh(op.dense())"
        )
    if max_iter is None:
        max_iter = min(n, max(60, 20 * wanted))
    max_iter = min(_positive_int("max_iter", max_iter), n)
    if max_iter < wanted:
        raise FuncspaceError(f"max_iter={max_iter} must be at least the {wanted} wanted values")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol > 0):
        raise FuncspaceError(f"tol must be a positive finite number, got {tol!r}")
    gen = _generator(op.device, seed)
    if v0 is None:
        q = torch.randn(n, generator=gen, device=op.device, dtype=op.dtype)
    else:
        q = torch.as_tensor(v0).to(device=op.device, dtype=op.dtype).reshape(-1)
        if q.numel() != n or not torch.isfinite(q).all() or not q.any():
            raise FuncspaceError(f"v0 must be a finite non-zero vector of length {n}")

    kr = _Krylov(op, q, max_iter, gen)
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


def hutchinson_trace(op: Operator | Tensor, samples: int = 100, seed: int = 0) -> TraceResult:
    """Hutchinson's trace estimate ``mean(z^T H z)`` over Rademacher vectors ``z``.

    Parameters
    ----------
    op : HessianOperator, operator, or square Tensor
    samples : int
        Number of probe vectors (= products).
    seed : int

    Returns
    -------
    TraceResult
        ``std_error`` is the sample standard deviation over ``sqrt(samples)``.

    Example
    -------
    >>> hutchinson_trace(torch.eye(5, dtype=torch.float64), samples=3).estimate
    5.0
    """
    op = _as_operator(op)
    samples = _positive_int("samples", samples)
    gen = _generator(op.device, seed)
    values = []
    for _ in range(samples):
        z = _rademacher((op.shape[0],), op, gen)
        values.append(torch.dot(z, op.matvec(z)))
    v = torch.stack(values).double().cpu().numpy()
    err = float(v.std(ddof=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return TraceResult(float(v.mean()), err, samples, "hutchinson")


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
    op = _as_operator(op)
    hvps = _positive_int("hvps", hvps)
    if hvps < 3:
        raise FuncspaceError(f"hutchpp_trace needs at least 3 products, got hvps={hvps}")
    n = op.shape[0]
    gen = _generator(op.device, seed)
    k = min(hvps // 3, n)
    S = _rademacher((n, k), op, gen)
    Y = torch.stack([op.matvec(s) for s in S.T], dim=1)
    Q, _ = torch.linalg.qr(Y)
    exact = sum(torch.dot(q, op.matvec(q)) for q in Q.T)
    used = 2 * k
    rest = hvps - used if k < n else 0
    values = []
    for _ in range(rest):
        g = _rademacher((n,), op, gen)
        g = g - Q @ (Q.T @ g)
        values.append(torch.dot(g, op.matvec(g)))
    used += rest
    base = float(torch.as_tensor(exact).double().cpu())
    if not values:
        return TraceResult(base, 0.0 if k == n else math.nan, used, "hutch++")
    v = torch.stack(values).double().cpu().numpy()
    err = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return TraceResult(base + float(v.mean()), err, used, "hutch++")


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
    >>> A = torch.diag(torch.tensor([-1.0, 0.0, 2.0, 3.0], dtype=torch.float64))
    >>> sd = spectral_density(A, n_vectors=2, steps=4)
    >>> round(sd.mass(), 6), round(sd.mean(), 6)   # each probe sees q^T A q = trace / n
    (1.0, 1.0)
    """
    op = _as_operator(op)
    n_vectors = _positive_int("n_vectors", n_vectors)
    steps = min(_positive_int("steps", steps), op.shape[0])
    gen = _generator(op.device, seed)
    nodes = np.zeros((n_vectors, steps))
    weights = np.zeros((n_vectors, steps))
    used = 0
    for i in range(n_vectors):
        kr = _Krylov(op, _rademacher((op.shape[0],), op, gen), steps, gen)
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
        points = _positive_int("grid", grid)
        axis = np.linspace(lo - 5 * sigma, hi + 5 * sigma, points)
    else:
        axis = np.asarray(grid.cpu() if isinstance(grid, Tensor) else grid, dtype=np.float64)
        if axis.ndim != 1 or not np.all(np.isfinite(axis)):
            raise FuncspaceError("grid must be a number of points or a finite 1-D array")
    z = (axis[:, None, None] - nodes[None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (kernel * weights[None]).sum(axis=(1, 2)) / n_vectors
    return SpectralDensity(axis, density, nodes, weights, float(sigma), used)
