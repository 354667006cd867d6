"""Shared pieces of the Krylov estimators: seeded generators, probes, the Lanczos basis."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from funcspace.errors import FuncspaceError

from .operator import Operator

__all__ = ["Krylov", "generator", "positive_int", "rademacher"]


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (an integer, checked)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise FuncspaceError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def rademacher(shape: tuple[int, ...], op: Operator, gen: torch.Generator) -> Tensor:
    """Random signs of ``shape`` on the operator's device and dtype."""
    bits = torch.randint(0, 2, shape, generator=gen, device=op.device)
    return (2 * bits - 1).to(op.dtype)


def positive_int(name: str, value: object) -> int:
    """``value`` if it is a positive integer, else a FuncspaceError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FuncspaceError(f"{name} must be a positive integer, got {value!r}")
    return value


class Krylov:
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
            import scipy.linalg  # imported on first use

            theta, Y = scipy.linalg.eigh_tridiagonal(d, np.asarray(self.betas[:-1]))
        return theta, Y, np.abs(self.betas[-1] * Y[-1, :])
