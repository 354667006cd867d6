"""Results of the curvature estimators, each carrying the evidence of its accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["EigenResult", "SpectralDensity", "TraceResult"]


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
    warm_hvps : int
        Products spent on a warm start before (on a Hessian of a data subsample, see
        :func:`funcspace.flatness.hessian_eigenvalues`); 0 without one.
    warm_fraction : float
        The subsample's share of the data: each warm product cost about this fraction of a
        full one.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    iterations: int
    converged: bool
    hvps: int
    warm_hvps: int = 0
    warm_fraction: float = 0.0

    @property
    def cost(self) -> float:
        """Full-data products, the warm start's counted at their share: ``hvps + warm_hvps *
        warm_fraction``."""
        return self.hvps + self.warm_hvps * self.warm_fraction

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
            "warm_hvps": self.warm_hvps,
            "warm_fraction": self.warm_fraction,
        }

    def __repr__(self) -> str:
        vals = ", ".join(f"{v:.6g}" for v in self.values.tolist())
        res = ", ".join(f"{r:.2g}" for r in self.residuals.tolist())
        warm = (
            f", warm_hvps={self.warm_hvps} at {self.warm_fraction:.3g} of the data"
            if self.warm_hvps
            else ""
        )
        return (
            f"EigenResult(values=[{vals}], residuals=[{res}], iterations={self.iterations}, "
            f"converged={self.converged}, hvps={self.hvps}{warm})"
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
