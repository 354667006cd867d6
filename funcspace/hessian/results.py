"""Results of the curvature estimators, each carrying the evidence of its accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from funcspace._store import Stored
from funcspace.errors import FuncspaceError

__all__ = ["EigenResult", "SpectralDensity", "TraceResult"]


@dataclass(frozen=True, eq=False)
class EigenResult(Stored):
    """Eigenvalues from :func:`lanczos`, with the evidence of their accuracy.

    :meth:`save` stores :meth:`to_dict` as JSON and the vectors as safetensors (their dtype
    kept; they load on the CPU).

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
        """Full-data products, the warm start's counted at their share
        (``hvps + warm_hvps * warm_fraction``)."""
        return self.hvps + self.warm_hvps * self.warm_fraction

    @property
    def relative_residuals(self) -> Tensor:
        """Each value is this close (relatively) to an eigenvalue (``residuals / |values|``)."""
        return self.residuals / self.values.abs()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (values and residuals as lists); the vectors are left out:
        :meth:`save` stores them."""
        return {
            "values": self.values.tolist(),
            "residuals": self.residuals.tolist(),
            "iterations": int(self.iterations),
            "converged": bool(self.converged),
            "hvps": int(self.hvps),
            "warm_hvps": int(self.warm_hvps),
            "warm_fraction": float(self.warm_fraction),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], vectors: Tensor | None = None) -> EigenResult:
        """A result from :meth:`to_dict`'s output.

        Parameters
        ----------
        data : dict
            :meth:`to_dict`'s output.
        vectors : Tensor (n, k), optional
            The Ritz vectors, which ``to_dict`` leaves out; None: an empty ``(0, k)`` float64
            tensor (the values alone).

        Returns
        -------
        EigenResult

        Raises
        ------
        FuncspaceError
            For vectors whose number of columns is not the number of values.
        """
        values = torch.tensor(data["values"], dtype=torch.float64)
        if vectors is None:
            vectors = torch.zeros(0, len(values), dtype=torch.float64)
        elif vectors.ndim != 2 or vectors.shape[1] != len(values):
            raise FuncspaceError(
                f"vectors must have {len(values)} columns (one per value), got shape "
                f"{tuple(vectors.shape)}"
            )
        return cls(
            values=values,
            vectors=vectors,
            residuals=torch.tensor(data["residuals"], dtype=torch.float64),
            iterations=data["iterations"],
            converged=data["converged"],
            hvps=data["hvps"],
            warm_hvps=data["warm_hvps"],
            warm_fraction=data["warm_fraction"],
        )

    def _tensors(self) -> dict[str, Tensor]:
        return {"vectors": self.vectors}

    @classmethod
    def _restore(cls, data: dict[str, Any], tensors: dict[str, Tensor]) -> EigenResult:
        return cls.from_dict(data, tensors["vectors"])

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
class TraceResult(Stored):
    """A stochastic trace estimate with its standard error (``nan`` when it has no spread).

    :meth:`save` stores all of it (:meth:`to_dict`) as JSON, with no tensor file.
    """

    estimate: float
    std_error: float
    hvps: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (all of it; a ``nan`` standard error is written ``NaN``)."""
        return {
            "estimate": float(self.estimate),
            "std_error": float(self.std_error),
            "hvps": int(self.hvps),
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TraceResult:
        """A result from :meth:`to_dict`'s output.

        Parameters
        ----------
        data : dict

        Returns
        -------
        TraceResult
        """
        return cls(
            estimate=float(data["estimate"]),
            std_error=float(data["std_error"]),
            hvps=data["hvps"],
            method=data["method"],
        )


@dataclass(frozen=True, eq=False)
class SpectralDensity(Stored):
    """A smoothed eigenvalue density from stochastic Lanczos quadrature.

    :meth:`save` stores all of it (:meth:`to_dict`) as JSON, with no tensor file.

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
        """Plain data for JSON (all of it, arrays as nested lists)."""
        return {
            "grid": self.grid.tolist(),
            "density": self.density.tolist(),
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "sigma": float(self.sigma),
            "hvps": int(self.hvps),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectralDensity:
        """A density from :meth:`to_dict`'s output (arrays come back as float64).

        Parameters
        ----------
        data : dict

        Returns
        -------
        SpectralDensity
        """
        nodes = np.asarray(data["nodes"], dtype=np.float64)
        weights = np.asarray(data["weights"], dtype=np.float64)
        return cls(
            grid=np.asarray(data["grid"], dtype=np.float64),
            density=np.asarray(data["density"], dtype=np.float64),
            nodes=nodes.reshape(len(data["nodes"]), -1),
            weights=weights.reshape(len(data["weights"]), -1),
            sigma=float(data["sigma"]),
            hvps=data["hvps"],
        )

    def __repr__(self) -> str:
        return (
            f"SpectralDensity(grid=[{self.grid[0]:.4g}, {self.grid[-1]:.4g}] x {len(self.grid)}, "
            f"n_vectors={self.nodes.shape[0]}, steps={self.nodes.shape[1]}, "
            f"sigma={self.sigma:.3g}, hvps={self.hvps})"
        )


# --------------------------------------------------------------------------- helpers
